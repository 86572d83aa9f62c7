"""Run the PTF suite against a running environment and turn its output into one report line,
labelled with the target it ran on (`ptf [bmv2]: N passed, F failed, S skipped`)."""

from __future__ import annotations

import ast
import logging
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nic_contract.pipeline import REPO_ROOT, PipelineFiles
from .portmap import PortMap
from .state import PORTMAP_FILE, PTF_LOG

log = logging.getLogger(__name__)

PTF_TEST_DIR = REPO_ROOT / "ptf_tests"
REPORT_ENV = "P4TAS_REPORT"
_TEST_METHOD = re.compile(r"test.*|runTest")


@dataclass(frozen=True)
class PtfCounts:
    """Outcome of one PTF run, in the format every test stage reports."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0

    @property
    def ok(self) -> bool:
        """True if nothing failed or errored."""
        return self.failed == 0

    def line(self, note: str | None = None, stage: str = "ptf") -> str:
        """`<stage>: N passed, F failed, S skipped[ (note)]`; stage e.g. `ptf [soft]`."""
        text = f"{stage}: {self.passed} passed, {self.failed} failed, {self.skipped} skipped"
        return f"{text} ({note})" if note else text


def stage_name(target: str) -> str:
    """The report label of a PTF run on `target`: `ptf [bmv2]`."""
    return f"ptf [{target}]"


# ---- counting and parsing ---------------------------------------------------------------------
def count_tests(test_dir: Path = PTF_TEST_DIR) -> int:
    """Count test methods (test*/runTest in classes) in test_dir/test_*.py, without importing."""
    total = 0
    for path in sorted(test_dir.glob("test_*.py")):
        try:
            tree = ast.parse(path.read_text(), filename=str(path))
        except (OSError, SyntaxError, ValueError) as exc:
            log.warning("cannot parse %s: %s", path, exc)
            continue
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            total += sum(1 for f in cls.body
                         if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                         and _TEST_METHOD.fullmatch(f.name))
    return total


_RAN = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_RESULT = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.MULTILINE)
_PTF_SKIPPED = re.compile(r"^Skipped (\d+) tests?\s*$", re.MULTILINE)


def _details(text: str | None) -> dict[str, int]:
    """'failures=1, errors=2, skipped=3' -> {'failures': 1, ...}."""
    out: dict[str, int] = {}
    for part in (text or "").split(","):
        key, _, value = part.partition("=")
        if value.strip().isdigit():
            out[key.strip()] = int(value)
    return out


def parse_output(output: str) -> PtfCounts | None:
    """Counts from ptf's unittest summary (Ran N tests / OK / FAILED (...)); None if absent."""
    ran = _RAN.findall(output)
    results = _RESULT.findall(output)
    if not ran or not results:
        return None
    total = int(ran[-1])
    details = _details(results[-1][1])
    failed = sum(details.get(k, 0) for k in ("failures", "errors", "unexpected successes"))
    skipped = details.get("skipped", 0)
    # Tests that skip through ptf's own counter (testutils.skipped_test_count) pass for unittest.
    ptf_skipped = _PTF_SKIPPED.findall(output)
    skipped = max(skipped, int(ptf_skipped[-1])) if ptf_skipped else skipped
    skipped = min(skipped, max(total - failed, 0))
    return PtfCounts(passed=max(total - failed - skipped, 0), failed=failed, skipped=skipped)


def append_report(line: str) -> None:
    """Append `line` to the file named by $P4TAS_REPORT, if that is set."""
    report = os.environ.get(REPORT_ENV, "").strip()
    if not report:
        return
    path = Path(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(line + "\n")


# ---- running -----------------------------------------------------------------------------------
class PtfError(RuntimeError):
    """ptf could not be started."""


def ptf_executable() -> Path:
    """The `ptf` script installed next to this Python (the project venv)."""
    path = Path(sys.executable).parent / "ptf"
    if not path.is_file():
        raise PtfError(f"ptf not found at {path}: run `make setup` (ptf is a project dependency)")
    return path


def test_params(grpc_addr: str, files: PipelineFiles, state_dir: Path, portmap: PortMap,
                target: str = "") -> str:
    """The --test-params string: gRPC address, pipeline files, ports, and the target's name
    (tests pin what the dpdk target's architecture makes differ; see bmv2_env/README.md)."""
    params = {
        "target": target,
        "grpc_addr": grpc_addr,
        "p4info": str(files.p4info.resolve()),
        "device_config": str(files.device_config.resolve()),
        "wire_ports": ",".join(map(str, portmap.wire_ports)),
        "host_port": portmap.host_port,
        "portmap": str((state_dir / PORTMAP_FILE).resolve()),
    }
    return ";".join(f"{key}={value!r}" for key, value in params.items())


def build_command(portmap: PortMap, grpc_addr: str, state_dir: Path, files: PipelineFiles,
                  extra: Sequence[str] = (), test_dir: Path = PTF_TEST_DIR,
                  target: str = "") -> list[str]:
    """The ptf command line; ptf's default `eth` platform binds the --interface peers directly."""
    return [
        str(ptf_executable()),
        "--test-dir", str(test_dir),
        "--pypath", str(test_dir),
        "--log-file", str(state_dir / PTF_LOG),
        *portmap.ptf_interface_args(),
        "--test-params", test_params(grpc_addr, files, state_dir, portmap, target),
        *extra,
    ]


def run(cmd: Sequence[str], cwd: Path = REPO_ROOT) -> tuple[int, str]:
    """Run ptf, echoing its output live; return (exit code, output). Kills ptf if interrupted."""
    log.info("running: %s", " ".join(cmd))
    proc = subprocess.Popen(list(cmd), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace",
                            env=os.environ | {"PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        return proc.wait(), "".join(lines)
    finally:
        _kill(proc)


def _kill(proc: subprocess.Popen[str]) -> None:
    """Make sure ptf is gone (SIGTERM, then SIGKILL) and reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
