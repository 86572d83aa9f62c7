"""Shared-memory layout and SPSC rings: host_lib.shm_layout and host_lib.rings.

Single-process tests run over a bytearray; the two-process tests map a real /dev/shm segment from
a child started with the 'spawn' method (a fresh interpreter, as an application would be).
"""

from __future__ import annotations

import hashlib
import mmap
import multiprocessing
import os
import random
import struct
import time
import uuid
from collections.abc import Iterator

import pytest

from host_lib.rings import (
    ByteRing,
    Event,
    EventQueue,
    RingCorruptedError,
    RingSide,
    connection_ring,
    context_queue,
)
from host_lib.shm_layout import (
    CACHE_LINE_BYTES,
    CONTROL_BLOCK_BYTES,
    EVENT_RECORD_BYTES,
    HEAD_OFFSET,
    HEADER_BYTES,
    LIMIT_OFFSET,
    LAYOUT_VERSION,
    MIN_RING_SIZE,
    PAGE_BYTES,
    SEGMENT_MAGIC,
    TAIL_OFFSET,
    Direction,
    EventType,
    Layout,
    LayoutError,
    Segment,
)

SMALL_RING = 16
STREAM_BYTES = 10 * 1024 * 1024
STREAM_RING = 64 * 1024
STREAM_MAX_CHUNK = 24 * 1024
STREAM_SEED = 4
PING_PONG_ROUNDS = 2000
STOP = 0xFFFF
CHILD_TIMEOUT_S = 20.0
RANDOM_LAYOUTS = 300


def make_ring(size: int = SMALL_RING) -> tuple[ByteRing, bytearray]:
    """A ring over a private bytearray: control block, then the ring bytes."""
    backing = bytearray(CONTROL_BLOCK_BYTES + size)
    return ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, size), backing


def make_queue(depth: int) -> EventQueue:
    """An event queue over a private bytearray."""
    backing = bytearray(CONTROL_BLOCK_BYTES + depth * EVENT_RECORD_BYTES)
    return EventQueue(memoryview(backing), 0, CONTROL_BLOCK_BYTES, depth)


def advance(ring: ByteRing, count: int) -> None:
    """Move both positions forward by `count` through real writes and reads."""
    while count:
        step = min(count, ring.size)
        assert ring.write(bytes(step)) == step
        assert ring.read(step) == bytes(step)
        count -= step


def pattern(length: int, salt: int = 0) -> bytes:
    """Distinct bytes, so that misplaced ones show."""
    return bytes((salt + 7 * i + 1) & 0xFF for i in range(length))


@pytest.fixture
def segment_name() -> Iterator[str]:
    name = f"p4tas-test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    yield name
    try:
        os.unlink(f"/dev/shm/{name}")
    except FileNotFoundError:
        pass


# -- byte ring ------------------------------------------------------------------------------------


@pytest.mark.parametrize("start", range(3 * SMALL_RING + 1))
def test_write_peek_read_wraps_at_every_offset(start: int) -> None:
    for length in range(1, SMALL_RING + 1):
        ring, backing = make_ring()
        advance(ring, start)
        data = pattern(length, start)
        assert ring.write(data) == length
        assert (ring.readable(), ring.free_space()) == (length, SMALL_RING - length)
        pieces = ring.peek(length)
        wraps = start % SMALL_RING + length > SMALL_RING
        assert len(pieces) == (2 if wraps else 1)
        assert all(piece.obj is backing for piece in pieces)  # views of the ring, not copies
        assert b"".join(pieces) == data
        assert ring.read(length) == data
        assert (ring.head, ring.tail, ring.readable()) == (start + length, start + length, 0)


def test_positions_are_monotonic_past_2_to_the_63() -> None:
    ring, _ = make_ring()
    base = (1 << 63) - 5
    ring.reset(base)
    assert ring.write(pattern(12)) == 12
    assert ring.read(12) == pattern(12)
    assert ring.head == ring.tail == base + 12


