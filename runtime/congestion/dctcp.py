"""Rate-based DCTCP as TAS runs it (TAS 3.2): DCTCP's control law applied to a rate.

Slow start doubles the rate every interval in which the peer acknowledged data (an interval
without ACKs earns nothing) until the first ECN mark, loss or queue. Afterwards the rate grows
by at most TAS's fixed step per interval, and by no more than Reno would (an MSS per window
of acknowledged data and per RTT), nor, below four segments per RTT, than a quarter of a
segment per acknowledged segment and a quarter of the rate per RTT (`_step`). TAS's step
suits a datacenter's microseconds; hundreds of flows sharing a slow bottleneck each hold less
than a segment per RTT (256 through 20 Mbit/s: 78 kbit/s each), and any constant step adds up
to more than the bottleneck (issue 18).

α, the fraction of marked bytes, is an EWMA with gain g; a marked interval multiplies the
rate by (1 - α/2). A loss halves it when it is congestion: a timeout, or a fast retransmit
while the RTT shows a queue on the path; a loss on a path without a queue is taken as random,
and the rate falls only to what the path recently delivered, at most by half
(runtime.congestion.path_estimate says why). Without marks (a drop-tail bottleneck), a queue
is the signal: an interval whose RTT exceeds the minimum by more than a target cuts the rate
in proportion to the excess, as Swift does (Kumar et al., SIGCOMM 2020), with a target that
is larger for a flow that sends fewer segments per RTT, so that small flows keep growing while
large ones yield: flows converge to fair shares below one segment per RTT, where losses are
only found by timeouts and window-based TCP cannot go.

The rate does not grow past `send_cap` times what the flow actually sent (so an application-
limited flow does not bank a rate it never uses), but that cap alone never lowers it; nor does
it hold back a flow the pacer made wait in the interval: that one is limited by its rate (it
sends below it only by the pacer's timing), and would otherwise never regrow after a cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from runtime.congestion.algorithm import MBIT, CongestionControl, IntervalFeedback, RateLimits
from runtime.congestion.path_estimate import PathEstimate, PathEstimateConfig


@dataclass(frozen=True)
class QueueTarget:
    """Swift's delay target: queueing the flow tolerates, base plus a range that scales with
    1/sqrt(segments per RTT) between `min_segments` (all of it) and `max_segments` (none)."""

    base_s: float = 0.004       # above softnic's and bmv2's scheduling jitter (~1 ms)
    # A peer's delayed ACK holds the ACK of a lone segment until the next arrives or its
    # timer fires (Linux: 40 ms at least): a flow whose segments are further apart than
    # that sees it in every sample, and it is not a queue.
    ack_delay_s: float = 0.040
    range_s: float = 0.020      # well inside the benches' 50 ms drop-tail queue
    min_segments: float = 0.1
    max_segments: float = 100.0
    beta: float = 0.8           # the cut per second of excess over the RTT (Swift's β)
    max_cut: float = 0.5        # at most halved per interval

    def target_s(self, segments_per_rtt: float, segment_gap_s: float) -> float:
        """The queueing delay tolerated at this window, with segments this far apart."""
        low, high = 1 / math.sqrt(self.min_segments), 1 / math.sqrt(self.max_segments)
        scale = (1 / math.sqrt(max(segments_per_rtt, 1e-9)) - high) / (low - high)
        return (self.base_s + min(self.ack_delay_s, segment_gap_s)
                + self.range_s * min(max(scale, 0.0), 1.0))


@dataclass(frozen=True)
class DctcpConfig:
    """TAS's defaults, and the queue target for paths that do not mark."""

    initial_bps: float = 10 * MBIT
    step_bps: float = 10 * MBIT
    g: float = 1 / 16
    send_cap: float = 1.2
    # Growth per acknowledged byte at most (Reno's is MSS/window: this caps it below 4 MSS).
    small_growth: float = 0.25
    path: PathEstimateConfig = PathEstimateConfig()
    queue: QueueTarget = QueueTarget()


