"""Create and delete the veth pairs of a PortMap (idempotent; stale pairs are replaced)."""

from __future__ import annotations

import logging
import os
import re
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .portmap import MAX_WIRE_PORTS, ROLE_CPU, PortMap, validate_prefix
from .shell import CommandError, run

log = logging.getLogger(__name__)

MTU = 1500
# The CPU port's veth carries whole wire frames with the packet_in/packet_out header in front:
# more than an Ethernet MTU (a veth drops what does not fit).
CPU_LINK_MTU = 9000
SYS_NET = Path("/sys/class/net")
PROC_IPV6_CONF = Path("/proc/sys/net/ipv6/conf")
# veth TX checksum offload would hand the switch packets with unfinished checksums; segmentation
# offloads would hand it frames larger than the MTU.
OFFLOADS_OFF = ("tx", "off", "rx", "off", "tso", "off", "gso", "off", "gro", "off")
NETNS_DIR = Path("/run/netns")  # where `ip netns add` puts its namespace handles
NETNS_KILL_GRACE = 2.0


@dataclass(frozen=True)
class LinkInfo:
    """What the kernel says about one interface."""

    name: str
    mtu: int
    operstate: str
    ipv6_disabled: bool


def _wire_range() -> str:
    return "|".join(str(p) for p in range(1, MAX_WIRE_PORTS + 1))


def interface_pattern(prefix: str) -> re.Pattern[str]:
    """Every interface name a PortMap with `prefix` can produce, whatever its port count (wire
    ports, host port, CPU port, routed hosts' veths)."""
    return re.compile(rf"{re.escape(validate_prefix(prefix))}(?:[wb](?:{_wire_range()})p?|[hc]p?)")


def routed_interface_pattern(prefix: str) -> re.Pattern[str]:
    """The veths between routers and routed hosts (PortMap.routed_names) of `prefix`."""
    return re.compile(rf"{re.escape(validate_prefix(prefix))}b(?:{_wire_range()})p?")


def netns_pattern(prefix: str) -> re.Pattern[str]:
    """Every namespace name PortMap.netns_name and PortMap.routed_names can produce."""
    return re.compile(rf"{re.escape(validate_prefix(prefix))}[nr](?:{_wire_range()})")


def link_exists(name: str) -> bool:
    """True if interface `name` exists in this network namespace."""
    return (SYS_NET / name).exists()


def existing_interfaces(prefix: str) -> list[str]:
    """Our interfaces (any port count) that exist now, sorted."""
    pattern = interface_pattern(prefix)
    names = [p.name for p in SYS_NET.iterdir()] if SYS_NET.is_dir() else []
    return sorted(n for n in names if pattern.fullmatch(n))


def existing_namespaces(prefix: str) -> list[str]:
    """Our network namespaces (named by PortMap.netns_name) that exist now."""
    pattern = netns_pattern(prefix)
    lines = run(["ip", "netns", "list"]).splitlines()
    return sorted(w[0] for w in (line.split() for line in lines) if w and pattern.fullmatch(w[0]))


def link_info(name: str) -> LinkInfo:
    """Read MTU, operstate and the IPv6 switch of `name` from sysfs/procfs."""
    base = SYS_NET / name
    disable = PROC_IPV6_CONF / name / "disable_ipv6"
    return LinkInfo(
        name=name,
        mtu=int((base / "mtu").read_text()),
        operstate=(base / "operstate").read_text().strip(),
        ipv6_disabled=(not disable.exists()) or disable.read_text().strip() == "1",
    )


def delete_link(name: str) -> bool:
    """Delete interface `name` (and so its veth peer); False if it was not there."""
    if not link_exists(name):
        return False
    try:
        run(["ip", "link", "del", "dev", name])
    except CommandError:
        if link_exists(name):
            raise
        return False  # its peer was deleted meanwhile, taking it along
    log.info("deleted %s", name)
    return True


def _disable_ipv6(name: str) -> None:
    """Turn IPv6 off on `name` so neighbour discovery never reaches the switch."""
    if not PROC_IPV6_CONF.is_dir():
        return  # IPv6 is off in this kernel altogether
    run(["sysctl", "-q", "-w", f"net.ipv6.conf.{name}.disable_ipv6=1"])


