"""Connection setups+teardowns per second: p4tas (TARGET's switch + runtime) against Linux-to-Linux.

(a) p4tas: an environment of its own on TARGET (one wire port, a Linux peer in a namespace), the
    runtime daemon, and an application (bench/conn_server.py p4tas, host_lib.control_channel)
    that listens and closes every connection as soon as its IncomingConnection event arrives.
    The Linux client (bench/conn_client.py) in the peer's namespace connects to the p4tas
    address N times, one after another; then K client processes share N connections.
(b) Linux: two namespaces joined by a veth pair (10.98.<x>.1 and .2/24, configured like the
    peers: MTU 1500, offloads off, IPv6 off), a Linux server that accepts and closes, and the
    same client script with the same N and K.

(c) the target's ceiling (bench/target_ceiling.py): its pipeline rate over a connection's six
    passes plus one flow's P4Runtime writes, one flow per Write (for the sequential variant)
    and 16 per Write (for the concurrent one), measured on TARGET alone in the same run.

A connection is connect() + waiting for the server's FIN + close(). The rate of a variant is
the successful connections divided by the time from the start signal to the last client's end;
each variant runs --repeat times (3) and the median rate is reported (all rates are in the JSON).
Everything created (environment, runtime, namespaces, veths, processes) is removed at the end,
also on failure or Ctrl-C. Without root, a target or the compiled pipeline the benchmark is skipped
(exit 0). The last line of the output is one JSON object with the figures.

    .venv/bin/python bench/bench_conn.py [--n 300] [--concurrency 4]    # or: make bench-conn
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from benchlib import (  # noqa: E402  (also puts the repository on sys.path)
    READY_TIMEOUT,
    REPO,
    BenchError,
    LinuxPair,
    P4tasSide,
    _int_range,
    _last_json,
    _readline,
    _stop,
    _base36,
    cleanup_steps,
    cpu_seconds,
    describe_target,
    guarded,
    skipped,
    spawn_script,
    wait_listening,
)
from bmv2_env import targets  # noqa: E402
from target_ceiling import Ceiling, measure_ceiling  # noqa: E402

CLIENT = REPO / "bench" / "conn_client.py"
SERVER = REPO / "bench" / "conn_server.py"
MAX_N = 100_000
MAX_CONCURRENCY = 64


# ---- one measurement ---------------------------------------------------------------------------
@dataclass
class Variant:
    """The outcome of N connections by K clients."""

    name: str
    n: int
    clients: int
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    latencies_us: list[int] = field(default_factory=list)
    all_rates: list[float] = field(default_factory=list)  # every repetition's rate
    cpu_ms: dict[str, float] = field(default_factory=dict)  # per connection, by process

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_us:
            return float("nan")
        data = sorted(self.latencies_us)
        return data[min(len(data) - 1, int(q * len(data)))] / 1000

    def line(self) -> str:
        errs = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "no errors"
        runs = f" (median of {', '.join(map(str, self.all_rates))})" \
            if len(self.all_rates) > 1 else ""
        cpu = ", ".join(f"{who} {ms}" for who, ms in self.cpu_ms.items())
        return (f"  {self.name:<14} {self.ok}/{self.n} ok ({errs}) in {self.seconds:.2f} s: "
                f"{self.rate:8.1f} conn/s{runs}; per connection "
                f"p50 {self.percentile_ms(0.5):.2f} ms, p99 {self.percentile_ms(0.99):.2f} ms"
                + (f"; CPU ms per connection: {cpu}" if cpu else ""))

    def figures(self) -> dict:
        return {"conn_per_s": round(self.rate, 1), "runs": self.all_rates or [round(self.rate, 1)],
                "ok": self.ok, "errors": self.error_count,
                "seconds": round(self.seconds, 3),
                "p50_ms": round(self.percentile_ms(0.5), 3),
                "p99_ms": round(self.percentile_ms(0.99), 3), "cpu_ms": self.cpu_ms}


def run_clients(netns: str, host: str, port: int, n: int, clients: int, timeout: float,
                deadline: float, name: str, pids: dict[str, int] | None = None) -> Variant:
    """N connections from `clients` client processes in `netns`, started together; the CPU
    time of the processes in `pids` is taken per connection."""
    shares = [n // clients + (1 if i < n % clients else 0) for i in range(clients)]
    shares = [s for s in shares if s > 0]
    procs = []
    for share in shares:
        argv = [host, port, share, "--timeout", timeout, "--deadline", deadline]
        procs.append(spawn_script(CLIENT, argv, netns, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        line = _readline(proc, READY_TIMEOUT, f"{name}: client in {netns}")
        if line != "ready":
            raise BenchError(f"{name}: client said {line!r} instead of ready")
    cpu0 = {who: cpu_seconds(pid) for who, pid in (pids or {}).items()}
    for proc in procs:  # the start signal
        proc.stdin.write("go\n")
        proc.stdin.flush()
    result = Variant(name, n, len(shares))
    starts, ends = [], []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=deadline + 3 * timeout + 10)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{name}: a client did not finish within its deadline") from None
        if proc.returncode != 0:
            raise BenchError(f"{name}: client exited with code {proc.returncode}: "
                             f"{err.strip()[-2000:]}")
        data = _last_json(out, f"{name}: client")
        result.ok += data["ok"]
        for kind, count in data["errors"].items():
            result.errors[kind] = result.errors.get(kind, 0) + count
        result.latencies_us += data["lat_us"]
        starts.append(data["start"])
        ends.append(data["end"])
    result.seconds = max(ends) - min(starts)
    for who, before in cpu0.items():
        after = cpu_seconds(pids[who])
        if before is not None and after is not None and result.ok:
            result.cpu_ms[who] = round((after - before) * 1000 / result.ok, 3)
    return result


def _median_run(netns: str, host: str, port: int, args: argparse.Namespace, clients: int,
                name: str, pids: dict[str, int] | None) -> Variant:
    """`args.repeat` runs of one variant; the run with the median rate, all rates noted."""
    runs = [run_clients(netns, host, port, args.n, clients, args.timeout, args.deadline, name,
                        pids) for _ in range(args.repeat)]
    chosen = sorted(runs, key=lambda v: v.rate)[len(runs) // 2]
    chosen.all_rates = [round(v.rate, 1) for v in runs]
    for other in runs:  # errors of any run count
        if other is not chosen:
            for kind, count in other.errors.items():
                chosen.errors[kind] = chosen.errors.get(kind, 0) + count
    return chosen


def measure(netns: str, host: str, port: int, args: argparse.Namespace,
            label: str, pids: dict[str, int] | None = None) -> list[Variant]:
    """Warm-up, then N sequential connections, then N connections by K clients (each variant
    `args.repeat` times, the median kept); CPU per connection of the processes in `pids`."""
    if args.warmup:
        warm = run_clients(netns, host, port, args.warmup, 1, args.timeout, args.deadline,
                           f"{label} warm-up")
        if warm.ok == 0:
            raise BenchError(f"{label}: not one warm-up connection succeeded "
                             f"({warm.errors}); nothing to measure")
    variants = [_median_run(netns, host, port, args, 1, "sequential", pids)]
    if args.concurrency > 1:
        variants.append(_median_run(netns, host, port, args, args.concurrency,
                                    f"{args.concurrency} concurrent", pids))
    return variants


def start_server(argv: Sequence[str], netns: str | None, what: str) -> subprocess.Popen:
    """Start a conn_server.py and wait until it listens."""
    return wait_listening(spawn_script(SERVER, argv, netns, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
                          what)


def stop_server(proc: subprocess.Popen, what: str) -> dict:
    out, err = _stop(proc)
    try:
        return _last_json(out, what)
    except BenchError:
        raise BenchError(f"{what}: {err.strip()[-2000:] or 'no result'}") from None


# ---- (a) p4tas ---------------------------------------------------------------------------------
def bench_p4tas(args: argparse.Namespace, side: P4tasSide) -> tuple[list[Variant], dict, str]:
    result, info = side.start(args.runtime_arg)
    peer = result.peers.peer(1)
    where = f"Linux client in {peer.netns} ({peer.peer_ip}) -> p4tas {peer.local_ip}:{args.port}"
    print(f"(a) p4tas: {where}; runtime pid {info.pid}, switch pid {result.pid}", flush=True)
    server = start_server(["p4tas", str(info.control_socket), str(args.port)], None,
                          "p4tas server (host_lib application)")
    pids = {"runtime": info.pid, "switch": result.pid, "server": server.pid}
    variants = measure(peer.netns, peer.local_ip, args.port, args, "p4tas", pids)
    counts = stop_server(server, "p4tas server")
    side.cleanup()  # the switch and the runtime stop before the Linux measurement
    return variants, counts, where


# ---- (b) Linux to Linux ------------------------------------------------------------------------
def bench_linux(args: argparse.Namespace, pair: LinuxPair) -> tuple[list[Variant], dict, str]:
    pair.create()
    where = (f"Linux client in {pair.client_ns} ({pair.client_ip}) -> Linux server in "
             f"{pair.server_ns} {pair.server_ip}:{args.port}, one veth pair")
    print(f"(b) Linux: {where}", flush=True)
    server = start_server(["linux", pair.server_ip, str(args.port)], pair.server_ns,
                          "Linux server")
    variants = measure(pair.client_ns, pair.server_ip, args.port, args, "Linux")
    counts = stop_server(server, "Linux server")
    pair.destroy()
    return variants, counts, where


# ---- main --------------------------------------------------------------------------------------
def cleanup(side: P4tasSide, pair: LinuxPair) -> list[str]:
    """Stop every process we started, remove the environment and the namespaces; return
    the problems met (each step is tried whatever the previous one did)."""
    return cleanup_steps(side.cleanup, pair.destroy)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_conn.py", description=__doc__.split("\n\n")[0],
        epilog="Output: both rates, their ratio, the target (bmv2 build or softnic); the last "
               "line is JSON.")
    parser.add_argument("--n", type=_int_range(1, MAX_N), default=300,
                        help=f"connections per variant (default %(default)s, at most {MAX_N})")
    parser.add_argument("--concurrency", "-k", type=_int_range(1, MAX_CONCURRENCY), default=4,
                        help="client processes of the concurrent variant (default %(default)s; "
                             "1: sequential only)")
    parser.add_argument("--repeat", type=_int_range(1, 20), default=3,
                        help="runs of each variant; the median rate is reported (default "
                             "%(default)s)")
    parser.add_argument("--warmup", type=_int_range(0, 1000), default=10,
                        help="connections before measuring, not counted (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="per connect and per EOF wait, seconds (default %(default)s)")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="a variant stops after this many seconds (default %(default)s)")
    parser.add_argument("--port", type=_int_range(1, 65535), default=5001,
                        help="server port (default %(default)s)")
    parser.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for the runtime daemon, e.g. "
                             "--runtime-arg=--time-wait --runtime-arg=0.5 (repeat)")
    parser.add_argument("--no-ceiling", action="store_true",
                        help="skip (c), the target's ceiling")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if skipped("conn"):
        return 0
    target = describe_target()
    print(f"bench-conn: {args.n} connections per variant (sequential, and {args.concurrency} "
          f"concurrent clients), median of {args.repeat} runs, {args.warmup} warm-up "
          "connections not counted")
    print(f"fast path: {target}", flush=True)
    side, pair = P4tasSide(), LinuxPair()
    with guarded(lambda: cleanup(side, pair)) as outcome:
        p4tas, p4tas_server, _ = bench_p4tas(args, side)
        for v in p4tas:
            print(v.line())
        print(f"  server: {json.dumps(p4tas_server)}", flush=True)
        linux, linux_server, _ = bench_linux(args, pair)
        for v in linux:
            print(v.line())
        print(f"  server: {json.dumps(linux_server)}", flush=True)
        ceiling = None
        if not args.no_ceiling:
            ceiling = measure_ceiling(targets.select().name, f"c{_base36(os.getpid())}"[:6])
            print(f"(c) {ceiling.line()}", flush=True)
    if outcome.failed("bench-conn", {"bench": "conn", "n": args.n}, target):
        return 1
    return report(args, target, p4tas, linux, p4tas_server, ceiling, outcome.problems)


def _of_ceiling(variant: Variant, ceiling: Ceiling | None, batched: bool) -> str:
    """'; x of the target's ceiling (N conn/s)', or '' without a ceiling."""
    limit = ceiling.conn_per_s(batched) if ceiling is not None else None
    return f"; {round(variant.rate / limit, 3)} of the target's ceiling ({limit} conn/s)" \
        if limit else ""


