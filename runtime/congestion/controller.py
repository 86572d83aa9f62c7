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
import copy
import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from runtime.congestion.algorithm import MBIT, CongestionControl, IntervalFeedback
from runtime.flow_channel import FlowCounters
from runtime.flow_registry import Flow, FlowRegistry
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from runtime.pacing import FRAME_OVERHEAD
from runtime.timing_wheel import TimingWheel

log = logging.getLogger(__name__)

TICK_SECONDS = 0.001
WHEEL_SLOTS = 4096
METER = "tx_rate"
METER_SLACK = 1.1           # the meter allows pacing jitter; the pacer is what shapes
METER_BURST_SEGMENTS = 4    # and a few back-to-back segments beyond the pacer's bucket
# 50 ms of the rate: host frames wait in the host port's queue before they reach the meter
# (bmv2 takes them in slower than many flows' rates add up to) and arrive bunched; with 2 ms
# (twice the pacer's bucket) the meter dropped twice as many in 256-flow runs.
METER_BURST_SECONDS = 0.050
RTT_UNIT_S = 1e-6          # the NIC's RTT samples are in microseconds (rtt_probe.p4)


@dataclass(frozen=True)
class ControlConfig:
    """How often each flow's rate is recomputed, and what counts as a change."""

    interval_rtts: float = 2.0         # TAS's tau
    min_interval_s: float = 0.002
    initial_interval_s: float = 0.01   # before the first RTT sample
    min_change: float = 0.02           # relative; smaller changes are not written
    start_tau_s: float = 0.5           # flows that start within about this share one initial rate
    # How long a lower rate waits to reach the meter: frames the bridge paced at the old rate
    # can still be queued on their way to the fast path (softnic's host-port socket held up to
    # 10 MB, seconds of frames, in 256-flow runs), and a meter cut at once dropped them: 2,198
    # RATE_LIMITED drops in a 256-flow run, most 0.1-1 s after the cut reached the meter;
    # with 1 s, 5,723 when the application wrote 4 KiB at a time; with 3 s, 33.
    meter_lag_s: float = 3.0
    # No flow is cut below floor_bps, nor below floor_share x an equal share of what the
    # active flows delivered together over about delivered_tau_s, whichever is lower (the
    # algorithms' own floor is far lower). 4,096 flows through 20 Mbit/s need 4.9 kbit/s each,
    # and a fixed 50 kbit/s floor overdrove their bottleneck tenfold (432/4096 completed); but
    # 16 flows held at 2 kbit/s starved behind their own queued data, and shares of 0.5 and 1
    # let 1,024 flows scatter (Jain 0.6; 0.95 with 2, the floors twice what is delivered).
    floor_bps: float = 0.05 * MBIT
    floor_share: float = 2.0
    floor_pool_bps: float = 10 * MBIT  # the floors' sum when nothing is delivered (a start)
    delivered_tau_s: float = 1.0


@dataclass(slots=True)
class DecayingSum:
    """A sum whose terms decay with time constant `tau_s` (0: nothing is kept)."""

    tau_s: float
    total: float = 0.0
    updated_at: float = 0.0

    def value(self, now: float) -> float:
        """The sum, decayed to `now`."""
        if self.tau_s <= 0:
            return 0.0
        self.total *= math.exp(-max(now - self.updated_at, 0.0) / self.tau_s)
        self.updated_at = now
        return self.total

    def add(self, now: float, amount: float) -> float:
        """Adds `amount` now; returns the sum."""
        if self.tau_s > 0:
            self.total = self.value(now) + amount
        return self.total


@dataclass(slots=True)
class StartCount:
    """How many flows started recently (a count that decays: `ControlConfig.start_tau_s`).

    Flows that start together share one flow's initial rate, so that a burst of connections
    does not admit hundreds of initial rates into one bottleneck at once (the million-client
    paper's overpacing); a flow that starts alone keeps its algorithm's initial rate."""

    count: DecayingSum

    def recent(self, now: float) -> float:
        """The recent starts (at least 1)."""
        return max(self.count.value(now), 1.0)

    def started(self, now: float) -> float:
        """One more flow starts now; returns the recent starts, this one included."""
        return max(self.count.add(now, 1.0), 1.0)


