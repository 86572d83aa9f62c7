"""Tests of bmv2_env.runtime_proc (the runtime daemon of an environment), `run`, the runtime in
`status` and `down`, and the plumbing of bench/bench_conn.py.

Most tests use a stand-in for `python -m runtime` (a script that takes the same arguments,
prints READY, binds the control socket and waits for SIGTERM), so they need neither bmv2 nor
the compiled pipeline. The state dirs are temporary (P4TAS_STATE_DIR) and the prefix (`r<pid>`)
is unique to this process. The last tests (`target` marker) run the real stack (`run`, status,
down) on the selected target (TARGET) when it and p4src/build/ are there, and check that nothing
is left.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bmv2_env.cli import arguments, describe
from bmv2_env.cli.main import main as p4tas_env
from bmv2_env import env, processes, runtime_proc, switch, system_deps, targets, topology
from bmv2_env.peers import Peer, PeerSet
from bmv2_env.portmap import PortMap
from bmv2_env.runtime_proc import RuntimeInfo, RuntimeProcError
from bmv2_env.state import STATE_DIR_ENV, EnvRecord
from bmv2_env.toolchain import ToolNotFound, find_simple_switch_grpc
from runtime.config import Interface
from runtime.daemon import parse_args
from tests.support import stack
from tests.support.e2e_helpers import mapped_segments

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
_CANNOT_RUN = "veths and namespaces need root" if not IS_ROOT else system_deps.skip_reason()
needs_root = pytest.mark.skipif(_CANNOT_RUN is not None, reason=str(_CANNOT_RUN))

# Takes the daemon's arguments; --mode (an extra argument) picks the behaviour.
STAND_IN = textwrap.dedent("""\
    import argparse, signal, socket, sys, time
    p = argparse.ArgumentParser()
    p.add_argument("--grpc-addr"); p.add_argument("--control-socket")
    p.add_argument("--interface", action="append"); p.add_argument("--host-interface")
    p.add_argument("--mode", default="ready")
    a = p.parse_args()
    print("stand-in runtime starting up slowly", a.grpc_addr, flush=True)
    if a.mode == "crash":
        print("error: no switch at", a.grpc_addr, file=sys.stderr, flush=True)
        sys.exit(3)
    if a.mode == "silent":
        time.sleep(600)
    if a.mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(a.control_socket)
    print("READY stand-in: control socket", a.control_socket, flush=True)
    while True:
        time.sleep(1)
    """)


def _prefix() -> str:
    return f"r{os.getpid() % 1000}"


@pytest.fixture
def stand_in(tmp_path: Path) -> list[str]:
    script = tmp_path / "stand_in_runtime.py"
    script.write_text(STAND_IN)
    return [sys.executable, str(script)]


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A state dir (P4TAS_STATE_DIR) holding env.json and peers.json, as after `up --peers`."""
    directory = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(directory))
    portmap = PortMap(1, _prefix())
    EnvRecord(portmap, "127.0.0.1:9", log=False, pipeline=True, peers=True).save(directory)
    peer = Peer(f"{_prefix()}n1", f"{_prefix()}w1p", "10.99.1.2", "02:00:00:00:00:02",
                "10.99.1.1", "02:00:0a:63:01:01", 1)
    PeerSet(_prefix(), (peer,)).save(directory)
    return directory


@pytest.fixture
def cleanup(state_dir: Path):
    """Whatever a test leaves running in the state dir is stopped afterwards."""
    yield
    runtime_proc.stop_all(state_dir, grace=1)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z" or time.monotonic() > deadline:
            return state == "Z"
        time.sleep(0.05)
    return True


