"""TIMELY (Mittal et al., SIGCOMM 2015): rate control from the RTT gradient.

Per interval, with the interval's mean RTT sample: below Tlow the rate grows by δ; above
Thigh it shrinks by β(1 - Thigh/RTT); in between, a falling or flat smoothed RTT difference
grows the rate by δ (by 5δ after five such intervals in a row: hyperactive increase), a
rising one shrinks it by β times the gradient normalized by the minimum RTT. An interval
without samples leaves the rate alone; a retransmission timeout halves it.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.congestion.algorithm import MBIT, CongestionControl, IntervalFeedback, RateLimits


@dataclass(frozen=True)
class TimelyConfig:
    """Thresholds for bmv2's millisecond RTTs (the paper's datacenter values are in µs)."""

    initial_bps: float = 10 * MBIT
    t_low_s: float = 0.002
    t_high_s: float = 0.020
    min_rtt_s: float = 0.001     # normalizes the gradient
    delta_bps: float = 10 * MBIT
    beta: float = 0.8
    ewma: float = 0.875          # weight of the newest RTT difference
    hai_after: int = 5           # gradient-free intervals before hyperactive increase
    hai_factor: int = 5


class Timely(CongestionControl):
    """TIMELY for one flow."""

    name = "timely"

    __slots__ = ("config", "prev_rtt_s", "rtt_diff_s", "increases")

    def __init__(self, limits: RateLimits = RateLimits(), config: TimelyConfig = TimelyConfig()):
        super().__init__(config.initial_bps, limits)
        self.config = config
        self.prev_rtt_s: float | None = None
        self.rtt_diff_s = 0.0
        self.increases = 0

    def update(self, feedback: IntervalFeedback) -> float:
        config = self.config
        rtt = feedback.mean_rtt_s
        if feedback.timeouts:
            self.increases = 0
            self.rate_bps = self.limits.clamp(self.rate_bps / 2)
            return self.rate_bps
        if rtt is None:
            return self.rate_bps
        new_diff = rtt - self.prev_rtt_s if self.prev_rtt_s is not None else 0.0
        self.prev_rtt_s = rtt
        self.rtt_diff_s = (1 - config.ewma) * self.rtt_diff_s + config.ewma * new_diff
        gradient = self.rtt_diff_s / config.min_rtt_s
        rate = self.rate_bps
        if rtt < config.t_low_s:
            self.increases = 0
            rate += config.delta_bps
        elif rtt > config.t_high_s:
            self.increases = 0
            rate *= 1 - config.beta * (1 - config.t_high_s / rtt)
        elif gradient <= 0:
            self.increases += 1
            rate += (config.hai_factor if self.increases >= config.hai_after else 1) \
                * config.delta_bps
        else:
            self.increases = 0
            rate *= 1 - config.beta * min(gradient, 1.0)
        self.rate_bps = self.limits.clamp(rate)
        return self.rate_bps
