"""The shared-memory layout between the runtime (fast path side) and one application.

This module is the layout's one definition: the runtime creates a segment with it, host_lib maps it,
and neither side computes an offset any other way. It imports nothing from `runtime`.

One POSIX shared-memory segment (a file in /dev/shm, named by the runtime) per registered
application holds everything the data path shares with it (TAS 3.1/3.3): per-connection RX and TX
payload rings of fixed, configurable sizes, and per-context queues of fixed-size event records.
Sizes are powers of two so a ring offset is `position & (size - 1)`, as the P4 fast path
computes it.

Segment, byte by byte (every region starts on a 64-byte cache line; no two regions overlap):

    offset                     length                         what
    0                          HEADER_BYTES (64)              header
    CONTEXTS_OFFSET (64)       max_contexts * context_stride  context c at 64 + c * context_stride
    ring_controls_offset       max_connections * 256          slot s: RX control, TX control
    ring_data_offset (4 KiB    max_connections * (rx + tx)    slot s: RX bytes, then TX bytes
      aligned)
    total rounded up to PAGE_BYTES (4096): `Layout.size_bytes()`

Header (HEADER_FORMAT, little-endian, no padding):

    bytes  0-7   magic                 SEGMENT_MAGIC, b"P4TASSHM"
    bytes  8-11  version               LAYOUT_VERSION
    bytes 12-15  header_bytes          HEADER_BYTES (64)
    bytes 16-23  segment_bytes         Layout.size_bytes()
    bytes 24-27  rx_ring_size          bytes per RX ring, a power of two
    bytes 28-31  tx_ring_size          bytes per TX ring, a power of two
    bytes 32-35  max_connections       connection slots
    bytes 36-39  max_contexts          contexts (each an RX and a TX event queue)
    bytes 40-43  queue_depth           records per event queue, a power of two
    bytes 44-47  event_record_bytes    EVENT_RECORD_BYTES (32)
    bytes 48-55  ring_controls_offset  where slot 0's RX control block starts
    bytes 56-63  ring_data_offset      where slot 0's RX bytes start

Control block (CONTROL_BLOCK_BYTES = 128), one per ring and per event queue:

    bytes   0-7    head  producer's position (u64): written only by the producer
    bytes   8-63   reserved, zero (the head has its cache line to itself)
    bytes  64-71   tail  consumer's position (u64): written only by the consumer
    bytes  72-79   limit a connection's TX ring: the most bytes the application should keep
                         queued (u64; 0: the whole ring), written only by the runtime from the
                         flow's rate, so that a slow flow's sender waits rather than queueing
                         seconds of data (backpressure); advisory, the runtime never reads it
    bytes  80-127  reserved, zero

Positions count bytes (rings) or records (queues) since the ring was reset; they only grow and
never wrap (2^64 bytes are 58 years at 10 GB/s). readable = head - tail, 0 <= readable <= size.
They are stored in the host's native byte order (POSITION_FORMAT), so that Python writes each
with one aligned 8-byte store; this module only loads on little-endian hosts (x86-64, arm64),
where that order is the little-endian order of everything else in the segment.

Context c, at CONTEXTS_OFFSET + c * context_stride, context_stride = 2 * (128 + queue_depth * 32):

    +0                           RX queue control block  (runtime/NIC -> application)
    +128                         RX queue records        queue_depth * 32 bytes
    +128 + queue_depth * 32      TX queue control block  (application -> runtime/NIC)
    +256 + queue_depth * 32      TX queue records        queue_depth * 32 bytes

Connection slot s:

    ring_controls_offset + s * 256        RX ring control block (NIC produces, application consumes)
    ring_controls_offset + s * 256 + 128  TX ring control block (application produces, NIC consumes)
    ring_data_offset + s * (rx + tx)      RX ring bytes, rx_ring_size of them
    ring_data_offset + s * (rx + tx) + rx TX ring bytes, tx_ring_size of them

Event record (EVENT_FORMAT, little-endian, EVENT_RECORD_BYTES = 32):

    bytes  0-1   kind    EventType
    bytes  2-3   flags   per kind
    bytes  4-7   slot    the connection's slot in this segment
    bytes  8-15  offset  a ring position (e.g. where RX_DATA's bytes start)
    bytes 16-19  length  bytes (received, acknowledged, queued, consumed)
    bytes 20-23  aux     per kind (e.g. an RTT sample in microseconds)
    bytes 24-31  opaque  relayed untouched (TAS's opaque flow id: e.g. the runtime's conn_id,
                         so that events of a slot's previous connection can be told apart)

Trust: the application can write anything into its own segment. The runtime never reads the
layout back from the header (it keeps the Layout it created the segment with) and checks every
position it loads (rings.RingCorruptedError), so a scribbling application only hurts itself.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import re
import stat
import struct
import sys
from dataclasses import dataclass
from enum import IntEnum

if sys.byteorder != "little":
    raise ImportError("host_lib.shm_layout supports little-endian hosts only (see its docstring)")

SEGMENT_MAGIC = b"P4TASSHM"
LAYOUT_VERSION = 1

HEADER_FORMAT = "<8sIIQIIIIIIQQ"
HEADER = struct.Struct(HEADER_FORMAT)
HEADER_BYTES = HEADER.size

CACHE_LINE_BYTES = 64
PAGE_BYTES = 4096
CONTEXTS_OFFSET = HEADER_BYTES

POSITION_FORMAT = "Q"  # native u64: memoryview.cast() format of the head/tail words
POSITION_BYTES = 8
CONTROL_BLOCK_BYTES = 2 * CACHE_LINE_BYTES
HEAD_OFFSET = 0
TAIL_OFFSET = CACHE_LINE_BYTES
LIMIT_OFFSET = TAIL_OFFSET + 8
SLOT_CONTROL_BYTES = 2 * CONTROL_BLOCK_BYTES

EVENT_FORMAT = "<HHIQIIQ"
EVENT_RECORD = struct.Struct(EVENT_FORMAT)
EVENT_RECORD_BYTES = EVENT_RECORD.size

MIN_RING_SIZE = 16
MAX_RING_SIZE = 1 << 31  # the fast path's ring offsets are 32 bits
MAX_CONNECTIONS = 1 << 20
MAX_CONTEXTS = 1 << 12
MIN_QUEUE_DEPTH = 2  # keeps every control block on its own cache line
MAX_QUEUE_DEPTH = 1 << 20
MAX_SEGMENT_BYTES = 1 << 40

SHM_DIR = "/dev/shm"
SEGMENT_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,199}")
SEGMENT_MODE = 0o600

assert HEADER_BYTES == 64 and EVENT_RECORD_BYTES == 32


class Direction(IntEnum):
    """Which way data moves: RX towards the application, TX from it (rings and event queues)."""

    RX = 0
    TX = 1


class EventType(IntEnum):
    """Event record kinds: RX_DATA, TX_ACKED on a context's RX queue; the others on its TX one."""

    RX_DATA = 1  # bytes [offset, offset + length) of the slot's RX ring are readable
    TX_ACKED = 2  # length bytes of the slot's TX ring were acknowledged and are free again
    TX_QUEUED = 3  # the application appended length bytes to the slot's TX ring
    RX_CONSUMED = 4  # the application consumed length bytes of the slot's RX ring


