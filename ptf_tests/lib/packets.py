"""Packet builders for the PTF suite: a test connection, its data segments, and the exact
frames the fast path must produce for them (ACKs, host-port RX_DATA frames)."""

from __future__ import annotations

from dataclasses import dataclass

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet

from nic_contract.flow_entries import FlowSpec, FlowTuple
from nic_contract.nic_host_header import (AUX_OFFSET, ChannelFlags, NicHostMessage, Opcode,
                                          payload_sum)

LOCAL_MAC = "02:00:00:00:00:01"
PEER_MAC = "02:00:00:00:00:02"
LOCAL_IP = "10.0.0.1"
PEER_IP = "10.0.0.2"
ECN_CE = 3
TS_OPTION_OFFSET = 14 + 20 + 20  # NOP, NOP, kind, len, then TSval
RTT_OFFSET = AUX_OFFSET  # the RTT sample of TX_ACKED


PEER_WINDOW = 1000  # what data_segment() advertises


def flow_spec(flow_id: int, generation: int, *, local_port: int = 5001, peer_port: int = 40000,
              rx_ring_size: int = 1 << 16, rx_start_seq: int = 1000, tx_start_seq: int = 5000,
              rx_window_shift: int = 0, wire_port: int = 1, timestamps: bool = True,
              ecn: bool = False, sack: bool = False) -> FlowSpec:
    """A test connection between LOCAL (us) and PEER (the wire)."""
    return FlowSpec(
        flow_id=flow_id, generation=generation,
        tuple=FlowTuple(LOCAL_IP, local_port, PEER_IP, peer_port),
        local_mac=LOCAL_MAC, peer_mac=PEER_MAC, rx_ring_size=rx_ring_size,
        rx_start_seq=rx_start_seq, tx_start_seq=tx_start_seq, wire_port=wire_port,
        rx_window_shift=rx_window_shift, timestamps=timestamps, peer_window=PEER_WINDOW,
        ecn=ecn, sack=sack,
    )


def ts_option(tsval: int, tsecr: int) -> list:
    """Linux's option layout on data and ACK segments: NOP, NOP, Timestamps."""
    return [("NOP", None), ("NOP", None), ("Timestamp", (tsval, tsecr))]


def sack_option(tsval: int, tsecr: int, blocks: list[tuple[int, int]]) -> list:
    """Linux's layout of an ACK with SACK blocks: NOP, NOP, Timestamps, NOP, NOP, SACK."""
    edges = tuple(edge for block in blocks for edge in block)
    return ts_option(tsval, tsecr) + [("NOP", None), ("NOP", None), ("SAck", edges)]


def data_segment(spec: FlowSpec, seq: int, payload: bytes, *, flags: str = "PA",
                 tsval: int | None = 777, ecn: int = 0, ack: int | None = None,
                 options: list | None = None, window: int | None = None,
                 tsecr: int = 0) -> Packet:
    """A segment from the peer to us; timestamps by default, as Linux sends them."""
    t = spec.tuple
    if options is None:
        options = ts_option(tsval, tsecr) if tsval is not None else []
    return (Ether(src=PEER_MAC, dst=LOCAL_MAC)
            / IP(src=t.peer_ip, dst=t.local_ip, tos=ecn, id=1, flags="DF")
            / TCP(sport=t.peer_port, dport=t.local_port, seq=seq,
                  ack=spec.tx_start_seq if ack is None else ack,
                  flags=flags, window=PEER_WINDOW if window is None else window,
                  options=options)
            / payload)


@dataclass(frozen=True)
class ExpectedAck:
    """What a segment the fast path builds must contain: the ACK for a data segment, or
    (with a payload) a data segment from TX_DATA."""

    seq: int
    ack: int
    window: int
    ece: bool = False
    tsecr: int | None = None  # None: the ACK carries no timestamp option
    payload: bytes = b""      # a data segment the NIC built from TX_DATA
    psh: bool = False
    fin: bool = False         # TX_DATA flagged FIN: our FIN rides on it
    cwr: bool = False         # TX_DATA flagged CWR
    ect: bool = False         # the IPv4 ECN field says ECT(0)
    sack: tuple[int, int] | None = None  # the one SACK block the ACK reports (after TS)

    def packet(self, spec: FlowSpec, tsval: int = 0) -> Packet:
        """The ACK as bytes on the wire, our TSval filled in (the switch clock picks it)."""
        t = spec.tuple
        options = ts_option(tsval, self.tsecr) if self.tsecr is not None else []
        if self.sack is not None:
            options = sack_option(tsval, self.tsecr, [self.sack])
        return (Ether(src=LOCAL_MAC, dst=PEER_MAC)
                / IP(src=t.local_ip, dst=t.peer_ip, tos=2 if self.ect else 0, id=0,
                     flags="DF", ttl=64)
                / TCP(sport=t.local_port, dport=t.peer_port, seq=self.seq, ack=self.ack,
                      flags="A" + ("E" if self.ece else "") + ("P" if self.psh else "")
                      + ("F" if self.fin else "") + ("C" if self.cwr else ""),
                      window=self.window, options=options)
                / self.payload)


