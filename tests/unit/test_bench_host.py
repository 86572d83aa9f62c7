"""bench/bench_host.py: the host side alone on the in-process loopback; a short run of every
workload moves what it says and ends with its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_short_run_of_every_workload_reports_each_figure() -> None:
    nbytes = 300_000
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_host.py"), "--bytes", str(nbytes),
         "--repeat", "1", "--rpc-seconds", "0.3", "--rpc-warmup", "0.1", "--rpc-conns", "1,3",
         "--only", "bulk,rpc", "--deadline", "30"],
        capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[1].startswith("target: none: the host side alone")
    result = json.loads(lines[-1])
    host = result["host"]
    assert set(host) == {"bulk_recv", "bulk_send", "rpc_1", "rpc_3"}
    for name, entry in host.items():
        assert entry["rate"] > 0 and entry["per_core"] > 0, (name, entry)
        assert "app_error" not in entry, (name, entry)
    assert host["rpc_3"]["p50_us"] is not None
