"""Single-producer/single-consumer rings over a shared-memory segment (layout: shm_layout).

ByteRing carries payload (a connection's RX or TX bytes), EventQueue fixed-size event records (a
context's RX or TX queue). Both keep two monotonically increasing u64 positions in their control
block: the producer alone writes `head`, the consumer alone writes `tail`; positions never wrap and
the ring offset of a position is `position & (size - 1)`. There are no locks: each side reads the
other's position and writes only its own. Copies are memoryview slice assignments (memcpy), never
per-byte Python loops; a read or write that crosses the end of the ring is two slices.

A ring is used from exactly one producer and one consumer (each may be in another process). Every
position loaded is checked (0 <= head - tail <= size): the other side may be an untrusted
application, and a broken invariant raises RingCorruptedError rather than moving garbage. A side
that does not trust the other (the runtime) opens the ring with `own=` its role: it keeps its own
position in its own memory and only publishes it to the shared word, so whatever the other side
writes there can make that ring fail its checks but never moves the trusted side's position.

Memory ordering. The producer first copies the payload (or packs the record) and only then stores
the new head; the consumer loads the head before it reads the bytes, and stores the new tail only
after it is done with them. CPython performs these as separate C calls, in program order, and each
position is one aligned 8-byte store/load (memoryview format "Q" copies it with a single memcpy of
8 bytes). On x86-64 (TSO) stores to the shared mapping become visible to the other process in
program order and loads are not reordered with other loads, so a consumer that sees a head also
sees the bytes before it, and a producer that sees a tail may reuse the space behind it. Weaker
architectures (arm64) would need a release fence before publishing a position and an acquire
fence after loading one, which pure Python cannot express: p4tas targets x86-64 hosts.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from host_lib.shm_layout import (
    CONTROL_BLOCK_BYTES,
    EVENT_RECORD,
    EVENT_RECORD_BYTES,
    HEAD_OFFSET,
    LIMIT_OFFSET,
    POSITION_BYTES,
    POSITION_FORMAT,
    TAIL_OFFSET,
    Direction,
    Layout,
    is_power_of_two,
)

BytesLike = bytes | bytearray | memoryview  # any bytes buffer works (abc.Buffer is 3.12+)

_HEAD = HEAD_OFFSET // POSITION_BYTES
_TAIL = TAIL_OFFSET // POSITION_BYTES
_LIMIT = LIMIT_OFFSET // POSITION_BYTES
# A ring's bytes are no memoryview of their own (~184 bytes each, two rings per connection, up
# to a million: ARCHITECTURE.md 5): it indexes the segment's view at an offset. Its positions
# keep their cast view: a store through it is one 8-byte store, while struct.pack_into zeroes
# the word before it writes it (a reader in the other process could see 0 in between).
_RELEASED = memoryview(b"")
_RELEASED.release()   # what a released ring holds: every use raises ValueError


class RingSide(enum.Enum):
    """Which position a side owns: the producer writes `head`, the consumer `tail`."""

    PRODUCER = _HEAD
    CONSUMER = _TAIL


class RingCorruptedError(ValueError):
    """The positions in shared memory break the ring's invariant (the other side scribbled)."""


