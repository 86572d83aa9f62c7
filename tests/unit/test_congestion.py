"""Congestion control: each algorithm's control law on synthetic feedback against values
computed by hand, and the control loop (runtime.congestion.controller) over a stand-in bridge."""

from __future__ import annotations

import concurrent.futures

import pytest

from host_lib.control_protocol import CONGESTION_CONTROLS
from runtime import congestion
from runtime.congestion.algorithm import MBIT, CongestionControl, IntervalFeedback, RateLimits
from runtime.congestion.controller import ControlConfig, CrowdFloor, DecayingSum, RateController
from runtime.congestion.dctcp import DctcpConfig, QueueTarget, RateDctcp
from runtime.congestion.path_estimate import PathEstimate, PathEstimateConfig
from runtime.congestion.timely import Timely, TimelyConfig
from runtime.flow_channel import FlowCounters
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime.flow_registry import FlowRegistry
from runtime.retransmission import FlowTimer

WIDE = RateLimits(min_bps=1 * MBIT, max_bps=100_000 * MBIT)
LOW = RateLimits(min_bps=0.002 * MBIT)   # thousands of flows' shares


def fb(**kwargs) -> IntervalFeedback:
    """Feedback for a 1 ms interval in which the flow could send at 10 Gbit/s (no cap)."""
    kwargs.setdefault("interval_s", 0.001)
    kwargs.setdefault("sent_bytes", 1_250_000)
    return IntervalFeedback(**kwargs)


# ----------------------------------------------------------------------------------- DCTCP


def test_dctcp_slow_start_doubles_until_the_first_mark() -> None:
    cc = RateDctcp(WIDE)
    assert cc.rate_bps == 10 * MBIT
    assert cc.update(fb(acked_bytes=10_000)) == 20 * MBIT
    assert cc.update(fb(acked_bytes=10_000)) == 40 * MBIT
    # First mark: 25 % of bytes marked; alpha = 15/16 * 0 + 1/16 * 0.25 = 0.015625.
    rate = cc.update(fb(acked_bytes=10_000, ece_bytes=2_500))
    assert cc.alpha == pytest.approx(0.015625)
    assert rate == pytest.approx(40 * MBIT * (1 - 0.015625 / 2))
    assert not cc.slow_start
    # Afterwards: additive increase by the 10 Mbit/s step; alpha decays by 15/16.
    assert cc.update(fb(acked_bytes=10_000)) == pytest.approx(rate + 10 * MBIT)
    assert cc.alpha == pytest.approx(0.015625 * 15 / 16)


def test_dctcp_loss_halves_and_ends_slow_start() -> None:
    cc = RateDctcp(WIDE)
    cc.update(fb(acked_bytes=10_000))
    assert cc.update(fb(acked_bytes=10_000, fast_retransmits=1)) == 10 * MBIT
    rtt = {"rtt_samples": 1, "rtt_sum_s": 100e-6}
    assert cc.update(fb(acked_bytes=10_000, **rtt)) == 20 * MBIT  # +step, not x2


def test_dctcp_slow_start_grows_only_in_intervals_with_acknowledged_data() -> None:
    """Growth is earned by ACKs, as a window's: an interval in which the pacer held the flow
    but nothing came back leaves the rate where it was."""
    cc = RateDctcp(WIDE)
    assert cc.update(fb(acked_bytes=1_000)) == 20 * MBIT
    assert cc.update(fb(sent_bytes=10_000, paced=True)) == 20 * MBIT
    assert cc.update(fb(acked_bytes=100_000)) == 40 * MBIT
    assert cc.slow_start


def test_dctcp_growth_below_a_few_segments_per_rtt_is_a_fraction_of_what_was_acked() -> None:
    """256 flows through 20 Mbit/s at a 50 ms RTT hold a third of a segment each: growth is a
    quarter of the acknowledged bytes and of the rate per RTT (Swift's), far below TAS's
    10 Mbit/s step."""
    cc = RateDctcp(LOW, DctcpConfig(initial_bps=0.08 * MBIT))
    cc.slow_start = False
    # One segment acknowledged in a 100 ms interval of 50 ms RTT samples.
    feedback = IntervalFeedback(interval_s=0.1, acked_bytes=1448, rtt_samples=1,
                                rtt_sum_s=0.05, paced=True)
    by_bytes, by_time = 0.25 * 1448 * 8 / 0.05, 2 * 0.25 * 0.08 * MBIT
    assert cc.update(feedback) == pytest.approx(0.08 * MBIT + min(by_bytes, by_time))
    # A cumulative ACK that jumps over 100 SACKed segments still grows by the time bound.
    jump = IntervalFeedback(interval_s=0.1, acked_bytes=144_800, rtt_samples=1, rtt_sum_s=0.05,
                            paced=True)
    rate = cc.rate_bps
    assert cc.update(jump) == pytest.approx(rate * 1.5)


