"""Tests of bmv2_env.targets: TARGET parsing, the default with and without bmv2, each target's
command line, and recognizing each target's process (what `down` stops). No switch is run."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bmv2_env.cli import describe
from bmv2_env.cli.main import main as p4tas_env
from bmv2_env import env, switch, targets, toolchain
from bmv2_env.portmap import PortMap
from bmv2_env.state import EnvRecord
from bmv2_env.switch import SwitchConfig
from bmv2_env.targets import BMV2_TARGET, SOFT_TARGET, ToolNotFound

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def bmv2_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """SIMPLE_SWITCH_GRPC names an executable (never run here); TARGET unset."""
    binary = tmp_path / "bin" / "simple_switch_grpc"
    binary.parent.mkdir()
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(binary))
    monkeypatch.delenv("TARGET", raising=False)
    return binary


@pytest.fixture
def no_bmv2(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No simple_switch_grpc anywhere: not in $SIMPLE_SWITCH_GRPC, PATH or /opt/p4/bin (PATH
    keeps the other tools: status runs `ip`)."""
    monkeypatch.delenv("SIMPLE_SWITCH_GRPC", raising=False)
    path = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "simple_switch_grpc").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path) or str(tmp_path / "empty-path"))
    monkeypatch.setattr(toolchain, "OPT_P4_BIN", tmp_path / "empty-opt")
    monkeypatch.delenv("TARGET", raising=False)


