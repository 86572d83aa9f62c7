"""Segments of an established flow that the fast path cannot parse as they are: IPv4 options
(ihl > 5), URG, TCP options other than timestamps in Linux's layout. The fast path punts them
(REASON_IPV4_OPTIONS, REASON_TCP_FLAGS, REASON_TCP_OPTIONS); dropping them would stall the
flow, since the peer retransmits them the same way. The slow path rebuilds each as the fast
path expects — no IPv4 options, no URG (RFC 6093: the urgent byte is delivered inline with
the rest), only the timestamps option — and hands it back to the fast path (reinjection)."""

from __future__ import annotations

from dataclasses import replace

from nic_contract.constants import PacketInReason
from runtime.tcp_segments import TcpFlags, TcpOptions, TcpSegment, build_segment
from runtime.tcp_seq import seq_add

TS_OPTION_BYTES = 12   # the timestamps option as Linux lays it out (NOP, NOP, kind 8)

NORMALIZABLE = frozenset({PacketInReason.IPV4_OPTIONS, PacketInReason.TCP_FLAGS,
                          PacketInReason.TCP_OPTIONS})
# What the fast path takes (TCP_FASTPATH_FLAGS in constants.p4); URG is dropped, the urgent
# pointer ignored.
FAST_PATH_FLAGS = TcpFlags.ACK | TcpFlags.PSH | TcpFlags.ECE | TcpFlags.CWR


def normalizable(seg: TcpSegment) -> bool:
    """A segment the fast path can take once rebuilt: an ACK without SYN, FIN or RST (those
    are the slow path's own business)."""
    return bool(seg.flags & TcpFlags.ACK) and not seg.flags & (
        TcpFlags.SYN | TcpFlags.FIN | TcpFlags.RST)


def split_to_mss(seg: TcpSegment, mss: int) -> list[TcpSegment]:
    """The segment as segments of at most `mss` bytes of payload and options, as a sender
    with that MSS would have sent it (a reassembled datagram may be larger); PSH on the last."""
    size = mss - (TS_OPTION_BYTES if seg.options.timestamps is not None else 0)
    if len(seg.payload) <= size:
        return [seg]
    pieces = []
    for start in range(0, len(seg.payload), size):
        last = start + size >= len(seg.payload)
        pieces.append(replace(seg, seq=seq_add(seg.seq, start),
                              payload=seg.payload[start:start + size],
                              flags=seg.flags if last else seg.flags & ~TcpFlags.PSH))
    return pieces


def normalized_frame(seg: TcpSegment) -> bytes:
    """The segment as the fast path parses it: same addresses, ports, sequence numbers,
    window, ECN codepoint and payload; IPv4 without options; no URG; timestamps only."""
    options = (TcpOptions(timestamps=seg.options.timestamps)
               if seg.options.timestamps is not None else None)
    return build_segment(seg.src_mac, seg.dst_mac, seg.src_ip, seg.dst_ip, seg.src_port,
                         seg.dst_port, seg.seq, seg.ack, seg.flags & FAST_PATH_FLAGS,
                         seg.window, options, seg.payload, tos=seg.tos)