def _byte_view(data: BytesLike) -> memoryview:
    """A flat unsigned-byte view of any bytes-like object (`data` itself if it is one)."""
    if isinstance(data, memoryview) and data.format == "B" and data.ndim == 1:
        return data
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class _Positions:
    """The head/tail words of one control block and the invariant between them."""

    __slots__ = ("_words", "capacity", "what", "_own", "_own_index")

    def __init__(self, buf: memoryview, control_offset: int, capacity: int, what: str,
                 own: RingSide | None = None) -> None:
        if control_offset % POSITION_BYTES or control_offset < 0:
            raise ValueError(f"{what}: control block offset {control_offset} is not 8-byte aligned")
        _check_inside(buf, control_offset, CONTROL_BLOCK_BYTES, f"{what} control block")
        block = buf[control_offset:control_offset + CONTROL_BLOCK_BYTES]
        self._words = block.cast(POSITION_FORMAT)
        self.capacity = capacity
        self.what = what
        self._own_index = None if own is None else own.value
        self._own = 0 if own is None else self._words[own.value]

    def position(self, index: int) -> int:
        """Head (_HEAD) or tail (_TAIL): this side's own from its memory, unchecked (it cannot
        be wrong); the other side's through load() (checked against ours)."""
        if index == self._own_index:
            return self._own
        return self.load()[0 if index == _HEAD else 1]

    def load(self) -> tuple[int, int]:
        """(head, tail), checked: RingCorruptedError unless 0 <= head - tail <= capacity. The
        position this side owns comes from its own memory, the other from the shared word."""
        own = self._own_index
        head = self._own if own == _HEAD else self._words[_HEAD]
        tail = self._own if own == _TAIL else self._words[_TAIL]
        if not 0 <= head - tail <= self.capacity:
            raise RingCorruptedError(f"{self.what}: head {head} and tail {tail} are not within "
                                     f"0..{self.capacity} of each other")
        return head, tail

    def publish_head(self, head: int) -> None:
        """Producer: make everything before `head` visible (store it after the data)."""
        if self._own_index == _HEAD:
            self._own = head
        self._words[_HEAD] = head

    def publish_tail(self, tail: int) -> None:
        """Consumer: hand everything before `tail` back to the producer."""
        if self._own_index == _TAIL:
            self._own = tail
        self._words[_TAIL] = tail

    def limit(self) -> int:
        """The consumer's limit word (0: none)."""
        return self._words[_LIMIT]

    def publish_limit(self, limit: int) -> None:
        """Consumer: ask the producer to keep at most `limit` bytes queued (0: no limit)."""
        self._words[_LIMIT] = limit

    def reset(self, position: int) -> None:
        """Empty the ring at `position`, without a limit; only while neither side uses it."""
        self._own = position
        self._words[_LIMIT] = 0
        self._words[_TAIL] = position
        self._words[_HEAD] = position

    def release(self) -> None:
        self._words.release()


def _check_inside(buf: memoryview, offset: int, length: int, what: str) -> None:
    if offset < 0 or offset + length > len(buf):
        raise ValueError(f"{what} [{offset}, {offset + length}) lies outside the "
                         f"{len(buf)}-byte buffer")


def _check_capacity(capacity: int, what: str) -> None:
    if not isinstance(capacity, int) or not is_power_of_two(capacity):
        raise ValueError(f"{what}: size {capacity!r} is not a power of two")


