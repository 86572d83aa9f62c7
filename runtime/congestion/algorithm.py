"""What every congestion-control algorithm sees and does (TAS 3.2: policy in the slow path).

Once per control interval the controller (runtime.congestion.controller) hands an algorithm
one flow's feedback for the interval, aggregated from the per-ACK notifications the NIC
already sends (TX_ACKED bytes, ECE, RTT samples; RETRANSMIT; timeouts); the algorithm
answers with the flow's new rate, which the fast path enforces and the bridge paces to.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

MBIT = 1_000_000


@dataclass(frozen=True)
class IntervalFeedback:
    """One flow's feedback for one control interval."""

    interval_s: float
    acked_bytes: int = 0
    ece_bytes: int = 0          # of acked_bytes, acknowledged by ACKs with ECE
    sent_bytes: int = 0         # handed to the NIC (retransmissions included)
    fast_retransmits: int = 0
    timeouts: int = 0
    rtt_samples: int = 0
    rtt_sum_s: float = 0.0
    paced: bool = False         # the pacer held data back: the rate, not the application, limited it
    mss: int = 1448             # the flow's segment size (Reno-like growth is a segment per RTT)
    srtt_s: float | None = None  # the flow's smoothed RTT (RFC 6298) over all its samples so far

    @property
    def loss(self) -> bool:
        """A segment was lost in the interval."""
        return self.fast_retransmits > 0 or self.timeouts > 0

    @property
    def mean_rtt_s(self) -> float | None:
        """The interval's average RTT sample, if there was one."""
        return self.rtt_sum_s / self.rtt_samples if self.rtt_samples else None

    @property
    def send_rate_bps(self) -> float:
        """What the flow actually sent in the interval, in bit/s."""
        return self.sent_bytes * 8 / self.interval_s if self.interval_s > 0 else 0.0


@dataclass(frozen=True)
class RateLimits:
    """The range every algorithm keeps a rate in, up to the link's capacity. The floor lets
    thousands of flows share a slow bottleneck (4,096 flows through 20 Mbit/s get 4.9 kbit/s
    each); the controller keeps flows well above it unless that many are active
    (`ControlConfig.floor_bps`), since a flow held at 2 kbit/s starves behind its own queued
    data (64 KiB at 2 kbit/s are four minutes) and regrows slowly."""

    min_bps: float = 0.002 * MBIT
    max_bps: float = 10_000 * MBIT

    def clamp(self, rate_bps: float) -> float:
        return min(max(rate_bps, self.min_bps), self.max_bps)


class CongestionControl(ABC):
    """One flow's congestion controller: a rate, updated once per control interval."""

    name: ClassVar[str]
    # Whether the algorithm reacts to ECN marks (ECE-marked bytes in its feedback): only
    # then may its flows be ECN-capable (RFC 3168 6.1.2).
    uses_ecn: ClassVar[bool] = False

    __slots__ = ("limits", "rate_bps")   # one per flow: no __dict__ (ARCHITECTURE.md 5)

    def __init__(self, rate_bps: float, limits: RateLimits) -> None:
        self.limits = limits
        self.rate_bps = limits.clamp(rate_bps)

    @abstractmethod
    def update(self, feedback: IntervalFeedback) -> float:
        """Take one interval's feedback; return (and keep) the new rate in bit/s."""