def test_dctcp_growth_above_a_few_segments_is_reno_and_at_most_the_step() -> None:
    """A window of W bytes grows by MSS per W acknowledged (as a rate over the RTT)."""
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=10 * MBIT))
    cc.slow_start = False
    rtt = 0.05                                  # 10 Mbit/s x 50 ms = 62,500 B window
    feedback = IntervalFeedback(interval_s=0.1, acked_bytes=125_000, rtt_samples=1,
                                rtt_sum_s=rtt, paced=True, mss=1448)
    reno = 8 * 125_000 * 1448 / (62_500 * rtt)  # two MSS per RTT of the interval
    assert cc.update(feedback) == pytest.approx(10 * MBIT + reno)
    fast = RateDctcp(WIDE)
    fast.slow_start = False
    assert fast.update(fb(acked_bytes=125_000, rtt_samples=1, rtt_sum_s=20e-6)) == 20 * MBIT


def test_dctcp_a_stale_short_rtt_does_not_multiply_growth() -> None:
    """A flow that resent for a while has no fresh samples (Karn) and a smoothed RTT from its
    first segments: the RTT counts as at least half the interval (intervals are two RTTs)."""
    cc = RateDctcp(LOW, DctcpConfig(initial_bps=0.04 * MBIT))
    cc.slow_start = False
    feedback = IntervalFeedback(interval_s=0.1, acked_bytes=2896, srtt_s=100e-6, paced=True)
    assert cc.update(feedback) == pytest.approx(0.04 * MBIT * 1.5)   # not 10 Mbit/s more


def test_dctcp_a_queue_above_the_target_cuts_in_proportion_to_the_excess() -> None:
    """Swift's decrease on a drop-tail path: the target is 4 ms above the minimum RTT plus a
    part that grows as the flow holds fewer segments per RTT, plus the peer's delayed ACK
    when the flow's segments are further apart than it."""
    queue = QueueTarget()
    assert queue.target_s(100, 0.0001) == pytest.approx(0.004 + 0.0001)
    assert queue.target_s(0.1, 1.0) == pytest.approx(0.004 + 0.040 + 0.020)
    assert queue.target_s(1, 0.001) == pytest.approx(
        0.004 + 0.001 + 0.020 * (1 - 0.1) / (10 ** 0.5 - 0.1))
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    cc.slow_start = False
    base = 100e-6
    cc.update(fb(acked_bytes=12_500, rtt_samples=1, rtt_sum_s=base))      # the minimum
    # 110 Mbit/s: a window of 76 segments at an 8 ms RTT (0.1 ms of the range), segments
    # 0.1 ms apart.
    rate, rtt = cc.rate_bps, 0.008
    target = queue.target_s(rate * rtt / (8 * 1448), 8 * 1448 / rate)
    assert 0 < target - (0.004 + 8 * 1448 / rate) < 0.0002
    assert cc.update(fb(acked_bytes=12_500, rtt_samples=1, rtt_sum_s=rtt)) == pytest.approx(
        rate * (1 - 0.8 * (rtt - base - target) / rtt))
    assert not cc.slow_start
    # A queue far above the target halves at most.
    rate = cc.rate_bps
    assert cc.update(fb(acked_bytes=12_500, rtt_samples=1, rtt_sum_s=1.0)) == rate / 2


