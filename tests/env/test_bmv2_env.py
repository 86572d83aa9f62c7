"""Tests of bmv2_env: port map, tool lookup, CLI, veth topology, switch start/stop, PTF plumbing.

The topology and CLI round-trip tests create real veths (root only) under a prefix unique to this
process, and use a stand-in simple_switch_grpc (a script that only opens the gRPC port, run as
TARGET=bmv2), so they need neither bmv2 nor the compiled pipeline. The one test that runs the
real switch (`target` marker) runs it on the selected target (TARGET).
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
from pathlib import Path

import pytest

from bmv2_env.cli import arguments
from bmv2_env.cli.main import main as p4tas_env
from bmv2_env import env, ptf_runner, switch, system_deps, targets, toolchain, topology
from nic_contract.pipeline import PipelineError, PipelineFiles
from nic_contract.constants import ack_clone_sessions
from bmv2_env.portmap import PortLink, PortMap
from bmv2_env.ptf_runner import PtfCounts
from bmv2_env.state import STATE_DIR_ENV, EnvRecord
from bmv2_env.switch import SwitchConfig, SwitchError
from bmv2_env.toolchain import ToolNotFound
from nic_contract import constants as datapath_constants
from tests.support.fakes import FAKE_SWITCH

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
_CANNOT_RUN = "creating veths needs root" if not IS_ROOT else system_deps.skip_reason()
needs_root = pytest.mark.skipif(_CANNOT_RUN is not None, reason=str(_CANNOT_RUN))


# ---- helpers -----------------------------------------------------------------------------------
def _executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path



CRASHING_SWITCH = "#!/bin/bash\necho 'error: cannot open interface' >&2\nexit 3\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _unique_prefix() -> str:
    return f"t{os.getpid() % 1000}"


def _ip_link(name: str) -> str:
    done = subprocess.run(["ip", "-o", "link", "show", "dev", name], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


@pytest.fixture
def no_switch_anywhere(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SIMPLE_SWITCH_GRPC, an empty PATH and an empty /opt/p4/bin stand-in; TARGET=bmv2."""
    monkeypatch.delenv("SIMPLE_SWITCH_GRPC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))
    monkeypatch.setattr(toolchain, "OPT_P4_BIN", tmp_path / "empty-opt")
    monkeypatch.setenv("TARGET", "bmv2")


def _stand_in_switch(monkeypatch: pytest.MonkeyPatch, binary: Path) -> None:
    """Run `binary` as simple_switch_grpc: SIMPLE_SWITCH_GRPC and TARGET=bmv2."""
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(binary))
    monkeypatch.setenv("TARGET", "bmv2")


@pytest.fixture
def state_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setenv(STATE_DIR_ENV, str(directory))
    return directory


# ---- PortMap -----------------------------------------------------------------------------------
def test_portmap_defaults_match_the_p4_constants() -> None:
    pm = PortMap()
    constants = (REPO / "p4src/shared/constants.p4").read_text()
    assert f"HOST_PORT = {pm.host_port};" in constants
    assert f"CPU_PORT = {pm.cpu_port};" in constants
    assert pm.host_port == datapath_constants.HOST_PORT
    assert pm.cpu_port == datapath_constants.CPU_PORT
    assert (pm.num_wire_ports, pm.prefix, pm.wire_ports) == (2, "p4t", [1, 2])


def test_portmap_names_and_args() -> None:
    pm = PortMap(3, "p4t")
    assert [(l.port, l.switch_iface, l.peer_iface, l.role) for l in pm.links()] == [
        (1, "p4tw1", "p4tw1p", "wire"), (2, "p4tw2", "p4tw2p", "wire"),
        (3, "p4tw3", "p4tw3p", "wire"), (254, "p4th", "p4thp", "host")]
    assert pm.bmv2_interface_args() == ["-i", "1@p4tw1", "-i", "2@p4tw2", "-i", "3@p4tw3",
                                        "-i", "254@p4th"]
    assert pm.ptf_interface_args() == ["--interface", "1@p4tw1p", "--interface", "2@p4tw2p",
                                       "--interface", "3@p4tw3p", "--interface", "254@p4thp"]
    assert pm.netns_name(2) == "p4tn2"
    with pytest.raises(ValueError, match="wire port 4"):
        pm.netns_name(4)