@dataclass(slots=True)
class CrowdFloor:
    """The lowest rate a flow is cut to: `floor_bps`, or less when many active flows share
    little, so that thousands of flows can share a slow bottleneck while a few flows are
    never held so low that their own queued data starves them. "Little" is what they
    delivered together lately (times `share`), or, if more, `pool_bps`: what one flow may
    start with, for when nothing was delivered yet (or no longer is)."""

    floor_bps: float
    share: float
    pool_bps: float
    delivered: DecayingSum   # acknowledged bytes

    def note(self, now: float, acked_bytes: int) -> None:
        """Bytes acknowledged now, by any flow."""
        if acked_bytes:
            self.delivered.add(now, acked_bytes)

    def floor_at(self, now: float, active: int) -> float:
        """The floor with `active` flows sending."""
        tau = self.delivered.tau_s
        if active <= 0 or tau <= 0:
            return self.floor_bps
        delivered_bps = self.delivered.value(now) * 8 / tau
        return min(self.floor_bps, max(self.share * delivered_bps, self.pool_bps) / active)


@dataclass(slots=True)
class FlowControl:
    """One flow's controller and where its last interval left the counters."""

    algorithm: CongestionControl
    mss: int
    seen: FlowCounters
    since: float
    written_bps: float | None = None   # what the meter holds (None: unlimited)
    paced_bps: float | None = None     # what the bridge paces to (None: unlimited)
    rising_to: float | None = None     # a higher rate waiting for its meter write
    lower_at: float | None = None      # when the meter may come down to `lower_to`,
    lower_to: float = 0.0              # the highest rate set since that was scheduled
    start_bps: float | None = None     # the undivided initial rate, until the first update


@dataclass
class MeterBatch:
    """Meter entries for one Write, and the rate rises that wait until it is done: (flow,
    the rate written, what the meter held before)."""

    entries: list[p4runtime_pb2.MeterEntry] = field(default_factory=list)
    rises: list[tuple[Flow, float, float | None]] = field(default_factory=list)


MeterWriter = Callable[[list[p4runtime_pb2.MeterEntry]], "asyncio.Future | None"]


