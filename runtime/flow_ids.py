"""Flow ids (indexes into the fast path's per-flow tables and registers), with a generation each.

The data plane re-initializes a flow's registers when the generation in its table entry differs from
the one stored in its registers (ARCHITECTURE.md 5), so every reuse of an id carries a new generation:
1, 2, ..., 65535, 1, ... (never 0, the registers' initial value). Ids never used come first, then
freed ids in the order they were freed, so a freed id rests as long as possible before reuse and
late events for its old connection are easy to tell apart. All operations are O(1).
"""

from __future__ import annotations

import errno
from array import array
from collections import deque
from typing import NamedTuple

from nic_contract.constants import MAX_FLOWS
from nic_contract.flow_entries import MAX_GENERATION


class FlowTableFull(OSError):
    """Every flow id is in use (errno ENOBUFS, so the daemon can hand it to the application)."""

    def __init__(self, capacity: int) -> None:
        super().__init__(errno.ENOBUFS, f"flow table full: all {capacity} flow ids are in use")


class FlowIdNotAllocated(ValueError):
    """free() of an id that is not allocated (double free, or never allocated)."""


class FlowLease(NamedTuple):
    """An allocated flow id and the generation it carries this time."""

    flow_id: int
    generation: int


class FlowIdAllocator:
    """O(1) allocate/free of flow ids 0..capacity-1 with a per-id generation."""

    def __init__(self, capacity: int = MAX_FLOWS, first_generation: int = 1) -> None:
        """`first_generation`: what each id's first lease carries; a daemon that restarts
        against a running switch picks it at random, so stale register state of the previous
        run (same id, same generation) is all but impossible."""
        if capacity < 1:
            raise ValueError(f"capacity {capacity} must be at least 1")
        if not 1 <= first_generation <= MAX_GENERATION:
            raise ValueError(f"first_generation {first_generation} outside 1..{MAX_GENERATION}")
        self._base = first_generation - 1
        self._capacity = capacity
        self._next_fresh = 0
        self._freed: deque[int] = deque()
        self._generations = array("H", bytes(2 * capacity))  # 0 = never allocated
        self._allocated = bytearray(capacity)
        self._in_use = 0

    @property
    def capacity(self) -> int:
        """How many flow ids exist."""
        return self._capacity

    @property
    def in_use(self) -> int:
        """How many flow ids are allocated now."""
        return self._in_use

    @property
    def available(self) -> int:
        """How many flow ids allocate() can still hand out."""
        return self._capacity - self._in_use

    def allocate(self) -> FlowLease:
        """Take a free id and bump its generation; raise `FlowTableFull` when none is left."""
        if self._next_fresh < self._capacity:
            flow_id = self._next_fresh
            self._next_fresh += 1
        elif self._freed:
            flow_id = self._freed.popleft()
        else:
            raise FlowTableFull(self._capacity)
        generation = (self._generations[flow_id] or self._base) % MAX_GENERATION + 1
        self._generations[flow_id] = generation
        self._allocated[flow_id] = 1
        self._in_use += 1
        return FlowLease(flow_id, generation)

    def free(self, flow_id: int) -> None:
        """Return `flow_id` to the pool; raise `FlowIdNotAllocated` if it is not allocated."""
        if not self.is_allocated(flow_id):
            raise FlowIdNotAllocated(
                f"flow id {flow_id} is not allocated (double free, or never allocated)")
        self._allocated[flow_id] = 0
        self._in_use -= 1
        self._freed.append(flow_id)

    def is_allocated(self, flow_id: int) -> bool:
        """Whether `flow_id` is in use now; ids outside 0..capacity-1 are not."""
        return 0 <= flow_id < self._capacity and self._allocated[flow_id] == 1

    def generation(self, flow_id: int) -> int:
        """The generation `flow_id` carries (or carried last); 0 if it was never allocated."""
        if not 0 <= flow_id < self._capacity:
            raise ValueError(f"flow id {flow_id} outside 0..{self._capacity - 1}")
        return self._generations[flow_id]