def test_portmap_cpu_interface_is_a_veth_the_switch_gets_as_a_port(tmp_path: Path) -> None:
    pm = PortMap(1, "p4t", cpu_interface=True)
    assert pm.links()[-1] == PortLink(255, "p4tc", "p4tcp", "cpu")
    assert pm.bmv2_interface_args()[-2:] == ["-i", "255@p4tc"]
    assert PortMap.from_json(pm.to_json()) == pm
    assert all(topology.interface_pattern("p4t").fullmatch(n) for n in ("p4tc", "p4tcp"))
    cmd = switch.build_command(Path("ssg"), SwitchConfig(pm, tmp_path))
    assert "--cpu-port" not in cmd   # its packets are the interface's, not P4Runtime's
    assert PortMap(1, "p4t").cpu_link is None


def test_portmap_longest_names_fit_ifnamsiz() -> None:
    pm = PortMap(16, "abcdef")
    assert max(len(n) for n in pm.interface_names()) <= 15
    assert "abcdefw16p" in pm.interface_names()


@pytest.mark.parametrize("ports", [0, 17, -1, True, "2", 2.0])
def test_portmap_rejects_bad_port_counts(ports: object) -> None:
    with pytest.raises(ValueError, match="number of wire ports must be an integer from 1 to 16"):
        PortMap(ports)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "P4T", "p4-t", "abcdefg", "p4t ", "é"])
def test_portmap_rejects_bad_prefixes(prefix: str) -> None:
    with pytest.raises(ValueError, match=r"1 to 6 characters of \[a-z0-9\]"):
        PortMap(2, prefix)


def test_portmap_rejects_clashing_special_ports() -> None:
    with pytest.raises(ValueError, match="must differ"):
        PortMap(2, host_port=255, cpu_port=255)
    with pytest.raises(ValueError, match="host_port must be an integer above the wire ports"):
        PortMap(4, host_port=3)
    with pytest.raises(ValueError, match="cpu_port"):
        PortMap(2, cpu_port=511)


def test_portmap_json_round_trip() -> None:
    pm = PortMap(4, "ab1")
    data = json.loads(pm.to_json())
    assert data["ports"][-1] == {"port": 255, "switch_iface": None, "peer_iface": None,
                                 "role": "cpu"}
    assert data["ports"][0] == {"port": 1, "switch_iface": "ab1w1", "peer_iface": "ab1w1p",
                                "role": "wire"}
    assert PortMap.from_json(pm.to_json()) == pm


@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"prefix": "p4t"}', "lacks num_wire_ports"),
    ('{"prefix": "P", "num_wire_ports": 2}', "prefix"),
    ('{"prefix": "p4t", "num_wire_ports": 99}', "from 1 to 16"),
])
def test_portmap_from_json_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PortMap.from_json(text)


def test_env_record_round_trip(tmp_path: Path) -> None:
    record = EnvRecord(PortMap(3, "x1"), "127.0.0.1:9600", log=True, pipeline=False)
    record.save(tmp_path)
    assert EnvRecord.load(tmp_path) == record
    assert PortMap.from_json((tmp_path / "portmap.json").read_text()) == record.portmap
    assert EnvRecord.load(tmp_path / "absent") is None


# ---- toolchain ---------------------------------------------------------------------------------
def test_toolchain_order_env_then_path_then_opt(monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    script = "#!/bin/sh\nexit 0\n"
    from_env = _executable(tmp_path / "env" / "my_switch", script)
    on_path = _executable(tmp_path / "path" / "simple_switch_grpc", script)
    in_opt = _executable(tmp_path / "opt" / "simple_switch_grpc", script)
    monkeypatch.setattr(toolchain, "OPT_P4_BIN", in_opt.parent)
    monkeypatch.setenv("PATH", str(on_path.parent))
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(from_env))
    assert toolchain.find_simple_switch_grpc() == from_env
    monkeypatch.delenv("SIMPLE_SWITCH_GRPC")
    assert toolchain.find_simple_switch_grpc() == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert toolchain.find_simple_switch_grpc() == in_opt


