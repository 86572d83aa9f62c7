"""The runtime's per-application shared memory: slots, contexts, and a segment that only the
process it is passed to can map (a sealed memfd)."""

import errno
import mmap
import os
from pathlib import Path

import pytest

from host_lib.shm_layout import SHM_DIR, Layout, Segment
from runtime.app_memory import AppMemory

LAYOUT = Layout(rx_ring_size=1 << 12, tx_ring_size=1 << 12, max_connections=2,
                max_contexts=2, queue_depth=16)


def test_slots_reset_rings_and_run_out() -> None:
    memory, fd = AppMemory.create(7, LAYOUT)
    os.close(fd)
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


def test_the_segment_has_no_name_and_cannot_be_resized() -> None:
    """Nothing in /dev/shm another user could open; the passed descriptor maps the same memory,
    and the application cannot truncate it under the runtime's mapping (SIGBUS)."""
    before = set(os.listdir(SHM_DIR))
    memory, fd = AppMemory.create(8, LAYOUT)
    try:
        assert set(os.listdir(SHM_DIR)) == before
        assert str(Path(f"/proc/self/fd/{fd}").readlink()).startswith("/memfd:p4tas-app8")
        app_side = Segment.attach_fd(fd)
        slot, rx, _ = memory.allocate_slot()
        rx.write(b"hello")
        assert app_side.layout == LAYOUT
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)
        with pytest.raises(PermissionError):
            os.ftruncate(fd, LAYOUT.size_bytes() * 2)
        assert isinstance(app_side.buf, memoryview) and len(app_side.buf) >= mmap.PAGESIZE
        app_side.close()
        memory.free_slot(slot)
    finally:
        os.close(fd)
        memory.close()