def test_write_is_partial_when_full_and_never_overwrites() -> None:
    ring, _ = make_ring()
    assert ring.write(b"a" * 10) == 10
    assert ring.write(b"b" * 10) == 6
    assert ring.write(b"c") == 0
    assert ring.free_space() == 0
    assert ring.read(4) == b"aaaa"
    assert ring.write(b"xyz123") == 4
    assert ring.read(100) == b"a" * 6 + b"b" * 6 + b"xyz1"
    assert ring.read(1) == b""
    assert ring.peek(5) == []


def test_the_consumers_limit_bounds_what_the_producer_queues() -> None:
    """A TX ring's limit word (the runtime's send budget for a slow flow): room and capacity
    follow it, write(most=room) stays within it, free_space and the ring's size do not; 0 or
    a limit at or above the size means the whole ring, and a reset clears it."""
    ring, backing = make_ring()
    consumer = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, SMALL_RING,
                        own=RingSide.CONSUMER)
    assert ring.capacity() == SMALL_RING and ring.room() == SMALL_RING
    consumer.set_limit(6)
    assert struct.unpack_from("<Q", backing, LIMIT_OFFSET)[0] == 6
    assert ring.capacity() == 6 and ring.room() == 6
    assert ring.write(b"x" * 10, ring.room()) == 6
    assert ring.room() == 0 and ring.free_space() == SMALL_RING - 6
    consumer.set_limit(4)                        # lowered below what is queued: no room
    assert ring.room() == 0
    assert consumer.read(3) == b"xxx" and ring.room() == 1
    consumer.set_limit(SMALL_RING * 4)
    assert ring.capacity() == SMALL_RING
    consumer.set_limit(5)
    consumer.reset(100)
    assert ring.capacity() == SMALL_RING and ring.room() == SMALL_RING


def test_peek_pieces_clip_and_skip() -> None:
    ring, _ = make_ring()
    advance(ring, 12)
    ring.write(pattern(10))
    assert [bytes(p) for p in ring.peek(3)] == [pattern(10)[:3]]
    assert [bytes(p) for p in ring.peek(100)] == [pattern(10)[:4], pattern(10)[4:]]
    assert b"".join(ring.peek(4, skip=3)) == pattern(10)[3:7]
    assert ring.peek(4, skip=10) == []
    assert ring.readable() == 10  # peeking consumes nothing


def test_read_into_and_memoryview_sources() -> None:
    ring, _ = make_ring()
    advance(ring, 14)
    source = memoryview(bytearray(pattern(8))).cast("B", (2, 4))  # 2-D: flattened on write
    assert ring.write(source) == 8
    out = bytearray(5)
    assert ring.read_into(out) == 5
    assert bytes(out) == pattern(8)[:5]
    assert ring.read_into(memoryview(out)) == 3
    assert bytes(out[:3]) == pattern(8)[5:]


@pytest.mark.parametrize("start", [0, 5, 13, 16, 29])
def test_write_at_the_write_offset_then_publish(start: int) -> None:
    ring, _ = make_ring()
    advance(ring, start)
    offset = ring.head & (ring.size - 1)
    ring.write_at(offset, pattern(9))
    assert ring.readable() == 0  # placed, not yet published
    ring.publish(9)
    assert ring.read(9) == pattern(9)


def test_write_at_ahead_of_the_write_offset_fills_a_gap() -> None:
    ring, _ = make_ring()
    advance(ring, 11)
    ring.write_at((11 + 4) % SMALL_RING, b"EFGH")  # out of order, wraps
    ring.write_at(11 % SMALL_RING, b"ABCD")
    ring.publish(8)
    assert ring.read(8) == b"ABCDEFGH"


@pytest.mark.parametrize("offset, length", [(16, 1), (-1, 1), (3, 1), (4, 1), (2, 2), (5, 15)])
def test_write_at_outside_the_free_window_is_refused(offset: int, length: int) -> None:
    ring, _ = make_ring()
    advance(ring, 3)
    ring.write(b"xy")  # readable [3, 5); free: [5, 16) then [0, 3)
    with pytest.raises(ValueError, match="write_at"):
        ring.write_at(offset, bytes(length))
    ring.write_at(5, bytes(14))  # the whole free window is fine
    ring.write_at(2, b"z")
    assert ring.read(5) == b"xy"