def test_toolchain_bad_env_var_is_an_error_not_a_fallback(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    not_executable = tmp_path / "simple_switch_grpc"
    not_executable.write_text("data")
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(not_executable))
    with pytest.raises(ToolNotFound, match="SIMPLE_SWITCH_GRPC=.* is not an executable file"):
        toolchain.find_simple_switch_grpc()


def test_toolchain_missing_says_how_to_fix(no_switch_anywhere: None) -> None:
    with pytest.raises(ToolNotFound) as info:
        toolchain.find_simple_switch_grpc()
    message = str(info.value)
    for hint in ("simple_switch_grpc not found", "set SIMPLE_SWITCH_GRPC", "PATH",
                 "bmv2_env/README.md"):
        assert hint in message


# ---- CLI arguments -----------------------------------------------------------------------------
def test_cli_help_documents_commands_options_and_env(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        p4tas_env(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for word in ("up", "down", "status", "ptf", "targets", "--ports", "--prefix", "--grpc-port",
                 "--log", "TARGET", "bmv2", "soft", "SIMPLE_SWITCH_GRPC", "P4TAS_STATE_DIR",
                 "P4TAS_REPORT", "254", "255", "clean-env"):
        assert word in out


@pytest.mark.parametrize("command", ["up", "down", "status", "ptf"])
def test_cli_subcommand_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        p4tas_env([command, "--help"])
    assert info.value.code == 0
    assert "--ports" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--ports", "0", "up"], "--ports: must be an integer from 1 to 16, got '0'"),
    (["up", "--ports", "x"], "--ports: must be an integer from 1 to 16, got 'x'"),
    (["--prefix", "Bad!", "status"], "--prefix: interface prefix 'Bad!' must be 1 to 6"),
    (["--grpc-port", "70000", "up"], "--grpc-port: must be an integer from 1 to 65535"),
    ([], "the following arguments are required: COMMAND"),
    (["launch"], "invalid choice: 'launch'"),
    (["down", "--", "x"], "arguments after -- are only for `ptf`"),
    (["status", "--no-pipeline"], "unrecognized arguments: --no-pipeline"),
])
def test_cli_bad_arguments(argv: list[str], message: str,
                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        p4tas_env(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_options_before_or_after_the_command() -> None:
    args = arguments.parse_args(["--ports", "3", "up", "--prefix", "ab", "--no-pipeline", "--log"])
    assert (args.command, args.ports, args.prefix, args.grpc_port, args.log, args.pipeline) == \
        ("up", 3, "ab", None, True, False)
    opts = arguments.options(
        arguments.parse_args(["ptf", "--grpc-port", "9600", "--", "--failfast"]))
    assert opts == env.EnvOptions(ports=2, prefix="p4t", grpc_port=9600, log=False, pipeline=True)
    extra = arguments.parse_args(["ptf", "--", "--failfast", "test_x"]).extra
    assert extra == ["--failfast", "test_x"]


def test_up_without_switch_binary_fails_clearly(no_switch_anywhere: None, state_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert p4tas_env(["--prefix", "zz9", "up"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("up: error: simple_switch_grpc not found: set SIMPLE_SWITCH_GRPC")
    assert "\n" not in err
    assert not state_dir.exists()


def test_down_and_status_with_nothing_there(state_dir: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert p4tas_env(["--prefix", "zz8", "down"]) == 0
    assert "nothing to clean" in capsys.readouterr().out
    assert p4tas_env(["--prefix", "zz8", "status"]) == 0
    assert "nothing is up" in capsys.readouterr().out


# ---- switch ------------------------------------------------------------------------------------
def test_switch_command_line(tmp_path: Path) -> None:
    config = SwitchConfig(PortMap(2, "p4t"), tmp_path, grpc_port=9600)
    cmd = switch.build_command(Path("/x/simple_switch_grpc"), config)
    assert cmd == ["/x/simple_switch_grpc", "--no-p4", "--device-id", "0",
                   "-i", "1@p4tw1", "-i", "2@p4tw2", "-i", "254@p4th",
                   "--", "--grpc-server-addr", "127.0.0.1:9600", "--cpu-port", "255"]
    # By default P4Runtime is a UNIX socket in the state dir (it has no authentication).
    default = switch.build_command(Path("ssg"), SwitchConfig(PortMap(1), tmp_path))
    assert default[default.index("--grpc-server-addr") + 1] == f"unix:{tmp_path}/p4runtime.sock"
    logged = switch.build_command(Path("ssg"), SwitchConfig(PortMap(1), tmp_path, log=True))
    assert logged[logged.index("--") - 1] == "--log-console"
    with pytest.raises(ValueError, match="gRPC port"):
        SwitchConfig(PortMap(), tmp_path, grpc_port=0)
    with pytest.raises(ValueError, match="unknown target 'tofino'"):
        SwitchConfig(PortMap(), tmp_path, target="tofino")


def test_switch_start_without_binary_gives_the_fix(no_switch_anywhere: None,
                                                   tmp_path: Path) -> None:
    config = SwitchConfig(PortMap(1, "zz7"), tmp_path / "state", grpc_port=_free_port())
    with pytest.raises(ToolNotFound, match="simple_switch_grpc not found: set SIMPLE_SWITCH_GRPC"):
        switch.start(config)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("tcp", [False, True], ids=["unix-socket", "tcp-port"])
def test_switch_start_and_stop_with_a_stand_in(tmp_path: Path, tcp: bool) -> None:
    binary = _executable(tmp_path / "bin" / "simple_switch_grpc", FAKE_SWITCH)
    config = SwitchConfig(PortMap(1, "zz6"), tmp_path / "state",
                          grpc_port=_free_port() if tcp else None)
    if not tcp:   # a dead switch's socket file is no obstacle
        config.state_dir.mkdir()
        (config.state_dir / "p4runtime.sock").write_text("")
    pid = switch.start(config, binary, timeout=10)
    try:
        assert config.pid_path.read_text().strip() == str(pid)
        assert switch.running_pid(config.state_dir) == pid
        assert switch.grpc_reachable(config.grpc_addr)
        assert "fake switch: --no-p4" in config.log_path.read_text()
        with pytest.raises(SwitchError, match="already in use"):
            switch.start(config, binary)
    finally:
        assert switch.stop(config.state_dir) == pid
    assert not Path(f"/proc/{pid}").exists()
    assert not config.pid_path.exists()
    assert switch.stop(config.state_dir) is None


def test_switch_that_dies_reports_its_log(tmp_path: Path) -> None:
    binary = _executable(tmp_path / "bin" / "simple_switch_grpc", CRASHING_SWITCH)
    config = SwitchConfig(PortMap(1, "zz5"), tmp_path / "state", grpc_port=_free_port())
    with pytest.raises(SwitchError, match=r"(?s)exited with code 3 .*cannot open interface"):
        switch.start(config, binary, timeout=10)
    assert not config.pid_path.exists()


def test_stop_never_kills_a_reused_pid(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "switch.pid").write_text(f"{other.pid}\n")
        assert switch.stop(tmp_path) is None
        assert other.poll() is None
        assert not (tmp_path / "switch.pid").exists()
    finally:
        other.kill()
        other.wait()


# ---- pipeline ----------------------------------------------------------------------------------
def test_ack_clone_sessions_one_per_wire_port() -> None:
    base = datapath_constants.ACK_SESSION_BASE
    assert ack_clone_sessions(PortMap(3).wire_ports) == {base + 1: 1, base + 2: 2, base + 3: 3}


def test_missing_artifacts_say_make_p4(tmp_path: Path) -> None:
    files = PipelineFiles(tmp_path / "x.p4info.txtpb", tmp_path / "x.json")
    with pytest.raises(PipelineError, match=r"artifacts missing: .*x\.p4info\.txtpb.*make p4"):
        files.check()


# ---- ptf plumbing ------------------------------------------------------------------------------
OK_OUTPUT = "test_a.A ... ok\n\n----\nRan 3 tests in 1.2s\n\nOK\n"
SKIP_OUTPUT = "Ran 4 tests in 0.3s\n\nOK (skipped=1)\n"
FAILED_OUTPUT = "Ran 5 tests in 2.0s\n\nFAILED (failures=1, errors=1, skipped=1)\n"


@pytest.mark.parametrize("output, counts", [
    (OK_OUTPUT, PtfCounts(3, 0, 0)),
    (SKIP_OUTPUT, PtfCounts(3, 0, 1)),
    (FAILED_OUTPUT, PtfCounts(2, 2, 1)),
    ("Ran 2 tests in 0.1s\n\nOK\nSkipped 1 test\n", PtfCounts(1, 0, 1)),
    ("Traceback: ImportError\n", None),
])
def test_parse_ptf_output(output: str, counts: PtfCounts | None) -> None:
    assert ptf_runner.parse_output(output) == counts


def test_count_tests_statically(tmp_path: Path) -> None:
    (tmp_path / "test_one.py").write_text(textwrap.dedent("""\
        import nonexistent_module  # never imported by the counter
        class A:
            def runTest(self): pass
            def helper(self): pass
        class B:
            def test_x(self): pass
            async def test_y(self): pass
        def test_module_level(): pass
        """))
    (tmp_path / "test_broken.py").write_text("def (:\n")
    (tmp_path / "helper.py").write_text("class C:\n    def runTest(self): pass\n")
    assert ptf_runner.count_tests(tmp_path) == 3
    assert ptf_runner.count_tests(tmp_path / "absent") == 0


def test_report_line_is_appended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    report = tmp_path / "sub" / "report.txt"
    monkeypatch.setenv("P4TAS_REPORT", str(report))
    ptf_runner.append_report("p4-check: 1 passed, 0 failed, 0 skipped")
    ptf_runner.append_report(PtfCounts(1, 2, 3).line("why"))
    assert report.read_text().splitlines() == ["p4-check: 1 passed, 0 failed, 0 skipped",
                                               "ptf: 1 passed, 2 failed, 3 skipped (why)"]
    monkeypatch.delenv("P4TAS_REPORT")
    ptf_runner.append_report("ignored")


def test_ptf_command_line(tmp_path: Path) -> None:
    files = PipelineFiles(tmp_path / "a b.txtpb", tmp_path / "it's.json")
    cmd = ptf_runner.build_command(PortMap(2), "127.0.0.1:9559", tmp_path, files, ["--failfast"],
                                   target="dpdk")
    assert Path(cmd[0]) == Path(sys.executable).parent / "ptf"
    assert cmd[cmd.index("--test-dir") + 1] == str(REPO / "ptf_tests")
    assert cmd[cmd.index("--log-file") + 1] == str(tmp_path / "ptf.log")
    assert "--platform" not in cmd  # ptf's default `eth` platform takes --interface as is
    assert cmd[cmd.index("254@p4thp") - 1] == "--interface"
    assert cmd[-1] == "--failfast"
    params = cmd[cmd.index("--test-params") + 1]
    namespace: dict[str, object] = {}
    exec("class _TestParams:\n    " + params, namespace)  # how ptf parses --test-params
    parsed = {k: v for k, v in vars(namespace["_TestParams"]).items() if not k.startswith("__")}
    assert parsed == {"target": "dpdk", "grpc_addr": "127.0.0.1:9559", "p4info": str(files.p4info),
                      "device_config": str(files.device_config), "wire_ports": "1,2", "host_port": 254,
                      "portmap": str(tmp_path / "portmap.json")}


def test_ptf_with_target_bmv2_but_no_switch_is_an_error(
        no_switch_anywhere: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "report.txt"
    monkeypatch.setenv("P4TAS_REPORT", str(report))
    assert p4tas_env(["ptf"]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith("ptf: error: simple_switch_grpc not found: set "
                                   "SIMPLE_SWITCH_GRPC")
    expected = "ptf [bmv2]: 0 passed, 1 failed, 0 skipped (error: simple_switch_grpc not found: "
    assert report.read_text().startswith(expected)
    assert captured.out.startswith(expected)


def test_ptf_skips_when_softnic_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARGET", "soft")
    monkeypatch.setattr(targets, "SOFTNIC_MAIN", tmp_path / "softnic" / "__main__.py")
    report = tmp_path / "report.txt"
    monkeypatch.setenv("P4TAS_REPORT", str(report))
    assert p4tas_env(["ptf"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "target: soft (software fast path; TARGET=soft)"
    assert out[1].startswith("ptf [soft]: SKIPPED: softnic not found: ")
    expected = (f"ptf [soft]: 0 passed, 0 failed, {ptf_runner.count_tests()} skipped "
                "(softnic not found)")
    assert report.read_text() == expected + "\n"


def test_ptf_skips_without_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARGET", "soft")
    softnic_main = tmp_path / "softnic" / "__main__.py"  # there, whether softnic is yet or not
    softnic_main.parent.mkdir()
    softnic_main.write_text("")
    monkeypatch.setattr(targets, "SOFTNIC_MAIN", softnic_main)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    report = tmp_path / "report.txt"
    monkeypatch.setenv("P4TAS_REPORT", str(report))
    assert p4tas_env(["ptf"]) == 0
    assert "ptf [soft]: SKIPPED: creating veths and running ptf needs root" in \
        capsys.readouterr().out
    assert report.read_text().endswith(" skipped (needs root)\n")


class _FakeEnv:
    """Stands in for env.up/env.down in the ptf control-flow tests."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.downs: list[tuple[str, bool]] = []

    def up(self, opts: env.EnvOptions) -> env.UpResult:
        portmap = PortMap(opts.ports, opts.prefix)
        record = EnvRecord(portmap, SwitchConfig(portmap, self.tmp_path,
                                                 opts.grpc_port).grpc_addr, False, True)
        return env.UpResult(4242, record, self.tmp_path, True)

    def down(self, prefix: str, keep_logs: bool = False) -> env.DownResult:
        self.downs.append((prefix, keep_logs))
        return env.DownResult()


@pytest.mark.parametrize("outcome, exit_code, line", [
    ((0, OK_OUTPUT), 0, "ptf [bmv2]: 3 passed, 0 failed, 0 skipped"),
    ((1, FAILED_OUTPUT), 1, "ptf [bmv2]: 2 passed, 2 failed, 1 skipped"),
    ((1, "ImportError\n"), 1,
     "ptf [bmv2]: 0 passed, 1 failed, 0 skipped (ptf exited with code 1 before its test summary)"),
    (KeyboardInterrupt(), 130, "ptf [bmv2]: 0 passed, 1 failed, 0 skipped (interrupted)"),
    (SwitchError("boom\nlog tail"), 1,
     "ptf [bmv2]: 0 passed, 1 failed, 0 skipped (error: boom)"),
])
def test_ptf_reports_and_always_tears_down(outcome: object, exit_code: int, line: str,
                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    fake = _FakeEnv(tmp_path)
    _stand_in_switch(monkeypatch, Path("/bin/true"))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(env, "up", fake.up)
    monkeypatch.setattr(env, "down", fake.down)

    def run(cmd: list[str]) -> tuple[int, str]:
        assert "1@p4tw1p" in cmd
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[return-value]

    monkeypatch.setattr(ptf_runner, "run", run)
    report = tmp_path / "report.txt"
    monkeypatch.setenv("P4TAS_REPORT", str(report))
    assert p4tas_env(["ptf"]) == exit_code
    assert fake.downs == [("p4t", True)]
    assert report.read_text() == line + "\n"
    out = capsys.readouterr().out
    assert line in out
    assert out.startswith("target: bmv2 (simple_switch_grpc at /bin/true; TARGET=bmv2)\n")


# ---- real veths (root) -------------------------------------------------------------------------
@needs_root
def test_topology_create_and_destroy() -> None:
    pm = PortMap(2, _unique_prefix())
    names = pm.interface_names()
    topology.destroy(pm.prefix)
    # Stale from a "crashed run": wire port 1's peer name is held by a veth with another partner.
    stray = f"{pm.prefix}x"
    subprocess.run(["ip", "link", "add", pm.wire_link(1).peer_iface,
                    "type", "veth", "peer", "name", stray], check=True)
    try:
        topology.create(pm)
        assert _ip_link(stray) == ""  # went with the stale interface it was paired with
        topology.create(pm)  # idempotent: everything replaced, no error
        for name in names:
            line = _ip_link(name)
            assert re.search(r"\bmtu 1500\b", line), line
            assert re.search(r"<[^>]*\bUP\b[^>]*>", line), line
            assert "veth" in subprocess.run(["ip", "-d", "link", "show", "dev", name],
                                            capture_output=True, text=True).stdout
            assert Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "1"
            assert subprocess.run(["ip", "-6", "addr", "show", "dev", name],
                                  capture_output=True, text=True).stdout == ""
            features = subprocess.run(["ethtool", "-k", name],
                                      capture_output=True, text=True).stdout
            for feature in ("tx-checksumming", "rx-checksumming", "tcp-segmentation-offload",
                            "generic-segmentation-offload", "generic-receive-offload"):
                assert re.search(rf"^{feature}: off", features, re.MULTILINE), feature
            info = topology.link_info(name)
            assert (info.mtu, info.ipv6_disabled) == (1500, True)
        assert topology.existing_interfaces(pm.prefix) == sorted(names)
    finally:
        removed = topology.destroy(pm.prefix)
        subprocess.run(["ip", "link", "del", stray], capture_output=True)
    assert removed == sorted(names)
    for name in names:
        assert _ip_link(name) == ""
    assert topology.destroy(pm.prefix) == []


@needs_root
def test_destroy_removes_any_port_count_and_namespaces() -> None:
    prefix = _unique_prefix()
    topology.create(PortMap(3, prefix))
    subprocess.run(["ip", "netns", "add", f"{prefix}n1"], check=True)
    try:
        assert topology.existing_namespaces(prefix) == [f"{prefix}n1"]
    finally:
        topology.destroy(prefix)  # a 2-port destroy must still remove port 3
    assert topology.existing_interfaces(prefix) == []
    assert topology.existing_namespaces(prefix) == []


@needs_root
def test_cli_up_status_down_with_a_stand_in_switch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                   state_dir: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    binary = _executable(tmp_path / "bin" / "simple_switch_grpc", FAKE_SWITCH)
    _stand_in_switch(monkeypatch, binary)
    prefix, port = _unique_prefix(), _free_port()
    base = ["--prefix", prefix, "--grpc-port", str(port)]
    try:
        assert p4tas_env(base + ["--ports", "3", "up", "--no-pipeline"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"target: bmv2 (simple_switch_grpc at {binary}; TARGET=bmv2)\n")
        pid = int(re.search(r"pid (\d+)", out).group(1))  # type: ignore[union-attr]
        assert f"127.0.0.1:{port}" in out and f"--prefix {prefix} down" in out
        assert re.search(rf"254\s+{prefix}h\s+{prefix}hp\s+host", out)
        assert re.search(rf"3\s+{prefix}w3\s+{prefix}w3p\s+wire", out)
        assert PortMap.from_json((state_dir / "portmap.json").read_text()) == PortMap(3, prefix)

        assert p4tas_env(base + ["status"]) == 0
        out = capsys.readouterr().out
        assert f"environment '{prefix}': up" in out and "target              bmv2" in out
        assert EnvRecord.load(state_dir).target == "bmv2"  # type: ignore[union-attr]

        # `up` again replaces the running environment instead of failing on the busy port.
        assert p4tas_env(base + ["--ports", "1", "up", "--no-pipeline"]) == 0
        assert not Path(f"/proc/{pid}").exists()
        assert topology.existing_interfaces(prefix) == sorted(PortMap(1, prefix).interface_names())
        pid = switch.read_pid(state_dir)  # type: ignore[assignment]
        capsys.readouterr()
    finally:
        assert p4tas_env(base + ["down"]) == 0
    assert "stopped simple_switch_grpc pid" in capsys.readouterr().out
    assert not Path(f"/proc/{pid}").exists()
    assert topology.existing_interfaces(prefix) == []
    assert switch.find_switches_on(prefix) == []
    assert not state_dir.exists()
    assert p4tas_env(base + ["down"]) == 0
    assert "nothing to clean" in capsys.readouterr().out


@needs_root
def test_failed_up_cleans_up(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dir: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    binary = _executable(tmp_path / "bin" / "simple_switch_grpc", CRASHING_SWITCH)
    _stand_in_switch(monkeypatch, binary)
    prefix = _unique_prefix()
    argv = ["--prefix", prefix, "--grpc-port", str(_free_port()), "up", "--no-pipeline"]
    assert p4tas_env(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("up: error: simple_switch_grpc exited with code 3")
    assert "cannot open interface" in err  # the log tail follows the one-line error
    assert topology.existing_interfaces(prefix) == []
    assert not (state_dir / "switch.pid").exists()
    assert (state_dir / "switch.log").exists()  # kept for the user to read


def _connect_as_nobody(path: Path) -> str:
    """What an ordinary user gets connecting to the UNIX socket `path`: "connected" or the
    exception's name."""
    code = ("import socket, sys\n"
            "s = socket.socket(socket.AF_UNIX)\n"
            "try:\n    s.connect(sys.argv[1]); print('connected')\n"
            "except OSError as e:\n    print(type(e).__name__)\n")
    out = subprocess.run(["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups",
                          "/usr/bin/python3", "-c", code, str(path)],
                         capture_output=True, text=True, timeout=10)
    return out.stdout.strip() or out.stderr.strip()


def _real_switch_or_skip() -> targets.Target:
    """The selected target (TARGET); skip if its switch is not there (softnic's entry point)."""
    target = targets.select().target  # TARGET=bmv2 without bmv2: an error, not a skip
    missing = target.missing()
    if missing:
        pytest.skip(f"no real switch: {missing}")
    return target


@pytest.mark.target
@needs_root
def test_real_switch_up_status_down(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = _real_switch_or_skip()
    try:
        PipelineFiles().check()
        push: list[str] = []
    except PipelineError:
        push = ["--no-pipeline"]  # p4src/build/ not compiled yet: switch and veths only
    prefix = _unique_prefix()
    base = ["--prefix", prefix]
    sock = state_dir / "p4runtime.sock"
    try:
        assert p4tas_env(base + ["up", *push]) == 0, capsys.readouterr().err
        pid = switch.read_pid(state_dir)
        assert pid is not None and switch.is_switch_process(pid)
        assert switch.process_name(pid) == target.process
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert f"unix:{sock}".encode() in argv and b"--cpu-port" in argv
        # P4Runtime has no authentication: only the switch's user may reach it.
        assert stat.S_ISSOCK(sock.stat().st_mode) and sock.stat().st_mode & 0o077 == 0
        assert switch.grpc_reachable(f"unix:{sock}")
        assert _connect_as_nobody(sock) == "PermissionError"
        assert p4tas_env(base + ["status"]) == 0
        out = capsys.readouterr().out
        assert f"environment '{prefix}': up" in out
        assert f"  {target.process:<19} pid {pid} running" in out
    finally:
        assert p4tas_env(base + ["down"]) == 0
    assert f"stopped {target.process} pid {pid}" in capsys.readouterr().out
    assert switch.running_pid(state_dir) is None
    assert switch.find_switches_on(prefix) == []
    assert not sock.exists()
    assert topology.existing_interfaces(prefix) == []
    assert not state_dir.exists()
