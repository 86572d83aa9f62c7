"""headers.p4's headers, metadata structs and v1model's standard_metadata, as slotted Python
objects. A header is valid when its slot in Headers holds an object, invalid when None."""

from __future__ import annotations

import struct

from nic_contract.nic_host_header import NIC_HOST_HEADER

_IPV4 = struct.Struct("!BBHHHBBHII")
_TCP = struct.Struct("!HHIIBBHHH")
_TCP_TS = struct.Struct("!BBBBII")
_TCP_MSS = struct.Struct("!BBH")
_TCP_SACK = struct.Struct("!BBBBII")
_TCP_SACK_BLOCK = struct.Struct("!II")
_NIC_HOST = NIC_HOST_HEADER  # the one definition of the channel header
_PACKET_IN = struct.Struct("!HBI")
_PACKET_OUT = struct.Struct("!H")


class Ethernet:
    __slots__ = ("dst_addr", "src_addr", "ether_type")
    SIZE = 14

    def __init__(self, dst_addr: bytes = bytes(6), src_addr: bytes = bytes(6),
                 ether_type: int = 0) -> None:
        self.dst_addr, self.src_addr, self.ether_type = dst_addr, src_addr, ether_type

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "Ethernet":
        return cls(buf[off:off + 6], buf[off + 6:off + 12],
                   (buf[off + 12] << 8) | buf[off + 13])

    def pack(self) -> bytes:
        return self.dst_addr + self.src_addr + self.ether_type.to_bytes(2, "big")


class Ipv4:
    __slots__ = ("version", "ihl", "dscp", "ecn", "total_len", "identification", "flags",
                 "frag_offset", "ttl", "protocol", "hdr_checksum", "src_addr", "dst_addr")
    SIZE = 20

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "Ipv4":
        h = cls()
        (vi, de, h.total_len, h.identification, ff, h.ttl, h.protocol, h.hdr_checksum,
         h.src_addr, h.dst_addr) = _IPV4.unpack_from(buf, off)
        h.version, h.ihl, h.dscp, h.ecn = vi >> 4, vi & 0xF, de >> 2, de & 3
        h.flags, h.frag_offset = ff >> 13, ff & 0x1FFF
        return h

    def pack(self) -> bytes:
        return _IPV4.pack((self.version << 4) | self.ihl, (self.dscp << 2) | self.ecn,
                          self.total_len, self.identification,
                          (self.flags << 13) | self.frag_offset, self.ttl, self.protocol,
                          self.hdr_checksum, self.src_addr, self.dst_addr)


class Tcp:
    __slots__ = ("src_port", "dst_port", "seq_no", "ack_no", "data_offset", "res", "flags",
                 "window", "checksum", "urgent_ptr")
    SIZE = 20

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "Tcp":
        h = cls()
        (h.src_port, h.dst_port, h.seq_no, h.ack_no, dr, h.flags, h.window, h.checksum,
         h.urgent_ptr) = _TCP.unpack_from(buf, off)
        h.data_offset, h.res = dr >> 4, dr & 0xF
        return h

    def pack(self) -> bytes:
        return _TCP.pack(self.src_port, self.dst_port, self.seq_no, self.ack_no,
                         (self.data_offset << 4) | self.res, self.flags, self.window,
                         self.checksum, self.urgent_ptr)


class TcpTs:
    __slots__ = ("nop1", "nop2", "kind", "len", "tsval", "tsecr")
    SIZE = 12

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "TcpTs":
        h = cls()
        h.nop1, h.nop2, h.kind, h.len, h.tsval, h.tsecr = _TCP_TS.unpack_from(buf, off)
        return h

    def pack(self) -> bytes:
        return _TCP_TS.pack(self.nop1, self.nop2, self.kind, self.len, self.tsval, self.tsecr)


class TcpMss:
    __slots__ = ("kind", "len", "mss")
    SIZE = 4

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "TcpMss":
        h = cls()
        h.kind, h.len, h.mss = _TCP_MSS.unpack_from(buf, off)
        return h

    def pack(self) -> bytes:
        return _TCP_MSS.pack(self.kind, self.len, self.mss)
class TcpSack:
    """NOP, NOP, SACK (kind 5) with its first block."""

    __slots__ = ("nop1", "nop2", "kind", "len", "left", "right")
    SIZE = 12

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "TcpSack":
        h = cls()
        h.nop1, h.nop2, h.kind, h.len, h.left, h.right = _TCP_SACK.unpack_from(buf, off)
        return h

    def pack(self) -> bytes:
        return _TCP_SACK.pack(self.nop1, self.nop2, self.kind, self.len, self.left, self.right)


class TcpSackBlock:
    """A further SACK block (tcp_sack_block_h)."""

    __slots__ = ("left", "right")
    SIZE = 8

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "TcpSackBlock":
        h = cls()
        h.left, h.right = _TCP_SACK_BLOCK.unpack_from(buf, off)
        return h

    def pack(self) -> bytes:
        return _TCP_SACK_BLOCK.pack(self.left, self.right)


class NicHost:
    __slots__ = ("opcode", "flags", "gen", "flow_id", "offset", "length", "window", "count",
                 "aux")
    SIZE = 24

    def __init__(self) -> None:
        self.opcode = self.flags = self.gen = self.flow_id = self.offset = 0
        self.length = self.window = self.count = self.aux = 0

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "NicHost":
        h = cls.__new__(cls)
        (h.opcode, h.flags, h.gen, h.flow_id, h.offset, h.length, h.window, h.count,
         h.aux) = _NIC_HOST.unpack_from(buf, off)
        return h

    def pack(self) -> bytes:
        return _NIC_HOST.pack(self.opcode, self.flags, self.gen, self.flow_id, self.offset,
                              self.length, self.window, self.count, self.aux)