class RateController:
    """Runs every attached flow's algorithm once per control interval."""

    def __init__(self, flows: FlowRegistry, p4info: P4Info, write: MeterWriter,
                 config: ControlConfig = ControlConfig()) -> None:
        self.flows = flows
        self.nic = flows.nic
        self.p4info = p4info
        self.config = config
        self._write = write
        self.controlled = 0  # flows with an algorithm (a FlowControl)
        self._starts = StartCount(DecayingSum(config.start_tau_s))
        self._floor = CrowdFloor(config.floor_bps, config.floor_share, config.floor_pool_bps,
                                 DecayingSum(config.delivered_tau_s))
        self._wheel: TimingWheel[Flow] = TimingWheel(TICK_SECONDS, WHEEL_SLOTS, self.nic.clock())
        # (when, flow) of pending meter lowerings; one fixed lag keeps them in time order.
        self._lowerings: deque[tuple[float, Flow]] = deque()
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

    def attach(self, flow: Flow, algorithm: CongestionControl | None) -> None:
        """Control a new flow (None: unlimited, which is also what its meter entry says)."""
        if algorithm is None:
            return
        channel, now = flow.channel, self.nic.clock()
        start_bps = algorithm.rate_bps
        algorithm.rate_bps = algorithm.limits.clamp(start_bps / self._starts.started(now))
        state = flow.control = FlowControl(algorithm, channel.mss,
                                           _snapshot(channel.counters), now,
                                           written_bps=algorithm.rate_bps, start_bps=start_bps)
        self.controlled += 1
        # A new flow has sent nothing at an older rate: its meter is written at once (which
        # also replaces whatever a failed reset left on the id).
        self._pace(flow, state, algorithm.rate_bps)
        self._flush(MeterBatch([self._meter_entry(flow.flow_id, algorithm.rate_bps, state.mss)]))
        self._arm()

    def detach(self, flow: Flow) -> None:
        """The flow is going; its meter entry is reopened for the next user of the id."""
        state, flow.control = flow.control, None
        self._wheel.cancel(flow)
        if state is None:
            return
        self.controlled -= 1
        if state.written_bps is not None:
            self._flush(MeterBatch([self._unlimited_entry(flow.flow_id)]))

    def paced_rate(self, flow_id: int) -> float | None:
        """The rate the flow is paced to now, bits/s (None: unlimited or not controlled)."""
        flow = self.flows.get(flow_id)
        state = flow.control if flow is not None else None
        return state.paced_bps if state is not None else None

    # -- the loop ------------------------------------------------------------------------------

    def run_once(self, now: float) -> None:
        """One tick: schedule newly active flows, update the flows whose interval ended."""
        for channel in self.nic.take_active():
            flow = self.flows.get(channel.flow_id)
            if flow is not None and flow.control is not None and flow not in self._wheel:
                self._wheel.schedule(flow, now + self._interval(flow))
        batch = MeterBatch()
        due = self._wheel.advance(now)
        active = len(self._wheel) + len(due)
        floor_bps = self._floor.floor_at(now, active) if due else 0.0
        for flow in due:
            self._update(flow, now, batch, floor_bps, active)
        self._lower_meters(now, batch)
        self._flush(batch)

    def _update(self, flow: Flow, now: float, batch: MeterBatch, floor_bps: float,
                active: int) -> None:
        state, channel = flow.control, flow.channel
        if state is None:
            return
        feedback = _feedback(state.seen, channel.counters, now - state.since, state.mss,
                             channel.timer.rtt.srtt_s)
        state.seen, state.since = _snapshot(channel.counters), now
        if not (feedback.acked_bytes or feedback.sent_bytes or feedback.loss):
            return  # idle: out of the wheel until it sends again
        self.updates += 1
        self._floor.note(now, feedback.acked_bytes)
        if state.start_bps is not None:
            self._share_start(state, now, active)
        algorithm = state.algorithm
        rate_bps = algorithm.update(feedback)
        if rate_bps < floor_bps:
            rate_bps = algorithm.rate_bps = algorithm.limits.clamp(floor_bps)
        self._apply(flow, rate_bps, batch, now)
        self._wheel.schedule(flow, now + self._interval(flow))

    def _share_start(self, state: FlowControl, now: float, active: int) -> None:
        """A flow's first update: no more than its share of the starts around it, or of the
        flows active now if more. The first of a burst to attach took the initial rate whole;
        by its first interval the rest of the burst has attached too; and flows that waited
        idle after connecting (a load generator's barrier) start together when the starts
        have long decayed (256 such flows: a dozen kept 10 Mbit/s and queued 4x their share)."""
        algorithm = state.algorithm
        starts = max(self._starts.recent(now), active) if self.config.start_tau_s > 0 else 1
        share = algorithm.limits.clamp(state.start_bps / starts)
        algorithm.rate_bps = min(algorithm.rate_bps, share)
        state.start_bps = None

    def _apply(self, flow: Flow, rate_bps: float, batch: MeterBatch, now: float) -> None:
        """A new rate. A rise beyond the meter waits until the meter allows it, else the meter
        drops what the bridge sends faster in between (a loss the flow caused itself); any
        other rate paces at once, and the meter comes down to it only `meter_lag_s` later,
        once what was paced at the old rate has passed it."""
        state = flow.control
        if state.lower_at is not None:
            state.lower_to = max(state.lower_to, rate_bps)   # the pending lowering allows it
        written = state.written_bps
        if written is not None and rate_bps > written * (1 + self.config.min_change):
            state.written_bps, state.rising_to = rate_bps, rate_bps
            batch.entries.append(self._meter_entry(flow.flow_id, rate_bps, state.mss))
            batch.rises.append((flow, rate_bps, written))
            return
        if state.rising_to is not None and rate_bps > (state.paced_bps or 0.0):
            state.rising_to = rate_bps   # it joins the rise in flight
        else:
            self._pace(flow, state, rate_bps)
        self._lower_later(flow, rate_bps, now)

    def _lower_later(self, flow: Flow, rate_bps: float, now: float) -> None:
        """If the meter is above the paced rate, it comes down `meter_lag_s` after the first
        such change, to the highest rate set since (a flow whose rate changes every
        interval would otherwise postpone it for ever). One pending lowering per flow: a
        later change only raises what it comes down to."""
        state = flow.control
        written = state.written_bps
        above = written is None or rate_bps < written * (1 - self.config.min_change)
        if above and state.lower_at is None:
            state.lower_at, state.lower_to = now + self.config.meter_lag_s, rate_bps
            self._lowerings.append((state.lower_at, flow))

    def _lower_meters(self, now: float, batch: MeterBatch) -> None:
        """Meters whose lag has passed come down to what their flow was paced to since."""
        while self._lowerings and self._lowerings[0][0] <= now:
            due, flow = self._lowerings.popleft()
            state = flow.control
            if state is None or state.lower_at != due:
                continue   # the flow is gone
            state.lower_at = None
            rate_bps, written = state.lower_to, state.written_bps
            if written is None or rate_bps < written * (1 - self.config.min_change):
                state.written_bps = rate_bps
                batch.entries.append(self._meter_entry(flow.flow_id, rate_bps, state.mss))
                if state.rising_to is not None:   # a rise still in flight paces after this
                    batch.rises.append((flow, rate_bps, written))
            self._lower_later(flow, max(state.paced_bps or 0.0, state.rising_to or 0.0), now)

    def _pace(self, flow: Flow, state: FlowControl, rate_bps: float) -> None:
        state.paced_bps, state.rising_to = rate_bps, None
        self.nic.set_rate(flow.flow_id, rate_bps)

    def _rise(self, rises: list[tuple[Flow, float, float | None]],
              future: asyncio.Future | None) -> None:
        """The meter write of these rises is done: pace to the flow's latest rise, unless a
        later write or a cut replaced it; if it failed, the meter holds what it held before
        (a later rise is written again)."""
        failed = future is not None and (future.cancelled() or future.exception() is not None)
        for flow, written_bps, before_bps in rises:
            state = flow.control
            if state is None or state.written_bps != written_bps or state.rising_to is None:
                continue
            if failed:
                state.rising_to, state.written_bps = None, before_bps
            else:
                self._pace(flow, state, state.rising_to)

    def _interval(self, flow: Flow) -> float:
        srtt = flow.channel.timer.rtt.srtt_s
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

    def _flush(self, batch: MeterBatch) -> None:
        if not batch.entries:
            return
        self.meter_writes += len(batch.entries)
        future = self._write(batch.entries)
        if future is None:
            self._rise(batch.rises, None)
            return
        future.add_done_callback(_log_failure)
        if batch.rises:
            future.add_done_callback(lambda done: self._rise(batch.rises, done))

    def _arm(self) -> None:
        if self._loop is None or self._tick is not None or not self.controlled:
            return
        self._tick = self._loop.call_later(TICK_SECONDS, self._on_tick)

    def _on_tick(self) -> None:
        self._tick = None
        self.run_once(self.nic.clock())
        self._arm()


def _snapshot(counters: FlowCounters) -> FlowCounters:
    return copy.copy(counters)


def _feedback(before: FlowCounters, now: FlowCounters, interval_s: float,
              mss: int, srtt_s: float | None) -> IntervalFeedback:
    return IntervalFeedback(
        interval_s=interval_s, mss=mss, srtt_s=srtt_s,
        acked_bytes=now.acked_bytes - before.acked_bytes,
        ece_bytes=now.ece_acked_bytes - before.ece_acked_bytes,
        sent_bytes=now.tx_bytes - before.tx_bytes,
        fast_retransmits=now.fast_retransmits - before.fast_retransmits,
        timeouts=now.timeouts - before.timeouts,
        rtt_samples=now.rtt_samples - before.rtt_samples,
        rtt_sum_s=(now.rtt_sum_us - before.rtt_sum_us) * RTT_UNIT_S,
        paced=now.pacing_waits != before.pacing_waits)


def _log_failure(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("meter write failed: %s", future.exception())
