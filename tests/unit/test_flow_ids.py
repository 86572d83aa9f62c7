"""Flow-id allocation: order, exhaustion, generations on reuse, double free, O(1) churn."""

from __future__ import annotations

import errno
import time

import pytest

from runtime.flow_ids import FlowIdAllocator, FlowIdNotAllocated, FlowLease, FlowTableFull


def test_fresh_ids_in_order_with_generation_1() -> None:
    ids = FlowIdAllocator(4)
    assert [ids.allocate() for _ in range(4)] == [FlowLease(i, 1) for i in range(4)]
    assert ids.in_use == 4 and ids.available == 0


def test_lease_unpacks_as_a_pair() -> None:
    flow_id, generation = FlowIdAllocator(1).allocate()
    assert (flow_id, generation) == (0, 1)


def test_exhaustion_raises_flow_table_full() -> None:
    ids = FlowIdAllocator(2)
    ids.allocate()
    ids.allocate()
    with pytest.raises(FlowTableFull, match="all 2 flow ids are in use") as info:
        ids.allocate()
    assert info.value.errno == errno.ENOBUFS
    assert ids.in_use == 2


def test_fresh_ids_before_freed_then_freed_in_free_order() -> None:
    ids = FlowIdAllocator(4)
    for _ in range(3):
        ids.allocate()
    ids.free(1)
    ids.free(0)
    assert ids.allocate() == FlowLease(3, 1)  # never-used id first
    assert ids.allocate() == FlowLease(1, 2)  # then the oldest freed, with a new generation
    assert ids.allocate() == FlowLease(0, 2)


def test_generation_bumps_on_every_reuse() -> None:
    ids = FlowIdAllocator(1)
    for expected in range(1, 10):
        lease = ids.allocate()
        assert lease == FlowLease(0, expected)
        assert ids.generation(0) == expected
        ids.free(0)
    assert ids.generation(0) == 9  # the last generation stays readable after free


def test_generation_wraps_from_65535_to_1_never_0() -> None:
    ids = FlowIdAllocator(1)
    seen = set()
    previous = 0
    for _ in range(65535 + 3):
        _, generation = ids.allocate()
        ids.free(0)
        assert generation != previous and generation != 0
        seen.add(generation)
        previous = generation
    assert seen == set(range(1, 65536))
    assert previous == 3  # 65535 -> 1 -> 2 -> 3


def test_double_free_and_unknown_ids_rejected() -> None:
    ids = FlowIdAllocator(3)
    flow_id, _ = ids.allocate()
    ids.free(flow_id)
    with pytest.raises(FlowIdNotAllocated, match="flow id 0 is not allocated"):
        ids.free(flow_id)
    with pytest.raises(FlowIdNotAllocated):
        ids.free(2)  # never allocated
    with pytest.raises(ValueError):
        ids.free(3)  # out of range
    with pytest.raises(ValueError):
        ids.free(-1)
    assert ids.in_use == 0
    assert ids.allocate() == FlowLease(1, 1)  # the double free did not queue 0 twice
    assert ids.allocate() == FlowLease(2, 1)
    assert ids.allocate() == FlowLease(0, 2)
    with pytest.raises(FlowTableFull):
        ids.allocate()


def test_is_allocated_and_generation_bounds() -> None:
    ids = FlowIdAllocator(2)
    assert ids.generation(1) == 0 and not ids.is_allocated(1)
    ids.allocate()
    assert ids.is_allocated(0) and not ids.is_allocated(5)
    with pytest.raises(ValueError, match="outside 0..1"):
        ids.generation(2)
    with pytest.raises(ValueError):
        FlowIdAllocator(0)


def test_default_capacity_is_the_data_plane_table_size() -> None:
    from nic_contract.constants import MAX_FLOWS
    assert FlowIdAllocator().capacity == MAX_FLOWS


def test_100k_cycles_are_constant_time() -> None:
    ids = FlowIdAllocator(1 << 20)  # a million flows: construction must not scan either
    held = [ids.allocate().flow_id for _ in range(1000)]
    start = time.perf_counter()
    for i in range(100_000):
        ids.free(held[i % 1000])
        held[i % 1000] = ids.allocate().flow_id
    assert time.perf_counter() - start < 2.0
    assert ids.in_use == 1000


def test_first_generation_is_configurable_and_still_wraps() -> None:
    alloc = FlowIdAllocator(1, first_generation=65535)
    assert alloc.allocate() == (0, 65535)
    alloc.free(0)
    assert alloc.allocate() == (0, 1)
    with pytest.raises(ValueError, match="first_generation 0"):
        FlowIdAllocator(1, first_generation=0)