class PacketIn:
    """The controller header of PacketIns (@controller_header("packet_in"))."""

    __slots__ = ("ingress_port", "_pad", "reason", "tsval")
    SIZE = 7

    def __init__(self) -> None:
        self.ingress_port = self._pad = self.reason = self.tsval = 0

    def pack(self) -> bytes:
        return _PACKET_IN.pack((self.ingress_port << 7) | self._pad, self.reason, self.tsval)


class PacketOut:
    """The controller header of PacketOuts (@controller_header("packet_out"))."""

    __slots__ = ("egress_port", "reinject", "_pad")
    SIZE = 2

    @classmethod
    def unpack(cls, buf: bytes, off: int) -> "PacketOut":
        h = cls()
        (word,) = _PACKET_OUT.unpack_from(buf, off)
        h.egress_port, h.reinject, h._pad = word >> 7, (word >> 6) & 1, word & 0x3F
        return h


class Headers:
    """headers_t; None is an invalid header."""

    __slots__ = ("packet_out", "packet_in", "ethernet", "nic_host", "ipv4", "tcp", "tcp_ts",
                 "tcp_mss", "tcp_sack", "tcp_sack_b2", "tcp_sack_b3")

    def __init__(self) -> None:
        self.packet_out = self.packet_in = self.ethernet = self.nic_host = None
        self.ipv4 = self.tcp = self.tcp_ts = self.tcp_mss = None
        self.tcp_sack = self.tcp_sack_b2 = self.tcp_sack_b3 = None

    def drop_tcp(self) -> None:
        """setInvalid() on the IPv4 and TCP headers and the option headers of data segments."""
        self.ipv4 = self.tcp = self.tcp_ts = None
        self.tcp_sack = self.tcp_sack_b2 = self.tcp_sack_b3 = None


class FlowStatic:
    """flow_static_t: set_flow_state's action data."""

    __slots__ = ("gen", "local_mac", "peer_mac", "local_ip", "peer_ip", "local_port",
                 "peer_port", "wire_port", "rx_ring_size", "rx_start_seq", "tx_start_seq",
                 "rx_window_shift", "timestamps", "peer_window", "ecn", "sack",
                 "peer_window_shift")


class FlowDyn:
    """flow_dyn_t: the dynamic per-flow state, loaded once and stored once per packet."""

    __slots__ = ("gen", "rcv_nxt", "rx_free", "snd_nxt", "snd_una", "ts_recent",
                 "peer_window", "dupacks", "recover", "ooo_active", "fin_sent",
                 "ts_recent_valid", "ts_recent_epoch", "ece_echo", "rtt_pending")


class Metadata:
    """metadata_t (fields start at zero / false, as bmv2 initializes user metadata)."""

    __slots__ = ("ack_seq", "ack_ack", "ack_window", "ack_flags", "ack_tsval", "ack_tsecr",
                 "ack_sack_left", "ack_sack_right", "punt_reason",
                 "drop_reason", "l4_len", "payload_len", "flow_found", "flow_id", "flow",
                 "dyn", "dyn_fresh", "adv_window", "acked_bytes", "window_update",
                 "rtt_sample", "ack_ece", "fast_retransmit", "dupack", "fin_acked", "host_busy",
                 "seq_acceptable", "ack_unacceptable",
                 "window_reopened", "ooo_merged", "paws_rejected", "tx_new_data", "tx_resend",
                 "delivered", "to_host", "ack_rewrite",
                 "tx_build", "in_port", "reinjected", "syn_cookie")

    def __init__(self) -> None:
        self.ack_seq = self.ack_ack = self.ack_window = self.ack_flags = self.ack_tsval = 0
        self.ack_tsecr = 0
        self.ack_sack_left = self.ack_sack_right = 0
        self.punt_reason = self.drop_reason = self.l4_len = self.payload_len = 0
        self.flow_found = False
        self.flow_id = 0
        self.flow: FlowStatic | None = None
        self.dyn: FlowDyn | None = None
        self.dyn_fresh = False
        self.adv_window = self.acked_bytes = self.rtt_sample = self.ooo_merged = 0
        self.window_update = self.ack_ece = self.fast_retransmit = self.host_busy = False
        self.dupack = False
        self.fin_acked = self.seq_acceptable = self.ack_unacceptable = False
        self.window_reopened = self.delivered = self.to_host = False
        self.paws_rejected = self.tx_new_data = self.tx_resend = False
        self.ack_rewrite = self.tx_build = self.syn_cookie = False
        self.in_port = 0
        self.reinjected = False


class StandardMetadata:
    """v1model's standard_metadata_t, the fields this program uses, plus what bmv2 keeps
    beside it: the pending clone and truncation."""

    __slots__ = ("ingress_port", "egress_spec", "egress_port", "instance_type",
                 "packet_length", "ingress_global_timestamp", "parser_error",
                 "checksum_error", "deq_qdepth", "clone_session", "truncate_to")

    def __init__(self, ingress_port: int, packet_length: int, now_us: int) -> None:
        self.ingress_port = ingress_port
        self.egress_spec = self.egress_port = self.instance_type = 0
        self.packet_length = packet_length
        self.ingress_global_timestamp = now_us
        self.parser_error = False
        self.checksum_error = 0
        self.deq_qdepth = 0
        self.clone_session: int | None = None
        self.truncate_to: int | None = None
