"""New connections under a SYN flood: p4tas (TARGET's switch + runtime) against Linux with
syncookies, on the same kind of topology.

For each side: N sequential connections from a Linux client (bench/conn_client.py) to a server
that accepts and closes (bench/conn_server.py), first without a flood, then while
bench/syn_flood.py sends --rate SYNs per second from spoofed addresses of the client's subnet
at the same server port. p4tas defends with SYN cookies (RFC 4987) in the slow path and its
fast path's per-reason punt meter (--punt-rate); Linux with its syncookies (net.ipv4.
tcp_syncookies=1, its default). Reported per side: connections/s, successes and failures,
p50/p99 setup+teardown time, with and without the flood, the flood's achieved rate, and the
runtime's counters (cookies sent and accepted, punts dropped). Everything created is removed at
the end, also on failure or Ctrl-C; without root, a target or the compiled pipeline the benchmark
is skipped (exit 0). The last line of the output is one JSON object.

    .venv/bin/python bench/bench_flood.py [--n 200] [--rate 5000]    # or: make bench-flood
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from bench_conn import (Variant, run_clients, start_server,  # noqa: E402
                        stop_server)
from benchlib import (READY_TIMEOUT, REPO, BenchError, LinuxPair, P4tasSide,  # noqa: E402
                      _int_range, _last_json, _readline, _stop, cleanup_steps, describe_target,
                      guarded, skipped, spawn_script)

FLOOD = REPO / "bench" / "syn_flood.py"
SETTLE_S = 1.0   # the flood runs this long before the clients start


def subnet_of(ip: str) -> str:
    return ip.rsplit(".", 1)[0]


def under_flood(netns: str, host: str, args: argparse.Namespace, label: str
                ) -> tuple[Variant, Variant, dict]:
    """N connections without, then with, the flood (started SETTLE_S before the clients)."""
    calm = run_clients(netns, host, args.port, args.n, 1, args.timeout, args.deadline,
                       f"{label} without flood")
    seconds = args.deadline + SETTLE_S + 5
    flood = spawn_script(FLOOD, [host, args.port, subnet_of(host), args.rate, seconds], netns,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    if _readline(flood, READY_TIMEOUT, f"{label}: flood") != "flooding":
        raise BenchError(f"{label}: the flood did not start")
    subprocess.run(["sleep", str(SETTLE_S)], check=True)
    flooded = run_clients(netns, host, args.port, args.n, 1, args.timeout, args.deadline,
                          f"{label} under flood")
    out, _ = _stop(flood)
    try:
        achieved = _last_json(out, f"{label}: flood")
    except BenchError:
        achieved = {"sent": None, "note": "stopped before its report"}
    return calm, flooded, achieved


def bench_p4tas(args: argparse.Namespace, side: P4tasSide) -> tuple[Variant, Variant, dict, dict]:
    result, info = side.start(args.runtime_arg)
    peer = result.peers.peer(1)
    print(f"(a) p4tas: Linux client and flood in {peer.netns} -> p4tas "
          f"{peer.local_ip}:{args.port}; runtime pid {info.pid}", flush=True)
    server = start_server(["p4tas", str(info.control_socket), str(args.port)], None,
                          "p4tas server (host_lib application)")
    calm, flooded, flood = under_flood(peer.netns, peer.local_ip, args, "p4tas")
    counts = stop_server(server, "p4tas server")
    side.cleanup()
    return calm, flooded, flood, counts


def bench_linux(args: argparse.Namespace, pair: LinuxPair) -> tuple[Variant, Variant, dict]:
    pair.create()
    subprocess.run(["ip", "netns", "exec", pair.server_ns, "sysctl", "-q", "-w",
                    "net.ipv4.tcp_syncookies=1"], check=True)
    print(f"(b) Linux: client and flood in {pair.client_ns} -> Linux server "
          f"{pair.server_ip}:{args.port} (syncookies on)", flush=True)
    server = start_server(["linux", pair.server_ip, str(args.port)], pair.server_ns,
                          "Linux server")
    calm, flooded, flood = under_flood(pair.client_ns, pair.server_ip, args, "Linux")
    stop_server(server, "Linux server")
    pair.destroy()
    return calm, flooded, flood


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_flood.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=_int_range(1, 100_000), default=200,
                        help="connections measured, with and without the flood (default "
                             "%(default)s)")
    parser.add_argument("--rate", type=_int_range(1, 1_000_000), default=5000,
                        help="SYNs per second of the flood (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="per connect and per EOF wait, seconds (default %(default)s)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="a measurement stops after this many seconds (default %(default)s)")
    parser.add_argument("--port", type=_int_range(1, 65535), default=5001)
    parser.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for the runtime daemon (repeat)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if skipped("flood"):
        return 0
    target = describe_target()
    print(f"bench-flood: {args.n} sequential connections without and with a {args.rate} SYN/s "
          f"flood; fast path: {target}", flush=True)
    side, pair = P4tasSide(), LinuxPair()
    results: dict = {}
    with guarded(lambda: cleanup_steps(side.cleanup, pair.destroy)) as outcome:
        calm, flooded, flood, counts = bench_p4tas(args, side)
        results["p4tas"] = {"calm": calm.figures(), "flood": flooded.figures(),
                            "flood_achieved": flood,
                            "runtime": {k: v for k, v in counts.get("runtime", {}).items()
                                        if "cookie" in k or "backlog" in k or "SYN" in k}}
        for v in (calm, flooded):
            print(v.line())
        print(f"  flood: {flood}; runtime: {results['p4tas']['runtime']}", flush=True)
        calm, flooded, flood = bench_linux(args, pair)
        results["linux"] = {"calm": calm.figures(), "flood": flooded.figures(),
                            "flood_achieved": flood}
        for v in (calm, flooded):
            print(v.line())
        print(f"  flood: {flood}", flush=True)
    if outcome.failed("bench-flood", {"bench": "flood", "n": args.n}, target):
        return 1
    for side_name in ("p4tas", "linux"):
        r = results[side_name]
        kept = r["flood"]["conn_per_s"] / r["calm"]["conn_per_s"] if r["calm"]["conn_per_s"] else 0
        r["kept_fraction"] = round(kept, 3)
        print(f"{side_name}: {r['flood']['ok']}/{args.n} connections under the flood, "
              f"{r['flood']['conn_per_s']} conn/s = {kept:.2f} of its calm rate", flush=True)
    print(json.dumps({"bench": "flood", "n": args.n, "rate": args.rate, "target": target,
                      "python": platform.python_version(), "results": results,
                      "runtime_args": args.runtime_arg}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