def test_dctcp_random_loss_falls_to_the_delivered_rate_not_to_half() -> None:
    """No queue (RTT at its minimum): the loss is random, the rate keeps what the path
    delivered in the recent intervals (Westwood+); halving is the most it falls."""
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    cc.slow_start = False
    # 11,250 bytes in 1 ms = 90 Mbit/s delivered, RTT 300 us: +10 -> 110 Mbit/s.
    assert cc.update(fb(acked_bytes=11_250, rtt_samples=1, rtt_sum_s=300e-6)) == 110 * MBIT
    # A loss with 1 ms of RTT above the minimum (less than the 2 ms that shows a queue).
    lossy = fb(acked_bytes=5_000, fast_retransmits=1, rtt_samples=1, rtt_sum_s=1.3e-3)
    assert cc.update(lossy) == pytest.approx(90 * MBIT)
    # Delivery collapsed in every recent interval: the fall stops at half.
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    cc.slow_start = False
    assert cc.update(fb(acked_bytes=100, fast_retransmits=1, rtt_samples=1,
                        rtt_sum_s=300e-6)) == 50 * MBIT


def test_dctcp_loss_with_a_queue_or_a_timeout_halves() -> None:
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    cc.slow_start = False
    cc.update(fb(acked_bytes=12_500, rtt_samples=1, rtt_sum_s=300e-6))      # 110, min RTT
    # 2 ms of queueing above the minimum RTT: congestion, whatever was delivered.
    queued = fb(acked_bytes=12_500, fast_retransmits=1, rtt_samples=1, rtt_sum_s=2.3e-3)
    assert cc.update(queued) == 55 * MBIT
    cc.update(fb(acked_bytes=12_500, rtt_samples=1, rtt_sum_s=300e-6))      # 65
    assert cc.update(fb(acked_bytes=12_500, timeouts=1, rtt_samples=1,
                        rtt_sum_s=300e-6)) == pytest.approx(32.5 * MBIT)


def test_path_estimate_forgets_an_old_minimum_rtt() -> None:
    """A route that got longer is not a standing queue for ever: the minimum lapses."""
    path = PathEstimate(PathEstimateConfig(min_rtt_window_s=0.005))
    path.update(fb(rtt_samples=1, rtt_sum_s=100e-6))
    for _ in range(5):
        path.update(fb(rtt_samples=1, rtt_sum_s=5e-3))
        assert path.queueing
    path.update(fb(rtt_samples=1, rtt_sum_s=5e-3))     # 6 ms since the minimum: replaced
    assert path.min_rtt_s == 5e-3 and not path.queueing


def test_path_estimate_without_rtt_samples_assumes_a_queue() -> None:
    path = PathEstimate()
    path.update(fb(acked_bytes=1000))
    assert path.queueing and path.delivered_bps == 8 * MBIT


def test_path_estimate_keeps_the_highest_recent_delivery() -> None:
    path = PathEstimate(PathEstimateConfig(delivery_samples=2))
    for acked in (3000, 1000, 2000):
        path.update(fb(acked_bytes=acked))
    assert path.delivered_bps == 16 * MBIT    # 3000 B fell out of the window


def test_dctcp_growth_is_capped_at_1_2_times_what_was_sent() -> None:
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=10 * MBIT))
    # 2500 bytes in 1 ms = 20 Mbit/s sent: the doubling to 20 Mbit/s passes; then 40 Mbit/s
    # is capped at 24 Mbit/s.
    assert cc.update(fb(acked_bytes=2500, sent_bytes=2500)) == pytest.approx(20 * MBIT)
    assert cc.update(fb(acked_bytes=2500, sent_bytes=2500)) == pytest.approx(24 * MBIT)


def test_dctcp_cap_never_cuts_an_application_limited_flow() -> None:
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    # 125 bytes in 1 ms = 1 Mbit/s sent: no growth, but no cut to 1.2 Mbit/s either.
    assert cc.update(fb(acked_bytes=125, sent_bytes=125)) == 100 * MBIT


def test_dctcp_cap_does_not_hold_back_a_flow_the_pacer_held_back() -> None:
    """A flow with data waiting on the pacer sends a little below its rate (pacing ticks):
    it is rate-limited, not application-limited, and grows after a cut as the law says."""
    cc = RateDctcp(WIDE, DctcpConfig(initial_bps=100 * MBIT))
    assert cc.update(fb(acked_bytes=9000, sent_bytes=9000, fast_retransmits=1)) == 50 * MBIT
    # 5000 bytes in 1 ms = 40 Mbit/s: capped it would stay at 50; paced it adds its step.
    assert cc.update(fb(acked_bytes=5000, sent_bytes=5000, paced=True)) == 60 * MBIT
    assert cc.update(fb(acked_bytes=5000, sent_bytes=5000)) == 60 * MBIT


