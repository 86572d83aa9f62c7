"""bench_transfer --profile: py-spy on the runtime daemon and the host_lib application during
one more bulk transfer each way, and their hot spots."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

from benchlib import PYTHON, REPO, _track, cpu_seconds
from transfer_procs import finish, spawn, start_server, stop_server
from transfer_workloads import BULK_PORT


def find_py_spy() -> Path | None:
    """py-spy next to this Python, else on PATH; None if there is none."""
    for candidate in (Path(PYTHON).parent / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def start_py_spy(py_spy: Path, pid: int, out: Path, rate: int) -> subprocess.Popen:
    """py-spy recording `pid` into `out` (raw collapsed stacks), tracked for cleanup."""
    cmd = [str(py_spy), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
           "--output", str(out), "--nonblocking"]
    return _track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True))


def stop_py_spy(proc: subprocess.Popen) -> str:
    """Stop py-spy so that it writes its output; its stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def hot_spots(raw: Path, top: int) -> dict:
    """Self time per frame (function + file:line) and inclusive time per function, from py-spy's
    collapsed stacks (`frame;frame;... count`, outermost first)."""
    self_time, inclusive, total = Counter(), Counter(), 0
    try:
        lines = raw.read_text(errors="replace").splitlines()
    except OSError:
        return {"error": f"no py-spy output in {raw}"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        frames = [f for f in frames if not f.startswith("process ") and not
                  f.startswith("thread ")] or frames
        self_time[_short(frames[-1])] += n
        for func in {_short(f, line_no=False) for f in frames}:
            inclusive[func] += n

    def rows(counter: Counter) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]
    return {"samples": total, "self_pct": rows(self_time), "inclusive_pct": rows(inclusive)}


def _short(frame: str, line_no: bool = True) -> str:
    """`func (/abs/path/file.py:123)` -> `func (runtime/file.py:123)`."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path:
        path, line = where, ""
    repo = str(REPO) + "/"
    if path.startswith(repo):
        path = path[len(repo):]
    elif "/lib/python" in path:
        path = "stdlib/" + path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{func} ({path}:{line})" if line_no and line else f"{func} ({path})"


def profile_bulk(args: argparse.Namespace, runtime_pid: int, switch_pid: int, peer,
                 control: Path) -> dict:
    """One more transfer each way with py-spy on the runtime and on the host_lib application."""
    py_spy = find_py_spy()
    if py_spy is None:
        return {"skipped": "py-spy not found (pip install py-spy into the venv)"}
    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    directions = {
        "linux_to_p4tas": (["p4tas", peer.local_ip, BULK_PORT], None, control,
                           ["linux", peer.local_ip, BULK_PORT], peer.netns, None, "sink"),
        "p4tas_to_linux": (["linux", peer.peer_ip, BULK_PORT], peer.netns, None,
                           ["p4tas", peer.peer_ip, BULK_PORT], None, control, "source"),
    }
    for name, (s_argv, s_ns, s_sock, c_argv, c_ns, c_sock, app_role) in directions.items():
        server = start_server(["sink", *s_argv, "--timeout", args.timeout], s_ns,
                              f"profile {name}: sink", s_sock)
        client = spawn(["source", *c_argv, "--bytes", args.p4tas_bytes, "--timeout",
                        args.timeout, "--deadline", args.deadline], c_ns, c_sock)
        app = server if app_role == "sink" else client
        pids = {"runtime": runtime_pid, "switch": switch_pid, "app": app.pid}
        spies = {"runtime": (start_py_spy(py_spy, runtime_pid, out_dir / f"{name}.runtime.txt",
                                          args.profile_rate), out_dir / f"{name}.runtime.txt"),
                 "app": (start_py_spy(py_spy, app.pid, out_dir / f"{name}.app.txt",
                                      args.profile_rate), out_dir / f"{name}.app.txt")}
        cpu0 = {who: cpu_seconds(pid) for who, pid in pids.items()}
        w0 = time.monotonic()
        runs = [finish(client, args.deadline + args.timeout + 10, f"profile {name}: source")]
        for _ in range(args.profile_runs - 1):
            if app_role == "source":  # a new client process each run: sample the runtime only
                break
            client = spawn(["source", *c_argv, "--bytes", args.p4tas_bytes, "--timeout",
                            args.timeout, "--deadline", args.deadline], c_ns, c_sock)
            runs.append(finish(client, args.deadline + args.timeout + 10,
                               f"profile {name}: source"))
        wall = time.monotonic() - w0
        cpu1 = {who: cpu_seconds(pid) for who, pid in pids.items()}
        cpu = {who: round(100 * (cpu1[who] - cpu0[who]) / wall, 1) for who in pids
               if cpu0[who] is not None and cpu1[who] is not None}  # an exited app: not known
        stop_server(server, f"profile {name}: sink")
        run = runs[-1]
        entry = {"transfer": [r.get("status") for r in runs], "cpu_pct": cpu,
                 "mbit_per_s": round(run["bytes"] * 8 / run["seconds"] / 1e6, 2)
                 if run.get("status") == "ok" else None}
        for who, (proc, path) in spies.items():
            err = stop_py_spy(proc)
            entry[who] = hot_spots(path, args.profile_top)
            entry[who]["raw"] = str(path)
            if "error" in entry[who]:
                entry[who]["py_spy_stderr"] = err.strip()[-300:]
        result[name] = entry
    return result


def print_profile(profile: dict) -> None:
    """The hot spots of profile_bulk, as text."""
    if "skipped" in profile:
        print(f"  profile skipped: {profile['skipped']}")
        return
    for name, entry in profile.items():
        print(f"  {name} (transfers {entry['transfer']}, last {entry['mbit_per_s']} Mbit/s while "
              f"sampled; CPU % of one core: {entry['cpu_pct']}):")
        for who in ("runtime", "app"):
            spots = entry[who]
            if "error" in spots:
                print(f"    {who}: {spots['error']} {spots.get('py_spy_stderr', '')}")
                continue
            print(f"    {who}: {spots['samples']} samples ({spots['raw']}); self time:")
            for frame, pct in spots["self_pct"]:
                print(f"      {pct:5.1f}%  {frame}")
            print(f"    {who}: inclusive:")
            for frame, pct in spots["inclusive_pct"]:
                print(f"      {pct:5.1f}%  {frame}")
