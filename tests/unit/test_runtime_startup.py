"""The daemon refuses to start with a one-line error that says what to check."""

import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IFACE = ["--interface", "1=10.99.1.1/24,02:00:0a:63:01:01"]


def run_runtime(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtime", *IFACE, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_switch(tmp_path: Path) -> None:
    result = run_runtime("--grpc-addr", f"127.0.0.1:{free_port()}",
                         "--control-socket", str(tmp_path / "s"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "is simple_switch_grpc running" in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_missing_pipeline_artifacts(tmp_path: Path) -> None:
    result = run_runtime("--p4info", str(tmp_path / "nope.txtpb"),
                         "--control-socket", str(tmp_path / "s"))
    assert result.returncode == 1
    assert "artifacts missing: " in result.stderr and "nope.txtpb" in result.stderr
    assert "--p4info" in result.stderr and "Traceback" not in result.stderr