def test_dctcp_stays_within_its_limits() -> None:
    cc = RateDctcp(RateLimits(min_bps=1 * MBIT, max_bps=50 * MBIT))
    for _ in range(10):
        cc.update(fb(acked_bytes=1000))
    assert cc.rate_bps == 50 * MBIT
    for _ in range(20):
        cc.update(fb(acked_bytes=1000, timeouts=1))
    assert cc.rate_bps == 1 * MBIT


# ----------------------------------------------------------------------------------- TIMELY

CFG = TimelyConfig(initial_bps=100 * MBIT, t_low_s=0.001, t_high_s=0.010, min_rtt_s=0.001,
                   delta_bps=10 * MBIT, beta=0.5, ewma=0.5, hai_after=3, hai_factor=5)


def rtt(seconds: float) -> IntervalFeedback:
    return fb(acked_bytes=1000, rtt_samples=2, rtt_sum_s=2 * seconds)


def test_timely_low_rtt_adds_delta() -> None:
    cc = Timely(WIDE, CFG)
    assert cc.update(rtt(0.0005)) == 110 * MBIT


def test_timely_high_rtt_cuts_in_proportion() -> None:
    cc = Timely(WIDE, CFG)
    # 20 ms > Thigh 10 ms: rate * (1 - 0.5 * (1 - 10/20)) = 100 * 0.75.
    assert cc.update(rtt(0.020)) == pytest.approx(75 * MBIT)


def test_timely_gradient_decides_between_the_thresholds() -> None:
    cc = Timely(WIDE, CFG)
    assert cc.update(rtt(0.002)) == 110 * MBIT  # first sample: no difference yet, gradient 0
    # RTT rises 2 -> 4 ms: diff = 0.5 * 0 + 0.5 * 2 ms = 1 ms; gradient 1 ms / 1 ms = 1.0:
    # rate * (1 - 0.5 * 1.0).
    assert cc.update(rtt(0.004)) == pytest.approx(55 * MBIT)
    # RTT falls 4 -> 3 ms: diff = 0.5 * 1 ms + 0.5 * -1 ms = 0: additive increase.
    assert cc.update(rtt(0.003)) == pytest.approx(65 * MBIT)


def test_timely_hyperactive_increase_after_steady_intervals() -> None:
    cc = Timely(WIDE, CFG)
    rates = [cc.update(rtt(0.002)) for _ in range(4)]
    # Steady RTT: +δ twice; from the third such interval on (hai_after=3) +5δ.
    assert rates == [110 * MBIT, 120 * MBIT, 170 * MBIT, 220 * MBIT]


def test_timely_without_samples_keeps_the_rate_and_halves_on_timeout() -> None:
    cc = Timely(WIDE, CFG)
    assert cc.update(fb()) == 100 * MBIT
    assert cc.update(fb(timeouts=1)) == 50 * MBIT


# ------------------------------------------------------------------------------- registry


def test_registry_matches_the_control_protocol() -> None:
    assert set(congestion.CHOICES) == set(CONGESTION_CONTROLS)
    assert congestion.make("none") is None
    assert isinstance(congestion.make("timely"), Timely)
    with pytest.raises(ValueError, match="unknown congestion control 'cubic'"):
        congestion.make("cubic")


# ---------------------------------------------------------------------------- control loop


class Channel:
    def __init__(self, flow_id: int) -> None:
        self.flow_id = flow_id
        self.mss = 1448
        self.counters = FlowCounters()
        self.timer = FlowTimer()


class Bridge:
    """What the controller uses of the NIC interface: clock, rates, activity."""

    def __init__(self) -> None:
        self.now = 10.0
        self.channels: dict[int, Channel] = {}
        self.rates: dict[int, float | None] = {}
        self.active: list[int] = []

    def clock(self) -> float:
        return self.now

    def channel(self, flow_id: int) -> Channel | None:
        return self.channels.get(flow_id)

    def set_rate(self, flow_id: int, rate_bps: float | None) -> None:
        self.rates[flow_id] = rate_bps

    def register(self, channel: Channel) -> None:
        self.channels[channel.flow_id] = channel

    def unregister(self, flow_id: int) -> Channel | None:
        return self.channels.pop(flow_id, None)

    def take_active(self) -> list[Channel]:
        active, self.active = self.active, []
        return [self.channels[flow_id] for flow_id in active]


