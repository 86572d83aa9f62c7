"""parser.p4: P4tasParser and P4tasDeparser. The parser never rejects; running past the end
of the frame sets parser_error (v1model's PacketTooShort) and keeps what was extracted."""

from __future__ import annotations

from .constants import (CPU_PORT, ETHERTYPE_IPV4, ETHERTYPE_NIC_HOST, HOST_PORT,
                        IP_PROTO_TCP, IPV4_HDR_BYTES, TCP_ACK, TCP_DATA_OFFSET_TS,
                        TCP_DATA_OFFSET_TS_SACK1, TCP_DATA_OFFSET_TS_SACK2,
                        TCP_DATA_OFFSET_TS_SACK3, TCP_MSS_OPT_PREFIX, TCP_OPT_SACK1_LEN,
                        TCP_SACK1_OPT_PREFIX, TCP_SACK2_OPT_PREFIX, TCP_SACK3_OPT_PREFIX,
                        TCP_SYN, TCP_TS_OPT_PREFIX)
from .headers import (Ethernet, Headers, Ipv4, Metadata, NicHost, PacketOut, StandardMetadata,
                      Tcp, TcpMss, TcpSack, TcpSackBlock, TcpTs)


def p4tas_parser(frame: bytes, hdr: Headers, meta: Metadata, sm: StandardMetadata) -> int:
    """Extract the headers of `frame`; returns the offset of the payload (what follows)."""
    end = len(frame)
    if sm.ingress_port == CPU_PORT:                            # state start
        if end < PacketOut.SIZE:
            sm.parser_error = True
            return 0
        hdr.packet_out = PacketOut.unpack(frame, 0)            # parse_packet_out
        if not hdr.packet_out.reinject:
            return PacketOut.SIZE
        start = PacketOut.SIZE
    else:
        start = 0
    if end < start + Ethernet.SIZE:                            # parse_ethernet
        sm.parser_error = True
        return start
    eth = hdr.ethernet = Ethernet.unpack(frame, start)
    off = start + Ethernet.SIZE
    if eth.ether_type == ETHERTYPE_NIC_HOST:
        if sm.ingress_port != HOST_PORT:                       # parse_nic_host_if_trusted
            return off
        if end < off + NicHost.SIZE:                           # parse_nic_host
            sm.parser_error = True
            return off
        hdr.nic_host = NicHost.unpack(frame, off)
        return off + NicHost.SIZE
    if eth.ether_type != ETHERTYPE_IPV4:
        return off
    if end < off + Ipv4.SIZE:                                  # parse_ipv4
        sm.parser_error = True
        return off
    ip = hdr.ipv4 = Ipv4.unpack(frame, off)
    off += Ipv4.SIZE
    meta.l4_len = (ip.total_len - IPV4_HDR_BYTES) & 0xFFFF
    if not (ip.version == 4 and ip.ihl == 5 and ip.flags & 1 == 0 and ip.frag_offset == 0
            and ip.protocol == IP_PROTO_TCP):
        return off
    if end < off + Tcp.SIZE:                                   # parse_tcp
        sm.parser_error = True
        return off
    tcp = hdr.tcp = Tcp.unpack(frame, off)
    off += Tcp.SIZE
    if tcp.data_offset >= 6 and tcp.flags & (TCP_SYN | TCP_ACK) == TCP_SYN:
        return _parse_tcp_mss_if_first(frame, off, hdr, sm)
    if tcp.data_offset != TCP_DATA_OFFSET_TS and tcp.data_offset not in _SACK_PREFIX:
        return off
    if end < off + 4:                           # parse_tcp_ts(_sack)_if_linux_layout
        sm.parser_error = True
        return off
    if int.from_bytes(frame[off:off + 4], "big") != TCP_TS_OPT_PREFIX:
        return off
    if end < off + TcpTs.SIZE:                                 # parse_tcp_ts(_then_sack)
        sm.parser_error = True
        return off
    hdr.tcp_ts = TcpTs.unpack(frame, off)
    off += TcpTs.SIZE
    if tcp.data_offset == TCP_DATA_OFFSET_TS:
        return off
    return _parse_sack(frame, hdr, sm, off)


# Data offset -> the 32 bits the SACK option starts with (NOP, NOP, kind 5, length 2 + 8n).
_SACK_PREFIX = {TCP_DATA_OFFSET_TS_SACK1: TCP_SACK1_OPT_PREFIX,
                TCP_DATA_OFFSET_TS_SACK2: TCP_SACK2_OPT_PREFIX,
                TCP_DATA_OFFSET_TS_SACK3: TCP_SACK3_OPT_PREFIX}


def _parse_sack(frame: bytes, hdr: Headers, sm: StandardMetadata, off: int) -> int:
    """parse_tcp_ts_then_sack's select, parse_tcp_sack, _b2, _b3."""
    end, data_offset = len(frame), hdr.tcp.data_offset
    if end < off + 4:
        sm.parser_error = True
        return off
    if int.from_bytes(frame[off:off + 4], "big") != _SACK_PREFIX[data_offset]:
        return off
    if end < off + TcpSack.SIZE:                               # parse_tcp_sack
        sm.parser_error = True
        return off
    hdr.tcp_sack = TcpSack.unpack(frame, off)
    off += TcpSack.SIZE
    if hdr.tcp_sack.len == TCP_OPT_SACK1_LEN:
        return off
    for name in ("tcp_sack_b2", "tcp_sack_b3"):                # parse_tcp_sack_b2, _b3
        if end < off + TcpSackBlock.SIZE:
            sm.parser_error = True
            return off
        setattr(hdr, name, TcpSackBlock.unpack(frame, off))
        off += TcpSackBlock.SIZE
        if data_offset != TCP_DATA_OFFSET_TS_SACK3:
            return off
    return off


def _parse_tcp_mss_if_first(frame: bytes, off: int, hdr: Headers,
                            sm: StandardMetadata) -> int:
    """A SYN with options: its MSS option when it comes first."""
    end = len(frame)
    if end < off + 2:
        sm.parser_error = True
        return off
    if int.from_bytes(frame[off:off + 2], "big") != TCP_MSS_OPT_PREFIX:
        return off
    if end < off + TcpMss.SIZE:                                # parse_tcp_mss
        sm.parser_error = True
        return off
    hdr.tcp_mss = TcpMss.unpack(frame, off)
    return off + TcpMss.SIZE


def p4tas_deparser(hdr: Headers) -> bytes:
    """The valid headers in deparser order (the payload follows them)."""
    parts = []
    if hdr.packet_in is not None:
        parts.append(hdr.packet_in.pack())
    if hdr.ethernet is not None:
        parts.append(hdr.ethernet.pack())
    if hdr.nic_host is not None:
        parts.append(hdr.nic_host.pack())
    if hdr.ipv4 is not None:
        parts.append(hdr.ipv4.pack())
    if hdr.tcp is not None:
        parts.append(hdr.tcp.pack())
    for option in (hdr.tcp_ts, hdr.tcp_mss, hdr.tcp_sack, hdr.tcp_sack_b2, hdr.tcp_sack_b3):
        if option is not None:
            parts.append(option.pack())
    return b"".join(parts)
