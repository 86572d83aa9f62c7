"""IPv4 reassembly (RFC 791, RFC 815) of the fragments the fast path punts
(REASON_IPV4_FRAGMENT), safe against a hostile network.

The fast path cannot reassemble, so a peer whose segments are fragmented on the way (a router
with a smaller MTU and DF clear) would stall its flow. The slow path puts the datagram back
together and hands back an unfragmented frame (runtime.reinjection splits its TCP segment to
the MSS and reinjects it). What a hostile network can make it hold is bounded:
- a datagram's fragments must lie within 65,535 bytes and number at most `max_fragments`;
- at most `max_datagrams` datagrams are in progress and `max_bytes` bytes held in all; a
  fragment beyond either is dropped (never an eviction: a flood cannot push out a datagram
  that is in progress);
- a datagram not complete after `timeout_s` (30 s as Linux's ipfrag_time) is dropped;
- overlapping fragments (RFC 5722's spirit, as Linux does since 4.19): an exact duplicate is
  ignored, any other overlap or a disagreement about where the datagram ends discards the
  whole datagram, and its later fragments are dropped until its timeout.
Every drop is counted by cause (`counters`).
"""

from __future__ import annotations

import bisect
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field

from nic_contract.checksum import internet_checksum

ETH_BYTES = 14
ETHERTYPE_IPV4 = 0x0800
IPV4_MIN_BYTES = 20
IP_FLAG_MF = 0x2000
IP_OFFSET_MASK = 0x1FFF
IP_MAX_BYTES = 0xFFFF
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")

Key = tuple[bytes, bytes, int, int]   # source, destination, protocol, identification


@dataclass(frozen=True)
class ReassemblyLimits:
    """What the reassembler may hold (defaults: Linux's 30 s timeout; 4 MiB in all)."""

    timeout_s: float = 30.0
    max_datagrams: int = 256
    max_bytes: int = 4 << 20
    max_fragments: int = 128   # a 64 KiB datagram in 576-byte fragments needs 118


@dataclass(frozen=True)
class Fragment:
    """One fragment's header fields and payload (its offset in bytes)."""

    key: Key
    ethernet: bytes
    tos: int
    ttl: int
    offset: int
    more: bool
    payload: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.payload)


@dataclass
class Datagram:
    """A datagram in progress: its fragments sorted by offset, without overlaps."""

    deadline: float
    starts: list[int] = field(default_factory=list)
    pieces: list[Fragment] = field(default_factory=list)
    total: int | None = None    # payload length, once the last fragment came
    held: int = 0               # payload bytes held
    discarded: bool = False     # overlapped: drop it and its later fragments


def is_fragment(frame: bytes) -> bool:
    """Whether an Ethernet frame carries an IPv4 fragment (MF set or a non-zero offset)."""
    if len(frame) < ETH_BYTES + IPV4_MIN_BYTES or frame[12:14] != b"\x08\x00":
        return False
    (frag,) = struct.unpack_from("!H", frame, ETH_BYTES + 6)
    return bool(frag & (IP_FLAG_MF | IP_OFFSET_MASK))


def parse_fragment(frame: bytes) -> Fragment | None:
    """The fragment in an Ethernet frame; None if its IPv4 header is not valid."""
    if not is_fragment(frame):
        return None
    ver_ihl, tos, total, ident, frag, ttl, proto, _, src, dst = \
        IPV4_HEADER.unpack_from(frame, ETH_BYTES)
    ihl = (ver_ihl & 0x0F) * 4
    if ver_ihl >> 4 != 4 or ihl < IPV4_MIN_BYTES or total < ihl \
            or ETH_BYTES + total > len(frame):
        return None
    if internet_checksum(frame[ETH_BYTES:ETH_BYTES + ihl]) != 0:
        return None
    payload = bytes(frame[ETH_BYTES + ihl:ETH_BYTES + total])
    more = bool(frag & IP_FLAG_MF)
    if more and (not payload or len(payload) % 8):
        return None   # RFC 791: every fragment but the last carries a multiple of 8 bytes
    return Fragment((src, dst, proto, ident), bytes(frame[:ETH_BYTES]), tos, ttl,
                    (frag & IP_OFFSET_MASK) * 8, more, payload)


