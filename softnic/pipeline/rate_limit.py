"""rate_limit.p4: per-flow rate enforcement on the transmit path (TxRateLimit)."""

from __future__ import annotations

import time

from softnic.state import Meter

from .constants import DROP_RATE_LIMITED, METER_RED
from .headers import Metadata, StandardMetadata


def tx_rate_limit(tx_rate: Meter, meta: Metadata, sm: StandardMetadata) -> None:
    # Like bmv2's, the meter reads its own clock (monotonic microseconds).
    color = tx_rate.execute(meta.flow_id, sm.packet_length, time.monotonic_ns() // 1000)
    if color == METER_RED:   # yellow still passes: committed and peak are the flow's rate
        meta.drop_reason = DROP_RATE_LIMITED