class LayoutError(ValueError):
    """A layout parameter out of range, or a segment that does not match the layout."""


def is_power_of_two(value: int) -> bool:
    """True for 1, 2, 4, ..."""
    return value > 0 and value & (value - 1) == 0


def align_up(value: int, alignment: int) -> int:
    """The smallest multiple of `alignment` (a power of two) that is >= value."""
    return (value + alignment - 1) & ~(alignment - 1)


def _check_power_of_two(name: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or not is_power_of_two(value) or not low <= value <= high:
        raise LayoutError(f"{name}={value!r} must be a power of two between {low} and {high}")


def _check_count(name: str, value: int, high: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= high:
        raise LayoutError(f"{name}={value!r} must be an integer between 1 and {high}")


@dataclass(frozen=True)
class Layout:
    """Sizes and counts of one application's segment; every offset derives from these in O(1)."""

    rx_ring_size: int = 1 << 18
    tx_ring_size: int = 1 << 18
    max_connections: int = 64
    max_contexts: int = 4
    queue_depth: int = 1024

    def __post_init__(self) -> None:
        _check_power_of_two("rx_ring_size", self.rx_ring_size, MIN_RING_SIZE, MAX_RING_SIZE)
        _check_power_of_two("tx_ring_size", self.tx_ring_size, MIN_RING_SIZE, MAX_RING_SIZE)
        _check_count("max_connections", self.max_connections, MAX_CONNECTIONS)
        _check_count("max_contexts", self.max_contexts, MAX_CONTEXTS)
        _check_power_of_two("queue_depth", self.queue_depth, MIN_QUEUE_DEPTH, MAX_QUEUE_DEPTH)
        if self.size_bytes() > MAX_SEGMENT_BYTES:
            raise LayoutError(f"{self} needs {self.size_bytes()} bytes, more than the "
                              f"{MAX_SEGMENT_BYTES}-byte limit of a segment")

    # -- region starts -------------------------------------------------------------------------

    @property
    def context_stride(self) -> int:
        """Bytes per context: two control blocks and two arrays of records."""
        return 2 * (CONTROL_BLOCK_BYTES + self.queue_depth * EVENT_RECORD_BYTES)

    @property
    def slot_data_stride(self) -> int:
        """Ring bytes per connection slot (RX then TX)."""
        return self.rx_ring_size + self.tx_ring_size

    @property
    def ring_controls_offset(self) -> int:
        """Start of the ring control blocks (after the contexts)."""
        return CONTEXTS_OFFSET + self.max_contexts * self.context_stride

    @property
    def ring_data_offset(self) -> int:
        """Start of the ring bytes, page-aligned."""
        end = self.ring_controls_offset + self.max_connections * SLOT_CONTROL_BYTES
        return align_up(end, PAGE_BYTES)

    def size_bytes(self) -> int:
        """Bytes of the whole segment, a whole number of pages."""
        end = self.ring_data_offset + self.max_connections * self.slot_data_stride
        return align_up(end, PAGE_BYTES)

    # -- per-slot and per-context offsets ----------------------------------------------------

    def ring_size(self, direction: Direction) -> int:
        """Bytes of a slot's RX or TX ring."""
        return self.rx_ring_size if direction == Direction.RX else self.tx_ring_size

    def ring_control_offset(self, slot: int, direction: Direction) -> int:
        """Offset of a slot's RX or TX ring control block."""
        self._check_slot(slot)
        block = slot * SLOT_CONTROL_BYTES + direction * CONTROL_BLOCK_BYTES
        return self.ring_controls_offset + block

    def ring_bytes_offset(self, slot: int, direction: Direction) -> int:
        """Offset of a slot's RX or TX ring bytes."""
        self._check_slot(slot)
        skip = self.rx_ring_size if direction == Direction.TX else 0
        return self.ring_data_offset + slot * self.slot_data_stride + skip

    def queue_control_offset(self, context: int, direction: Direction) -> int:
        """Offset of a context's RX or TX event queue control block."""
        self._check_context(context)
        half = CONTROL_BLOCK_BYTES + self.queue_depth * EVENT_RECORD_BYTES
        return CONTEXTS_OFFSET + context * self.context_stride + direction * half

    def queue_records_offset(self, context: int, direction: Direction) -> int:
        """Offset of a context's RX or TX event records."""
        return self.queue_control_offset(context, direction) + CONTROL_BLOCK_BYTES

    def _check_slot(self, slot: int) -> None:
        if not 0 <= slot < self.max_connections:
            raise LayoutError(f"slot {slot} out of range 0..{self.max_connections - 1}")

    def _check_context(self, context: int) -> None:
        if not 0 <= context < self.max_contexts:
            raise LayoutError(f"context {context} out of range 0..{self.max_contexts - 1}")

    # -- header ---------------------------------------------------------------------------------

    def pack_header(self) -> bytes:
        """The segment header describing this layout."""
        return HEADER.pack(
            SEGMENT_MAGIC, LAYOUT_VERSION, HEADER_BYTES, self.size_bytes(), self.rx_ring_size,
            self.tx_ring_size, self.max_connections, self.max_contexts, self.queue_depth,
            EVENT_RECORD_BYTES, self.ring_controls_offset, self.ring_data_offset,
        )

    @classmethod
    def from_header(cls, header: bytes | memoryview) -> Layout:
        """Rebuild and cross-check the layout a segment header describes; LayoutError if invalid."""
        if len(header) < HEADER_BYTES:
            raise LayoutError(f"segment of {len(header)} bytes is shorter than its header")
        (magic, version, header_bytes, segment_bytes, rx, tx, conns, contexts, depth, record,
         controls, data) = HEADER.unpack_from(header)
        if magic != SEGMENT_MAGIC:
            raise LayoutError(f"bad segment magic {magic!r}, expected {SEGMENT_MAGIC!r}")
        if version != LAYOUT_VERSION:
            raise LayoutError(f"segment layout version {version}, this host_lib speaks "
                              f"{LAYOUT_VERSION}")
        if header_bytes != HEADER_BYTES or record != EVENT_RECORD_BYTES:
            raise LayoutError(f"segment header/record sizes {header_bytes}/{record}, expected "
                              f"{HEADER_BYTES}/{EVENT_RECORD_BYTES}")
        layout = cls(rx, tx, conns, contexts, depth)
        derived = (layout.size_bytes(), layout.ring_controls_offset, layout.ring_data_offset)
        if derived != (segment_bytes, controls, data):
            raise LayoutError(f"segment header sizes/offsets {(segment_bytes, controls, data)} do "
                              f"not match those of {layout}: {derived}")
        return layout


def segment_path(name: str) -> str:
    """The /dev/shm path of a segment; LayoutError for a name that is not a plain file name."""
    if not isinstance(name, str) or not SEGMENT_NAME_RE.fullmatch(name):
        raise LayoutError(f"bad segment name {name!r}: 1-200 of [A-Za-z0-9._-], not starting "
                          "with '.' or '-'")
    return os.path.join(SHM_DIR, name)


class Segment:
    """One application's mapped segment: `buf` is a writable memoryview of all of it."""

    def __init__(self, name: str, layout: Layout, mapping: mmap.mmap) -> None:
        self.name = name
        self.layout = layout
        self._mmap = mapping
        self.buf = memoryview(mapping)

    @classmethod
    def create(cls, name: str, layout: Layout) -> Segment:
        """Create, size and initialise a new segment (the runtime's side); fails if it exists."""
        path = segment_path(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, SEGMENT_MODE)
        try:
            os.ftruncate(fd, layout.size_bytes())
            mapping = mmap.mmap(fd, layout.size_bytes())
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        mapping[:HEADER_BYTES] = layout.pack_header()
        return cls(name, layout, mapping)

    @classmethod
    def create_memfd(cls, name: str, layout: Layout) -> tuple[Segment, int]:
        """Create and initialise an anonymous segment (the runtime's side): a memfd with no name
        in any file system, which only a process it is passed to (SCM_RIGHTS) can map. It is
        sealed against shrinking and growing, so the application cannot truncate it under the
        runtime's mapping (SIGBUS). Returns the segment and the fd to pass (the caller closes it)."""
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, layout.size_bytes())
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS,
                        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            mapping = mmap.mmap(fd, layout.size_bytes())
        except BaseException:
            os.close(fd)
            raise
        mapping[:HEADER_BYTES] = layout.pack_header()
        return cls(name, layout, mapping), fd

    @classmethod
    def attach(cls, name: str) -> Segment:
        """Map an existing segment by name (the application's side); layout from its header."""
        fd = os.open(segment_path(name), os.O_RDWR)
        try:
            return cls.attach_fd(fd, name)
        finally:
            os.close(fd)

    @classmethod
    def attach_fd(cls, fd: int, name: str = "") -> Segment:
        """Map a segment from an open file descriptor (e.g. one passed with SCM_RIGHTS)."""
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size < HEADER_BYTES:
            raise LayoutError(f"segment {name!r} is not a file of at least {HEADER_BYTES} bytes")
        mapping = mmap.mmap(fd, info.st_size)
        try:
            layout = Layout.from_header(mapping[:HEADER_BYTES])
            if layout.size_bytes() > info.st_size:
                raise LayoutError(f"segment {name!r} has {info.st_size} bytes, its header says "
                                  f"{layout.size_bytes()}")
        except BaseException:
            mapping.close()
            raise
        return cls(name, layout, mapping)

    def close(self) -> None:
        """Unmap; BufferError if rings or peeked memoryviews of it are still alive."""
        self.buf.release()
        try:
            self._mmap.close()
        except BufferError:
            self.buf = memoryview(self._mmap)
            raise BufferError(f"segment {self.name!r} is still in use: release its rings and "
                              "peeked memoryviews before closing it") from None

    def unlink(self) -> None:
        """Remove the segment's name (mappings stay valid until closed)."""
        os.unlink(segment_path(self.name))

    def __enter__(self) -> Segment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