def attach(controller: RateController, channel: Channel, algorithm) -> None:
    """The flow registry's attach, then the controller's (as runtime.flow_install does)."""
    controller.attach(controller.flows.attach(None, channel), algorithm)


LAG = 0.05   # the tests' meter_lag_s


def controller_for(bridge: Bridge, write) -> RateController:
    p4info = P4Info.from_file(P4INFO)
    return RateController(FlowRegistry(bridge), p4info, write,
                          ControlConfig(initial_interval_s=0.01, start_tau_s=0.0,
                                        meter_lag_s=LAG))


def let_meter_lag_pass(bridge: Bridge, controller: RateController) -> None:
    """Time enough passes for lowered rates to reach the meter."""
    bridge.now += LAG
    controller.run_once(bridge.now)


def one_interval(bridge: Bridge, controller: RateController, channel: Channel,
                 **counters: int) -> None:
    """The flow's counters grow by `counters`, then one initial interval passes."""
    for name, value in counters.items():
        setattr(channel.counters, name, getattr(channel.counters, name) + value)
    bridge.active = [channel.flow_id]
    controller.run_once(bridge.now)
    bridge.now += 0.011
    controller.run_once(bridge.now)


@pytest.fixture
def loop_parts():
    bridge = Bridge()
    writes: list[list] = []
    return bridge, controller_for(bridge, writes.append), writes


def test_attach_sets_the_initial_rate_and_meter(loop_parts) -> None:
    """At once: a new flow has sent nothing at another rate (and the write replaces whatever
    a failed reset left on the id)."""
    bridge, controller, writes = loop_parts
    channel = bridge.channels[5] = Channel(5)
    attach(controller, channel, RateDctcp(WIDE))
    assert bridge.rates[5] == 10 * MBIT
    [[entry]] = writes
    assert entry.index.index == 5 and entry.config.cir == int(10 * MBIT / 8 * 1.1) + 1


def test_only_active_flows_are_updated_and_changes_written_in_one_batch(loop_parts) -> None:
    bridge, controller, writes = loop_parts
    for fid in (1, 2, 3):
        bridge.channels[fid] = Channel(fid)
        attach(controller, bridge.channels[fid], RateDctcp(WIDE))
    bridge.now += 0.05
    writes.clear()
    for fid in (1, 2):  # flow 3 is idle
        bridge.channels[fid].counters.acked_bytes = 50_000
        bridge.channels[fid].counters.tx_bytes = 200_000   # 61 ms since attach: 26 Mbit/s
    bridge.active = [1, 2]
    controller.run_once(bridge.now)
    bridge.now += 0.011  # one initial interval later
    controller.run_once(bridge.now)
    assert controller.updates == 2
    assert bridge.rates == {1: 20 * MBIT, 2: 20 * MBIT, 3: 10 * MBIT}
    [batch] = writes
    assert sorted(e.index.index for e in batch) == [1, 2]
    # No activity in the next interval: both leave the loop, nothing is written.
    bridge.now += 0.011
    controller.run_once(bridge.now)
    bridge.now += 0.011
    controller.run_once(bridge.now)
    assert controller.updates == 2 and len(writes) == 1


def test_small_changes_are_not_written(loop_parts) -> None:
    bridge, controller, writes = loop_parts
    channel = bridge.channels[7] = Channel(7)
    algorithm = Timely(WIDE, TimelyConfig(initial_bps=1000 * MBIT, delta_bps=1 * MBIT))
    attach(controller, channel, algorithm)
    writes.clear()
    channel.counters.acked_bytes = channel.counters.tx_bytes = 10_000
    channel.counters.rtt_samples, channel.counters.rtt_sum_us = 1, 160  # 160 us: +1 Mbit/s
    bridge.active = [7]
    controller.run_once(bridge.now)
    bridge.now += 0.011
    controller.run_once(bridge.now)
    assert bridge.rates[7] == 1001 * MBIT and writes == []  # 0.1 % change


