"""Linux TCP peers for end-to-end tests: wire port i's peer veth in its own network namespace.

For wire port i of a PortMap (see bmv2_env/README.md, "Linux TCP peers"):

- the namespace is `PortMap.netns_name(i)` (`<prefix>n<i>`), and the peer side of the port's
  veth (`<prefix>w<i>p`) is moved into it;
- subnet 10.99.<i>.0/24: the Linux peer is 10.99.<i>.2 on that veth (its MAC is the kernel's,
  read back), the p4tas side (the NIC behind the switch) is 10.99.<i>.1 with MAC
  02:00:0a:63:<i as 2 hex digits>:01 (0a:63 is 10.99);
- inside the namespace: loopback up, the veth up with MTU 1500, IPv6 off, every checksum and
  segmentation offload off (bmv2 must see complete checksums and no super-segments),
  net.ipv4.tcp_sack=1; everything else (ECN, ...) is the kernel's default.

The peer ARPs for 10.99.<i>.1 like any Linux host; answering is the p4tas runtime's job (ARP is
punted to the CPU port). `PeerSet.create` needs the veths to exist (`topology.create`, or
`p4tas-env up --peers`, which also saves the table as peers.json in the state dir for
`PeerSet.load`). `run_in` / `popen_in` start programs inside a peer's namespace.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import topology
from .portmap import PortMap, validate_prefix
from .shell import CommandError, run
from .state import PEERS_FILE

log = logging.getLogger(__name__)

SUBNET_PREFIX_LEN = 24
TCP_SYSCTLS = ("net.ipv4.tcp_sack=1",)  # the kernel default, stated; nothing else is changed


class PeerError(RuntimeError):
    """The peers could not be created, or their table could not be loaded."""


# ---- the addressing convention ---------------------------------------------------------------
def subnet(wire_port: int) -> str:
    """10.99.<i>.0/24."""
    return f"10.99.{_octet(wire_port)}.0/{SUBNET_PREFIX_LEN}"


def peer_ip(wire_port: int) -> str:
    """The Linux peer's address on wire port i: 10.99.<i>.2."""
    return f"10.99.{_octet(wire_port)}.2"


def local_ip(wire_port: int) -> str:
    """The p4tas side's (the NIC's) address on wire port i: 10.99.<i>.1."""
    return f"10.99.{_octet(wire_port)}.1"


def local_mac(wire_port: int) -> str:
    """The p4tas side's (the NIC's) MAC on wire port i: 02:00:0a:63:<i in hex>:01."""
    return f"02:00:0a:63:{_octet(wire_port):02x}:01"


def _octet(wire_port: int) -> int:
    if isinstance(wire_port, bool) or not isinstance(wire_port, int) or not 1 <= wire_port <= 254:
        raise ValueError(f"wire port must be an integer from 1 to 254, got {wire_port!r}")
    return wire_port


