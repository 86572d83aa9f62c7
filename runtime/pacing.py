"""Per-flow pacing on the host side (TAS: per-flow buckets drained asynchronously; Carousel).

Each rate-limited flow has a token bucket in bytes; a flow that lacks tokens for its next
segment waits in a timing wheel until they have accrued, then the bridge sends again. Flows
that are unlimited, or have nothing to send, are in no structure at all. Bytes are counted as
the host frame (payload + Ethernet and channel headers), which is what the NIC's tx_rate meter
measures, so a paced flow stays within the meter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

TICK_SECONDS = 0.0005
WHEEL_SLOTS = 8192          # 4 s ahead: a 1 Mbit/s flow waits 12 ms for a full segment
BURST_SECONDS = 0.001       # a bucket holds 1 ms of its rate (and at least two segments)
FRAME_OVERHEAD = 14 + 24    # Ethernet + NIC<->host header, as the meter sees a TX_DATA
# What an application may keep queued on a paced flow (its TX ring's limit, shm_layout): this
# long at the flow's rate, and at least what Linux's send buffer holds once it first expands
# (tcp_sndbuf_expand: twice the initial window, some 64 KiB), since applications written for
# Linux count on it (one that waits only for readability after a short send, say); with many
# flows that floor shrinks to a share of SHARED_SEND_BUDGET, down to Linux's smallest send
# buffer, as Linux shrinks send buffers under tcp_mem pressure. 256 flows sharing 20 Mbit/s
# would otherwise queue their whole 256 KiB rings: 27 s of data behind every later write, and
# 4,096 flows' 64 KiB each would take 100 s to drain through it (issue 18).
SEND_BUDGET_SECONDS = 0.25
MAX_SEND_FLOOR = 64 * 1024
MIN_SEND_FLOOR = 4096               # SOCK_MIN_SNDBUF is about this
SHARED_SEND_BUDGET = 32 * 1024 * 1024


def send_budget(rate_bps: float | None, ring_size: int, flows: int = 1) -> int:
    """The TX ring limit for a flow paced at `rate_bps`, one of `flows` (0: none, the whole
    ring). Nor does a flow's rate take it past an equal share of SHARED_SEND_BUDGET: a rate
    is briefly far above the flow's share while it starts (256 flows: some at 8 Mbit/s within
    tens of milliseconds), and what it queued then stays queued after the rate comes down.
    Beyond 512 flows (registered, idle ones too) the budget is that share whatever the rate."""
    if rate_bps is None:
        return 0
    share = SHARED_SEND_BUDGET // max(flows, 1)
    floor = min(max(share, MIN_SEND_FLOOR), MAX_SEND_FLOOR)
    budget = max(min(int(rate_bps / 8 * SEND_BUDGET_SECONDS), share), floor)
    return 0 if budget >= ring_size else budget


@dataclass(slots=True)
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


    def spend(self, payload: int, now: float) -> bool:
        """Send one segment now on credit unless a debt is still unpaid (False: take() it);
        the debt delays the sends after it."""
        self.refill(now)
        if self.tokens < 0:
            return False
        self.tokens -= payload + FRAME_OVERHEAD
        return True


class Paced(Protocol):
    """A flow the pacer can hold: it keeps the pacer's mark of the slot it waits in."""

    pacer_slot: int | None


P = TypeVar("P", bound=Paced)


class Pacer(Generic[P]):
    """Flows waiting for tokens, in the wheel slot of the tick their wait ends (Carousel).

    A slot lists the flows themselves and each flow carries the slot it waits in, so there
    is no table keyed by flow: a turn touches the slot's list and the flow, whatever the
    number of flows. Waits are rounded up to a tick, and one longer than the wheel spans ends
    at its last slot; the flow's bucket decides, when it comes up, whether it waits again.
    """

    def __init__(self, now: float) -> None:
        self._slots: list[list[P]] = [[] for _ in range(WHEEL_SLOTS)]
        # Marks are these int objects, reused: comparing a flow's mark with `is` reads no
        # further memory, which matters once a million flows' state is out of the cache.
        self._marks = list(range(WHEEL_SLOTS))
        self._current = math.floor(now / TICK_SECONDS)  # the tick `due` has processed up to
        self._waiting = 0

    def __len__(self) -> int:
        return self._waiting

    def defer(self, flow: P, until: float) -> None:
        """The flow sends again at `until` (its earlier wait, if any, is void)."""
        ahead = min(max(math.ceil(until / TICK_SECONDS) - self._current, 1), WHEEL_SLOTS - 1)
        slot = (self._current + ahead) % WHEEL_SLOTS
        if flow.pacer_slot is None:
            self._waiting += 1
        flow.pacer_slot = self._marks[slot]
        self._slots[slot].append(flow)   # an entry left in another slot is now stale

    def forget(self, flow: P) -> None:
        """The flow no longer waits (its entry stays in its slot, stale)."""
        if flow.pacer_slot is not None:
            flow.pacer_slot = None
            self._waiting -= 1

    def due(self, now: float) -> list[P]:
        """Flows whose wait ends by `now`, in slot order; they no longer wait."""
        target = math.floor(now / TICK_SECONDS)
        steps = min(target - self._current, WHEEL_SLOTS)
        first = target - steps + 1
        self._current = target
        due: list[P] = []
        for tick in range(first, target + 1):
            slot = tick % WHEEL_SLOTS
            entries = self._slots[slot]
            if not entries:
                continue
            self._slots[slot] = []
            mark = self._marks[slot]
            for flow in entries:
                if flow.pacer_slot is mark:   # else it was deferred again or forgotten
                    flow.pacer_slot = None
                    due.append(flow)
        self._waiting -= len(due)
        return due