def flows_starting(count: int) -> tuple[Bridge, RateController]:
    """`count` DCTCP flows (ids 1..count) attached at once, sharing starts over 0.5 s."""
    bridge = Bridge()
    controller = RateController(FlowRegistry(bridge), P4Info.from_file(P4INFO), lambda b: None,
                                ControlConfig(start_tau_s=0.5))
    for fid in range(1, count + 1):
        bridge.channels[fid] = Channel(fid)
        attach(controller, bridge.channels[fid], RateDctcp(WIDE))
    return bridge, controller


def all_send_for_an_interval(bridge: Bridge, controller: RateController) -> None:
    """Every flow sends 1,000 bytes, then one initial interval passes."""
    for channel in bridge.channels.values():
        channel.counters.tx_bytes += 1000
    bridge.active = list(bridge.channels)
    controller.run_once(bridge.now)
    bridge.now += 0.011
    controller.run_once(bridge.now)


def test_flows_that_start_together_share_one_initial_rate() -> None:
    """A burst of connections admits one flow's initial rate between them, not one each (the
    million-client paper's overpacing); a flow that starts alone later has it whole."""
    bridge, controller = flows_starting(4)
    assert [round(bridge.rates[f] / MBIT, 2) for f in range(1, 5)] == [10, 5, 3.33, 2.5]
    # By their first interval the first flows hold no more than the burst's share: 10 / 4.
    all_send_for_an_interval(bridge, controller)
    # (4 starts decayed for 11 ms of a 0.5 s time constant: 10 / 3.91 = 2.56 Mbit/s)
    assert all(2.5 * MBIT <= bridge.rates[f] <= 2.56 * MBIT for f in range(1, 5))
    bridge.now += 10.0
    bridge.channels[5] = Channel(5)
    attach(controller, bridge.channels[5], RateDctcp(WIDE))
    assert bridge.rates[5] == pytest.approx(10 * MBIT, rel=1e-6)


def test_flows_that_wait_after_connecting_share_the_initial_rate_when_they_start() -> None:
    """A load generator connects every flow, then starts them together: by then the burst
    of starts has decayed, and the flows active at once share the initial rate instead."""
    bridge, controller = flows_starting(8)
    bridge.now += 10.0    # idle: not in the loop
    all_send_for_an_interval(bridge, controller)
    assert all(bridge.rates[f] == pytest.approx(10 * MBIT / 8) for f in range(1, 9))


def test_detach_resets_the_meter_to_unlimited(loop_parts) -> None:
    bridge, controller, writes = loop_parts
    channel = bridge.channels[9] = Channel(9)
    attach(controller, channel, RateDctcp(WIDE))
    controller.detach(controller.flows.get(9))
    reset = writes[-1][0]
    assert reset.index.index == 9 and not reset.HasField("config")


def test_unlimited_flows_are_not_controlled(loop_parts) -> None:
    bridge, controller, writes = loop_parts
    channel = bridge.channels[4] = Channel(4)
    attach(controller, channel, None)
    assert writes == [] and 4 not in bridge.rates


class Scripted(CongestionControl):
    """Returns the rates it is given, one per interval."""

    name = "scripted"

    def __init__(self, rates: list[float], limits: RateLimits = WIDE) -> None:
        super().__init__(rates[0], limits)
        self.rates = rates[1:]

    def update(self, feedback: IntervalFeedback) -> float:
        self.rate_bps = self.rates.pop(0)
        return self.rate_bps


def deferred_writes() -> tuple[Bridge, RateController, list[concurrent.futures.Future]]:
    """A controller whose meter writes complete only when the test says so."""
    bridge = Bridge()
    pending: list[concurrent.futures.Future] = []

    def write(batch: list) -> concurrent.futures.Future:
        pending.append(concurrent.futures.Future())
        return pending[-1]

    return bridge, controller_for(bridge, write), pending


def test_a_small_change_during_a_rise_is_paced_with_it() -> None:
    """20 -> 40 is written; 40.4 is within min_change of it, so not written, and waits too."""
    bridge, controller, pending = deferred_writes()
    channel = bridge.channels[2] = Channel(2)
    attach(controller, channel, Scripted([20 * MBIT, 40 * MBIT, 40.4 * MBIT]))
    let_meter_lag_pass(bridge, controller)
    for _ in range(2):
        one_interval(bridge, controller, channel, acked_bytes=5000)
    assert bridge.rates[2] == 20 * MBIT and len(pending) == 2
    pending[1].set_result(None)
    assert bridge.rates[2] == 40.4 * MBIT


