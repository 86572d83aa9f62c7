"""Routed Linux peers (`up --peers --routed`): a host that p4tas reaches through a router.

For wire port i (names from PortMap.routed_names):

- the port's peer namespace `<prefix>n<i>` becomes a router (net.ipv4.ip_forward=1) between
  the wire subnet 10.99.<i>.0/24, where it is 10.99.<i>.2, and 10.98.<i>.0/24, where it is
  10.98.<i>.1 on veth `<prefix>b<i>`;
- the routed host sits in namespace `<prefix>r<i>` at 10.98.<i>.2 on `<prefix>b<i>p`, with its
  default route via 10.98.<i>.1, configured like a peer (IPv6 and offloads off, MTU 1500);
- p4tas reaches it with `--route 10.98.<i>.0/24 via 10.99.<i>.2` (runtime_proc passes it):
  on the wire, ARP is for the router only, and frames to and from the host carry the
  router's MAC.

The hosts are saved as routed.json in the state dir (`load`); `down` deletes the namespaces
and veths with the peers' (bmv2_env.peers.destroy).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import topology
from .peers import SUBNET_PREFIX_LEN, TCP_SYSCTLS, Peer, PeerSet
from .portmap import PortMap
from .shell import run
from .state import ROUTED_FILE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RoutedHost:
    """A Linux host behind wire port `wire_port`'s peer, which routes for it."""

    netns: str
    ifname: str
    ip: str
    subnet: str
    gateway: str   # the router's address on the wire subnet: p4tas's next hop
    wire_port: int

    def route_args(self) -> list[str]:
        """The runtime's option for reaching this host: --route SUBNET via GATEWAY."""
        return ["--route", self.subnet, "via", self.gateway]

    @classmethod
    def from_dict(cls, data: Any) -> RoutedHost:
        """Build from a dict made by asdict(host); raise ValueError if it is not one."""
        try:
            return cls(**{k: data[k] for k in ("netns", "ifname", "ip", "subnet", "gateway",
                                               "wire_port")})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a routed host: {data!r} ({exc})") from None


def _address(wire_port: int, host: int) -> str:
    return f"10.98.{wire_port}.{host}"


def create(portmap: PortMap, peers: PeerSet) -> tuple[RoutedHost, ...]:
    """A routed host behind every peer of `peers` (created by PeerSet.create)."""
    return tuple(_create_host(portmap, peer) for peer in peers)


def _create_host(portmap: PortMap, peer: Peer) -> RoutedHost:
    """The second subnet: the peer forwards, the host's namespace and veth, its route."""
    port = peer.wire_port
    netns, router_if, host_if = portmap.routed_names(port)
    router_ip = _address(port, 1)
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "dev", "lo", "up"])
    topology.create_pair(router_if, host_if)
    topology.configure_in_netns(peer.netns, router_if, f"{router_ip}/{SUBNET_PREFIX_LEN}",
                                ("net.ipv4.ip_forward=1",))
    host = RoutedHost(netns, host_if, _address(port, 2), f"{_address(port, 0)}/"
                      f"{SUBNET_PREFIX_LEN}", peer.peer_ip, port)
    topology.configure_in_netns(netns, host_if, f"{host.ip}/{SUBNET_PREFIX_LEN}", TCP_SYSCTLS)
    run(["ip", "-n", netns, "route", "add", "default", "via", router_ip])
    log.info("routed host behind wire port %d: namespace %s, %s via %s", port, netns, host.ip,
             peer.netns)
    return host


def save(hosts: tuple[RoutedHost, ...], state_dir: Path) -> Path:
    """Write routed.json into `state_dir`; return its path."""
    path = state_dir / ROUTED_FILE
    path.write_text(json.dumps([asdict(h) for h in hosts], indent=2) + "\n")
    return path


def load(state_dir: Path) -> tuple[RoutedHost, ...]:
    """The routed hosts of the environment in `state_dir` (none without routed.json)."""
    path = state_dir / ROUTED_FILE
    if not path.is_file():
        return ()
    return tuple(map(RoutedHost.from_dict, json.loads(path.read_text())))
