"""segment_check.p4: is a segment of a known flow acceptable (SegmentCheck)? Its sequence must
overlap the receive window (or start at rcv_nxt) for its ACK to count; an ACK beyond snd_nxt
discards the segment (RFC 9293 3.10.7.4, RFC 5961 5.2)."""

from __future__ import annotations

from .headers import Headers, Metadata

M32 = 0xFFFFFFFF


def segment_check(hdr: Headers, meta: Metadata) -> None:
    dyn = meta.dyn
    ahead = (hdr.tcp.seq_no - dyn.rcv_nxt) & M32
    last = (ahead + meta.payload_len - 1) & M32
    meta.seq_acceptable = (ahead == 0 or ahead < dyn.rx_free
                           or (meta.payload_len != 0 and last < dyn.rx_free))
    meta.ack_beyond_sent = ((hdr.tcp.ack_no - dyn.snd_nxt - 1) & M32) < 0x7FFFFFFF
