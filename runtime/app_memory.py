"""One application's shared memory as the runtime manages it: the segment it creates for the
application (host_lib.shm_layout), and the ring slots handed to its connections."""

from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass, field

from host_lib.rings import ByteRing, EventQueue, RingSide, connection_ring, context_queue
from host_lib.shm_layout import Direction, Layout, Segment


@dataclass(eq=False)
class AppMemory:
    """The segment and its slot free list; the runtime keeps the Layout it created it with
    (never re-reading the header, which the application could rewrite)."""

    segment: Segment
    layout: Layout
    free_slots: deque = field(default_factory=deque)
    _views: dict = field(default_factory=dict)  # slot -> (rx, tx); ctx -> EventQueue
    retired: bool = False  # the application left; close once no slot is in use
    closed: bool = False

    @classmethod
    def create(cls, app_id: int, layout: Layout) -> tuple["AppMemory", int]:
        """A new application's memory, and the descriptor to pass to it (then close it): an
        anonymous, sealed segment no other process can open (Segment.create_memfd)."""
        segment, fd = Segment.create_memfd(f"p4tas-app{app_id}", layout)
        memory = cls(segment, layout)
        memory.free_slots.extend(range(layout.max_connections))
        return memory, fd

    @property
    def name(self) -> str:
        return self.segment.name

    def allocate_slot(self) -> tuple[int, ByteRing, ByteRing]:
        """A free slot with both rings reset to position 0 (the NIC's offsets start there)."""
        if not self.free_slots:
            raise OSError(errno.ENOBUFS, f"all {self.layout.max_connections} connection slots "
                          "of this application are in use: close connections first")
        slot = self.free_slots.popleft()
        # The runtime produces RX and consumes TX; its positions stay in its own memory.
        rx = connection_ring(self.segment.buf, self.layout, slot, Direction.RX, RingSide.PRODUCER)
        tx = connection_ring(self.segment.buf, self.layout, slot, Direction.TX, RingSide.CONSUMER)
        rx.reset(0)
        tx.reset(0)
        self._views[("slot", slot)] = (rx, tx)
        return slot, rx, tx

    def free_slot(self, slot: int) -> None:
        for ring in self._views.pop(("slot", slot), ()):
            ring.release()
        self.free_slots.append(slot)
        if self.retired and len(self.free_slots) == self.layout.max_connections:
            self.close()

    def retire(self) -> None:
        """The application is gone: close now, or when the last slot in use (an orphan
        connection still sending from its TX ring) is freed."""
        self.retired = True
        if len(self.free_slots) == self.layout.max_connections:
            self.close()

    def events(self, ctx_id: int) -> EventQueue:
        """Context ctx_id's queue of events towards the application."""
        key = ("ctx", ctx_id)
        if key not in self._views:
            if not 0 <= ctx_id < self.layout.max_contexts:
                raise OSError(errno.EMFILE, f"context {ctx_id}: at most "
                              f"{self.layout.max_contexts} contexts per application")
            queue = context_queue(self.segment.buf, self.layout, ctx_id, Direction.RX,
                                  RingSide.PRODUCER)
            queue.reset()
            self._views[key] = queue
        return self._views[key]

    def close(self) -> None:
        """Release every view, unmap and unlink the segment (once)."""
        if self.closed:
            return
        self.closed = True
        for views in self._views.values():
            for view in views if isinstance(views, tuple) else (views,):
                view.release()
        self._views.clear()
        self.segment.close()