def test_misuse_raises_clear_value_errors() -> None:
    ring, _ = make_ring()
    ring.write(b"abc")
    with pytest.raises(ValueError, match=r"consume\(4\) but only 3 bytes are readable"):
        ring.consume(4)
    with pytest.raises(ValueError, match=r"publish\(14\) but only 13 bytes are free"):
        ring.publish(14)
    with pytest.raises(ValueError, match="peek"):
        ring.peek(-1)
    with pytest.raises(ValueError, match="peek"):
        ring.peek(1, skip=4)
    with pytest.raises(ValueError, match="power of two"):
        ByteRing(memoryview(bytearray(256)), 0, CONTROL_BLOCK_BYTES, 24)
    with pytest.raises(ValueError, match="outside"):
        ByteRing(memoryview(bytearray(256)), 0, CONTROL_BLOCK_BYTES, 256)


def test_corrupted_positions_are_detected() -> None:
    ring, backing = make_ring()
    words = memoryview(backing)[:CONTROL_BLOCK_BYTES].cast("Q")
    words[TAIL_OFFSET // 8] = 5  # tail ahead of head (0)
    with pytest.raises(RingCorruptedError, match="head 0 and tail 5"):
        ring.readable()
    words[TAIL_OFFSET // 8] = 0
    words[HEAD_OFFSET // 8] = SMALL_RING + 1  # more readable than the ring holds
    with pytest.raises(RingCorruptedError):
        ring.write(b"x")


# -- event queue ----------------------------------------------------------------------------------


def test_event_queue_full_and_empty() -> None:
    queue = make_queue(4)
    assert queue.pop() is None
    events = [Event(EventType.RX_DATA, slot=i, offset=1 << 40, length=i + 1, flags=3, aux=9,
                    opaque=(1 << 64) - 1 - i) for i in range(4)]
    assert all(queue.push(event) for event in events)
    assert queue.push(Event(EventType.TX_ACKED, slot=99)) is False  # backpressure
    assert queue.pending() == 4
    assert [queue.pop() for _ in range(4)] == events  # the refused push overwrote nothing
    assert queue.pop() is None


def test_event_queue_wraps_for_many_laps() -> None:
    queue = make_queue(2)
    for lap in range(20):
        assert queue.push(Event(EventType.TX_QUEUED, slot=lap, length=2 * lap))
        assert queue.push(Event(EventType.RX_CONSUMED, slot=lap, length=2 * lap + 1))
        assert queue.pop() == Event(EventType.TX_QUEUED, slot=lap, length=2 * lap)
        assert queue.pop() == Event(EventType.RX_CONSUMED, slot=lap, length=2 * lap + 1)
    assert queue.pending() == 0


def test_event_that_does_not_fit_a_record_is_refused() -> None:
    queue = make_queue(2)
    with pytest.raises(ValueError, match="does not fit"):
        queue.push(Event(kind=1 << 16, slot=0))
    with pytest.raises(ValueError, match="does not fit"):
        queue.push(Event(kind=1, slot=-1))
    assert queue.pending() == 0


# -- layout ---------------------------------------------------------------------------------------


def random_layout(rng: random.Random) -> Layout:
    """A small random valid layout."""
    return Layout(rx_ring_size=1 << rng.randint(4, 16), tx_ring_size=1 << rng.randint(4, 16),
                  max_connections=rng.randint(1, 24), max_contexts=rng.randint(1, 6),
                  queue_depth=1 << rng.randint(1, 9))


def layout_regions(layout: Layout) -> list[tuple[int, int, str]]:
    """Every region of a segment as (start, length, name), from the layout's offset functions."""
    regions = [(0, HEADER_BYTES, "header")]
    for ctx in range(layout.max_contexts):
        for direction in Direction:
            regions.append((layout.queue_control_offset(ctx, direction), CONTROL_BLOCK_BYTES,
                            f"ctx {ctx} {direction.name} control"))
            regions.append((layout.queue_records_offset(ctx, direction),
                            layout.queue_depth * EVENT_RECORD_BYTES, f"ctx {ctx} {direction.name}"))
    for slot in range(layout.max_connections):
        for direction in Direction:
            regions.append((layout.ring_control_offset(slot, direction), CONTROL_BLOCK_BYTES,
                            f"slot {slot} {direction.name} control"))
            regions.append((layout.ring_bytes_offset(slot, direction), layout.ring_size(direction),
                            f"slot {slot} {direction.name} bytes"))
    return regions


def test_layout_regions_are_inside_the_segment_and_disjoint() -> None:
    rng = random.Random(1)
    for _ in range(RANDOM_LAYOUTS):
        layout = random_layout(rng)
        size = layout.size_bytes()
        assert size % PAGE_BYTES == 0
        regions = sorted(layout_regions(layout))
        for (start, length, name), (next_start, _, next_name) in zip(regions, regions[1:]):
            assert start + length <= next_start, f"{layout}: {name} overlaps {next_name}"
        for start, length, name in regions:
            assert 0 <= start and start + length <= size, f"{layout}: {name} outside"
            if "control" in name:
                assert start % CACHE_LINE_BYTES == 0, f"{layout}: {name} not cache-line aligned"
        assert layout.ring_data_offset % PAGE_BYTES == 0


def test_layout_offsets_fit_rings_and_queues_over_the_segment() -> None:
    layout = Layout(rx_ring_size=64, tx_ring_size=32, max_connections=3, max_contexts=2,
                    queue_depth=4)
    buf = memoryview(bytearray(layout.size_bytes()))
    rings = {(s, d): connection_ring(buf, layout, s, d) for s in range(3) for d in Direction}
    queues = {(c, d): context_queue(buf, layout, c, d) for c in range(2) for d in Direction}
    for (slot, direction), ring in rings.items():
        assert ring.write(bytes([slot * 2 + direction]) * 1000) == ring.size
    for (ctx, direction), queue in queues.items():
        assert queue.push(Event(EventType.RX_DATA, slot=ctx * 2 + direction))
    for (slot, direction), ring in rings.items():  # nobody overwrote anybody
        assert ring.read(1000) == bytes([slot * 2 + direction]) * ring.size
    for (ctx, direction), queue in queues.items():
        assert queue.pop() == Event(EventType.RX_DATA, slot=ctx * 2 + direction)
    with pytest.raises(LayoutError, match="slot 3 out of range"):
        layout.ring_bytes_offset(3, Direction.RX)
    with pytest.raises(LayoutError, match="context 2 out of range"):
        layout.queue_control_offset(2, Direction.TX)


@pytest.mark.parametrize("fields, message", [
    ({"rx_ring_size": 1000}, "rx_ring_size=1000 must be a power of two"),
    ({"tx_ring_size": 8}, "tx_ring_size=8 must be a power of two between 16"),
    ({"rx_ring_size": 1 << 32}, "between 16 and 2147483648"),
    ({"max_connections": 0}, "max_connections=0 must be an integer between 1"),
    ({"max_contexts": 5000}, "max_contexts=5000"),
    ({"queue_depth": 1}, "queue_depth=1 must be a power of two between 2"),
    ({"rx_ring_size": 1 << 31, "tx_ring_size": 1 << 31, "max_connections": 1 << 20},
     "more than the"),
])
def test_invalid_layouts_are_refused(fields: dict[str, int], message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        Layout(**fields)


def test_header_round_trip_and_checks() -> None:
    layout = Layout(rx_ring_size=4096, tx_ring_size=1 << 16, max_connections=7, max_contexts=3,
                    queue_depth=64)
    header = layout.pack_header()
    assert len(header) == HEADER_BYTES and header[:8] == SEGMENT_MAGIC
    assert Layout.from_header(header) == layout
    with pytest.raises(LayoutError, match="magic"):
        Layout.from_header(b"X" + header[1:])
    with pytest.raises(LayoutError, match=f"version {LAYOUT_VERSION + 1}"):
        Layout.from_header(header[:8] + (LAYOUT_VERSION + 1).to_bytes(4, "little") + header[12:])
    with pytest.raises(LayoutError, match="do not match"):
        Layout.from_header(header[:56] + (1 << 20).to_bytes(8, "little"))
    with pytest.raises(LayoutError, match="shorter"):
        Layout.from_header(header[:10])


def test_segment_create_attach_share_and_close(segment_name: str) -> None:
    layout = Layout(rx_ring_size=1024, tx_ring_size=1024, max_connections=2, max_contexts=1,
                    queue_depth=8)
    with Segment.create(segment_name, layout) as runtime_side:
        assert os.stat(f"/dev/shm/{segment_name}").st_mode & 0o777 == 0o600
        with pytest.raises(FileExistsError):
            Segment.create(segment_name, layout)
        app_side = Segment.attach(segment_name)
        assert app_side.layout == layout
        producer = connection_ring(runtime_side.buf, layout, 1, Direction.RX)
        consumer = connection_ring(app_side.buf, app_side.layout, 1, Direction.RX)
        assert producer.write(b"hello") == 5
        piece = consumer.peek(5)[0]
        assert bytes(piece) == b"hello" and isinstance(piece.obj, mmap.mmap)
        with pytest.raises(BufferError, match="still in use"):
            app_side.close()
        piece.release()
        consumer.release()
        app_side.close()
        producer.release()
        runtime_side.unlink()
    with pytest.raises(FileNotFoundError):
        Segment.attach(segment_name)
    with pytest.raises(LayoutError, match="bad segment name"):
        Segment.attach("../etc/passwd")


# -- two processes --------------------------------------------------------------------------------


def _stream_producer(name: str, total: int, seed: int) -> None:
    """Child: write `total` seeded random bytes into slot 0's RX ring in random-sized chunks."""
    segment = Segment.attach(name)
    ring = connection_ring(segment.buf, segment.layout, 0, Direction.RX)
    rng = random.Random(seed)
    data = memoryview(rng.randbytes(total))
    sent = 0
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while sent < total:
        written = ring.write(data[sent:sent + rng.randint(1, STREAM_MAX_CHUNK)])
        sent += written
        if not written:
            if time.monotonic() > deadline:
                raise TimeoutError(f"producer stuck after {sent} bytes")
            os.sched_yield()


def _consume_stream(ring: ByteRing, total: int, rng: random.Random,
                    child: multiprocessing.process.BaseProcess) -> str:
    """Read `total` bytes in random-sized zero-copy pieces; their SHA-256."""
    digest = hashlib.sha256()
    received = 0
    while received < total:
        pieces = ring.peek(rng.randint(1, STREAM_MAX_CHUNK))
        if not pieces:
            assert child.is_alive() or ring.readable(), f"producer died after {received} bytes"
            os.sched_yield()
            continue
        count = 0
        for piece in pieces:
            digest.update(piece)
            count += len(piece)
            piece.release()
        ring.consume(count)
        received += count
    return digest.hexdigest()


def test_two_processes_stream_10_mb_through_a_64_kib_ring(segment_name: str) -> None:
    layout = Layout(rx_ring_size=STREAM_RING, tx_ring_size=MIN_RING_SIZE, max_connections=1,
                    max_contexts=1, queue_depth=2)
    expected = hashlib.sha256(random.Random(STREAM_SEED).randbytes(STREAM_BYTES)).hexdigest()
    segment = Segment.create(segment_name, layout)
    ring = connection_ring(segment.buf, layout, 0, Direction.RX)
    child = multiprocessing.get_context("spawn").Process(
        target=_stream_producer, args=(segment_name, STREAM_BYTES, STREAM_SEED))
    child.start()
    try:
        got = _consume_stream(ring, STREAM_BYTES, random.Random(STREAM_SEED + 1), child)
    finally:
        child.join(CHILD_TIMEOUT_S)
    assert child.exitcode == 0
    assert got == expected
    assert ring.head == ring.tail == STREAM_BYTES
    ring.release()
    segment.close()


def _ping_pong_child(name: str) -> None:
    """Child: answer every event on context 0's RX queue with offset + 1 on its TX queue."""
    segment = Segment.attach(name)
    inbox = context_queue(segment.buf, segment.layout, 0, Direction.RX)
    outbox = context_queue(segment.buf, segment.layout, 0, Direction.TX)
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    while time.monotonic() < deadline:
        event = inbox.pop()
        if event is None:
            os.sched_yield()
            continue
        if event.kind == STOP:
            return
        while not outbox.push(Event(EventType.TX_QUEUED, event.slot, event.offset + 1)):
            os.sched_yield()
    raise TimeoutError("ping-pong parent went quiet")


def test_two_processes_ping_pong_events(segment_name: str) -> None:
    layout = Layout(rx_ring_size=MIN_RING_SIZE, tx_ring_size=MIN_RING_SIZE, max_connections=1, max_contexts=1,
                    queue_depth=4)
    segment = Segment.create(segment_name, layout)
    outbox = context_queue(segment.buf, layout, 0, Direction.RX)
    inbox = context_queue(segment.buf, layout, 0, Direction.TX)
    child = multiprocessing.get_context("spawn").Process(target=_ping_pong_child,
                                                         args=(segment_name,))
    child.start()
    try:
        for round_no in range(PING_PONG_ROUNDS):
            assert outbox.push(Event(EventType.RX_DATA, slot=0, offset=2 * round_no))
            reply = inbox.pop()
            while reply is None:
                assert child.is_alive(), f"child died in round {round_no}"
                os.sched_yield()
                reply = inbox.pop()
            assert reply == Event(EventType.TX_QUEUED, slot=0, offset=2 * round_no + 1)
        assert outbox.push(Event(STOP, slot=0))
    finally:
        child.join(CHILD_TIMEOUT_S)
    assert child.exitcode == 0
    outbox.release()
    inbox.release()
    segment.close()



def test_a_side_that_owns_its_position_ignores_scribbles_on_it() -> None:
    """The runtime opens its rings with `own=`: an application that scribbles over the shared
    position words can make the ring fail its checks, never move the runtime's own position."""
    backing = bytearray(CONTROL_BLOCK_BYTES + 64)
    producer = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, 64, own=RingSide.PRODUCER)
    application = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, 64)
    producer.write(b"abc")
    struct.pack_into("=Q", backing, HEAD_OFFSET, 10**12)     # the application moves the head
    assert producer.head == 3 and producer.readable() == 3
    producer.write(b"de")                                    # publishing rewrites the shared word
    assert application.read(5) == b"abcde"
    struct.pack_into("=Q", backing, TAIL_OFFSET, 10**6)      # a tail beyond the head
    with pytest.raises(RingCorruptedError):
        producer.free_space()
    struct.pack_into("=Q", backing, TAIL_OFFSET, 5)
    assert producer.head == 5 and producer.free_space() == 64


def test_a_consumer_that_owns_its_tail_ignores_scribbles_on_it() -> None:
    backing = bytearray(CONTROL_BLOCK_BYTES + 64)
    consumer = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, 64, own=RingSide.CONSUMER)
    application = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, 64)
    application.write(b"hello")
    struct.pack_into("=Q", backing, TAIL_OFFSET, 4)          # the application "consumes" for us
    assert consumer.read(5) == b"hello" and consumer.tail == 5


def test_an_owned_position_is_readable_whatever_the_other_side_wrote() -> None:
    backing = bytearray(CONTROL_BLOCK_BYTES + 64)
    producer = ByteRing(memoryview(backing), 0, CONTROL_BLOCK_BYTES, 64, own=RingSide.PRODUCER)
    producer.write(b"abc")
    struct.pack_into("=Q", backing, TAIL_OFFSET, 2**63)      # garbage from the application
    assert producer.head == 3                                # ours: no check needed
    with pytest.raises(RingCorruptedError):
        producer.tail                                        # theirs: checked against ours