class ByteRing:
    """SPSC byte ring: the producer writes/write_at+publish, the consumer peeks/consumes/reads."""

    __slots__ = ("size", "_mask", "_buf", "_base", "_pos", "_made_view")

    def __init__(self, buf: memoryview, control_offset: int, data_offset: int, size: int,
                 name: str = "ring", own: RingSide | None = None) -> None:
        _check_capacity(size, name)
        view = _byte_view(buf)
        self._made_view = view is not buf   # released with the ring; else the caller's
        buf = view
        _check_inside(buf, data_offset, size, f"{name} bytes")
        self.size = size
        self._mask = size - 1
        self._buf, self._base = buf, data_offset   # the ring's bytes: buf[base:base + size]
        self._pos = _Positions(buf, control_offset, size, name, own)

    # -- both sides ------------------------------------------------------------------------------

    @property
    def head(self) -> int:
        """The producer's position: bytes ever written."""
        return self._pos.position(_HEAD)

    @property
    def tail(self) -> int:
        """The consumer's position: bytes ever consumed."""
        return self._pos.position(_TAIL)

    def readable(self) -> int:
        """Bytes written and not yet consumed."""
        head, tail = self._pos.load()
        return head - tail

    def free_space(self) -> int:
        """Bytes the producer may write now."""
        head, tail = self._pos.load()
        return self.size - (head - tail)

    def capacity(self) -> int:
        """Producer: what it should keep queued at most, the consumer's limit or the size."""
        limit = self._pos.limit()
        return limit if 0 < limit < self.size else self.size

    def room(self) -> int:
        """Producer: bytes it may write now within the consumer's limit."""
        head, tail = self._pos.load()
        return max(self.capacity() - (head - tail), 0)

    def set_limit(self, limit: int) -> None:
        """Consumer: the most bytes the producer should keep queued (0: the whole ring)."""
        self._pos.publish_limit(limit)

    def reset(self, position: int = 0) -> None:
        """Empty the ring, both positions at `position`; only while no side uses it (slot reuse)."""
        self._pos.reset(position)

    def release(self) -> None:
        """Drop this ring's hold on the segment's view (the segment's close unmaps it)."""
        _drop(self._buf, self._made_view)
        self._buf = _RELEASED
        self._pos.release()

    # -- producer --------------------------------------------------------------------------------

    def write(self, data: BytesLike, most: int | None = None) -> int:
        """Append as much of `data` as fits (and at most `most` bytes) and publish it; returns
        bytes written (0: full)."""
        src = _byte_view(data)
        head, tail = self._pos.load()
        count = min(len(src), self.size - (head - tail))
        if most is not None:
            count = max(min(count, most), 0)
        if count:
            self._copy_in(head & self._mask, src[:count])
            self._pos.publish_head(head + count)
        return count

    def write_at(self, offset: int, data: BytesLike) -> None:
        """Place `data` at ring offset `offset` (0..size-1) inside the free window, unpublished.

        The NIC side uses it for payload whose ring offset it was told; publish() makes it readable.
        """
        src = _byte_view(data)
        head, tail = self._pos.load()
        free = self.size - (head - tail)
        if not 0 <= offset < self.size:
            raise ValueError(f"write_at offset {offset} is outside the ring (0..{self.size - 1})")
        ahead = (offset - head) & self._mask
        if ahead + len(src) > free:
            raise ValueError(f"write_at({offset}, {len(src)} bytes) leaves the free window: it "
                             f"starts {ahead} bytes after the write offset {head & self._mask} "
                             f"and only {free} bytes are free")
        self._copy_in(offset, src)

    def publish(self, count: int) -> None:
        """Make the next `count` bytes (placed with write_at) readable."""
        head, tail = self._pos.load()
        free = self.size - (head - tail)
        if not 0 <= count <= free:
            raise ValueError(f"publish({count}) but only {free} bytes are free")
        self._pos.publish_head(head + count)

    def _copy_in(self, offset: int, src: memoryview) -> None:
        first, base = min(len(src), self.size - offset), self._base
        self._buf[base + offset:base + offset + first] = src[:first]
        if first < len(src):
            self._buf[base:base + len(src) - first] = src[first:]

    # -- consumer --------------------------------------------------------------------------------

    def peek(self, count: int, skip: int = 0) -> list[memoryview]:
        """Zero-copy views of up to `count` readable bytes starting `skip` bytes after the tail.

        One piece, or two when they wrap; [] when there is nothing. The views alias the ring:
        use them before consume() lets the producer overwrite them.
        """
        head, tail = self._pos.load()
        available = head - tail
        if count < 0 or not 0 <= skip <= available:
            raise ValueError(f"peek({count}, skip={skip}) with {available} bytes readable")
        count = min(count, available - skip)
        if count == 0:
            return []
        start = (tail + skip) & self._mask
        first, buf, base = min(count, self.size - start), self._buf, self._base
        pieces = [buf[base + start:base + start + first]]
        if first < count:
            pieces.append(buf[base:base + count - first])
        return pieces

    def consume(self, count: int) -> None:
        """Free the oldest `count` readable bytes for the producer."""
        head, tail = self._pos.load()
        if not 0 <= count <= head - tail:
            raise ValueError(f"consume({count}) but only {head - tail} bytes are readable")
        self._pos.publish_tail(tail + count)

    def read(self, count: int) -> bytes:
        """Copy out and consume up to `count` bytes (b"" when empty)."""
        pieces = self.peek(count)
        data = b"".join(pieces)
        _release(pieces)
        self.consume(len(data))
        return data

    def read_into(self, buffer: BytesLike) -> int:
        """Copy up to len(buffer) bytes into a writable buffer and consume them; returns count."""
        dst = _byte_view(buffer)
        pieces = self.peek(len(dst))
        done = 0
        for piece in pieces:
            dst[done:done + len(piece)] = piece
            done += len(piece)
        _release(pieces)
        self.consume(done)
        return done


