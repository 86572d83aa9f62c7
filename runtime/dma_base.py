"""The state the DMA bridge's parts share (runtime.dma_bridge sets it up) and how a part
reports a flow it cannot serve."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nic_contract.host_port import FrameLink
from nic_contract.nic_host_header import NicHostMessage
from runtime.flow_channel import FlowChannel
from runtime.keepalive import KeepaliveTimers
from runtime.nic_interface import DropCause, NicStats
from runtime.pacing import Pacer
from runtime.retransmission import RetransmissionTimers

log = logging.getLogger("runtime.dma_bridge")

FlowErrorCallback = Callable[[int, DropCause], None]


class BridgeBase:
    """The bridge's tables, timers and callbacks."""

    link: FrameLink
    clock: Callable[[], float]
    stats: NicStats
    timers: RetransmissionTimers[FlowChannel]
    pacer: Pacer[FlowChannel]
    keepalives: KeepaliveTimers[FlowChannel]
    _channels: dict[int, FlowChannel]
    _active: dict[FlowChannel, None]            # sent or were acked since take_active
    _pending_events: dict[FlowChannel, None]    # events owed (a full queue)
    _send_backlog: dict[FlowChannel, None]      # frames waiting on the link
    _to_announce: dict[FlowChannel, None]       # events owed at the end of this batch
    _to_kick: dict[FlowChannel, None]           # acknowledged during this batch: send more
    _batching: bool                             # handling a batch of frames (events wait)
    _on_flow_error: FlowErrorCallback | None
    _on_activity: Callable[[FlowChannel], None] | None
    _loop: asyncio.AbstractEventLoop | None
    _event_timer: asyncio.TimerHandle | None
    _send_timer: asyncio.TimerHandle | None
    _rto_tick: asyncio.TimerHandle | None
    _pacing_tick: asyncio.TimerHandle | None
    _keepalive_tick: asyncio.TimerHandle | None
    _send_retry_armed: bool

    def _paced_out(self, channel: FlowChannel, size: int, now: float) -> bool:
        """Whether pacing holds back a segment of `size` bytes (the flow then waits in the
        pacer). The first resend after a timeout goes at once, on credit that later sends
        repay: TCP resends one segment on a timeout whatever its window, and a slow flow's
        resend held seconds by its rate would only meet the next timeout. One such debt at a
        time: timeouts that back off faster than the rate repays would overrun the NIC's
        meter, whose burst holds a few segments beyond the rate."""
        bucket = channel.bucket
        if bucket is None:
            return False
        if channel.rto_flag_pending and bucket.spend(size, now):
            return False
        wait = bucket.take(size, now)
        if not wait:
            return False
        channel.counters.pacing_waits += 1
        self.pacer.defer(channel, now + wait)
        self._arm_pacing_tick()
        return True

    def _drop(self, cause: DropCause, message: NicHostMessage, why: str) -> None:
        self.stats.drops[cause] += 1
        log.debug("dropped %s for flow %d gen %d: %s", message.opcode.name, message.flow_id,
                  message.gen, why)

    def _flow_error(self, channel: FlowChannel, cause: DropCause, why: str) -> None:
        """A bug or a scribbling application: count, log, tell the runtime."""
        self.stats.drops[cause] += 1
        log.warning("flow %d: %s: %s", channel.flow_id, cause.value, why)
        if self._on_flow_error is not None:
            self._on_flow_error(channel.flow_id, cause)
