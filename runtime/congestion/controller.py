"""The congestion-control loop (TAS 3.2): every control interval, each flow that was active
takes its feedback, its algorithm computes a rate, the bridge paces to it and the NIC's
tx_rate meter enforces it; only rates that changed are written, in one batched P4Runtime
Write per tick.

Feedback is the difference of the bridge's per-flow counters (fed by the per-ACK TX_ACKED and
RETRANSMIT notifications as they arrive) since the flow's last interval: never a sweep of
counter arrays. A flow's interval is `interval_rtts` times its smoothed RTT; flows are kept
in a timing wheel by the end of their interval, and a flow that had no activity in an
interval leaves the wheel until it sends again (`DmaBridge.take_active`), so a tick costs the
flows that were active, not the flows that exist.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from runtime.congestion.algorithm import CongestionControl, IntervalFeedback
from runtime.dma_bridge import DmaBridge, FlowChannel, FlowCounters
from runtime.p4rt.p4info import P4Info
from runtime.p4rt.proto import p4runtime_pb2
from runtime.pacing import FRAME_OVERHEAD
from runtime.timing_wheel import TimingWheel

log = logging.getLogger(__name__)

TICK_SECONDS = 0.001
WHEEL_SLOTS = 4096
METER = "tx_rate"
METER_SLACK = 1.1           # the meter allows pacing jitter; the pacer is what shapes
METER_BURST_SEGMENTS = 4    # and a few back-to-back segments beyond the pacer's bucket
METER_BURST_SECONDS = 0.002  # twice the pacer's bucket (pacing.BURST_SECONDS)
TS_TICK_S = 16e-6           # the NIC's RTT samples are in 16 us ticks


@dataclass(frozen=True)
class ControlConfig:
    """How often each flow's rate is recomputed, and what counts as a change."""

    interval_rtts: float = 2.0         # TAS's tau
    min_interval_s: float = 0.002
    initial_interval_s: float = 0.01   # before the first RTT sample
    min_change: float = 0.02           # relative; smaller changes are not written


@dataclass
class FlowControl:
    """One flow's controller and where its last interval left the counters."""

    algorithm: CongestionControl
    mss: int
    seen: FlowCounters
    since: float
    written_bps: float | None = None


MeterWriter = Callable[[list[p4runtime_pb2.MeterEntry]], "asyncio.Future | None"]