def test_a_rise_paces_only_once_the_meter_allows_it_and_a_cut_at_once() -> None:
    """Pacing faster before the meter write lands would have the meter drop the difference."""
    bridge, controller, pending = deferred_writes()
    channel = bridge.channels[3] = Channel(3)
    attach(controller, channel, RateDctcp(WIDE))
    assert bridge.rates[3] == 10 * MBIT        # from unlimited: a cut, paced at once
    let_meter_lag_pass(bridge, controller)

    def interval(**counters: int) -> None:
        one_interval(bridge, controller, channel, **counters)

    interval(acked_bytes=50_000, tx_bytes=200_000)          # slow start: 20 Mbit/s
    assert bridge.rates[3] == 10 * MBIT and len(pending) == 2
    pending[1].set_result(None)
    assert bridge.rates[3] == 20 * MBIT
    interval(acked_bytes=50_000, tx_bytes=50_000)           # 40 Mbit/s, not yet written ...
    interval(acked_bytes=50_000, tx_bytes=50_000, fast_retransmits=1)   # ... then a loss: 20
    assert bridge.rates[3] == 20 * MBIT and len(pending) == 3   # the cut: paced, not written
    pending[2].set_result(None)                           # the older rise is void
    assert bridge.rates[3] == 20 * MBIT
    interval(acked_bytes=50_000, tx_bytes=50_000)           # +4.2 Mbit/s (Reno): the meter
    assert 24 * MBIT < bridge.rates[3] < 25 * MBIT and len(pending) == 3   # (40) allows it


def test_a_rise_whose_meter_write_fails_waits_for_the_next_write() -> None:
    bridge, controller, pending = deferred_writes()
    channel = bridge.channels[4] = Channel(4)
    attach(controller, channel, Scripted([10 * MBIT, 20 * MBIT, 30 * MBIT]))
    let_meter_lag_pass(bridge, controller)
    pending[0].set_result(None)
    one_interval(bridge, controller, channel, acked_bytes=5000)     # 20, but the write fails
    pending[1].set_exception(RuntimeError("device busy"))
    assert bridge.rates[4] == 10 * MBIT
    one_interval(bridge, controller, channel, acked_bytes=5000)     # 30: written again
    assert bridge.rates[4] == 10 * MBIT and len(pending) == 3
    pending[2].set_result(None)
    assert bridge.rates[4] == 30 * MBIT


def test_a_cut_reaches_the_meter_only_after_its_lag() -> None:
    """Frames paced at the old rate may still wait on their way to the fast path: a meter cut
    at once dropped them (2,198 RATE_LIMITED drops in a 256-flow run on soft)."""
    bridge, writes = Bridge(), []
    controller = controller_for(bridge, writes.append)
    channel = bridge.channels[6] = Channel(6)
    attach(controller, channel, Scripted([20 * MBIT, 10 * MBIT, 15 * MBIT]))
    let_meter_lag_pass(bridge, controller)
    writes.clear()
    one_interval(bridge, controller, channel, acked_bytes=5000)     # cut to 10
    assert bridge.rates[6] == 10 * MBIT and writes == []
    one_interval(bridge, controller, channel, acked_bytes=5000)     # 15: the meter allows it
    assert bridge.rates[6] == 15 * MBIT and writes == []
    let_meter_lag_pass(bridge, controller)   # down to the highest rate paced since the cut
    [[entry]] = writes
    assert entry.config.cir == int(15 * MBIT / 8 * 1.1) + 1


def test_rates_that_change_every_interval_do_not_hold_the_meter_up_for_ever() -> None:
    bridge, writes = Bridge(), []
    controller = controller_for(bridge, writes.append)
    channel = bridge.channels[8] = Channel(8)
    rates = [20 * MBIT] + [(10 - i * 0.5) * MBIT for i in range(12)]
    attach(controller, channel, Scripted(rates))
    let_meter_lag_pass(bridge, controller)
    writes.clear()
    for _ in range(11):   # a lower rate every 11 ms, for 121 ms (the lag is 50 ms)
        one_interval(bridge, controller, channel, acked_bytes=5000)
    cirs = [entry.config.cir for batch in writes for entry in batch]
    assert len(cirs) == 2 and cirs[0] == int(10 * MBIT / 8 * 1.1) + 1
    assert cirs[1] < cirs[0] and bridge.rates[8] == 5 * MBIT


