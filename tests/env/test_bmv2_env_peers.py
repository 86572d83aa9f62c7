"""Tests of bmv2_env.peers: Linux TCP peers in network namespaces, one per wire port.

The root-only tests create real veths and namespaces under a prefix unique to this process
(`q<pid>`, distinct from test_bmv2_env.py's `t<pid>`), need no switch (the CLI round trip uses a
stand-in simple_switch_grpc) and always remove what they made.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bmv2_env.cli import arguments
from bmv2_env.cli.main import main as p4tas_env
from bmv2_env import peers, system_deps, topology
from bmv2_env.peers import Peer, PeerError, PeerSet, popen_in, run_in
from bmv2_env.portmap import PortMap
from bmv2_env.state import STATE_DIR_ENV, EnvRecord
from tests.support.fakes import FAKE_SWITCH

IS_ROOT = os.geteuid() == 0
_CANNOT_RUN = ("creating veths and namespaces needs root" if not IS_ROOT
               else system_deps.skip_reason())
needs_root = pytest.mark.skipif(_CANNOT_RUN is not None, reason=str(_CANNOT_RUN))
OFFLOAD_FEATURES = ("tx-checksumming", "rx-checksumming", "tcp-segmentation-offload",
                    "generic-segmentation-offload", "generic-receive-offload")


def _prefix() -> str:
    return f"q{os.getpid() % 1000}"


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def _in(peer: Peer, argv: list[str]) -> str:
    done = run_in(peer, argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _namespaces(prefix: str) -> list[str]:
    names = [line.split()[0] for line in _out(["ip", "netns", "list"]).splitlines() if line]
    return sorted(n for n in names if n.startswith(prefix))


def _root_links(prefix: str) -> list[str]:
    return sorted(e["ifname"] for e in json.loads(_out(["ip", "-j", "link", "show"]))
                  if e["ifname"].startswith(prefix))


def _assert_nothing_left(prefix: str) -> None:
    assert _namespaces(prefix) == []
    assert _root_links(prefix) == []


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@pytest.fixture
def veths() -> Iterator[PortMap]:
    """Veths for 2 wire ports (no switch); everything of the prefix is removed afterwards."""
    portmap = PortMap(2, _prefix())
    topology.destroy(portmap.prefix)
    topology.create(portmap)
    try:
        yield portmap
    finally:
        topology.destroy(portmap.prefix)  # namespaces (and their processes) too
        _assert_nothing_left(portmap.prefix)


# ---- addressing and the table (no root) ---------------------------------------------------------
@pytest.mark.parametrize("port, ip, mac, net", [
    (1, "10.99.1.1", "02:00:0a:63:01:01", "10.99.1.0/24"),
    (10, "10.99.10.1", "02:00:0a:63:0a:01", "10.99.10.0/24"),
    (16, "10.99.16.1", "02:00:0a:63:10:01", "10.99.16.0/24"),
])
def test_addressing_convention(port: int, ip: str, mac: str, net: str) -> None:
    assert (peers.local_ip(port), peers.local_mac(port), peers.subnet(port)) == (ip, mac, net)
    assert peers.peer_ip(port) == ip[:-1] + "2"


@pytest.mark.parametrize("port", [0, 255, True, "1"])
def test_addressing_rejects_bad_ports(port: object) -> None:
    with pytest.raises(ValueError, match="wire port must be an integer"):
        peers.local_ip(port)  # type: ignore[arg-type]


def _sample_set() -> PeerSet:
    return PeerSet("p4t", tuple(
        Peer(f"p4tn{i}", f"p4tw{i}p", peers.peer_ip(i), f"aa:bb:cc:dd:ee:0{i}",
             peers.local_ip(i), peers.local_mac(i), i) for i in (1, 2)))


def test_peer_table_save_and_load(tmp_path: Path) -> None:
    peer_set = _sample_set()
    path = peer_set.save(tmp_path / "state")
    assert path == tmp_path / "state" / "peers.json"
    data = json.loads(path.read_text())
    assert data["peers"][1] == {"netns": "p4tn2", "ifname": "p4tw2p", "peer_ip": "10.99.2.2",
                                "peer_mac": "aa:bb:cc:dd:ee:02", "local_ip": "10.99.2.1",
                                "local_mac": "02:00:0a:63:02:01", "wire_port": 2}
    loaded = PeerSet.load(tmp_path / "state")
    assert loaded == peer_set
    assert loaded.peer(2).subnet == "10.99.2.0/24"
    assert [p.wire_port for p in loaded] == [1, 2] and len(loaded) == 2
    with pytest.raises(KeyError, match="no peer on wire port 3"):
        loaded.peer(3)


def test_peer_table_load_errors(tmp_path: Path) -> None:
    with pytest.raises(PeerError, match=r"peers\.json does not exist: .*up --peers"):
        PeerSet.load(tmp_path)
    (tmp_path / "peers.json").write_text("{not json")
    with pytest.raises(PeerError, match="cannot read the peer table"):
        PeerSet.load(tmp_path)
    (tmp_path / "peers.json").write_text('{"prefix": "p4t", "peers": [{"netns": "x"}]}')
    with pytest.raises(PeerError, match="lacks ifname"):
        PeerSet.load(tmp_path)


def test_run_in_builds_ip_netns_exec() -> None:
    peer = _sample_set().peer(1)
    assert peers.netns_argv(peer, ["ss", "-t"]) == ["ip", "netns", "exec", "p4tn1", "ss", "-t"]
    assert peers.netns_argv("other", ("true",)) == ["ip", "netns", "exec", "other", "true"]
    with pytest.raises(TypeError, match="not a string"):
        peers.netns_argv(peer, "ss -t")  # type: ignore[arg-type]


def test_cli_up_has_peers_and_ptf_does_not(capsys: pytest.CaptureFixture[str]) -> None:
    assert arguments.options(arguments.parse_args(["up", "--peers", "--no-pipeline"])).peers is True
    assert arguments.options(arguments.parse_args(["up"])).peers is False
    assert arguments.options(arguments.parse_args(["ptf"])).peers is False
    for command in ("ptf", "status", "down"):
        with pytest.raises(SystemExit):
            p4tas_env([command, "--peers"])
        assert "unrecognized arguments: --peers" in capsys.readouterr().err


# ---- real namespaces (root) ----------------------------------------------------------------------
@needs_root
def test_create_configures_each_peer(veths: PortMap) -> None:
    prefix = veths.prefix
    peer_set = PeerSet.create(veths)
    assert peer_set.prefix == prefix and [p.wire_port for p in peer_set] == [1, 2]
    assert _namespaces(prefix) == [f"{prefix}n1", f"{prefix}n2"]
    # The peer sides left our namespace; the switch sides and the host port stayed.
    assert _root_links(prefix) == sorted([f"{prefix}h", f"{prefix}hp", f"{prefix}w1",
                                          f"{prefix}w2"])
    fresh_ecn = _out(["unshare", "--net", "sysctl", "-n", "net.ipv4.tcp_ecn"])
    for i in (1, 2):
        peer = peer_set.peer(i)
        assert (peer.netns, peer.ifname) == (veths.netns_name(i), f"{prefix}w{i}p")
        assert (peer.peer_ip, peer.local_ip) == (f"10.99.{i}.2", f"10.99.{i}.1")
        assert peer.local_mac == f"02:00:0a:63:0{i}:01"
        links = {e["ifname"]: e for e in json.loads(_in(peer, ["ip", "-j", "link", "show"]))}
        assert sorted(links) == ["lo", peer.ifname]  # nothing else in the namespace
        assert links[peer.ifname]["address"] == peer.peer_mac
        assert links[peer.ifname]["mtu"] == 1500
        assert "UP" in links[peer.ifname]["flags"] and "UP" in links["lo"]["flags"]
        addrs = _in(peer, ["ip", "-o", "-4", "addr", "show", "dev", peer.ifname])
        assert f"inet {peer.peer_ip}/24 " in addrs
        assert _in(peer, ["ip", "-o", "-6", "addr"]) == ""
        for conf in ("all", "default", peer.ifname):
            assert _in(peer, ["cat", f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"]) == "1\n"
        features = _in(peer, ["ethtool", "-k", peer.ifname])
        for feature in OFFLOAD_FEATURES:
            assert re.search(rf"^{feature}: off", features, re.MULTILINE), feature
        assert _in(peer, ["sysctl", "-n", "net.ipv4.tcp_sack"]) == "1\n"
        assert _in(peer, ["sysctl", "-n", "net.ipv4.tcp_ecn"]) == fresh_ecn  # left at default
        route = _in(peer, ["ip", "-o", "-4", "route", "get", peer.local_ip])
        assert f"dev {peer.ifname}" in route


@needs_root
def test_popen_in_runs_inside_the_namespace(veths: PortMap) -> None:
    peer = PeerSet.create(veths).peer(2)
    # Binding the peer's address and seeing the namespace's interfaces only work in there.
    code = textwrap.dedent("""\
        import socket, sys
        server = socket.socket()
        server.bind((sys.argv[1], 0))
        server.listen()
        print(open("/proc/self/net/dev").read(), flush=True)
        """)
    proc = popen_in(peer, [sys.executable, "-c", code, peer.peer_ip],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    names = {line.split(":")[0].strip() for line in out.splitlines() if ":" in line}
    assert names == {"lo", peer.ifname}
    with socket.socket() as outside, pytest.raises(OSError):
        outside.bind((peer.peer_ip, 0))  # not an address of our namespace


@needs_root
def test_destroy_stops_processes_and_gives_the_veths_back(veths: PortMap) -> None:
    prefix = veths.prefix
    peer_set = PeerSet.create(veths)
    sleeper = popen_in(peer_set.peer(1), ["sleep", "60"])
    try:
        assert sorted(peer_set.destroy()) == [f"{prefix}n1", f"{prefix}n2"]
        assert sleeper.wait(timeout=10) is not None
    finally:
        _stop(sleeper)
    assert _namespaces(prefix) == []
    # Back in our namespace, as topology.create made them: up, MTU 1500, IPv6 off, no address.
    assert _root_links(prefix) == sorted(veths.interface_names())
    for i in (1, 2):
        name = f"{prefix}w{i}p"
        info = topology.link_info(name)
        assert (info.mtu, info.ipv6_disabled) == (1500, True)
        assert "UP" in json.loads(_out(["ip", "-j", "link", "show", "dev", name]))[0]["flags"]
        assert _out(["ip", "-o", "addr", "show", "dev", name]) == ""
    assert peers.destroy(prefix) == []  # idempotent


@needs_root
def test_create_again_over_a_stale_set(veths: PortMap) -> None:
    prefix = veths.prefix
    first = PeerSet.create(veths)
    # A crashed run: a namespace of a port count no longer used, with a process inside.
    subprocess.run(["ip", "netns", "add", f"{prefix}n5"], check=True)
    stray = popen_in(f"{prefix}n5", ["sleep", "60"])
    lingering = popen_in(first.peer(1), ["sleep", "60"])
    try:
        second = PeerSet.create(veths)
        assert stray.wait(timeout=10) is not None and lingering.wait(timeout=10) is not None
    finally:
        _stop(stray)
        _stop(lingering)
    assert second == first  # same veths (given back, moved in again), same MACs
    assert _namespaces(prefix) == [f"{prefix}n1", f"{prefix}n2"]
    for peer in second:
        assert f"inet {peer.peer_ip}/24 " in _in(peer, ["ip", "-o", "-4", "addr"])
        assert _in(peer, ["cat", f"/proc/sys/net/ipv6/conf/{peer.ifname}/disable_ipv6"]) == "1\n"
    assert peers.PeerSet.create(veths) == first  # and once more


@needs_root
def test_create_without_veths_is_a_clear_error() -> None:
    portmap = PortMap(2, _prefix())
    topology.destroy(portmap.prefix)
    with pytest.raises(PeerError, match=rf"veth {portmap.prefix}w1p, {portmap.prefix}w2p missing"):
        PeerSet.create(portmap)
    _assert_nothing_left(portmap.prefix)


@needs_root
def test_topology_destroy_removes_peers_with_their_processes(veths: PortMap) -> None:
    peer_set = PeerSet.create(veths)
    sleeper = popen_in(peer_set.peer(2), ["sleep", "60"])
    try:
        removed = topology.destroy(veths.prefix)  # what `down` does
        assert sleeper.wait(timeout=10) is not None
    finally:
        _stop(sleeper)
    assert {f"{veths.prefix}n1", f"{veths.prefix}n2"} <= set(removed)
    _assert_nothing_left(veths.prefix)




def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_root
def test_cli_up_peers_status_down(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "bin" / "simple_switch_grpc"
    binary.parent.mkdir()
    binary.write_text(FAKE_SWITCH)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(binary))
    monkeypatch.setenv("TARGET", "bmv2")  # the stand-in plays simple_switch_grpc
    state_dir = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(state_dir))
    prefix = _prefix()
    base = ["--prefix", prefix, "--grpc-port", str(_free_port())]
    sleeper = None
    try:
        assert p4tas_env(base + ["up", "--peers", "--no-pipeline"]) == 0
        out = capsys.readouterr().out
        assert re.search(rf"(?m)^\s+1\s+{prefix}n1\s+{prefix}w1p\s+10\.99\.1\.2\s+\S+\s+"
                         r"10\.99\.1\.1\s+02:00:0a:63:01:01$", out), out
        peer_set = PeerSet.load(state_dir)  # what another process (the runtime, a test) does
        assert [p.netns for p in peer_set] == [f"{prefix}n1", f"{prefix}n2"]
        assert EnvRecord.load(state_dir).peers is True  # type: ignore[union-attr]
        sleeper = popen_in(peer_set.peer(1), ["sleep", "60"])

        assert p4tas_env(base + ["status"]) == 0
        out = capsys.readouterr().out
        assert f"environment '{prefix}': up" in out
        assert f"{prefix}n2" in out and "02:00:0a:63:02:01" in out and "missing" not in out

        subprocess.run(["ip", "netns", "del", f"{prefix}n2"], check=True)  # break it
        assert p4tas_env(base + ["status"]) == 1
        assert f"missing peers       {prefix}n2/{prefix}w2p" in capsys.readouterr().out
    finally:
        assert p4tas_env(base + ["down"]) == 0
        if sleeper is not None:
            assert sleeper.wait(timeout=10) is not None
            _stop(sleeper)
    assert "stopped simple_switch_grpc pid" in capsys.readouterr().out
    _assert_nothing_left(prefix)
    assert not state_dir.exists()
