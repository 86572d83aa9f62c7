"""The runtime's IPv4 routing table: our interfaces' subnets (on-link) and static routes through
gateways on them (`--route PREFIX via GATEWAY`, `--gateway`). A destination's next hop is
found by longest prefix match; the next hop, not the destination, is what ARP resolves."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.config import Interface

DEFAULT = "default"
DEFAULT_NETWORK = ipaddress.IPv4Network("0.0.0.0/0")


class RoutingError(ValueError):
    """A route that cannot be used: bad text, an unreachable gateway, a duplicate prefix."""


@dataclass(frozen=True)
class Route:
    """A static route: destinations in `prefix` go through `gateway` (0.0.0.0/0: default)."""

    prefix: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address

    @classmethod
    def parse(cls, prefix: str, gateway: str) -> Route:
        """PREFIX (a.b.c.d/len, or `default`) and GATEWAY (a.b.c.d), as `ip route` takes them."""
        try:
            network = DEFAULT_NETWORK if prefix == DEFAULT else ipaddress.IPv4Network(prefix)
            return cls(network, ipaddress.IPv4Address(gateway))
        except ValueError as exc:
            raise RoutingError(f"bad route {prefix} via {gateway}: {exc}") from None

    def __str__(self) -> str:
        prefix = DEFAULT if self.prefix == DEFAULT_NETWORK else str(self.prefix)
        return f"{prefix} via {self.gateway}"


@dataclass(frozen=True)
class NextHop:
    """Where a destination's frames go: out of `interface`, to the MAC of `ip` (the destination
    itself when it is on-link, else the gateway)."""

    interface: Interface
    ip: str
    gateway: bool = False


@dataclass(frozen=True)
class _Entry:
    network: ipaddress.IPv4Network
    interface: Interface
    gateway: str | None   # None: on-link


class RoutingTable:
    """Connected subnets of `interfaces` plus `routes`; each gateway must be on one of them."""

    def __init__(self, interfaces: Sequence[Interface], routes: Sequence[Route] = ()) -> None:
        connected = [_Entry(i.network, i, None) for i in interfaces]
        entries = connected + [self._static(route, interfaces) for route in routes]
        _check_unique(entries)
        # Longest prefix first; on-link before a route of the same length (stable sort).
        self._entries = sorted(entries, key=lambda e: -e.network.prefixlen)

    @staticmethod
    def _static(route: Route, interfaces: Sequence[Interface]) -> _Entry:
        """The entry of a static route, on the interface whose subnet holds its gateway."""
        gateway = str(route.gateway)
        if any(i.ip == gateway for i in interfaces):
            raise RoutingError(f"route {route}: the gateway is our own address")
        iface = next((i for i in interfaces if route.gateway in i.network), None)
        if iface is None:
            raise RoutingError(f"route {route}: the gateway is on none of our subnets ("
                               + ", ".join(str(i.network) for i in interfaces) + ")")
        return _Entry(route.prefix, iface, gateway)

    def lookup(self, destination: str, interface: Interface | None = None) -> NextHop | None:
        """The next hop towards `destination` (only through `interface` if given); None: no
        route."""
        addr = ipaddress.IPv4Address(destination)
        for entry in self._entries:
            if addr in entry.network and interface in (None, entry.interface):
                if entry.gateway is None:
                    return NextHop(entry.interface, destination)
                return NextHop(entry.interface, entry.gateway, gateway=True)
        return None

    def on_link(self, address: str, interface: Interface) -> bool:
        """True if `address` is reached directly on `interface` (not through a gateway)."""
        hop = self.lookup(address, interface)
        return hop is not None and not hop.gateway


def _check_unique(entries: Sequence[_Entry]) -> None:
    """One entry per prefix: a second route to a prefix (or to a connected subnet) is an error."""
    seen: dict[ipaddress.IPv4Network, _Entry] = {}
    for entry in entries:
        other = seen.setdefault(entry.network, entry)
        if other is not entry and not (entry.gateway is None and other.gateway is None):
            what = "a connected subnet" if other.gateway is None else f"via {other.gateway}"
            raise RoutingError(f"route {entry.network} via {entry.gateway}: that prefix is "
                               f"already {what}")
