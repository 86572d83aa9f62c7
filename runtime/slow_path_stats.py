"""What the slow path counts: named event counters and the connection setup latency."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field

# Setup latency buckets, seconds: from the first SYN to the application being told the
# connection is up (flow installed). A LAN handshake takes well under a millisecond plus the
# flow install; a lost SYN costs a SYN RTO (1 s, doubling).
SETUP_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)


@dataclass
class SetupLatency:
    """A histogram of setup times: `counts[i]` fell at or below SETUP_BUCKETS_S[i] (and above
    the bound before it); the last count is above every bound."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(SETUP_BUCKETS_S) + 1))
    total_s: float = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(SETUP_BUCKETS_S, seconds)] += 1
        self.total_s += seconds

    @property
    def count(self) -> int:
        return sum(self.counts)


@dataclass
class Stats:
    """Counters of what the slow path saw and did (GetStats, logs, metrics, tests)."""

    counts: Counter = field(default_factory=Counter)
    setup: SetupLatency = field(default_factory=SetupLatency)

    def bump(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
