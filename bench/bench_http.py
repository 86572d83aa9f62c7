"""HTTP load on an unmodified server: `python -m http.server` on p4tas (through the launcher,
python -m host_lib.run) against the same server on Linux, driven by wrk.

(a) p4tas: an environment of its own on TARGET (one wire port, a Linux peer in a namespace), the
    runtime daemon, and http.server (HTTP/1.1, keep-alive) launched on the p4tas address; wrk
    runs in the peer's namespace.
(b) Linux: two namespaces joined by a veth pair (benchlib.LinuxPair), the same http.server in
    one and the same wrk in the other.

Each side serves two files: small.bin (1 KiB: requests per second, latency) and large.bin
(1 MiB: goodput), each loaded for --duration seconds by wrk with --connections keep-alive
connections on one thread. Everything created is removed at the end, also on failure or Ctrl-C.
Without root, a target, the pipeline or wrk the benchmark is skipped (exit 0). The last line of
the output is one JSON object with the figures.

    .venv/bin/python bench/bench_http.py [--duration 10] [--connections 4]   # or: make bench-http
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from benchlib import (  # noqa: E402  (also puts the repository on sys.path)
    PYTHON,
    READY_TIMEOUT,
    REPO,
    BenchError,
    LinuxPair,
    P4tasSide,
    _int_range,
    _readline,
    _stop,
    _track,
    cleanup_steps,
    describe_target,
    guarded,
    skipped,
)
from bmv2_env.peers import popen_in  # noqa: E402

FILES = {"small.bin": 1024, "large.bin": 1 << 20}
CONTROL_SOCKET_ENV = "P4TAS_CONTROL_SOCKET"


def serve(netns: str | None, launcher: list[str], host: str, port: int, folder: Path,
          env: dict[str, str], what: str) -> subprocess.Popen:
    """http.server (HTTP/1.1) on host:port serving `folder`, started through `launcher` (the
    p4tas launcher's arguments, or none), its request log in folder/../<what>.log."""
    argv = [PYTHON, "-u", "-m", *launcher, "http.server", "--bind", host, "--protocol",
            "HTTP/1.1", "-d", str(folder), str(port)]
    log = open(folder.parent / f"{what}.log", "wb")  # noqa: SIM115 - the server's for its life
    kwargs = dict(stdout=subprocess.PIPE, stderr=log, text=True, env=env, cwd=REPO)
    proc = _track(popen_in(netns, argv, **kwargs) if netns else subprocess.Popen(argv, **kwargs))
    log.close()
    line = _readline(proc, READY_TIMEOUT, what)
    if not line.startswith("Serving HTTP"):
        raise BenchError(f"{what}: said {line!r}")
    return proc


def wrk(netns: str, url: str, args: argparse.Namespace) -> dict:
    """One wrk run from `netns`; its requests/s, bytes/s, latency percentiles and errors."""
    argv = ["wrk", "-t1", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url]
    done = subprocess.run(["ip", "netns", "exec", netns, *argv], capture_output=True,
                          text=True, timeout=args.duration + 60)
    if done.returncode != 0:
        raise BenchError(f"wrk {url}: {done.stderr.strip()[-1000:]}")
    return parse_wrk(done.stdout)


_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30,
          "B": 1, "us": 1e-3, "ms": 1, "s": 1e3}


def parse_wrk(text: str) -> dict:
    """wrk's summary: requests/s, bytes/s, p50/p99 latency (ms), requests and errors."""
    def number(pattern: str) -> float:
        match = re.search(pattern, text)
        return float(match.group(1)) * _UNITS[match.group(2)] if match else 0.0
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"requests_per_s": round(number(r"Requests/sec:\s+([\d.]+)()"), 1),
            "mbit_per_s": round(number(r"Transfer/sec:\s+([\d.]+)([KMG]?B)") * 8 / 1e6, 1),
            "p50_ms": round(number(r"\s50%\s+([\d.]+)(us|ms|s)"), 3),
            "p99_ms": round(number(r"\s99%\s+([\d.]+)(us|ms|s)"), 3),
            "requests": int(number(r"(\d+) requests in()")),
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}


