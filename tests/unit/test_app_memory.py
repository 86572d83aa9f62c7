"""The runtime's per-application shared memory: slots, contexts, cleanup of dead runtimes'."""

import errno
import os
from pathlib import Path

import pytest

from host_lib.shm_layout import SHM_DIR, Layout
from runtime.app_memory import AppMemory, remove_stale_segments

LAYOUT = Layout(rx_ring_size=1 << 12, tx_ring_size=1 << 12, max_connections=2,
                max_contexts=2, queue_depth=16)


def test_slots_reset_rings_and_run_out() -> None:
    memory = AppMemory.create(99000 + os.getpid() % 1000, LAYOUT)
    try:
        slot, rx, tx = memory.allocate_slot()
        tx.write(b"left over")
        memory.free_slot(slot)
        memory.allocate_slot()
        again, rx2, tx2 = memory.allocate_slot()
        assert again == slot and tx2.readable() == 0 and rx2.head == 0
        with pytest.raises(OSError) as full:
            memory.allocate_slot()
        assert full.value.errno == errno.ENOBUFS
        assert memory.events(1).pending() == 0
        with pytest.raises(OSError) as too_many:
            memory.events(2)
        assert too_many.value.errno == errno.EMFILE
    finally:
        memory.close()
    assert not (Path(SHM_DIR) / memory.name).exists()


def test_segments_of_dead_runtimes_are_removed() -> None:
    dead = Path(SHM_DIR) / "p4tas-999999999-app1"
    ours = Path(SHM_DIR) / f"p4tas-{os.getpid()}-app1"
    dead.write_bytes(b"x")
    ours.write_bytes(b"x")
    try:
        assert dead.name in remove_stale_segments()
        assert not dead.exists() and ours.exists()
    finally:
        dead.unlink(missing_ok=True)
        ours.unlink(missing_ok=True)
