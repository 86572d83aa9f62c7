"""The switch's P4 objects (tables, counters, meters, registers, clone sessions) as plain
Python state: P4Runtime writes and reads it (p4runtime/), the pipeline reads and
updates it per packet (pipeline/). Values are ints; names are the P4 objects' p4info names.
Indexed objects are compact arrays (8 bytes per 64-bit cell, no Python object per index) and
tables hold only installed entries, so a 1M-flow build costs tens of MB (ARCHITECTURE.md 5)."""

from __future__ import annotations

import threading
from array import array
from dataclasses import dataclass, field

# execute_meter colors (bmv2: green 0, yellow 1, red 2)
GREEN, YELLOW, RED = 0, 1, 2


@dataclass
class ExactTable:
    """An exact-match table: key tuple (match fields in p4info order) -> (action, params)."""

    name: str
    size: int
    default_action: tuple[str, tuple[int, ...]]
    entries: dict[tuple[int, ...], tuple[str, tuple[int, ...]]] = field(default_factory=dict)

    def lookup(self, key: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        return self.entries.get(key, self.default_action)


@dataclass
class Counter:
    """An indexed counter: packets and bytes per index (both kept whatever its type)."""

    name: str
    size: int
    packets: array = field(default_factory=lambda: array("Q"))
    bytes: array = field(default_factory=lambda: array("Q"))

    def __post_init__(self) -> None:
        self.packets = zeros(self.size)
        self.bytes = zeros(self.size)

    def count(self, index: int, length: int) -> None:
        if 0 <= index < self.size:   # bmv2 ignores an out-of-range index (and logs it)
            self.packets[index] += 1
            self.bytes[index] += length


@dataclass
class MeterRate:
    """One token bucket of a meter, bmv2's units: tokens per microsecond, burst in tokens."""

    info_rate: float
    burst_size: int
    color: int
    tokens: int = 0
    tokens_last: int = 0

    def __post_init__(self) -> None:
        self.tokens = self.burst_size


class Meter:
    """An indexed two-rate three-color meter with bmv2's algorithm (bm_sim/meters.cpp):
    peak then committed; the first bucket short of tokens gives its color."""

    def __init__(self, name: str, size: int, packets: bool, epoch_us: int) -> None:
        self.name, self.size, self.packets, self.epoch_us = name, size, packets, epoch_us
        self.rates: dict[int, list[MeterRate]] = {}   # configured indexes only
        self.configs: dict[int, tuple[int, int, int, int]] = {}   # cir, cburst, pir, pburst
        self._lock = threading.Lock()

    def set_config(self, index: int, cir: int, cburst: int, pir: int, pburst: int) -> None:
        """Rates per second as P4Runtime gives them (bytes or packets); bursts in the same."""
        with self._lock:
            # bmv2 reverses the list it is given: the peak bucket is checked first.
            self.rates[index] = [MeterRate(pir / 1e6, pburst, RED),
                                 MeterRate(cir / 1e6, cburst, YELLOW)]
            self.configs[index] = (cir, cburst, pir, pburst)

    def reset(self, index: int) -> None:
        """Back to unconfigured: every packet green."""
        with self._lock:
            self.rates.pop(index, None)
            self.configs.pop(index, None)

    def execute(self, index: int, length: int, now_us: int) -> int:
        rates = self.rates.get(index)
        if rates is None:
            return GREEN
        since = now_us - self.epoch_us
        need = 1 if self.packets else length
        with self._lock:
            for rate in rates:
                since_init = int(since * rate.info_rate)
                new = since_init - rate.tokens_last
                rate.tokens_last = since_init
                rate.tokens = min(rate.tokens + new, rate.burst_size)
                if rate.tokens < need:
                    return rate.color
                rate.tokens -= need
        return GREEN


@dataclass
class Register:
    """An indexed register of `bitwidth`-bit cells (0 until written)."""

    name: str
    size: int
    bitwidth: int
    cells: array | WideCells = field(default_factory=lambda: array("Q"))

    def __post_init__(self) -> None:
        self.cells = zeros(self.size) if self.bitwidth <= 64 else WideCells(self.size)


def zeros(size: int) -> array:
    """`size` unsigned 64-bit cells, all 0."""
    return array("Q", bytes(8 * size))


class WideCells:
    """Cells wider than 64 bits (up to 128) as two arrays of 64-bit halves."""

    __slots__ = ("_high", "_low")

    def __init__(self, size: int) -> None:
        self._high, self._low = zeros(size), zeros(size)

    def __len__(self) -> int:
        return len(self._low)

    def __getitem__(self, index: int) -> int:
        return (self._high[index] << 64) | self._low[index]

    def __setitem__(self, index: int, value: int) -> None:
        self._high[index] = value >> 64
        self._low[index] = value & 0xFFFFFFFFFFFFFFFF


@dataclass
class SwitchState:
    """Every P4 object of the loaded program, by p4info name (tables by their short name too:
    "flow_lookup" as well as "P4tasIngress.flow_lookup.flow_lookup")."""

    tables: dict[str, ExactTable] = field(default_factory=dict)
    counters: dict[str, Counter] = field(default_factory=dict)
    meters: dict[str, Meter] = field(default_factory=dict)
    registers: dict[str, Register] = field(default_factory=dict)
    clone_sessions: dict[int, int] = field(default_factory=dict)   # session id -> egress port