class RateController:
    """Runs every attached flow's algorithm once per control interval."""

    def __init__(self, bridge: DmaBridge, p4info: P4Info, write: MeterWriter,
                 config: ControlConfig = ControlConfig()) -> None:
        self.bridge = bridge
        self.p4info = p4info
        self.config = config
        self._write = write
        self._flows: dict[int, FlowControl] = {}
        self._wheel: TimingWheel[int] = TimingWheel(TICK_SECONDS, WHEEL_SLOTS, bridge.clock())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tick: asyncio.TimerHandle | None = None
        self.meter_writes = 0
        self.updates = 0

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    def stop(self) -> None:
        if self._tick is not None:
            self._tick.cancel()
        self._tick = None
        self._loop = None

    def attach(self, channel: FlowChannel, algorithm: CongestionControl | None) -> None:
        """Control a new flow (None: unlimited, which is also what its meter entry says)."""
        if algorithm is None:
            return
        now = self.bridge.clock()
        self._flows[channel.flow_id] = FlowControl(algorithm, channel.mss,
                                                   _snapshot(channel.counters), now)
        entries: list[p4runtime_pb2.MeterEntry] = []
        self._apply(channel.flow_id, algorithm.rate_bps, entries)
        self._flush(entries)
        self._arm()

    def detach(self, flow_id: int) -> None:
        """The flow is gone; its meter entry is reopened for the next user of the id."""
        state = self._flows.pop(flow_id, None)
        self._wheel.cancel(flow_id)
        if state is not None and state.written_bps is not None:
            self._flush([self._unlimited_entry(flow_id)])

    # -- the loop ------------------------------------------------------------------------------

    def run_once(self, now: float) -> None:
        """One tick: schedule newly active flows, update the flows whose interval ended."""
        for flow_id in self.bridge.take_active():
            if flow_id in self._flows and flow_id not in self._wheel:
                self._wheel.schedule(flow_id, now + self._interval(flow_id))
        entries: list[p4runtime_pb2.MeterEntry] = []
        for flow_id in self._wheel.advance(now):
            self._update(flow_id, now, entries)
        if entries:
            self._flush(entries)

    def _update(self, flow_id: int, now: float, entries: list) -> None:
        state = self._flows.get(flow_id)
        channel = self.bridge.channel(flow_id)
        if state is None or channel is None:
            return
        feedback = _feedback(state.seen, channel.counters, now - state.since)
        state.seen, state.since = _snapshot(channel.counters), now
        if not (feedback.acked_bytes or feedback.sent_bytes or feedback.loss):
            return  # idle: out of the wheel until it sends again
        self.updates += 1
        self._apply(flow_id, state.algorithm.update(feedback), entries)
        self._wheel.schedule(flow_id, now + self._interval(flow_id))

    def _apply(self, flow_id: int, rate_bps: float, entries: list) -> None:
        state = self._flows[flow_id]
        self.bridge.set_rate(flow_id, rate_bps)
        written = state.written_bps
        if written is None or abs(rate_bps - written) > self.config.min_change * written:
            state.written_bps = rate_bps
            entries.append(self._meter_entry(flow_id, rate_bps, state.mss))

    def _interval(self, flow_id: int) -> float:
        srtt = self.bridge.timers.timer(flow_id).rtt.srtt_s
        if srtt is None:
            return self.config.initial_interval_s
        return max(self.config.interval_rtts * srtt, self.config.min_interval_s)

    def _meter_entry(self, flow_id: int, rate_bps: float, mss: int) -> p4runtime_pb2.MeterEntry:
        rate_Bps = int(rate_bps / 8 * METER_SLACK) + 1
        burst = int(rate_Bps * METER_BURST_SECONDS) + METER_BURST_SEGMENTS * (mss + FRAME_OVERHEAD)
        return self.p4info.meter_entry(METER, flow_id, rate_Bps, burst, rate_Bps, burst)

    def _unlimited_entry(self, flow_id: int) -> p4runtime_pb2.MeterEntry:
        """The meter's default: every packet green."""
        return self.p4info.meter_reset_entry(METER, flow_id)

    def _flush(self, entries: list[p4runtime_pb2.MeterEntry]) -> None:
        if not entries:
            return
        batch = list(entries)
        entries.clear()
        self.meter_writes += len(batch)
        future = self._write(batch)
        if future is not None:
            future.add_done_callback(_log_failure)

    def _arm(self) -> None:
        if self._loop is None or self._tick is not None or not self._flows:
            return
        self._tick = self._loop.call_later(TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        self.run_once(self.bridge.clock())
        self._arm()


def _snapshot(counters: FlowCounters) -> FlowCounters:
    return FlowCounters(**vars(counters))


def _feedback(before: FlowCounters, now: FlowCounters, interval_s: float) -> IntervalFeedback:
    return IntervalFeedback(
        interval_s=interval_s,
        acked_bytes=now.acked_bytes - before.acked_bytes,
        ece_bytes=now.ece_acked_bytes - before.ece_acked_bytes,
        sent_bytes=now.tx_bytes - before.tx_bytes,
        fast_retransmits=now.fast_retransmits - before.fast_retransmits,
        timeouts=now.timeouts - before.timeouts,
        rtt_samples=now.rtt_samples - before.rtt_samples,
        rtt_sum_s=(now.rtt_sum_ticks - before.rtt_sum_ticks) * TS_TICK_S)


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("meter write failed: %s", future.exception())