def _drop(view: memoryview, made: bool) -> None:
    """Release a view a ring made itself (of a buffer it was given that was not a view)."""
    if made:
        view.release()


def _release(views: list[memoryview]) -> None:
    for view in views:
        view.release()


@dataclass(frozen=True, slots=True)
class Event:
    """One event record (fields as in shm_layout's docstring)."""

    kind: int
    slot: int
    offset: int = 0
    length: int = 0
    flags: int = 0
    aux: int = 0
    opaque: int = 0


class EventQueue:
    """SPSC queue of fixed-size event records; push never overwrites (False when full)."""

    __slots__ = ("depth", "_mask", "_buf", "_base", "_pos", "_made_view")

    def __init__(self, buf: memoryview, control_offset: int, records_offset: int, depth: int,
                 name: str = "event queue", own: RingSide | None = None) -> None:
        _check_capacity(depth, name)
        view = _byte_view(buf)
        self._made_view = view is not buf
        buf = view
        length = depth * EVENT_RECORD_BYTES
        _check_inside(buf, records_offset, length, f"{name} records")
        self.depth = depth
        self._mask = depth - 1
        self._buf, self._base = buf, records_offset
        self._pos = _Positions(buf, control_offset, depth, name, own)

    def push(self, event: Event) -> bool:
        """Append one event; False when the queue is full (backpressure: retry later)."""
        head, tail = self._pos.load()
        if head - tail == self.depth:
            return False
        try:
            EVENT_RECORD.pack_into(
                self._buf, self._base + (head & self._mask) * EVENT_RECORD_BYTES, event.kind,
                event.flags,
                event.slot, event.offset, event.length, event.aux, event.opaque,
            )
        except struct.error as exc:
            raise ValueError(f"{event} does not fit an event record: {exc}") from None
        self._pos.publish_head(head + 1)
        return True

    def pop(self) -> Event | None:
        """Take the oldest event, or None when the queue is empty."""
        head, tail = self._pos.load()
        if head == tail:
            return None
        kind, flags, slot, offset, length, aux, opaque = EVENT_RECORD.unpack_from(
            self._buf, self._base + (tail & self._mask) * EVENT_RECORD_BYTES)
        self._pos.publish_tail(tail + 1)
        return Event(kind, slot, offset, length, flags, aux, opaque)

    def pending(self) -> int:
        """Events pushed and not yet popped."""
        head, tail = self._pos.load()
        return head - tail

    def reset(self, position: int = 0) -> None:
        """Empty the queue; only while no side uses it."""
        self._pos.reset(position)

    def release(self) -> None:
        """Drop this queue's hold on the segment's view."""
        _drop(self._buf, self._made_view)
        self._buf = _RELEASED
        self._pos.release()


def connection_ring(buf: memoryview, layout: Layout, slot: int, direction: Direction,
                    own: RingSide | None = None) -> ByteRing:
    """A connection slot's RX ring (NIC -> application) or TX ring (application -> NIC);
    `own`: the position this side keeps in its own memory (see the module docstring)."""
    return ByteRing(buf, layout.ring_control_offset(slot, direction),
                    layout.ring_bytes_offset(slot, direction), layout.ring_size(direction),
                    name=f"slot {slot} {direction.name} ring", own=own)


def context_queue(buf: memoryview, layout: Layout, context: int,
                  direction: Direction, own: RingSide | None = None) -> EventQueue:
    """A context's RX queue (to the application) or TX queue (from it)."""
    return EventQueue(buf, layout.queue_control_offset(context, direction),
                      layout.queue_records_offset(context, direction), layout.queue_depth,
                      name=f"context {context} {direction.name} queue", own=own)