# ---- the table ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Peer:
    """One Linux TCP peer: the namespace holding wire port `wire_port`'s peer-side veth."""

    netns: str
    ifname: str
    peer_ip: str
    peer_mac: str
    local_ip: str
    local_mac: str
    wire_port: int

    @property
    def subnet(self) -> str:
        """The port's subnet, 10.99.<i>.0/24."""
        return subnet(self.wire_port)

    @classmethod
    def from_dict(cls, data: Any) -> Peer:
        """Build from a dict made by asdict(peer); raise ValueError if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"a peer must be a JSON object, got {type(data).__name__}")
        try:
            fields = {k: data[k] for k in ("netns", "ifname", "peer_ip", "peer_mac",
                                           "local_ip", "local_mac", "wire_port")}
        except KeyError as exc:
            raise ValueError(f"peer entry lacks {exc.args[0]}") from None
        if not isinstance(fields["wire_port"], int) or isinstance(fields["wire_port"], bool):
            raise ValueError(f"peer wire_port must be an integer, got {fields['wire_port']!r}")
        return cls(**{k: (v if k == "wire_port" else str(v)) for k, v in fields.items()})


@dataclass(frozen=True)
class PeerSet:
    """The Linux peers of one environment (prefix), one per wire port, in port order."""

    prefix: str
    peers: tuple[Peer, ...]

    def __iter__(self) -> Iterator[Peer]:
        return iter(self.peers)

    def __len__(self) -> int:
        return len(self.peers)

    def peer(self, wire_port: int) -> Peer:
        """The peer on wire port `wire_port`."""
        for peer in self.peers:
            if peer.wire_port == wire_port:
                return peer
        raise KeyError(f"no peer on wire port {wire_port} (ports: "
                       f"{', '.join(str(p.wire_port) for p in self.peers) or 'none'})")

    # ---- lifecycle ------------------------------------------------------------------------------
    @classmethod
    def create(cls, portmap: PortMap) -> PeerSet:
        """Create a namespace per wire port of `portmap` and move the peer veths into them.

        Idempotent: namespaces of this prefix left by an earlier run (any port count) are
        removed first, their processes stopped and our veths in them given back to the root
        namespace, so re-creating over a stale set just works. Needs the veths of `portmap`
        (topology.create). On failure, what was made is undone and PeerError is raised.
        """
        destroy(portmap.prefix)
        missing = [link.peer_iface for link in map(portmap.wire_link, portmap.wire_ports)
                   if not topology.link_exists(link.peer_iface)]
        if missing:
            raise PeerError(f"veth {', '.join(missing)} missing: create the veths first "
                            "(topology.create, or `p4tas-env up --peers`)")
        try:
            peers = tuple(_create_peer(portmap, port) for port in portmap.wire_ports)
        except BaseException:
            _undo(portmap.prefix)
            raise
        return cls(portmap.prefix, peers)

    def destroy(self) -> list[str]:
        """destroy(self.prefix): see there."""
        return destroy(self.prefix)

    # ---- state dir ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: {"prefix": ..., "peers": [Peer fields, ...]}."""
        return {"prefix": self.prefix, "peers": [asdict(p) for p in self.peers]}

    @classmethod
    def from_dict(cls, data: Any) -> PeerSet:
        """Build from a dict made by to_dict; raise ValueError if it is not one."""
        if not isinstance(data, dict) or not isinstance(data.get("peers"), list):
            raise ValueError("peer table must be a JSON object with a list `peers`")
        return cls(validate_prefix(data.get("prefix")), tuple(map(Peer.from_dict, data["peers"])))

    def save(self, state_dir: Path | str) -> Path:
        """Write the table as peers.json into `state_dir`; return the file's path."""
        directory = Path(state_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PEERS_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)  # readers in other processes never see half a file
        return path

    @classmethod
    def load(cls, state_dir: Path | str) -> PeerSet:
        """Read peers.json from `state_dir` (bmv2_env.state.state_dir(prefix) for an `up`).

        Raises PeerError if it is absent (the environment was brought up without --peers) or
        unreadable.
        """
        path = Path(state_dir) / PEERS_FILE
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise PeerError(f"{path} does not exist: bring the environment up with "
                            "`p4tas-env up --peers` (or save a PeerSet there)") from None
        except (OSError, ValueError) as exc:
            raise PeerError(f"cannot read the peer table {path}: {exc}") from None


def destroy(prefix: str) -> list[str]:
    """Remove every namespace of `prefix` (PortMap.netns_name, any port count); idempotent.

    The processes inside are stopped first; a veth of ours inside is given back to the root
    namespace and configured as topology.create left it (up, MTU 1500, IPv6 and offloads off,
    no address), so the veths are as before PeerSet.create; a routed host's veth
    (bmv2_env.routed) is deleted. Returns the namespaces removed.
    """
    removed = []
    routed = topology.routed_interface_pattern(prefix)
    for ns in topology.existing_namespaces(prefix):
        topology.kill_netns_processes(ns)
        for name in _our_links_in(ns, prefix):
            if routed.fullmatch(name):
                _delete_in(ns, name)
            else:
                _give_back(ns, name)
        topology.delete_netns(ns)
        removed.append(ns)
    return removed


def _undo(prefix: str) -> None:
    """destroy() after a failed create, without hiding the original error."""
    try:
        destroy(prefix)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the real failure
        log.error("cleanup after failed peer creation also failed: %s", exc)