def load(netns: str, host: str, port: int, args: argparse.Namespace, label: str) -> dict:
    """wrk against each file; prints a line per file."""
    figures = {}
    for name in FILES:
        result = wrk(netns, f"http://{host}:{port}/{name}", args)
        print(f"  {label:<6} {name:<10} {result['requests_per_s']:9.1f} req/s "
              f"{result['mbit_per_s']:8.1f} Mbit/s  p50 {result['p50_ms']:.2f} ms "
              f"p99 {result['p99_ms']:.2f} ms  errors {result['errors']}", flush=True)
        figures[name] = result
    return figures


def bench_p4tas(args: argparse.Namespace, side: P4tasSide, folder: Path) -> dict:
    result, info = side.start([])
    peer = result.peers.peer(1)
    print(f"(a) p4tas: wrk in {peer.netns} -> python -m host_lib.run -m http.server on "
          f"{peer.local_ip}:{args.port}", flush=True)
    env = dict(os.environ, **{CONTROL_SOCKET_ENV: str(info.control_socket)})
    server = serve(None, ["host_lib.run", "--addr", peer.local_ip, "-m"], peer.local_ip,
                   args.port, folder, env, "p4tas-http")
    figures = load(peer.netns, peer.local_ip, args.port, args, "p4tas")
    _stop(server)
    side.cleanup()
    return figures


def bench_linux(args: argparse.Namespace, pair: LinuxPair, folder: Path) -> dict:
    pair.create()
    print(f"(b) Linux: wrk in {pair.client_ns} -> python -m http.server in {pair.server_ns} "
          f"{pair.server_ip}:{args.port}, one veth pair", flush=True)
    server = serve(pair.server_ns, [], pair.server_ip, args.port, folder, dict(os.environ),
                   "linux-http")
    figures = load(pair.client_ns, pair.server_ip, args.port, args, "Linux")
    _stop(server)
    pair.destroy()
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_http.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=_int_range(1, 600), default=10,
                        help="seconds of load per file and side (default %(default)s)")
    parser.add_argument("--connections", type=_int_range(1, 256), default=4,
                        help="wrk's keep-alive connections (default %(default)s)")
    parser.add_argument("--port", type=_int_range(1, 65535), default=8000,
                        help="server port (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if skipped("http"):
        return 0
    if shutil.which("wrk") is None:
        print("bench-http: SKIPPED: wrk not found (Debian package wrk; make setup installs it)")
        print(json.dumps({"bench": "http", "skipped": "wrk not found"}))
        return 0
    target = describe_target()
    print(f"bench-http: wrk -t1 -c{args.connections} -d{args.duration}s per file; fast path: "
          f"{target}", flush=True)
    side, pair = P4tasSide(), LinuxPair()
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    folder = work / "www"
    folder.mkdir()
    for name, size in FILES.items():
        (folder / name).write_bytes(os.urandom(size))
    work.chmod(0o755)
    with guarded(lambda: cleanup_steps(side.cleanup, pair.destroy,
                                       lambda: shutil.rmtree(work))) as outcome:
        p4tas = bench_p4tas(args, side, folder)
        linux = bench_linux(args, pair, folder)
    if outcome.failed("bench-http", {"bench": "http"}, target):
        return 1
    return report(args, target, p4tas, linux, outcome.problems)


def report(args: argparse.Namespace, target: str, p4tas: dict, linux: dict,
           problems: list[str]) -> int:
    def ratio(name: str, key: str) -> float | None:
        base = linux[name][key]
        return round(p4tas[name][key] / base, 3) if base else None

    small, large = ratio("small.bin", "requests_per_s"), ratio("large.bin", "mbit_per_s")
    print(f"\np4tas/Linux: {small} of the requests/s (1 KiB), {large} of the goodput (1 MiB)")
    errors = sum(side[name]["errors"] for side in (p4tas, linux) for name in FILES)
    figures = {"bench": "http", "server": "python -m http.server (HTTP/1.1)",
               "client": f"wrk -t1 -c{args.connections} -d{args.duration}s",
               "p4tas": p4tas, "linux": linux, "ratio_requests_small": small,
               "ratio_goodput_large": large, "errors": errors, "target": target}
    if problems:
        figures["cleanup_problems"] = problems
    print(json.dumps(figures))
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
