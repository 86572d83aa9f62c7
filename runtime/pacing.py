"""Per-flow pacing on the host side (TAS: per-flow buckets drained asynchronously; Carousel).

Each rate-limited flow has a token bucket in bytes; a flow that lacks tokens for its next
segment waits in a timing wheel until they have accrued, then the bridge sends again. Flows
that are unlimited, or have nothing to send, are in no structure at all. Bytes are counted as
the host frame (payload + Ethernet and channel headers), which is what the NIC's tx_rate meter
measures, so a paced flow stays within the meter.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.timing_wheel import TimingWheel

TICK_SECONDS = 0.0005
WHEEL_SLOTS = 8192          # 4 s ahead: a 1 Mbit/s flow waits 12 ms for a full segment
BURST_SECONDS = 0.001       # a bucket holds 1 ms of its rate (and at least two segments)
FRAME_OVERHEAD = 14 + 24    # Ethernet + NIC<->host header, as the meter sees a TX_DATA


@dataclass
class TokenBucket:
    """Bytes a flow may send now; refills at `rate_Bps` up to `burst`."""

    rate_Bps: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def for_rate(cls, rate_bps: float, mss: int, now: float) -> TokenBucket:
        rate_Bps = rate_bps / 8
        burst = max(2 * (mss + FRAME_OVERHEAD), rate_Bps * BURST_SECONDS)
        return cls(rate_Bps, burst, burst, now)

    def retune(self, rate_bps: float, mss: int, now: float) -> None:
        """A new rate: tokens so far are kept (up to the new burst)."""
        self.refill(now)
        fresh = TokenBucket.for_rate(rate_bps, mss, now)
        self.rate_Bps, self.burst = fresh.rate_Bps, fresh.burst
        self.tokens = min(self.tokens, self.burst)

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate_Bps)
        self.updated = now

    def take(self, payload: int, now: float) -> float:
        """Spend the tokens for one segment: 0.0, or the seconds to wait (nothing spent)."""
        cost = payload + FRAME_OVERHEAD
        self.refill(now)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate_Bps


class Pacer:
    """Flows waiting for tokens, by the time they will have them."""

    def __init__(self, now: float) -> None:
        self._wheel: TimingWheel[int] = TimingWheel(TICK_SECONDS, WHEEL_SLOTS, now)

    def __len__(self) -> int:
        return len(self._wheel)

    def defer(self, flow_id: int, until: float) -> None:
        """The flow sends again at `until`."""
        self._wheel.schedule(flow_id, until)

    def due(self, now: float) -> list[int]:
        """Flows whose wait is over."""
        return self._wheel.advance(now)

    def forget(self, flow_id: int) -> None:
        self._wheel.cancel(flow_id)
