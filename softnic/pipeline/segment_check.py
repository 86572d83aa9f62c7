"""segment_check.p4: is a segment of a known flow acceptable (SegmentCheck)? Its sequence must
overlap the receive window (or start at rcv_nxt) for its ACK to count; an ACK beyond snd_nxt
or older than snd_una - (65535 << the peer's window scale) discards the segment (RFC 9293
3.10.7.4, RFC 5961 5.2)."""

from __future__ import annotations

from .constants import TCP_MAX_WINDOW
from .headers import Headers, Metadata

M32 = 0xFFFFFFFF


def segment_check(hdr: Headers, meta: Metadata) -> None:
    dyn = meta.dyn
    ahead = (hdr.tcp.seq_no - dyn.rcv_nxt) & M32
    last = (ahead + meta.payload_len - 1) & M32
    meta.seq_acceptable = (ahead == 0 or ahead < dyn.rx_free
                           or (meta.payload_len != 0 and last < dyn.rx_free))
    behind = (dyn.snd_una - hdr.tcp.ack_no) & M32
    max_window = (TCP_MAX_WINDOW << meta.flow.peer_window_shift) & M32
    meta.ack_unacceptable = (((hdr.tcp.ack_no - dyn.snd_nxt - 1) & M32) < 0x7FFFFFFF
                             or (behind < 0x80000000 and behind > max_window))
