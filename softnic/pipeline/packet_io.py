"""packet_io.p4: the CPU port. PacketOut sends the controller's frame where it says; Verdict
ends ingress by punting (PacketIn with a reason) or dropping, and counts."""

from __future__ import annotations

from softnic.state import Counter

from .constants import CPU_PORT, DROP_PORT, TS_TICK_SHIFT
from .headers import Headers, Metadata, PacketIn, StandardMetadata

M32 = 0xFFFFFFFF


def packet_out(hdr: Headers, sm: StandardMetadata) -> None:
    sm.egress_spec = hdr.packet_out.egress_port
    hdr.packet_out = None


def verdict(exception_counter: Counter, drop_counter: Counter, hdr: Headers, meta: Metadata,
            sm: StandardMetadata) -> None:
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