# ---- command line and pid file (no processes) ---------------------------------------------------
def test_build_command(tmp_path: Path) -> None:
    cmd = runtime_proc.build_command(tmp_path, "127.0.0.1:9600", ["--time-wait", "0.5"])
    assert cmd == [sys.executable, "-m", "runtime", "--grpc-addr", "127.0.0.1:9600",
                   "--control-socket", str(tmp_path / "control.sock"), "--time-wait", "0.5"]
    relative = runtime_proc.build_command(Path("some/dir"), "a:1", program=["x"],
                                          interfaces=["1=10.99.1.1/24,02:00:0a:63:01:01"],
                                          host_interface="p4thp")
    assert relative == ["x", "--grpc-addr", "a:1", "--control-socket",
                        os.path.abspath("some/dir/control.sock"),
                        "--interface", "1=10.99.1.1/24,02:00:0a:63:01:01",
                        "--host-interface", "p4thp"]
    for bad in (["--interface", "1=x"], ["--control-socket=/y"], ["--grpc-addr", "h:1"],
                ["--host-interface", "x"]):
        with pytest.raises(ValueError, match="set by bmv2_env itself"):
            runtime_proc.build_command(tmp_path, "a:1", bad)
    with pytest.raises(TypeError):
        runtime_proc.build_command(tmp_path, "a:1", "--time-wait 1")  # type: ignore[arg-type]


def test_pid_file_handling(tmp_path: Path) -> None:
    assert runtime_proc.read_pid(tmp_path) is None
    assert runtime_proc.stop(tmp_path) is None  # no pid file: nothing to do
    pid_file = tmp_path / "runtime.pid"
    pid_file.write_text("not a pid\n")
    assert runtime_proc.read_pid(tmp_path) is None
    assert runtime_proc.running_pid(tmp_path) is None
    assert runtime_proc.stop(tmp_path) is None
    assert not pid_file.exists()  # an unreadable pid file is removed
    pid_file.write_text(f"{2 ** 22 + 5}\n")  # beyond pid_max: no such process
    assert runtime_proc.read_pid(tmp_path) == 2 ** 22 + 5
    assert runtime_proc.running_pid(tmp_path) is None
    assert runtime_proc.stop(tmp_path) is None
    assert not pid_file.exists()


def test_never_signals_a_pid_that_is_not_our_runtime(tmp_path: Path, stand_in: list[str]) -> None:
    other = subprocess.Popen(["sleep", "30"])
    # A runtime of *another* state dir: its command line names a different --control-socket.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    foreign = subprocess.Popen(runtime_proc.build_command(elsewhere, "a:1", program=stand_in),
                               stdout=subprocess.PIPE, text=True)
    try:
        while not foreign.stdout.readline().startswith("READY"):  # type: ignore[union-attr]
            pass
        for pid in (other.pid, foreign.pid, os.getpid()):
            (tmp_path / "runtime.pid").write_text(f"{pid}\n")
            assert not runtime_proc.is_runtime_process(pid, tmp_path)
            assert runtime_proc.running_pid(tmp_path) is None
            assert runtime_proc.stop(tmp_path, grace=0.5) is None
            assert not (tmp_path / "runtime.pid").exists()
            assert runtime_proc.terminate(pid, tmp_path, grace=0.5) is False
        assert other.poll() is None and foreign.poll() is None
        assert runtime_proc.is_runtime_process(foreign.pid, elsewhere)
        assert runtime_proc.find_runtimes_for(tmp_path) == []
        assert runtime_proc.find_runtimes_for(elsewhere) == [foreign.pid]
    finally:
        for proc in (other, foreign):
            proc.kill()
            proc.wait()


# ---- start / stop with the stand-in -------------------------------------------------------------
def test_start_waits_for_ready_and_stop_stops(state_dir: Path, stand_in: list[str],
                                              cleanup: None) -> None:
    info = runtime_proc.start(state_dir, extra=["--mode", "ready"], program=stand_in, timeout=10)
    assert isinstance(info, RuntimeInfo)
    assert info.ready_line.startswith("READY stand-in: control socket")
    assert info.grpc_addr == "127.0.0.1:9"  # from env.json
    assert info.control_socket == state_dir / "control.sock" and info.control_socket.is_socket()
    assert (state_dir / "runtime.pid").read_text().strip() == str(info.pid)
    assert runtime_proc.running_pid(state_dir) == info.pid
    assert "starting up slowly 127.0.0.1:9" in info.log_path.read_text()
    argv = Path(f"/proc/{info.pid}/cmdline").read_bytes().split(b"\0")
    assert [b"--mode", b"ready"] == argv[-3:-1]  # extra arguments come last
    # The environment's interfaces reach the daemon on its command line (it reads no file).
    host_veth = PortMap(1, _prefix()).host_link.peer_iface.encode()
    assert b"1=10.99.1.1/24,02:00:0a:63:01:01" in argv and host_veth in argv
    assert os.getpgid(info.pid) == info.pid  # own session: a Ctrl-C of `make run` spares it
    with pytest.raises(RuntimeProcError, match=rf"already runs \(pid {info.pid}\)"):
        runtime_proc.start(state_dir, program=stand_in)

    assert runtime_proc.stop(state_dir) == info.pid
    assert _gone(info.pid)
    assert not (state_dir / "runtime.pid").exists()
    assert not info.control_socket.exists()
    assert info.log_path.exists()  # logs stay until `down`
    assert runtime_proc.stop(state_dir) is None