# ---- running programs in a peer ----------------------------------------------------------------
def netns_argv(peer: Peer | str, argv: Sequence[str]) -> list[str]:
    """`ip netns exec <netns> argv...`; `peer` is a Peer or a namespace name."""
    netns = peer.netns if isinstance(peer, Peer) else str(peer)
    if isinstance(argv, (str, bytes)):
        raise TypeError("argv must be a sequence of arguments, not a string (no shell is used)")
    return ["ip", "netns", "exec", netns, *map(str, argv)]


def run_in(peer: Peer | str, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run(argv, **kwargs) inside the peer's namespace (via `ip netns exec`)."""
    return subprocess.run(netns_argv(peer, argv), **kwargs)


def popen_in(peer: Peer | str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """subprocess.Popen(argv, **kwargs) inside the peer's namespace (via `ip netns exec`).

    `ip netns exec` execs the program, so the Popen's pid is the program's own. Processes still
    running in a namespace are stopped by destroy() / `p4tas-env down`.
    """
    return subprocess.Popen(netns_argv(peer, argv), **kwargs)


# ---- creation ----------------------------------------------------------------------------------
def _create_peer(portmap: PortMap, port: int) -> Peer:
    """Namespace, veth moved in, addresses and settings; return the Peer (MAC read back)."""
    netns = portmap.netns_name(port)
    ifname = portmap.wire_link(port).peer_iface
    run(["ip", "netns", "add", netns])
    run(["ip", "-n", netns, "link", "set", "dev", "lo", "up"])
    topology.configure_in_netns(netns, ifname, f"{peer_ip(port)}/{SUBNET_PREFIX_LEN}",
                                TCP_SYSCTLS)
    peer = Peer(netns=netns, ifname=ifname, peer_ip=peer_ip(port),
                peer_mac=_link_json(netns, ifname)["address"], local_ip=local_ip(port),
                local_mac=local_mac(port), wire_port=port)
    log.info("peer on wire port %d: namespace %s, %s %s on %s", port, netns, peer.peer_ip,
             peer.peer_mac, ifname)
    return peer


def _link_json(netns: str, ifname: str) -> dict[str, Any]:
    """`ip -j link show` of one interface inside a namespace."""
    out = run(["ip", "-n", netns, "-j", "link", "show", "dev", ifname])
    try:
        return json.loads(out)[0]
    except (ValueError, IndexError, KeyError) as exc:
        raise CommandError(["ip", "-n", netns, "-j", "link", "show", "dev", ifname],
                           f"unexpected output ({exc}): {out!r}") from None


def _links_in(netns: str) -> list[str]:
    """Names of the interfaces inside a namespace ([] if it cannot be read)."""
    try:
        out = run(["ip", "-n", netns, "-j", "link", "show"])
        return [entry["ifname"] for entry in json.loads(out)]
    except (CommandError, ValueError, KeyError, TypeError):
        return []


def _our_links_in(netns: str, prefix: str) -> list[str]:
    pattern = topology.interface_pattern(prefix)
    return [name for name in _links_in(netns) if pattern.fullmatch(name)]


def link_in_netns(netns: str, ifname: str) -> bool:
    """True if interface `ifname` exists inside namespace `netns`."""
    return ifname in _links_in(netns)


def _delete_in(netns: str, name: str) -> None:
    """Delete veth `name` in `netns` (gone already if its other end was deleted first)."""
    if link_in_netns(netns, name):
        run(["ip", "-n", netns, "link", "del", "dev", name])


def _give_back(netns: str, name: str) -> None:
    """Move our veth end `name` from `netns` back to our own namespace, configured as before.

    If our namespace already has an interface of that name (a newer veth), the stale one in
    the namespace is deleted instead.
    """
    if topology.link_exists(name):
        run(["ip", "-n", netns, "link", "del", "dev", name])
        log.warning("deleted stale %s in namespace %s", name, netns)
        return
    # `netns <pid>` means the namespace of that process: ours (the root namespace, normally).
    run(["ip", "-n", netns, "link", "set", "dev", name, "netns", str(os.getpid())])
    run(["ip", "link", "set", "dev", name, "mtu", str(topology.MTU)])
    topology.configure(name)
    log.info("moved %s from namespace %s back", name, netns)
