"""host_backpressure.p4: frames queued for the host port (HostBackpressure, HostFrameCount,
HostQueueWatch). Here egress runs right after ingress, so a host frame's queue is empty when
it is dequeued and the counters resynchronize on every frame, as bmv2's do when idle."""

from __future__ import annotations

from softnic.state import Register

from .constants import HOST_PORT, HOST_QUEUE_BUSY_DEPTH, INSTANCE_TYPE_NORMAL
from .headers import Metadata, StandardMetadata

M32 = 0xFFFFFFFF


def host_backpressure(enqueued: Register, dequeued: Register, meta: Metadata) -> None:
    meta.host_busy = ((enqueued.cells[0] - dequeued.cells[0]) & M32) >= HOST_QUEUE_BUSY_DEPTH


def host_frame_count(enqueued: Register, sm: StandardMetadata) -> None:
    if sm.egress_spec == HOST_PORT:
        enqueued.cells[0] = (enqueued.cells[0] + 1) & M32


def host_queue_watch(enqueued: Register, dequeued: Register, sm: StandardMetadata) -> None:
    if sm.egress_port == HOST_PORT and sm.instance_type == INSTANCE_TYPE_NORMAL:
        if sm.deq_qdepth == 0:
            dequeued.cells[0] = enqueued.cells[0]   # nothing behind this frame
        else:
            dequeued.cells[0] = (dequeued.cells[0] + 1) & M32