def _fraction(rate: float, limit: float | None) -> float | None:
    return round(rate / limit, 4) if limit else None


def report(args: argparse.Namespace, target: str, p4tas: list[Variant], linux: list[Variant],
           p4tas_server: dict, ceiling: Ceiling | None, problems: list[str]) -> int:
    def ratio(a: Variant, b: Variant) -> float | None:
        return round(a.rate / b.rate, 4) if b.rate > 0 else None

    seq = ratio(p4tas[0], linux[0])
    print("")
    print(f"p4tas {p4tas[0].rate:.1f} conn/s, Linux {linux[0].rate:.1f} conn/s sequential: "
          f"ratio p4tas/Linux {seq}" + (f" (Linux {1 / seq:.1f}x faster)" if seq else "")
          + _of_ceiling(p4tas[0], ceiling, False))
    figures: dict = {"bench": "conn", "n": args.n, "concurrency": args.concurrency,
                     "repeat": args.repeat,
                     "p4tas_conn_per_s": round(p4tas[0].rate, 1),
                     "linux_conn_per_s": round(linux[0].rate, 1), "ratio": seq}
    if len(p4tas) > 1:
        conc = ratio(p4tas[1], linux[1])
        print(f"p4tas {p4tas[1].rate:.1f} conn/s, Linux {linux[1].rate:.1f} conn/s with "
              f"{args.concurrency} clients: ratio p4tas/Linux {conc}"
              + (f" (Linux {1 / conc:.1f}x faster)" if conc else "")
              + _of_ceiling(p4tas[1], ceiling, True))
        figures |= {"p4tas_concurrent_conn_per_s": round(p4tas[1].rate, 1),
                    "linux_concurrent_conn_per_s": round(linux[1].rate, 1),
                    "ratio_concurrent": conc}
    errors = sum(v.error_count for v in p4tas + linux)
    figures |= {
        "errors": errors,
        "p4tas": {v.name: v.figures() for v in p4tas},
        "linux": {v.name: v.figures() for v in linux},
        "runtime_counters": p4tas_server.get("runtime", {}),
        "target": target, "python": platform.python_version(),
        "runtime_args": args.runtime_arg,
    }
    if ceiling is not None:
        figures["ceiling"] = ceiling.figures()
        figures["fraction_of_ceiling"] = _fraction(p4tas[0].rate, ceiling.conn_per_s(False))
        if len(p4tas) > 1:
            figures["fraction_of_ceiling_concurrent"] = _fraction(p4tas[1].rate,
                                                                  ceiling.conn_per_s(True))
    if problems:
        figures["cleanup_problems"] = problems
    if errors:
        print(f"bench-conn: {errors} connections failed (see the error counts above)",
              file=sys.stderr)
    print(json.dumps(figures))
    return 1 if errors or problems else 0


if __name__ == "__main__":
    sys.exit(main())
