"""A hashed timing wheel (Varghese & Lauck): O(1) schedule and cancel by key, and `advance`
costs the slots it passes plus the entries it returns, never the number of keys.

Used for retransmission timeouts and the congestion control loop: both keep up to one exact
deadline per flow id, and flows without a deadline cost nothing. Pacing has its own wheel
that holds the flows themselves (runtime.pacing).
"""

from __future__ import annotations

import math
from typing import Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)


class TimingWheel(Generic[K]):
    """Deadlines for keys, in `tick`-second slots; at most one deadline per key.

    A deadline further out than the wheel spans waits in the last slot it reaches and is
    placed again when that slot comes round (a "round" of the wheel).
    """

    def __init__(self, tick: float, slots: int, now: float) -> None:
        if tick <= 0 or slots < 2:
            raise ValueError(f"timing wheel needs tick > 0 and >= 2 slots, got {tick}, {slots}")
        self.tick = tick
        self._slots: list[dict[K, float]] = [{} for _ in range(slots)]
        self._slot_of: dict[K, int] = {}
        self._current = math.floor(now / tick)  # the tick `advance` has processed up to

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: K) -> bool:
        return key in self._slot_of

    def schedule(self, key: K, deadline: float) -> None:
        """Fire `key` once `deadline` has passed (replaces the key's earlier deadline)."""
        self.cancel(key)
        self._place(key, deadline)

    def cancel(self, key: K) -> None:
        """Forget `key`'s deadline, if it has one."""
        slot = self._slot_of.pop(key, None)
        if slot is not None:
            del self._slots[slot][key]

    def advance(self, now: float) -> list[K]:
        """Keys whose deadline is <= now, in slot order; they are no longer scheduled."""
        target = math.floor(now / self.tick)
        due: list[K] = []
        steps = min(target - self._current, len(self._slots))
        first = target - steps + 1
        self._current = target
        for tick in range(first, target + 1):
            slot = self._slots[tick % len(self._slots)]
            if not slot:
                continue
            entries = list(slot.items())
            slot.clear()
            for key, deadline in entries:
                del self._slot_of[key]
                if deadline <= now:
                    due.append(key)
                else:
                    self._place(key, deadline)  # a later round, or a deadline within this tick
        return due

    def _place(self, key: K, deadline: float) -> None:
        ticks_ahead = math.ceil(deadline / self.tick) - self._current
        ticks_ahead = min(max(ticks_ahead, 1), len(self._slots) - 1)
        slot = (self._current + ticks_ahead) % len(self._slots)
        self._slots[slot][key] = deadline
        self._slot_of[key] = slot
