"""p4tas-swx, the dpdk target's runner, on a small hand-written SWX pipeline
(tests/fixtures/swx_forward.spec) over real veths: forwarding by table entries, register arrays,
meters, mirror sessions with truncation, control errors, and no CPU burnt while idle."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bmv2_env import system_deps, topology
from bmv2_env.portmap import PortMap
from dpdk_target import toolchain
from dpdk_target.runner_control import Runner, RunnerError, RunnerPorts

SPEC = Path(__file__).resolve().parent.parent / "fixtures" / "swx_forward.spec"
CPU_PORT, LOOPBACK_PORT = 255, 253
ETH_P_ALL = 3


def _cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "veths and AF_PACKET sockets need root"
    lacking = system_deps.skip_reason()
    if lacking:
        return lacking
    try:
        toolchain.pipeline_library(SPEC)
    except toolchain.DpdkUnavailable as err:
        return f"the dpdk target cannot be built here: {err}"
    return None


_REASON = _cannot_run()
pytestmark = pytest.mark.skipif(_REASON is not None, reason=str(_REASON))


@pytest.fixture
def veths() -> Iterator[PortMap]:
    portmap = PortMap(2, f"x{os.getpid() % 1000}")
    topology.destroy(portmap.prefix)
    topology.create(portmap)
    try:
        yield portmap
    finally:
        topology.destroy(portmap.prefix)


@pytest.fixture
def runner(veths: PortMap) -> Iterator[Runner]:
    interfaces = {link.port: link.switch_iface for link in veths.links()
                  if link.port in (1, 2)}
    started = Runner.start(toolchain.runner(), toolchain.pipeline_library(SPEC),
                           RunnerPorts(interfaces, CPU_PORT, LOOPBACK_PORT), None)
    try:
        yield started
    finally:
        started.stop()


def _peer_socket(portmap: PortMap, port: int) -> socket.socket:
    link = portmap.wire_link(port)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((link.peer_iface, 0))
    sock.settimeout(0.3)
    return sock


def _frame(dst: int, payload: bytes = b"p4tas" * 12) -> bytes:
    return dst.to_bytes(6, "big") + bytes.fromhex("0200000000aa") + b"\x88\xb6" + payload


def _received(sock: socket.socket, dst: int) -> list[bytes]:
    """Frames for `dst` that reach `sock` within its timeout."""
    frames = []
    try:
        while True:
            frame = sock.recv(4096)
            if frame[:6] == dst.to_bytes(6, "big"):
                frames.append(frame)
    except socket.timeout:
        return frames


def test_forwards_by_table_entries_and_counts_per_port(veths: PortMap, runner: Runner) -> None:
    dst = 0x020000000002
    assert runner.batch([f"table_add forward match 0x{dst:x} action fwd port 0x2 mirror 0x0",
                         "commit"]) == ["ok", "ok"]
    into, out = _peer_socket(veths, 1), _peer_socket(veths, 2)
    for _ in range(3):
        into.send(_frame(dst))
    into.send(_frame(0x020000000099))   # no entry: the default action drops it
    assert [f[:60] for f in _received(out, dst)] == [_frame(dst)[:60]] * 3
    assert _received(out, 0x020000000099) == []
    assert runner.command("reg_read frames 1") == "4"
    assert runner.command("reg_dump frames") == "1=4"
    runner.command("reg_fill frames 0")
    assert runner.command("reg_dump frames") == ""


def test_a_mirror_session_sends_a_truncated_copy(veths: PortMap, runner: Runner) -> None:
    dst = 0x020000000003
    runner.command("mirror 1 1 20")
    runner.batch([f"table_add forward match 0x{dst:x} action fwd port 0x2 mirror 0x1", "commit"])
    into, out = _peer_socket(veths, 1), _peer_socket(veths, 2)
    into.send(_frame(dst))
    assert len(_received(out, dst)) == 1
    assert [len(f) for f in _received(into, dst)] == [20]   # the copy, out of port 1


def test_a_meter_drops_what_exceeds_its_rate(veths: PortMap, runner: Runner) -> None:
    dst = 0x020000000004
    runner.batch([f"table_add forward match 0x{dst:x} action fwd port 0x2 mirror 0x0", "commit"])
    runner.command("meter_set rate 1 1 2 1 2")   # 1 packet/s, bursts of 2
    into, out = _peer_socket(veths, 1), _peer_socket(veths, 2)
    for _ in range(10):
        into.send(_frame(dst))
    assert len(_received(out, dst)) == 2
    runner.command("meter_reset rate 1")
    into.send(_frame(dst))
    assert len(_received(out, dst)) == 1


def test_bad_commands_are_refused_and_the_runner_goes_on(runner: Runner) -> None:
    replies = runner.batch(["table_add forward match 0x1 action nosuch", "table_add nosuch x",
                            "reg_read nosuch 0", "meter_set rate 1 x", "frobnicate",
                            "table_frobnicate forward match 0x1", "commit", "commit"])
    # the commit after refused table writes applies none of them and says so; then all clear
    assert [r.split(" ", 1)[0] for r in replies] == ["error"] * 7 + ["ok"]
    with pytest.raises(RunnerError, match="reg_read"):
        runner.command("reg_read frames 999999")
    assert runner.command("port_stats 1") == "0 0"


def _cpu_seconds(runner: Runner) -> float:
    fields = Path(f"/proc/{runner.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_an_idle_runner_sleeps(runner: Runner) -> None:
    time.sleep(0.2)
    before = _cpu_seconds(runner)
    time.sleep(1.0)
    assert _cpu_seconds(runner) - before < 0.1


TRICKLE_BUSY_LIMIT = 0.55


def test_a_trickle_of_packets_lets_the_runner_sleep_between_them(veths: PortMap,
                                                                  runner: Runner) -> None:
    """A frame every 0.4 ms or so (a SYN flood's rate): the runner spins a bounded time after
    each, then sleeps (it spun a number of runs, which kept it busy from one to the next)."""
    into = _peer_socket(veths, 1)
    before, start = _cpu_seconds(runner), time.monotonic()
    while time.monotonic() - start < 1.0:
        into.send(_frame(0x020000000099))   # no entry: dropped
        time.sleep(0.0003)
    busy = (_cpu_seconds(runner) - before) / (time.monotonic() - start)
    # A runner that spins from one frame to the next was 70-96 % busy here; one that sleeps
    # 50 us after the last frame 20-37 % (wake-ups and the frames' work included).
    assert busy < TRICKLE_BUSY_LIMIT, f"the runner was busy {busy:.0%} of the time"


def test_a_large_batch_does_not_deadlock(runner: Runner) -> None:
    """Replies are written while the pipeline waits: a client that sent 20,000 commands
    before reading would fill both sockets (Runner.batch sends them in chunks)."""
    replies = runner.batch([f"reg_write frames {i % 256} {i}" for i in range(20000)])
    assert replies == ["ok"] * 20000
    assert runner.command("reg_read frames 255") == str(19967)   # its last: 78 * 256 - 1


def test_a_refused_staged_write_makes_the_commit_apply_nothing(veths: PortMap,
                                                                runner: Runner) -> None:
    dst = 0x020000000005
    replies = runner.batch([f"table_add forward match 0x{dst:x} action fwd port 0x2 mirror 0x0",
                            "table_add forward match 0x1 action nosuch", "commit"])
    assert replies[0] == "ok" and replies[1].startswith("error")
    assert replies[2].startswith("error commit: a staged table write was refused")
    into, out = _peer_socket(veths, 1), _peer_socket(veths, 2)
    into.send(_frame(dst))
    assert _received(out, dst) == []   # the good entry was not applied either
    assert runner.batch([f"table_add forward match 0x{dst:x} action fwd port 0x2 mirror 0x0",
                         "commit"]) == ["ok", "ok"]
    into.send(_frame(dst))
    assert len(_received(out, dst)) == 1


def test_meter_profiles_no_cell_uses_are_dropped(runner: Runner) -> None:
    assert runner.batch(["meter_set rate 1 100 10 200 20", "meter_set rate 2 100 10 200 20",
                         "meter_set rate 1 300 10 400 20",
                         "meter_profile_drop 100 10 200 20",    # cell 2 still uses it: kept
                         "meter_set rate 3 100 10 200 20",
                         "meter_set rate 2 300 10 400 20", "meter_set rate 3 300 10 400 20",
                         "meter_profile_drop 100 10 200 20",    # unused now: gone
                         "meter_profile_drop 100 10 200 20"]) == ["ok"] * 9


@pytest.mark.parametrize("ports", [({0: "eth0"}, 255, 253), ({1: "a"}, 1, 253),
                                   ({1: "a"}, 255, 255), ({300: "a"}, 255, 253)])
def test_port_ids_must_be_distinct_and_not_the_sink(ports: tuple) -> None:
    with pytest.raises(RunnerError, match="port ids must be distinct"):
        RunnerPorts(*ports)
