"""Bytes per flow in the runtime and per socket in host_lib stay within what
docs/ARCHITECTURE.md 5 reports (tests/support/footprint.py builds the records as the runtime
and host_lib do): a per-flow record that grows a __dict__, a deque or memoryviews fails here."""

from __future__ import annotations

from host_lib.rings import ByteRing, RingSide
from tests.support.footprint import (host_lib_bytes_per_socket, measure,
                                     runtime_bytes_per_flow)

FLOWS = 5000


def test_runtime_bytes_per_established_flow() -> None:
    assert runtime_bytes_per_flow(FLOWS) < 3400   # 6.5 KB before slots and view-less rings


def test_host_lib_bytes_per_socket() -> None:
    assert host_lib_bytes_per_socket(FLOWS) < 1600   # 1.9 KB before


def test_a_ring_holds_no_view_of_its_bytes() -> None:
    buf = memoryview(bytearray(1 << 16))

    def rings(count: int) -> list[ByteRing]:
        return [ByteRing(buf, 0, 4096, 4096, own=RingSide.PRODUCER) for _ in range(count)]
    assert measure(rings, FLOWS) < 450   # ~380 B: its positions' view only; 544 B before
