"""packet_io.p4: the CPU port. PacketOut sends the controller's frame where it says; Verdict
ends ingress by punting (PacketIn with a reason, metered per reason) or dropping, and counts;
a SYN beyond the budget to a listening port is answered with a SYN cookie (syn_cookie.p4)."""

from __future__ import annotations

import time

from dataclasses import dataclass

from softnic.state import Counter, ExactTable, Meter

from .constants import (CPU_PORT, DROP_PORT, DROP_PUNT_LIMITED, METER_RED, REASON_SYN,
                        TS_TICK_SHIFT)
from .headers import Headers, Metadata, PacketIn, StandardMetadata
from .syn_cookie import syn_cookie

M32 = 0xFFFFFFFF


def packet_out(hdr: Headers, sm: StandardMetadata) -> None:
    sm.egress_spec = hdr.packet_out.egress_port
    hdr.packet_out = None


@dataclass
class VerdictState:
    """Verdict's counters, meter, and its SynCookie's table and counter."""

    exception_counter: Counter
    drop_counter: Counter
    punt_rate: Meter
    cookie_listeners: ExactTable
    cookies_sent: Counter


def verdict(v: VerdictState, hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    exception_counter, drop_counter = v.exception_counter, v.drop_counter
    # Like bmv2's, the meter reads its own clock (monotonic microseconds).
    if meta.punt_reason != 0 and \
            v.punt_rate.execute(meta.punt_reason, sm.packet_length,
                                time.monotonic_ns() // 1000) == METER_RED:
        if meta.punt_reason == REASON_SYN:
            syn_cookie(v.cookie_listeners, v.cookies_sent, hdr, meta, sm)
        meta.punt_reason = 0
        if not meta.syn_cookie:
            meta.drop_reason = DROP_PUNT_LIMITED
    if meta.punt_reason != 0:
        exception_counter.count(meta.punt_reason, sm.packet_length)
        pin = hdr.packet_in = PacketIn()
        pin.ingress_port = meta.in_port
        pin.reason = meta.punt_reason
        pin.tsval = (sm.ingress_global_timestamp >> TS_TICK_SHIFT) & M32
        sm.egress_spec = CPU_PORT
    elif meta.drop_reason != 0:
        drop_counter.count(meta.drop_reason, sm.packet_length)
        if not meta.to_host:
            sm.egress_spec = DROP_PORT   # unless the packet was reused to notify the host
