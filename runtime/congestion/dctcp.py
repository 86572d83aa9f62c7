"""Rate-based DCTCP as TAS runs it (TAS 3.2): DCTCP's control law applied to a rate.

Slow start doubles the rate every interval until the first ECN mark or loss; afterwards the
rate grows by a fixed step per interval. α, the fraction of marked bytes, is an EWMA with
gain g; a marked interval multiplies the rate by (1 - α/2). A loss halves it when it is
congestion: a timeout, or a fast retransmit while the RTT shows a queue on the path; a loss on
a path without a queue is taken as random, and the rate falls only to what the path recently
delivered, at most by half (runtime.congestion.path_estimate says why). The rate does
not grow past `send_cap` times what the flow actually sent (so an application-limited flow
does not bank a rate it never uses), but that cap alone never lowers it; nor does it hold
back a flow the pacer made wait in the interval: that one is limited by its rate (it sends
below it only by the pacer's timing), and would otherwise never regrow after a cut.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.congestion.algorithm import MBIT, CongestionControl, IntervalFeedback, RateLimits
from runtime.congestion.path_estimate import PathEstimate, PathEstimateConfig


@dataclass(frozen=True)
class DctcpConfig:
    """TAS's defaults."""

    initial_bps: float = 10 * MBIT
    step_bps: float = 10 * MBIT
    g: float = 1 / 16
    send_cap: float = 1.2
    path: PathEstimateConfig = PathEstimateConfig()


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
        if feedback.ece_bytes:
            self.slow_start = False
            rate *= 1 - self.alpha / 2
        elif feedback.loss:
            self.slow_start = False
            rate = self._after_loss(rate, feedback)
        elif self.slow_start:
            rate *= 2
        else:
            rate += config.step_bps
        if feedback.sent_bytes and not feedback.paced:
            # Growth stops at 1.2x what was used; the cap never cuts the rate by itself (an
            # application-limited flow would otherwise spiral down to the floor).
            rate = min(rate, max(self.rate_bps, config.send_cap * feedback.send_rate_bps))
        self.rate_bps = self.limits.clamp(rate)
        return self.rate_bps

    def _after_loss(self, rate: float, feedback: IntervalFeedback) -> float:
        """Halve for congestion; after a random loss keep what the path delivered."""
        if feedback.timeouts or self.path.queueing:
            return rate / 2
        return max(rate / 2, min(rate, self.path.delivered_bps))
