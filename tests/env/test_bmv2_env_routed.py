"""Tests of bmv2_env.routed: a Linux host behind each peer, which routes (ip_forward=1).

The root-only test creates real veths and namespaces under its own prefix (`rtv`), needs no
switch and removes what it made; tests/e2e/test_e2e_routed.py sends traffic through them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from bmv2_env import env, peers, routed, runtime_proc, system_deps, topology
from bmv2_env.cli import arguments, describe
from bmv2_env.peers import Peer, PeerSet
from bmv2_env.portmap import PortMap
from bmv2_env.routed import RoutedHost
from bmv2_env.state import EnvRecord
from runtime.daemon import parse_args

_CANNOT_RUN = ("creating veths and namespaces needs root" if os.geteuid() != 0
               else system_deps.skip_reason())
needs_root = pytest.mark.skipif(_CANNOT_RUN is not None, reason=str(_CANNOT_RUN))
PREFIX = "rtv"
HOST = RoutedHost("p4tr1", "p4tb1p", "10.98.1.2", "10.98.1.0/24", "10.99.1.2", 1)
PEER = Peer("p4tn1", "p4tw1p", "10.99.1.2", "aa:bb:cc:dd:ee:0f", "10.99.1.1",
            "02:00:0a:63:01:01", 1)


def _ns_out(netns: str, argv: list[str]) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, check=True).stdout


def _ours(prefix: str) -> list[str]:
    """Our namespaces and root-namespace links."""
    links = [e["ifname"] for e in json.loads(subprocess.run(
        ["ip", "-j", "link", "show"], capture_output=True, text=True, check=True).stdout)]
    return topology.existing_namespaces(prefix) + [n for n in links if n.startswith(prefix)]


# ---- names, options, the runtime's command line (no root) -------------------------------------
def test_names_are_the_prefixs_and_down_finds_them() -> None:
    names = PortMap(2, "p4t").routed_names(2)
    assert names == ("p4tr2", "p4tb2", "p4tb2p")
    assert topology.netns_pattern("p4t").fullmatch(names[0])
    assert all(topology.interface_pattern("p4t").fullmatch(n) for n in names[1:])
    assert all(topology.routed_interface_pattern("p4t").fullmatch(n) for n in names[1:])
    assert not topology.routed_interface_pattern("p4t").fullmatch("p4tw2p")
    assert max(map(len, PortMap(16, "abcdef").routed_names(16))) <= 15


def test_routed_needs_peers_and_the_cli_implies_them() -> None:
    with pytest.raises(ValueError, match="need the Linux peers"):
        env.EnvOptions(routed=True)
    for argv in (["up", "--routed"], ["run", "--routed"]):
        opts = arguments.options(arguments.parse_args(argv))
        assert opts.routed and opts.peers
    assert not arguments.options(arguments.parse_args(["up", "--peers"])).routed


def test_the_runtime_gets_a_route_to_each_host(tmp_path: Path) -> None:
    routed.save((HOST,), tmp_path)
    assert routed.load(tmp_path) == (HOST,)
    assert routed.load(tmp_path / "elsewhere") == ()
    cmd = runtime_proc.build_command(tmp_path, "a:1", routes=HOST.route_args(),
                                     interfaces=["1=10.99.1.1/24,02:00:0a:63:01:01"])
    config, _ = parse_args(cmd[cmd.index("--grpc-addr"):])
    hop = config.routing.lookup(HOST.ip)
    assert (hop.ip, hop.gateway, hop.interface.port) == ("10.99.1.2", True, 1)


def test_describe_lists_the_routed_hosts(tmp_path: Path) -> None:
    record = EnvRecord(PortMap(1, "p4t"), "127.0.0.1:9559", log=False, pipeline=True,
                       peers=True)
    result = env.UpResult(4242, record, tmp_path, True, PeerSet("p4t", (PEER,)), (HOST,))
    out = describe.describe_up(result)
    assert re.search(r"(?m)^\s+1\s+p4tr1\s+p4tb1p\s+10\.98\.1\.2\s+10\.98\.1\.0/24 via "
                     r"10\.99\.1\.2$", out), out


# ---- real namespaces (root) -------------------------------------------------------------------
@needs_root
def test_create_routes_through_the_peer_and_destroy_removes_it_all() -> None:
    portmap = PortMap(1, PREFIX)
    topology.destroy(PREFIX)
    topology.create(portmap)
    try:
        peer_set = PeerSet.create(portmap)
        (host,) = routed.create(portmap, peer_set)
        router = peer_set.peer(1).netns
        assert host == RoutedHost(f"{PREFIX}r1", f"{PREFIX}b1p", "10.98.1.2", "10.98.1.0/24",
                                  "10.99.1.2", 1)
        assert _ns_out(router, ["sysctl", "-n", "net.ipv4.ip_forward"]).strip() == "1"
        assert "10.98.1.1/24" in _ns_out(router, ["ip", "-4", "addr", "show", f"{PREFIX}b1"])
        assert _ns_out(host.netns, ["ip", "route", "show", "default"]).startswith(
            "default via 10.98.1.1")
        assert "off" in _ns_out(host.netns, ["ethtool", "-k", host.ifname]).split(
            "tx-checksumming:")[1].split("\n")[0]
        assert "via 10.98.1.1 dev" in _ns_out(host.netns, ["ip", "route", "get", "10.99.1.1"])
        assert set(peers.destroy(PREFIX)) == {f"{PREFIX}n1", f"{PREFIX}r1"}
        assert sorted(_ours(PREFIX)) == sorted(n for link in portmap.links()
                                               for n in (link.switch_iface, link.peer_iface))
    finally:
        topology.destroy(PREFIX)
    assert _ours(PREFIX) == []