def configure(name: str) -> None:
    """IPv6 off, offloads off, then link up (in that order: no IPv6 traffic at link-up)."""
    _disable_ipv6(name)
    run(["ethtool", "-K", name, *OFFLOADS_OFF])
    run(["ip", "link", "set", "dev", name, "up"])


def create_pair(switch_iface: str, peer_iface: str, mtu: int = MTU) -> None:
    """Create one veth pair, replacing whatever stale interface has either name."""
    for name in (switch_iface, peer_iface):
        if delete_link(name):
            log.warning("replaced stale interface %s", name)
    run(["ip", "link", "add", "name", switch_iface, "mtu", str(mtu),
         "type", "veth", "peer", "name", peer_iface, "mtu", str(mtu)])
    for name in (switch_iface, peer_iface):
        configure(name)
    log.info("created veth %s <-> %s", switch_iface, peer_iface)


def configure_in_netns(netns: str, ifname: str, address: str, sysctls: Sequence[str] = ()
                       ) -> None:
    """Move veth end `ifname` into `netns` and set it up there like configure() (IPv6 off
    before the link goes up, offloads off, MTU), with `address` (a.b.c.d/len) and `sysctls`."""
    run(["ip", "link", "set", "dev", ifname, "netns", netns])
    settings = [*sysctls]
    if PROC_IPV6_CONF.is_dir():
        settings += [f"net.ipv6.conf.{key}.disable_ipv6=1" for key in ("all", "default", ifname)]
    if settings:
        run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *settings])
    run(["ip", "netns", "exec", netns, "ethtool", "-K", ifname, *OFFLOADS_OFF])
    run(["ip", "-n", netns, "link", "set", "dev", ifname, "mtu", str(MTU)])
    run(["ip", "-n", netns, "addr", "replace", address, "dev", ifname])
    run(["ip", "-n", netns, "link", "set", "dev", ifname, "up"])


def create(portmap: PortMap) -> None:
    """Create every veth pair of `portmap`: both ends up, MTU 1500, IPv6 and offloads off."""
    for link in portmap.links():
        create_pair(link.switch_iface, link.peer_iface,
                    CPU_LINK_MTU if link.role == ROLE_CPU else MTU)


def destroy(prefix: str) -> list[str]:
    """Delete our veths and namespaces for `prefix` (any port count); return what was removed."""
    namespaces = existing_namespaces(prefix)
    for ns in namespaces:
        delete_netns(ns)
    interfaces = existing_interfaces(prefix)
    for name in interfaces:
        delete_link(name)  # a no-op for the peer of a pair already deleted
    return namespaces + interfaces


def netns_exists(name: str) -> bool:
    """True if the named network namespace (`ip netns add`) exists."""
    return (NETNS_DIR / name).exists()


def netns_pids(name: str) -> list[int]:
    """PIDs of the live processes inside namespace `name` (`ip netns pids`); [] if it is gone."""
    try:
        out = run(["ip", "netns", "pids", name])
    except CommandError:
        if netns_exists(name):
            raise
        return []
    return sorted(int(w) for w in out.split() if w.isdigit())


def kill_netns_processes(name: str, grace: float = NETNS_KILL_GRACE) -> list[int]:
    """SIGTERM every process inside namespace `name`, SIGKILL what is left after `grace` s.

    A process left inside would keep the namespace, and the veth in it, alive after
    `ip netns del`. Returns the PIDs signalled.
    """
    pids = netns_pids(name)
    if not pids:
        return []
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        for pid in netns_pids(name):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while netns_pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not netns_pids(name):
            break
    left = netns_pids(name)
    if left:
        raise CommandError(["kill", "-KILL", *map(str, left)],
                           f"processes in namespace {name} survived SIGKILL")
    log.info("stopped processes in namespace %s: %s", name, " ".join(map(str, pids)))
    return pids


def delete_netns(name: str) -> None:
    """Stop the processes inside namespace `name`, then delete it (and the interfaces in it)."""
    kill_netns_processes(name)
    run(["ip", "netns", "del", name])
    log.info("deleted namespace %s", name)
