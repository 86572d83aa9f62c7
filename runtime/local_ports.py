"""Local TCP ports per local IPv4 address: ephemeral allocation, bind()/listen() reservations and
TIME_WAIT quarantine, all O(1) (quarantine expiry O(expired)).

Ephemeral ports are picked uniformly at random among the free ones with a CSPRNG (RFC 6056 3.3.1,
without its linear search: the free ports are kept in an array with swap-removal), so an off-path
attacker cannot guess the next connection's port from the previous ones.

A port is FREE, IN_USE or QUARANTINED. release() with a quarantine keeps the port out of use until
a monotonic deadline; ports return to the pool in deadline order. Only connections that own their
local port (active opens) release it; connections accepted on a listener share the listener's port.
"""

from __future__ import annotations

import enum
import errno
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

EPHEMERAL_LOW = 32768   # Linux's default net.ipv4.ip_local_port_range
EPHEMERAL_HIGH = 60999


class PortInUse(OSError):
    """reserve() of a port that is in use or quarantined (errno EADDRINUSE)."""

    def __init__(self, local_ip: str, port: int, why: str) -> None:
        super().__init__(errno.EADDRINUSE, f"address {local_ip}:{port} already in use ({why})")


class _PortState(enum.Enum):
    IN_USE = enum.auto()
    QUARANTINED = enum.auto()


@dataclass
class _Pool:
    """One local IP's ports. Ports absent from `taken` are free; `free` lists the free
    ephemeral ones in no order and `slot` says where each is in it."""

    free: list[int]
    slot: dict[int, int]
    taken: dict[int, _PortState] = field(default_factory=dict)
    in_use: int = 0

    def remove(self, port: int) -> None:
        """Take `port` out of `free` (swap with the last entry: O(1))."""
        index = self.slot.pop(port)
        last = self.free.pop()
        if last != port:
            self.free[index] = last
            self.slot[last] = index

    def add(self, port: int) -> None:
        self.slot[port] = len(self.free)
        self.free.append(port)


class LocalPortAllocator:
    """Ephemeral ports in [low, high] per local IP, reservations of any port, and quarantine."""

    def __init__(self, low: int = EPHEMERAL_LOW, high: int = EPHEMERAL_HIGH,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 1 <= low <= high <= 0xFFFF:
            raise ValueError(f"ephemeral range {low}..{high}: need 1 <= low <= high <= 65535")
        self.low = low
        self.high = high
        self._clock = clock
        self._pools: dict[str, _Pool] = {}
        # One deque per quarantine length: each is ordered by deadline as the clock is monotonic.
        self._quarantine: dict[float, deque[tuple[float, str, int]]] = {}

    def allocate(self, local_ip: str) -> int:
        """An ephemeral port for `local_ip`; OSError(EADDRNOTAVAIL) when the range is exhausted."""
        self.expire()
        pool = self._pool(local_ip)
        if not pool.free:
            raise OSError(errno.EADDRNOTAVAIL,
                          f"no free local port on {local_ip} in {self.low}..{self.high} "
                          f"({self.quarantined} ports in TIME_WAIT quarantine, all addresses)")
        port = pool.free[secrets.randbelow(len(pool.free))]
        pool.remove(port)
        pool.taken[port] = _PortState.IN_USE
        pool.in_use += 1
        return port

    def reserve(self, local_ip: str, port: int) -> None:
        """Take a specific port (bind/listen); raise `PortInUse` if it is taken or quarantined."""
        if not 1 <= port <= 0xFFFF:
            raise ValueError(f"port {port} is not a TCP port (1..65535)")
        self.expire()
        pool = self._pool(local_ip)
        state = pool.taken.get(port)
        if state is _PortState.IN_USE:
            raise PortInUse(local_ip, port, "in use")
        if state is _PortState.QUARANTINED:
            raise PortInUse(local_ip, port, "in TIME_WAIT")
        if port in pool.slot:
            pool.remove(port)
        pool.taken[port] = _PortState.IN_USE
        pool.in_use += 1

    def release(self, local_ip: str, port: int, quarantine_s: float = 0.0) -> None:
        """Give `port` back, usable again only after `quarantine_s` seconds (0: at once)."""
        if quarantine_s < 0:
            raise ValueError(f"quarantine_s {quarantine_s} must not be negative")
        pool = self._pools.get(local_ip)
        if pool is None or pool.taken.get(port) is not _PortState.IN_USE:
            raise ValueError(f"port {local_ip}:{port} is not in use (double release?)")
        pool.in_use -= 1
        if quarantine_s == 0:
            self._make_free(pool, port)
            return
        pool.taken[port] = _PortState.QUARANTINED
        deadline = self._clock() + quarantine_s
        self._quarantine.setdefault(quarantine_s, deque()).append((deadline, local_ip, port))

    def expire(self) -> int:
        """Return every port whose quarantine has ended to its pool; return how many."""
        now = self._clock()
        expired = 0
        for length, queue in list(self._quarantine.items()):
            while queue and queue[0][0] <= now:
                _, local_ip, port = queue.popleft()
                self._make_free(self._pools[local_ip], port)
                expired += 1
            if not queue:
                del self._quarantine[length]
        return expired

    def in_use(self, local_ip: str) -> int:
        """How many ports (ephemeral or reserved) `local_ip` has in use, quarantine excluded."""
        pool = self._pools.get(local_ip)
        return 0 if pool is None else pool.in_use

    def is_free(self, local_ip: str, port: int) -> bool:
        """Whether `port` on `local_ip` is neither in use nor quarantined (expires first)."""
        self.expire()
        pool = self._pools.get(local_ip)
        return pool is None or port not in pool.taken

    @property
    def quarantined(self) -> int:
        """How many ports, over all local IPs, wait in quarantine."""
        return sum(len(queue) for queue in self._quarantine.values())

    def _pool(self, local_ip: str) -> _Pool:
        pool = self._pools.get(local_ip)
        if pool is None:
            ipaddress.IPv4Address(local_ip)  # validate once per address, not per call
            ports = list(range(self.low, self.high + 1))
            pool = self._pools[local_ip] = _Pool(ports, {port: i for i, port in enumerate(ports)})
        return pool

    def _is_ephemeral(self, port: int) -> bool:
        return self.low <= port <= self.high

    def _make_free(self, pool: _Pool, port: int) -> None:
        del pool.taken[port]
        if self._is_ephemeral(port):
            pool.add(port)