class Reassembler:
    """Datagrams in progress, in arrival order (so expiry costs what expires)."""

    def __init__(self, limits: ReassemblyLimits = ReassemblyLimits()) -> None:
        self.limits = limits
        self.counters: Counter[str] = Counter()
        self._datagrams: OrderedDict[Key, Datagram] = OrderedDict()
        self._held = 0

    def __len__(self) -> int:
        return len(self._datagrams)

    @property
    def held_bytes(self) -> int:
        return self._held

    def add(self, frame: bytes, now: float) -> bytes | None:
        """Take one fragment; the whole datagram as an unfragmented frame once complete."""
        self.expire(now)
        fragment = parse_fragment(frame)
        if fragment is None:
            self.counters["malformed"] += 1
            return None
        self.counters["fragments"] += 1
        datagram = self._datagram_for(fragment, now)
        if datagram is None or not self._place(datagram, fragment):
            return None
        if datagram.total is None or datagram.held != datagram.total:
            return None
        self._forget(fragment.key)
        self.counters["reassembled"] += 1
        return _rebuild(datagram)

    def expire(self, now: float) -> None:
        """Drop the datagrams whose time is up."""
        while self._datagrams:
            key, datagram = next(iter(self._datagrams.items()))
            if datagram.deadline > now:
                return
            if not datagram.discarded:
                self.counters["timeouts"] += 1
            self._forget(key)

    def next_deadline(self) -> float | None:
        """When the oldest datagram in progress times out (None: none)."""
        return next(iter(self._datagrams.values())).deadline if self._datagrams else None

    def _datagram_for(self, fragment: Fragment, now: float) -> Datagram | None:
        datagram = self._datagrams.get(fragment.key)
        if datagram is None:
            if len(self._datagrams) >= self.limits.max_datagrams:
                self.counters["over_datagram_limit"] += 1
                return None
            datagram = self._datagrams[fragment.key] = Datagram(now + self.limits.timeout_s)
        if datagram.discarded:
            self.counters["discarded_fragments"] += 1
            return None
        return datagram

    def _place(self, datagram: Datagram, fragment: Fragment) -> bool:
        """Insert a fragment; False if it was dropped (or its datagram discarded)."""
        if fragment.end > IP_MAX_BYTES - IPV4_MIN_BYTES:
            return self._discard(datagram, "too_big")
        if not fragment.more:
            if datagram.total not in (None, fragment.end):
                return self._discard(datagram, "overlaps")
            datagram.total = fragment.end
        if datagram.total is not None and (fragment.end > datagram.total or datagram.pieces
                                           and datagram.pieces[-1].end > datagram.total):
            return self._discard(datagram, "overlaps")
        index = bisect.bisect_left(datagram.starts, fragment.offset)
        duplicate = self._overlap(datagram, index, fragment)
        if duplicate is not None:
            if duplicate:
                self.counters["duplicates"] += 1
                return True
            return self._discard(datagram, "overlaps")
        if len(datagram.pieces) >= self.limits.max_fragments:
            return self._discard(datagram, "too_many_fragments")
        if self._held + len(fragment.payload) > self.limits.max_bytes:
            self.counters["over_byte_limit"] += 1
            return False
        datagram.starts.insert(index, fragment.offset)
        datagram.pieces.insert(index, fragment)
        datagram.held += len(fragment.payload)
        self._held += len(fragment.payload)
        return True

    @staticmethod
    def _overlap(datagram: Datagram, index: int, fragment: Fragment) -> bool | None:
        """None: no overlap; True: an exact duplicate; False: any other overlap."""
        pieces = datagram.pieces
        if index < len(pieces) and pieces[index].offset == fragment.offset:
            same = pieces[index]
            return same.payload == fragment.payload and same.more == fragment.more
        if index > 0 and pieces[index - 1].end > fragment.offset:
            return False
        if index < len(pieces) and pieces[index].offset < fragment.end:
            return False
        return None

    def _discard(self, datagram: Datagram, cause: str) -> bool:
        """Drop a datagram's fragments; it stays as a marker until its timeout."""
        self.counters[cause] += 1
        self._held -= datagram.held
        datagram.pieces, datagram.starts, datagram.held = [], [], 0
        datagram.discarded = True
        return False

    def _forget(self, key: Key) -> None:
        datagram = self._datagrams.pop(key)
        self._held -= datagram.held


def _rebuild(datagram: Datagram) -> bytes:
    """The datagram as one frame: the first fragment's Ethernet header and IPv4 fields, no
    options, no fragmentation, a fresh header checksum."""
    first = datagram.pieces[0]
    src, dst, proto, ident = first.key
    payload = b"".join(piece.payload for piece in datagram.pieces)
    header = bytearray(IPV4_HEADER.pack(0x45, first.tos, IPV4_MIN_BYTES + len(payload), ident,
                                        0, first.ttl, proto, 0, src, dst))
    struct.pack_into("!H", header, 10, internet_checksum(bytes(header)))
    return first.ethernet + bytes(header) + payload