def test_the_floor_is_lower_only_when_many_active_flows_share_little() -> None:
    floor = CrowdFloor(0.05 * MBIT, 2.0, 10 * MBIT, DecayingSum(1.0))
    assert floor.floor_at(0.0, 1) == 0.05 * MBIT    # nothing delivered yet: a lone flow, or
    assert floor.floor_at(0.0, 16) == 0.05 * MBIT   # a few, keep 50 kbit/s
    assert floor.floor_at(0.0, 4096) == pytest.approx(10 * MBIT / 4096)  # a crowd's start
    for step in range(500):   # 20 Mbit/s delivered for 5 s
        floor.note(step * 0.01, 25_000)
    assert floor.floor_at(5.0, 16) == 0.05 * MBIT   # 16 flows: 1.25 Mbit/s each
    assert floor.floor_at(5.0, 4096) == pytest.approx(2 * 20 * MBIT / 4096, rel=0.05)
    assert floor.floor_at(15.0, 4096) == pytest.approx(10 * MBIT / 4096)   # none for 10 s


def test_the_controller_holds_a_flow_at_the_crowd_floor() -> None:
    """A flow among few is not cut below 50 kbit/s: 16 flows at 2 kbit/s starved behind their
    own queued data (test_e2e_loss); its algorithm's own floor is 2 kbit/s."""
    bridge, writes = Bridge(), []
    controller = controller_for(bridge, writes.append)
    channel = bridge.channels[11] = Channel(11)
    attach(controller, channel, Scripted([1 * MBIT, 1 * MBIT, 0.002 * MBIT], LOW))
    one_interval(bridge, controller, channel, acked_bytes=100_000)   # ~0.8 Mbit/s delivered
    one_interval(bridge, controller, channel, acked_bytes=1000)
    assert bridge.rates[11] == 0.05 * MBIT
    assert controller.flows.get(11).control.algorithm.rate_bps == 0.05 * MBIT


def test_a_flow_has_one_pending_meter_lowering_however_its_rate_moves() -> None:
    """Rates that rise above the meter and fall back every interval queue no lowering per
    change (the queue of lowerings stays one entry per flow), and the meter comes down to
    the rate once it stops moving."""
    bridge, writes = Bridge(), []
    controller = controller_for(bridge, writes.append)
    channel = bridge.channels[12] = Channel(12)
    rates = [20 * MBIT] + [(10 if i % 2 else 30) * MBIT + i * 1000 for i in range(40)]
    attach(controller, channel, Scripted(rates))
    let_meter_lag_pass(bridge, controller)
    for _ in range(40):
        one_interval(bridge, controller, channel, acked_bytes=5000)
        assert len(controller._lowerings) <= 1
    writes.clear()
    let_meter_lag_pass(bridge, controller)
    let_meter_lag_pass(bridge, controller)
    cirs = [entry.config.cir for batch in writes for entry in batch]
    assert cirs and cirs[-1] == int(bridge.rates[12] / 8 * 1.1) + 1


def test_a_cut_after_a_failed_rise_still_waits_for_the_lag() -> None:
    """The meter holds what it held before a failed write: a later cut is paced at once and
    reaches the meter only after its lag (were the meter thought unknown, the cut would be
    written at once while frames paced at the old rate are on their way)."""
    bridge, controller, pending = deferred_writes()
    channel = bridge.channels[13] = Channel(13)
    attach(controller, channel, Scripted([10 * MBIT, 20 * MBIT, 2 * MBIT]))
    pending[0].set_result(None)
    one_interval(bridge, controller, channel, acked_bytes=5000)     # 20: the write fails
    pending[1].set_exception(RuntimeError("device busy"))
    one_interval(bridge, controller, channel, acked_bytes=5000)     # 2: paced, not written
    assert bridge.rates[13] == 2 * MBIT and len(pending) == 2
    let_meter_lag_pass(bridge, controller)
    assert len(pending) == 3