def test_ready_timeout_reports_the_log_tail(state_dir: Path, stand_in: list[str],
                                            cleanup: None) -> None:
    started = time.monotonic()
    with pytest.raises(RuntimeProcError) as info:
        runtime_proc.start(state_dir, extra=["--mode", "silent"], program=stand_in, timeout=1)
    assert time.monotonic() - started < 15  # 1 s of waiting + stopping it
    message = str(info.value)
    assert message.startswith("the runtime printed no READY line within 1 s")
    assert "--- last lines of" in message and "stand-in runtime starting up slowly" in message
    assert runtime_proc.find_runtimes_for(state_dir) == []  # it was stopped
    assert not (state_dir / "runtime.pid").exists()
    assert (state_dir / "runtime.log").exists()


def test_daemon_that_exits_reports_code_and_log(state_dir: Path, stand_in: list[str],
                                                cleanup: None) -> None:
    with pytest.raises(RuntimeProcError,
                       match=r"(?s)exited with code 3 before it was ready.*no switch at"):
        runtime_proc.start(state_dir, extra=["--mode", "crash"], program=stand_in, timeout=10)
    assert not (state_dir / "runtime.pid").exists()


def test_stubborn_daemon_is_killed_after_the_grace_period(state_dir: Path, stand_in: list[str],
                                                          cleanup: None) -> None:
    info = runtime_proc.start(state_dir, extra=["--mode", "stubborn"], program=stand_in)
    started = time.monotonic()
    assert runtime_proc.stop(state_dir, grace=0.5) == info.pid
    assert 0.4 < time.monotonic() - started < 8
    assert _gone(info.pid)


def test_start_needs_an_environment_with_peers(tmp_path: Path, state_dir: Path,
                                               stand_in: list[str]) -> None:
    with pytest.raises(RuntimeProcError, match="no environment is up in .*up --peers"):
        runtime_proc.start(tmp_path / "empty", program=stand_in)
    (state_dir / "peers.json").unlink()
    with pytest.raises(RuntimeProcError, match="peers.json missing"):
        runtime_proc.start(state_dir, program=stand_in)
    assert not (state_dir / "runtime.pid").exists()


def test_real_daemon_failure_is_reported_with_its_log(state_dir: Path, cleanup: None) -> None:
    """The real `python -m runtime`: a bad option makes it exit at once with its usage."""
    with pytest.raises(RuntimeProcError,
                       match=r"(?s)exited with code 2 .*--rx-ring-size 3 is not a power of two"):
        runtime_proc.start(state_dir, extra=["--rx-ring-size", "3"], timeout=30)


