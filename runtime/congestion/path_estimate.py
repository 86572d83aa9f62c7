"""What a flow's recent control intervals say about its path: the lowest RTT (the path without
a queue), the latest RTT, and the highest rate at which the peer acknowledged data.

A loss is a congestion signal when it comes with a queue; a loss on a path whose RTT is still
near its minimum is taken as random (a lossy link, not a full buffer) — TCP Veno's
discrimination (Fu & Liew, IEEE JSAC 2003), measured here as queueing delay rather than
packets, because the rates differ by orders of magnitude between targets. The delivered rate
is TCP Westwood+'s bandwidth estimate (Mascolo et al., MobiCom 2001): after a random loss the
sender falls back to what the path delivered, not to half of what it sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.congestion.algorithm import IntervalFeedback


@dataclass(frozen=True)
class PathEstimateConfig:
    """Windows of the estimates and the queueing delay that makes a loss congestive."""

    # The minimum RTT is forgotten after this long without a new one, so a route that got
    # longer is not taken for a standing queue for ever (BBR's min_rtt window).
    min_rtt_window_s: float = 10.0
    # Delivered-rate samples kept: one per control interval (2 RTT), so 16 RTTs, enough to
    # bridge the intervals in which a hole held back the cumulative ACK.
    delivery_samples: int = 8
    # Queueing above the minimum RTT that says a buffer on the path is filling. Above the
    # software targets' scheduling jitter (softnic's samples range over ~0.1-1.2 ms at one
    # rate), far below a drop-tail bottleneck's queue (the benches' token bucket holds 50 ms).
    queue_delay_s: float = 0.002


@dataclass(slots=True)
class PathEstimate:
    """One flow's path estimates, fed once per control interval."""

    config: PathEstimateConfig = field(default_factory=PathEstimateConfig)
    min_rtt_s: float | None = None
    rtt_s: float | None = None           # the latest interval's mean RTT sample
    _min_age_s: float = 0.0
    # A list, not a deque: an empty deque is ~600 bytes, and one exists per flow.
    _delivered_bps: list[float] = field(default_factory=list)

    def update(self, feedback: IntervalFeedback) -> None:
        """Take one interval's RTT samples and acknowledged bytes."""
        self._min_age_s += feedback.interval_s
        rtt = feedback.mean_rtt_s
        if rtt is not None:
            self.rtt_s = rtt
            if (self.min_rtt_s is None or rtt <= self.min_rtt_s
                    or self._min_age_s > self.config.min_rtt_window_s):
                self.min_rtt_s, self._min_age_s = rtt, 0.0
        if feedback.interval_s > 0:
            self._delivered_bps.append(feedback.acked_bytes * 8 / feedback.interval_s)
            if len(self._delivered_bps) > self.config.delivery_samples:
                del self._delivered_bps[0]

    @property
    def queueing(self) -> bool:
        """Whether the latest RTT shows a queue on the path (unknown RTT: assume one)."""
        if self.rtt_s is None or self.min_rtt_s is None:
            return True
        return self.rtt_s - self.min_rtt_s >= self.config.queue_delay_s

    @property
    def delivered_bps(self) -> float:
        """The highest rate the peer acknowledged data at in the recent intervals."""
        return max(self._delivered_bps, default=0.0)
