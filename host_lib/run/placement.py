"""Which stack an IPv4 TCP socket of a launched program uses: p4tas or the kernel.

bind(): the wildcard and the launcher's --addr addresses are p4tas's (the wildcard becomes the
first --addr when one is given); without --addr every address the kernel does not have is.
connect(): the kernel keeps loopback, its own addresses and the subnets it is attached to (a
route without a gateway); every other destination goes through p4tas, from the first --addr.
"""

from __future__ import annotations

import functools
import ipaddress
import socket as _std
from dataclasses import dataclass
from pathlib import Path

WILDCARD = ("", "0.0.0.0")
ROUTES = Path("/proc/net/route")


@dataclass(frozen=True)
class Placement:
    """The launcher's --addr addresses (empty: p4tas owns what the kernel does not)."""

    addrs: tuple[str, ...] = ()

    def bind_host(self, host: str) -> str | None:
        """The p4tas address to bind for bind((host, port)), or None: the kernel's."""
        if host in WILDCARD:
            return self.addrs[0] if self.addrs else "0.0.0.0"
        ip = _resolve(host)
        if self.addrs:
            return ip if ip in self.addrs else None
        return None if ip is None or kernel_local(ip) else ip

    def connects_via_p4tas(self, host: str) -> bool:
        """Whether connect((host, port)) goes through p4tas."""
        ip = _resolve(host)
        return ip is not None and not kernel_local(ip) and not kernel_attached(ip)

    def source(self) -> str | None:
        """The local address of p4tas connects (None: the runtime chooses)."""
        return self.addrs[0] if self.addrs else None


def _resolve(host: str) -> str | None:
    """host as a dotted IPv4 address (None: not an IPv4 host)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        pass
    try:
        return _std.gethostbyname(host)
    except OSError:
        return None


@functools.lru_cache(maxsize=256)
def kernel_local(ip: str) -> bool:
    """Loopback, or an address of one of the kernel's interfaces (it lets a socket bind it)."""
    if ipaddress.IPv4Address(ip).is_loopback:
        return True
    with _std.socket(_std.AF_INET, _std.SOCK_DGRAM) as probe:
        try:
            probe.bind((ip, 0))
        except OSError:
            return False
    return True


def kernel_attached(ip: str) -> bool:
    """In a subnet of the kernel's own interfaces (a route of /proc/net/route without gateway)."""
    address = int(ipaddress.IPv4Address(ip))
    for destination, mask in _attached_routes():
        if mask and address & mask == destination:
            return True
    return False


def _attached_routes() -> list[tuple[int, int]]:
    """(network, mask) of the kernel's routes without a gateway, as host-order integers."""
    try:
        lines = ROUTES.read_text().splitlines()[1:]
    except OSError:
        return []
    routes = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 8 and int(fields[2], 16) == 0:
            destination, mask = (int.from_bytes(bytes.fromhex(f), "little") for f in
                                 (fields[1], fields[7]))
            routes.append((destination, mask))
    return routes