# ---- down and status ----------------------------------------------------------------------------
def test_down_stops_the_runtime_first(state_dir: Path, stand_in: list[str], cleanup: None,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    info = runtime_proc.start(state_dir, program=stand_in)
    st = env.status(_prefix())
    assert st.runtime_pid == info.pid and st.runtime_pid_file
    out = describe.describe_status(st)
    assert f"runtime             pid {info.pid} running, control socket {info.control_socket}" \
        in out

    assert p4tas_env(["--prefix", _prefix(), "down"]) == 0
    assert f"stopped runtime pid {info.pid}" in capsys.readouterr().out
    assert _gone(info.pid)
    assert not state_dir.exists()  # runtime.pid, runtime.log, control.sock went with the rest


def test_down_finds_a_runtime_whose_pid_file_was_lost(state_dir: Path, stand_in: list[str],
                                                      cleanup: None) -> None:
    info = runtime_proc.start(state_dir, program=stand_in)
    (state_dir / "runtime.pid").unlink()
    result = env.down(_prefix())
    assert result.runtime_pids == [info.pid]
    assert _gone(info.pid)


def test_status_reports_a_runtime_that_died(state_dir: Path, stand_in: list[str],
                                            cleanup: None) -> None:
    info = runtime_proc.start(state_dir, program=stand_in)
    os.kill(info.pid, signal.SIGKILL)
    assert _gone(info.pid)
    processes.alive(info.pid)  # reap our child, as a separate `status` process would see it
    st = env.status(_prefix())
    assert st.runtime_pid is None and st.runtime_pid_file and not st.up and not st.nothing
    assert "runtime             NOT running (see " in describe.describe_status(st)
    assert env.down(_prefix()).runtime_pids == []
    assert not state_dir.exists()


def test_status_without_a_runtime(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path / "none"))
    st = env.status(_prefix())
    assert st.nothing and st.runtime_pid is None and not st.runtime_pid_file


# ---- the `run` command --------------------------------------------------------------------------
def test_cli_run_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    args = arguments.parse_args(["run", "--ports", "1", "--", "--time-wait", "0.5"])
    assert (args.command, args.ports, args.extra) == ("run", 1, ["--time-wait", "0.5"])
    assert args.runtime_timeout == runtime_proc.DEFAULT_READY_TIMEOUT
    assert not args.background and args.echo_port == 7  # the foreground stack is the default
    assert arguments.parse_args(["run", "--background", "--echo-port", "7007"]).echo_port == 7007
    with pytest.raises(SystemExit):
        p4tas_env(["--help"])
    assert "p4tas-env run" in capsys.readouterr().out
    # A managed argument after -- is refused before anything is brought up.
    assert p4tas_env(["--prefix", _prefix(), "run", "--", "--host-interface", "x"]) == 1
    assert "set by bmv2_env itself" in capsys.readouterr().err
    assert topology.existing_interfaces(_prefix()) == []


def test_describe_run_says_what_runs_and_how_to_try_it(tmp_path: Path) -> None:
    portmap = PortMap(2, "p4t")
    peers = PeerSet("p4t", tuple(
        Peer(f"p4tn{i}", f"p4tw{i}p", f"10.99.{i}.2", "aa:bb:cc:dd:ee:0f", f"10.99.{i}.1",
             f"02:00:0a:63:0{i}:01", i) for i in (1, 2)))
    record = EnvRecord(portmap, "127.0.0.1:9559", log=False, pipeline=True, peers=True)
    result = env.UpResult(4242, record, tmp_path, True, peers)
    info = RuntimeInfo(4343, tmp_path, "127.0.0.1:9559", tmp_path / "control.sock",
                       tmp_path / "runtime.log", "READY ...")
    out = describe.describe_run(result, info)
    assert "simple_switch_grpc  pid 4242" in out and "127.0.0.1:9559" in out
    assert "runtime             pid 4343" in out
    assert f"control socket      {tmp_path / 'control.sock'}" in out
    assert re.search(r"(?m)^\s+1\s+p4tn1\s+p4tw1p\s+10\.99\.1\.2\s+\S+\s+10\.99\.1\.1", out)
    assert "ip netns exec p4tn1 python3 -c" in out and '("10.99.1.1", 5001)' in out
    assert f'ControlChannel("{tmp_path / "control.sock"}")' in out
    assert "cp.IncomingConnection" in out
    assert out.rstrip().endswith("Stop it with: make clean-env")


def test_interface_args_are_what_the_runtime_parses() -> None:
    peers = PeerSet("p4t", tuple(
        Peer(f"p4tn{i}", f"p4tw{i}p", f"10.99.{i}.2", "aa:bb:cc:dd:ee:0f", f"10.99.{i}.1",
             f"02:00:0a:63:0{i}:01", i) for i in (1, 2)))
    argv = [arg for text in runtime_proc.interface_args(peers) for arg in ("--interface", text)]
    config, _ = parse_args(argv)
    assert config.interfaces == (Interface(1, "10.99.1.1", "02:00:0a:63:01:01", 24),
                                 Interface(2, "10.99.2.1", "02:00:0a:63:02:01", 24))