def rx_data_frame(spec: FlowSpec, offset: int, payload: bytes,
                  flags: ChannelFlags = ChannelFlags.PSH, *, acked: int = 0, rtt: int = 0,
                  window: int = PEER_WINDOW) -> bytes:
    """The host-port frame that delivers `payload` at ring `offset`, with what the segment's
    ACK field said (bytes newly acked, RTT sample, the peer's raw window)."""
    msg = NicHostMessage(Opcode.RX_DATA, spec.flow_id, spec.generation, flags=flags,
                         offset=offset, payload=payload, count=acked, aux=rtt, window=window)
    return msg.encode(dst_mac=_mac(LOCAL_MAC), src_mac=_mac(PEER_MAC))


def rx_consumed_frame(spec: FlowSpec, count: int, generation: int | None = None) -> bytes:
    """A host -> NIC message returning `count` bytes of RX ring space."""
    msg = NicHostMessage(Opcode.RX_CONSUMED, spec.flow_id,
                         spec.generation if generation is None else generation, count=count)
    return msg.encode()


def _mac(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def tx_data_frame(spec: FlowSpec, offset: int, payload: bytes, *, psh: bool = True,
                  generation: int | None = None, position: int | None = None,
                  rto: bool = False, probe: bool = False, fin: bool = False,
                  cwr: bool = False) -> bytes:
    """A host -> NIC message asking to send `payload` (the NIC adds the headers) from TX ring
    `offset` at TX stream `position` (default: the offset, as in a ring that has not wrapped);
    `rto`: the first segment of a go-back-N after a timeout; `probe`: a window probe; `fin`:
    our FIN follows the payload (which may be empty)."""
    flags = ChannelFlags.PSH if psh else ChannelFlags.NONE
    if fin:
        flags |= ChannelFlags.FIN
    if cwr:
        flags |= ChannelFlags.CWR
    if rto:
        flags |= ChannelFlags.RTO
    if probe:
        flags |= ChannelFlags.PROBE
    # window: the payload's one's-complement sum, as the bridge sends it (the PNA program's
    # TCP checksum needs it; v1model ignores it).
    msg = NicHostMessage(Opcode.TX_DATA, spec.flow_id,
                         spec.generation if generation is None else generation,
                         flags=flags, offset=offset, payload=payload,
                         aux=offset if position is None else position,
                         window=payload_sum(payload))
    return msg.encode()


def retransmit_frame(spec: FlowSpec, ack: int, *, window: int = PEER_WINDOW) -> bytes:
    """The host-port frame starting a fast retransmit: the third duplicate ACK of `ack`, cut
    to its header, telling the host to resume from stream position ack - tx_start_seq."""
    msg = NicHostMessage(Opcode.RETRANSMIT, spec.flow_id, spec.generation, offset=ack,
                         aux=(ack - spec.tx_start_seq) & 0xFFFFFFFF, window=window)
    return msg.encode(dst_mac=_mac(LOCAL_MAC), src_mac=_mac(PEER_MAC))


def sack_frame(spec: FlowSpec, ack: int, left: int, right: int, *,
               fast_retransmit: bool = False, window: int = PEER_WINDOW) -> bytes:
    """The host-port frame of a duplicate ACK of `ack` with first SACK block [left, right)
    (sequence numbers; the frame carries them as TX stream positions)."""
    flags = ChannelFlags.FAST_RETRANSMIT if fast_retransmit else ChannelFlags.NONE
    msg = NicHostMessage(Opcode.SACK, spec.flow_id, spec.generation, flags=flags, offset=ack,
                         count=(left - spec.tx_start_seq) & 0xFFFFFFFF,
                         aux=(right - spec.tx_start_seq) & 0xFFFFFFFF, window=window)
    return msg.encode(dst_mac=_mac(LOCAL_MAC), src_mac=_mac(PEER_MAC))


def tx_acked_frame(spec: FlowSpec, ack: int, acked: int, *, rtt: int = 0,
                   window: int = PEER_WINDOW, ece: bool = False, reminder: bool = False,
                   fin: bool = False) -> bytes:
    """The host-port frame reporting a new ACK (the original segment, cut to its header);
    a `reminder` is a host's TX_DATA frame turned back (its Ethernet header unchanged);
    `fin`: the ACK covered our FIN (`acked` counts data bytes only)."""
    flags = (ChannelFlags.ECE if ece else ChannelFlags.NONE) | (
        ChannelFlags.FIN if fin else ChannelFlags.NONE)
    msg = NicHostMessage(Opcode.TX_ACKED, spec.flow_id, spec.generation, flags=flags,
                         offset=ack, count=acked, aux=rtt, window=window)
    if reminder:
        return msg.encode()
    return msg.encode(dst_mac=_mac(LOCAL_MAC), src_mac=_mac(PEER_MAC))