class RateDctcp(CongestionControl):
    """Rate-based DCTCP for one flow."""

    name = "dctcp"
    uses_ecn = True
    __slots__ = ("config", "alpha", "slow_start", "path")

    def __init__(self, limits: RateLimits = RateLimits(), config: DctcpConfig = DctcpConfig()):
        super().__init__(config.initial_bps, limits)
        self.config = config
        self.alpha = 0.0
        self.slow_start = True
        self.path = PathEstimate(config.path)

    def update(self, feedback: IntervalFeedback) -> float:
        config = self.config
        if feedback.acked_bytes:
            marked = feedback.ece_bytes / feedback.acked_bytes
            self.alpha = (1 - config.g) * self.alpha + config.g * marked
        self.path.update(feedback)
        rate = self.rate_bps
        cut = self._queue_cut(feedback)
        if feedback.ece_bytes:
            self.slow_start = False
            rate *= 1 - self.alpha / 2
        elif feedback.loss:
            self.slow_start = False
            rate = self._after_loss(rate, feedback)
        elif cut < 1:
            self.slow_start = False
            rate *= cut
        elif not feedback.acked_bytes:
            pass    # growth is earned by acknowledged data, as TCP's is by ACKs
        elif self.slow_start:
            rate *= 2
        else:
            rate += self._step(feedback)
        if feedback.sent_bytes and not feedback.paced:
            # Growth stops at 1.2x what was used; the cap never cuts the rate by itself (an
            # application-limited flow would otherwise spiral down to the floor).
            rate = min(rate, max(self.rate_bps, config.send_cap * feedback.send_rate_bps))
        self.rate_bps = self.limits.clamp(rate)
        return self.rate_bps

    def _segments_per_rtt(self, rtt_s: float, mss: int) -> float:
        return self.rate_bps * rtt_s / (8 * mss)

    def _queue_cut(self, feedback: IntervalFeedback) -> float:
        """The factor a queue above the flow's target cuts the rate by (1: no cut)."""
        rtt, base = feedback.mean_rtt_s, self.path.min_rtt_s
        if rtt is None or base is None:
            return 1.0
        queue = self.config.queue
        gap = 8 * feedback.mss / self.rate_bps
        excess = rtt - base - queue.target_s(self._segments_per_rtt(rtt, feedback.mss), gap)
        if excess <= 0:
            return 1.0
        return max(1 - queue.beta * excess / rtt, 1 - queue.max_cut)

    def _step(self, feedback: IntervalFeedback) -> float:
        """Additive increase for one interval: Reno's MSS per window of acknowledged bytes and
        per RTT, below four segments per RTT at most a quarter segment per acknowledged
        segment and a quarter of the rate per RTT (Swift's growth under a window of one), and
        at most TAS's step. Both the bytes and the time bound it: a cumulative ACK that jumps
        over a SACKed range after a recovery acknowledges many windows at once. The RTT is
        the interval's samples'; without any, the smoothed RTT but at least half the interval
        (the controller's intervals are two RTTs): a flow that keeps resending gets no samples
        (Karn's rule), and its first segments' 0.1 ms would multiply the growth."""
        rtt = feedback.mean_rtt_s or max(feedback.srtt_s or 0.0, feedback.interval_s / 2)
        if rtt <= 0:
            return 0.0
        small, mss_bits = self.config.small_growth, 8 * feedback.mss
        acked_bits, rtts = 8 * feedback.acked_bytes, feedback.interval_s / rtt
        window_bytes = max(self.rate_bps * rtt / 8, 1.0)
        by_bytes = min(acked_bits * feedback.mss / window_bytes, small * acked_bits) / rtt
        by_time = rtts * min(mss_bits / rtt, small * self.rate_bps)
        return min(self.config.step_bps, by_bytes, by_time)

    def _after_loss(self, rate: float, feedback: IntervalFeedback) -> float:
        """Halve for congestion; after a random loss keep what the path delivered."""
        if feedback.timeouts or self.path.queueing:
            return rate / 2
        return max(rate / 2, min(rate, self.path.delivered_bps))