def test_try_it_commands_are_valid_python(tmp_path: Path) -> None:
    peer = Peer("p4tn1", "p4tw1p", "10.99.1.2", "aa:bb:cc:dd:ee:0f", "10.99.1.1",
                "02:00:0a:63:01:01", 1)
    for line in describe.try_it(peer, tmp_path / "control.sock", python="PY"):
        found = re.search(r"python3? -c '([^']*)'|PY -c '([^']*)'", line)
        if found:
            compile(found.group(1) or found.group(2), "<try-it>", "exec")


# ---- bench/bench_conn.py plumbing ----------------------------------------------------------------
def _bench():
    spec = importlib.util.spec_from_file_location("bench_conn", REPO / "bench" / "bench_conn.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_conn"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_bench_skips_with_a_json_line(monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    monkeypatch.setattr(sys.modules["benchlib"], "skip_reason", lambda: "bmv2 not available: test")
    assert bench.main(["--n", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "bench-conn: SKIPPED: bmv2 not available: test"
    assert json.loads(lines[-1]) == {"bench": "conn", "skipped": "bmv2 not available: test"}


def test_bench_describes_the_bmv2_build(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        find_simple_switch_grpc()
    except ToolNotFound as exc:
        pytest.skip(f"no bmv2: {exc}")
    monkeypatch.setenv("TARGET", "bmv2")
    text = _bench().describe_target()
    assert text.startswith("simple_switch_grpc ") and "logging macros" in text


def test_bench_describes_the_dpdk_target_by_its_own_command(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Not softnic's command line (the dpdk target's benchmarks said `-m softnic`)."""
    from bmv2_env import targets
    if (missing := targets.DPDK_TARGET.missing()) is not None:
        pytest.skip(f"no dpdk target: {missing}")
    monkeypatch.setenv("TARGET", "dpdk")
    assert _bench().describe_target().startswith(
        f"p4tas-swx (the PNA program on DPDK's SWX pipeline: {sys.executable} -m dpdk_target, ")


def test_bench_describes_the_soft_target_and_prints_it(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARGET", "soft")
    bench = _bench()
    assert bench.describe_target().startswith(f"softnic (software fast path: {sys.executable} "
                                              "-m softnic, Python 3.")
    monkeypatch.setattr(sys.modules["benchlib"].os, "geteuid", lambda: 1000)
    benchlib = sys.modules["benchlib"]
    assert benchlib.skip_reason() == "needs root (veths and network namespaces)"
    assert capsys.readouterr().out.startswith("target: soft (software fast path; TARGET=soft)")
    monkeypatch.setenv("TARGET", "tofino")
    with pytest.raises(SystemExit):
        benchlib.skip_reason()
    assert "TARGET=tofino is not a target" in capsys.readouterr().err


@needs_root
def test_bench_linux_half_creates_measures_and_removes(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    pair = bench.LinuxPair()
    args = bench.parse_args(["--n", "20", "--concurrency", "2", "--warmup", "2",
                             "--repeat", "2", "--deadline", "30"])
    try:
        variants, server, _ = bench.bench_linux(args, pair)
    finally:
        bench.cleanup(bench.P4tasSide(), pair)
    assert [v.name for v in variants] == ["sequential", "2 concurrent"]
    assert all(v.ok == 20 and not v.errors and v.rate > 0 for v in variants)
    assert all(len(v.all_rates) == 2 and round(v.rate, 1) in v.all_rates for v in variants)
    assert server["accepted"] == 2 + 2 * 20 + 2 * 20
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert pair.tag not in names
    assert not any(n.startswith(pair.tag) for n in os.listdir("/sys/class/net"))


# ---- the real stack (bmv2 + pipeline + runtime) -------------------------------------------------
def _real_stack_or_skip() -> targets.Target:
    """The selected target (TARGET), or skip: its switch, p4src/build/ or root missing."""
    reason = stack.skip_reason()  # TARGET=bmv2 without bmv2 raises: an error, not a skip
    if reason:
        pytest.skip(reason)
    return stack.target()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _assert_nothing_left(prefix: str, state_dir: Path, pids: list[int]) -> None:
    assert all(_gone(pid) for pid in pids)
    assert switch.find_switches_on(prefix) == []
    assert runtime_proc.find_runtimes_for(state_dir) == []
    assert topology.existing_interfaces(prefix) == []
    assert topology.existing_namespaces(prefix) == []
    assert not state_dir.exists()


@pytest.mark.target
@needs_root
def test_real_run_status_down_leaves_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    target = _real_stack_or_skip()
    state_dir = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(state_dir))
    prefix = _prefix()
    base = ["--prefix", prefix, "--grpc-port", str(_free_port()), "--ports", "1"]
    pids: list[int] = []
    try:
        assert p4tas_env(base + ["run", "--background"]) == 0, capsys.readouterr().err
        out = capsys.readouterr().out
        assert out.startswith(f"target: {target.name} (")
        assert f"p4tas is running (environment '{prefix}')" in out
        pids = [switch.read_pid(state_dir), runtime_proc.read_pid(state_dir)]  # type: ignore
        assert f"runtime             pid {pids[1]}" in out
        assert runtime_proc.running_pid(state_dir) == pids[1]
        assert (state_dir / "control.sock").is_socket()

        assert p4tas_env(base + ["status"]) == 0
        out = capsys.readouterr().out
        assert f"environment '{prefix}': up" in out and f"runtime             pid {pids[1]}" in out

        # An application reaches the daemon through the printed control socket.
        from host_lib.control_channel import ControlChannel
        with ControlChannel(state_dir / "control.sock", app_name="test") as ch:
            assert ch.stats()["connections"] == 0
    finally:
        assert p4tas_env(base + ["down"]) == 0
    out = capsys.readouterr().out
    assert f"stopped runtime pid {pids[1]}" in out
    assert f"stopped {target.process} pid {pids[0]}" in out
    _assert_nothing_left(prefix, state_dir, pids)


@pytest.mark.target
@needs_root
def test_real_run_with_a_failing_runtime_tears_down(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _real_stack_or_skip()
    state_dir = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(state_dir))
    prefix = _prefix()
    base = ["--prefix", prefix, "--grpc-port", str(_free_port()), "--ports", "1"]
    try:
        assert p4tas_env(base + ["run", "--background", "--", "--rx-ring-size", "3"]) == 1
    finally:
        p4tas_env(base + ["down"])
    err = capsys.readouterr().err
    assert err.startswith("run: error: the runtime exited with code 2 before it was ready")
    assert "not a power of two" in err and "run: everything torn down; logs kept in" in err
    assert (state_dir / "runtime.log").exists() or not state_dir.exists()
    assert switch.find_switches_on(prefix) == []
    assert topology.existing_interfaces(prefix) == []
    assert topology.existing_namespaces(prefix) == []


# ---- the foreground `run` (make run): echo server, READY line, Ctrl-C tears down -------------------
def test_echo_server_command_and_talk_command_are_valid() -> None:
    from bmv2_env import echo_proc
    cmd = echo_proc.build_command("10.99.1.1", 7, "p4tn1", python="PY")
    assert cmd == ["PY", str(REPO / "examples" / "echo_server.py"), "--host", "10.99.1.1",
                   "--port", "7", "--ready-ns", "p4tn1"]
    info = echo_proc.EchoInfo(1, "10.99.1.1", 7, "p4tn1", Path("/x"))
    assert info.ready_line == "READY ns=p4tn1 addr=10.99.1.1:7"
    for line in describe.talk_command(info):
        if "python3 -c" in line:
            compile(re.search(r"python3 -c '([^']*)'", line).group(1), "<talk>", "exec")
    compile(echo_proc.client_code("10.99.1.1", 7, b"x"), "<check>", "exec")


def _shm_segments(pid: int) -> list[str]:
    """The application segments the runtime maps, and any left in /dev/shm (there should be
    none: segments are anonymous memfds)."""
    return sorted(mapped_segments(pid)) + [p.name for p in Path("/dev/shm").glob("p4tas-app*")]


@pytest.mark.target
@needs_root
def test_real_foreground_run_echoes_and_tears_down_on_sigint(tmp_path: Path) -> None:
    """`python -m bmv2_env run` (what `make run` runs): READY line, an echo from the peer
    namespace, SIGINT, exit status 0, nothing left."""
    _real_stack_or_skip()
    state_dir = tmp_path / "state"
    prefix = f"f{os.getpid() % 1000}"
    child_env = dict(os.environ, **{STATE_DIR_ENV: str(state_dir)})
    cmd = [sys.executable, "-m", "bmv2_env", "--prefix", prefix, "--grpc-port",
           str(_free_port()), "--ports", "1", "run"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        ready = None
        while ready is None and time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                break
            out.append(line)
            if line.startswith("READY"):
                ready = line.rstrip("\n")
        text = "".join(out)
        assert ready == f"READY ns={prefix}n1 addr=10.99.1.1:7", text
        assert f"ip netns exec {prefix}n1 " in text  # the ready-to-paste command
        pids = [switch.read_pid(state_dir), runtime_proc.read_pid(state_dir),  # type: ignore
                int((state_dir / "echo.pid").read_text())]
        assert all(pid and Path(f"/proc/{pid}").exists() for pid in pids)

        # A Linux client in the peer namespace: bytes go out and come back.
        payload = os.urandom(100_000).hex()  # 200 kB
        code = ("import socket, sys; "
                "s = socket.create_connection(('10.99.1.1', 7), timeout=20); "
                "data = sys.stdin.buffer.read(); s.sendall(data); s.shutdown(socket.SHUT_WR); "
                "back = b''.join(iter(lambda: s.recv(65536), b'')); "
                "sys.stdout.buffer.write(back)")
        done = subprocess.run(["ip", "netns", "exec", f"{prefix}n1", "python3", "-c", code],
                              input=payload.encode(), capture_output=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout == payload.encode()
        segments = _shm_segments(pids[1])
        assert segments  # the echo server's shared memory, made by the runtime

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out.append(rest)
        assert proc.returncode == 0, "".join(out)
        assert "READY" not in rest  # exactly one READY line
        assert "run: stopped echo server pid" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
            subprocess.run(cmd[:-1] + ["down"], cwd=REPO, env=child_env, capture_output=True)
    assert all(_gone(pid) for pid in pids)
    assert switch.find_switches_on(prefix) == []
    assert runtime_proc.find_runtimes_for(state_dir) == []
    from bmv2_env import echo_proc
    assert echo_proc.find_servers_for(state_dir) == []
    assert topology.existing_interfaces(prefix) == []
    assert topology.existing_namespaces(prefix) == []
    assert _shm_segments(pids[1]) == []
    assert not state_dir.exists()


@pytest.mark.target
@needs_root
def test_real_foreground_run_killed_is_cleaned_by_down(tmp_path: Path) -> None:
    """SIGKILL the foreground `run`: the echo server, runtime and switch survive it (own
    sessions), and `down` (make clean-env) removes every one of them."""
    _real_stack_or_skip()
    state_dir = tmp_path / "state"
    prefix = f"k{os.getpid() % 1000}"
    child_env = dict(os.environ, **{STATE_DIR_ENV: str(state_dir)})
    base = [sys.executable, "-m", "bmv2_env", "--prefix", prefix, "--grpc-port",
            str(_free_port()), "--ports", "1"]
    proc = subprocess.Popen(base + ["run"], cwd=REPO, env=child_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line or line.startswith("READY"):
                break
        assert line.startswith("READY"), line
        echo_pid = int((state_dir / "echo.pid").read_text())
        runtime_pid = runtime_proc.read_pid(state_dir)
    finally:
        proc.kill()
        proc.communicate()
        down = subprocess.run(base + ["down"], cwd=REPO, env=child_env, capture_output=True,
                              text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert f"stopped runtime pid {runtime_pid}" in down.stdout
    assert _gone(echo_pid) and _gone(runtime_pid)  # type: ignore[arg-type]
    assert switch.find_switches_on(prefix) == []
    assert topology.existing_interfaces(prefix) == []
    assert topology.existing_namespaces(prefix) == []
    assert _shm_segments(runtime_pid) == []  # type: ignore[arg-type]
    assert not state_dir.exists()
