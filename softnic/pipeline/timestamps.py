"""timestamps.p4: RFC 7323 timestamps of an arriving segment, PAWS and TS.Recent
(TimestampCheck)."""

from __future__ import annotations

from .constants import TS_EPOCH_SHIFT, TS_RECENT_MAX_IDLE_EPOCHS
from .headers import Headers, Metadata, StandardMetadata

M32 = 0xFFFFFFFF
EPOCH_MASK = 0x1FFF   # 13 bits


def timestamp_check(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    """PAWS (RFC 7323 5.3 R1), TS.Recent (R3), invalid after 24 days (5.5)."""
    if hdr.tcp_ts is None:
        return
    dyn = meta.dyn
    epoch = (sm.ingress_global_timestamp >> TS_EPOCH_SHIFT) & EPOCH_MASK
    if dyn.ts_recent_valid == 1 and \
            ((epoch - dyn.ts_recent_epoch) & EPOCH_MASK) > TS_RECENT_MAX_IDLE_EPOCHS:
        dyn.ts_recent_valid = 0
    tsval = hdr.tcp_ts.tsval
    older = dyn.ts_recent_valid == 1 and ((dyn.ts_recent - tsval - 1) & M32) < 0x7FFFFFFF
    if older and not meta.reinjected:
        meta.paws_rejected = True   # a reinjected segment may be older: exempt
        return
    # SEG.SEQ <= Last.ACK.sent, which is rcv_nxt as this segment finds it.
    if not older and meta.seq_acceptable and not meta.ack_unacceptable and \
            ((dyn.rcv_nxt - hdr.tcp.seq_no) & M32) < 0x80000000:
        dyn.ts_recent = tsval
        dyn.ts_recent_valid = 1
        dyn.ts_recent_epoch = epoch