@pytest.fixture
def softnic_there(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A softnic entry point exists (the real one may not be written yet)."""
    main = tmp_path / "softnic" / "__main__.py"
    main.parent.mkdir()
    main.write_text("")
    monkeypatch.setattr(targets, "SOFTNIC_MAIN", main)
    return main


# ---- TARGET ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, name", [
    (None, None), ("", None), ("  ", None), ("bmv2", "bmv2"), ("soft", "soft"),
    (" SOFT ", "soft"), ("Bmv2", "bmv2"),
])
def test_target_env_var_parsing(value: str | None, name: str | None) -> None:
    environ = {} if value is None else {"TARGET": value}
    assert targets.requested(environ) == name


@pytest.mark.parametrize("value", ["tofino", "bmv", "soft,bmv2", "1"])
def test_unknown_target_is_an_error(value: str) -> None:
    with pytest.raises(ValueError, match=f"TARGET={value} is not a target: use TARGET=bmv2, "
                                         "TARGET=soft or TARGET=dpdk"):
        targets.select({"TARGET": value})


def test_get_by_name() -> None:
    assert targets.get("bmv2") is BMV2_TARGET and targets.get("soft") is SOFT_TARGET
    assert targets.get("dpdk") is targets.DPDK_TARGET
    assert targets.NAMES == ("bmv2", "soft", "dpdk")
    with pytest.raises(ValueError, match="unknown target 'x': the targets are bmv2, soft, dpdk"):
        targets.get("x")


# ---- the default -------------------------------------------------------------------------------
def test_default_is_bmv2_when_it_is_found(bmv2_found: Path) -> None:
    selection = targets.select()
    assert selection.target is BMV2_TARGET
    assert selection.line == f"target: bmv2 (simple_switch_grpc at {bmv2_found}; default)"
    assert targets.selected_name() == "bmv2"


def test_default_is_soft_without_bmv2(no_bmv2: None) -> None:
    selection = targets.select()
    assert selection.target is SOFT_TARGET
    assert selection.line == "target: soft (software fast path; simple_switch_grpc not found)"


def test_default_is_soft_when_simple_switch_grpc_names_nothing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TARGET", raising=False)
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(tmp_path / "nonexistent"))
    selection = targets.select()
    assert selection.target is SOFT_TARGET
    missing = tmp_path / "nonexistent"
    assert selection.why == f"SIMPLE_SWITCH_GRPC={missing} is not an executable file"


def test_explicit_soft_even_with_bmv2(bmv2_found: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGET", "soft")
    assert targets.select().line == "target: soft (software fast path; TARGET=soft)"


def test_explicit_bmv2(bmv2_found: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGET", "bmv2")
    assert targets.select().line == \
        f"target: bmv2 (simple_switch_grpc at {bmv2_found}; TARGET=bmv2)"


def test_explicit_bmv2_without_bmv2_is_the_tool_not_found_error(
        no_bmv2: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TARGET", "bmv2")
    with pytest.raises(ToolNotFound, match="simple_switch_grpc not found: set SIMPLE_SWITCH_GRPC"):
        targets.select()
    assert targets.selected_name() == "bmv2"  # report labels still name what was asked for
    with pytest.raises(ToolNotFound, match="simple_switch_grpc not found"):
        env.up(env.EnvOptions(prefix="zz4"))  # env.up selects the same way


def test_tested_targets(bmv2_found: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(targets, "PNA_SPEC", tmp_path / "absent.spec")   # no dpdk target
    assert [t.name for t in targets.tested_targets()] == ["bmv2", "soft"]
    monkeypatch.setenv("SIMPLE_SWITCH_GRPC", str(tmp_path / "nonexistent"))
    assert [t.name for t in targets.tested_targets()] == ["soft"]
    monkeypatch.setenv("TARGET", "bmv2")  # make test runs every available target regardless
    assert [t.name for t in targets.tested_targets()] == ["soft"]


def test_dpdk_is_tested_when_found_and_says_what_is_missing(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    if targets.DPDK_TARGET.missing():
        pytest.skip(f"the dpdk target is not available here: {targets.DPDK_TARGET.missing()}")
    assert "dpdk" in [t.name for t in targets.tested_targets()]
    assert targets.DPDK_TARGET.command_prefix()[1:] == ["-m", "dpdk_target"]
    monkeypatch.setattr(targets, "PNA_SPEC", tmp_path / "absent.spec")
    assert "make p4" in targets.DPDK_TARGET.missing()
    assert "dpdk" not in [t.name for t in targets.tested_targets()]
    monkeypatch.setenv("TARGET", "dpdk")
    with pytest.raises(ToolNotFound, match="the PNA program's spec is missing"):
        targets.select()


# ---- command lines -------------------------------------------------------------------------------
def test_bmv2_command_line(bmv2_found: Path, tmp_path: Path) -> None:
    assert BMV2_TARGET.command_prefix() == [str(bmv2_found)]
    assert BMV2_TARGET.missing() is None and BMV2_TARGET.cwd is None
    config = SwitchConfig(PortMap(1, "p4t"), tmp_path, grpc_port=9600, target="bmv2")
    assert switch.build_command(BMV2_TARGET.command_prefix(), config) == [
        str(bmv2_found), "--no-p4", "--device-id", "0", "-i", "1@p4tw1", "-i", "254@p4th",
        "--", "--grpc-server-addr", "127.0.0.1:9600", "--cpu-port", "255"]


def test_soft_command_line(softnic_there: Path, tmp_path: Path) -> None:
    """The same arguments as simple_switch_grpc, after `python -m softnic`, from the repo."""
    assert SOFT_TARGET.command_prefix() == [sys.executable, "-m", "softnic"]
    assert SOFT_TARGET.missing() is None and SOFT_TARGET.cwd == REPO
    config = SwitchConfig(PortMap(2, "p4t"), tmp_path, grpc_port=9600, log=True, device_id=3,
                          target="soft")
    assert switch.build_command(SOFT_TARGET.command_prefix(), config) == [
        sys.executable, "-m", "softnic", "--no-p4", "--device-id", "3",
        "-i", "1@p4tw1", "-i", "2@p4tw2", "-i", "254@p4th", "--log-console",
        "--", "--grpc-server-addr", "127.0.0.1:9600", "--cpu-port", "255"]


def test_soft_without_its_entry_point(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(targets, "SOFTNIC_MAIN", tmp_path / "softnic" / "__main__.py")
    with pytest.raises(ToolNotFound, match="softnic not found: .*__main__.py is missing"):
        SOFT_TARGET.command_prefix()
    assert SOFT_TARGET.missing().startswith("softnic not found")  # type: ignore[union-attr]
    assert targets.SOFTNIC_MAIN != REPO / "softnic" / "__main__.py"


def test_soft_target_is_this_repositorys_softnic() -> None:
    assert targets.SOFTNIC_MAIN == REPO / "softnic" / "__main__.py"


# ---- processes ---------------------------------------------------------------------------------
SOFTNIC_ARGV = [sys.executable, "-m", "softnic", "--no-p4", "--device-id", "0", "-i", "1@p4tw1",
                "-i", "254@p4th", "--", "--grpc-server-addr", "127.0.0.1:9559", "--cpu-port",
                "255"]


@pytest.mark.parametrize("argv, target", [
    (SOFTNIC_ARGV, SOFT_TARGET),
    (["python3", "-u", "-X", "dev", "-m", "softnic", "--no-p4"], SOFT_TARGET),
    (["/usr/bin/python3.11", "-msoftnic"], SOFT_TARGET),
    (["/opt/p4/bin/simple_switch_grpc", "--no-p4", "-i", "1@p4tw1"], BMV2_TARGET),
    (["/bin/bash", "/tmp/x/simple_switch_grpc", "--no-p4"], BMV2_TARGET),
    (["python3", "-m", "pytest", "-m", "softnic"], None),
    (["python3", "script.py", "-m", "softnic"], None),
    (["python3", "-c", "import softnic", "-m", "softnic"], None),
    (["python3", "-m", "softnic.tools"], None),
    (["python3", "-m", "runtime", "--grpc-addr", "127.0.0.1:9559"], None),
    (["softnic"], None),
    ([], None),
])
def test_process_recognition(argv: list[str], target: targets.Target | None) -> None:
    assert targets.of_cmdline(argv) is target
    assert switch._is_switch_cmdline(argv) is (target is not None)


def test_a_softnic_process_is_found_and_stopped(tmp_path: Path) -> None:
    """A live `python -m softnic -i 1@<prefix>w1 ...` (a stand-in package) is a switch of its
    prefix for `down`, named softnic, and is stopped by the same code that stops bmv2."""
    package = tmp_path / "softnic"
    package.mkdir()
    (package / "__main__.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    prefix = "zz3"
    argv = [sys.executable, "-m", "softnic", "--no-p4", "--device-id", "0",
            "-i", f"1@{prefix}w1", "-i", f"254@{prefix}h", "--",
            "--grpc-server-addr", "127.0.0.1:1", "--cpu-port", "255"]
    proc = subprocess.Popen(argv, cwd=tmp_path)
    try:
        assert targets.of_cmdline(argv) is SOFT_TARGET
        deadline_ok = _wait(lambda: switch.is_switch_process(proc.pid))
        assert deadline_ok, "the stand-in softnic never showed up in /proc"
        assert switch.find_switches_on(prefix) == [proc.pid]
        assert switch.find_switches_on("zz2") == []
        assert switch.process_name(proc.pid) == "softnic"
        switch.terminate(proc.pid, grace=5)
        assert proc.wait(timeout=5) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _wait(condition, timeout: float = 5.0) -> bool:
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_down_result_names_each_target(tmp_path: Path) -> None:
    result = env.DownResult(stopped_pids=[11, 12, 13],
                            switch_names={11: "simple_switch_grpc", 12: "softnic", 13: "softnic"})
    assert result.switches_stopped() == ["simple_switch_grpc pid 11", "softnic pid 12, 13"]


def test_env_record_keeps_the_target(tmp_path: Path) -> None:
    record = EnvRecord(PortMap(1, "x1"), "127.0.0.1:9600", log=False, pipeline=True,
                       target="soft")
    record.save(tmp_path)
    assert EnvRecord.load(tmp_path) == record
    old = (tmp_path / "env.json").read_text().replace('"target": "soft"', '"x": 1')
    (tmp_path / "env.json").write_text(old)
    assert EnvRecord.load(tmp_path).target == "bmv2"  # type: ignore[union-attr]  # older records


# ---- the CLI -----------------------------------------------------------------------------------
def test_cli_targets_lists_and_selects(bmv2_found: Path, softnic_there: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert p4tas_env(["targets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"target: bmv2 (simple_switch_grpc at {bmv2_found}; default)"
    assert out[1] == f"  bmv2  the P4 reference switch: {bmv2_found}"
    assert out[2] == f"  soft  software fast path: {sys.executable} -m softnic"
    assert out[3].startswith("  dpdk  the PNA program on DPDK's SWX pipeline: ")
    dpdk = "" if targets.DPDK_TARGET.missing() else " dpdk"
    assert out[4] == f"make test runs: bmv2 soft{dpdk}"
    assert p4tas_env(["targets", "--tested"]) == 0
    assert capsys.readouterr().out == f"bmv2 soft{dpdk}\n"


def test_cli_targets_without_bmv2(no_bmv2: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(targets, "SOFTNIC_MAIN", tmp_path / "absent" / "__main__.py")
    monkeypatch.setattr(targets, "PNA_SPEC", tmp_path / "absent.spec")
    assert p4tas_env(["targets"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("target: soft (software fast path; simple_switch_grpc not found)\n")
    assert "  bmv2  the P4 reference switch: NOT AVAILABLE: simple_switch_grpc not found" in out
    assert "  soft  software fast path: NOT AVAILABLE: softnic not found" in out
    assert out.endswith("make test runs: soft\n")
    assert p4tas_env(["targets", "--tested"]) == 0
    assert capsys.readouterr().out == "soft\n"


def test_cli_up_says_which_target_and_fails_on_a_bad_one(
        no_bmv2: None, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TARGET", "tofino")
    monkeypatch.delenv("P4TAS_REPORT", raising=False)  # ptf's report line goes nowhere
    for command in ("up", "run", "status", "ptf"):
        assert p4tas_env(["--prefix", "zz1", command]) == 1
        assert "TARGET=tofino is not a target" in capsys.readouterr().err


def test_cli_status_prints_the_target(no_bmv2: None, monkeypatch: pytest.MonkeyPatch,
                                      tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("P4TAS_STATE_DIR", str(tmp_path / "state"))
    assert p4tas_env(["--prefix", "zz1", "status"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "target: soft (software fast path; simple_switch_grpc not found)",
        "environment 'zz1': nothing is up"]


def test_describe_up_names_the_softnic_process(tmp_path: Path) -> None:
    record = EnvRecord(PortMap(1, "p4t"), "127.0.0.1:9559", log=False, pipeline=False,
                       target="soft")
    out = describe.describe_up(env.UpResult(4242, record, tmp_path, False))
    assert out.startswith("p4tas soft environment 'p4t' is up")
    assert "  softnic             pid 4242, packet log off" in out
