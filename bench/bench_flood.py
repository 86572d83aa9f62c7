"""New connections and an established transfer under a SYN flood: p4tas (TARGET's switch +
runtime) against Linux with syncookies, on the same kind of topology.

For each side, without a flood and while bench/syn_flood.py sends --rate SYNs per second from
spoofed addresses of the client's subnet at the server's port: N sequential connections from a
Linux client (bench/conn_client.py) to a server that accepts and closes (bench/conn_server.py),
and --repeat bulk transfers of --bytes each way, calm and flooded in turn (p4tas: host_lib
sender -> Linux sink in the peer's namespace; Linux: client namespace -> server namespace),
whose median goodputs are compared. p4tas defends with SYN cookies (RFC 4987) in the slow path and its
fast path's per-reason punt meter (--punt-rate); Linux with its syncookies (net.ipv4.
tcp_syncookies=1, its default). Reported per side: connections/s, successes and failures,
p50/p99 setup+teardown time, the transfer's goodput, with and without the flood, the flood's
achieved rate, the runtime's counters (cookies sent and accepted, punts dropped), and the
machine's load average before and after (other work on the machine skews every figure). Everything created is removed at
the end, also on failure or Ctrl-C; without root, a target or the compiled pipeline the benchmark
is skipped (exit 0). The last line of the output is one JSON object.

    .venv/bin/python bench/bench_flood.py [--n 200] [--rate 5000] [--repeat 3]
    make bench-flood TARGET=soft|bmv2|dpdk BENCH_ARGS="..."
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from bench_conn import (Variant, run_clients, start_server,  # noqa: E402
                        stop_server)
from bmv2_env import targets  # noqa: E402
from bmv2_env.toolchain import ToolNotFound  # noqa: E402
from nic_contract.p4rt.client import P4RuntimeClient  # noqa: E402
from nic_contract.p4rt.errors import P4RuntimeError  # noqa: E402
from transfer_workloads import Bulk, bulk  # noqa: E402
from benchlib import (READY_TIMEOUT, REPO, BenchError, LinuxPair, P4tasSide,  # noqa: E402
                      _int_range, _last_json, _readline, _stop, cleanup_steps, describe_target,
                      guarded, skipped, spawn_script)

FLOOD = REPO / "bench" / "syn_flood.py"
BULK_PORT = 7103
SETTLE_S = 1.0   # the flood runs this long before the measurements start
RUNTIME_COUNTERS = ("cookie", "backlog", "SYN", "syn_budget")   # the runtime's counters shown

Endpoint = tuple[list, str | None, Path | None]   # transfer_peer.py argv, netns, control socket


@dataclass
class Phase:
    """What one side did in one phase (with or without the flood)."""

    conns: Variant
    transfer: Bulk


@dataclass
class SideSetup:
    """Where one side's connections, transfer and flood go."""

    label: str
    netns: str              # the Linux client's and the flood's namespace
    host: str               # the server's address
    sink: Endpoint
    source: Endpoint


def subnet_of(ip: str) -> str:
    return ip.rsplit(".", 1)[0]


@contextmanager
def flooding(setup: SideSetup, args: argparse.Namespace, reports: list[dict]) -> Iterator[None]:
    """bench/syn_flood.py runs (from SETTLE_S before the body to its end); its report is added
    to `reports`."""
    seconds = 2 * args.deadline + SETTLE_S + 5
    flood = spawn_script(FLOOD, [setup.host, args.port, subnet_of(setup.host), args.rate,
                                 seconds], setup.netns, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if _readline(flood, READY_TIMEOUT, f"{setup.label}: flood") != "flooding":
            raise BenchError(f"{setup.label}: the flood did not start")
        subprocess.run(["sleep", str(SETTLE_S)], check=True)
        yield
    finally:
        out, _ = _stop(flood)
    try:
        reports.append(_last_json(out, f"{setup.label}: flood"))
    except BenchError:
        reports.append({"sent": None, "note": "stopped before its report"})


def transfer(setup: SideSetup, args: argparse.Namespace, into: Bulk) -> None:
    """One bulk transfer of --bytes, its run added to `into`."""
    one = bulk(into.name, setup.sink, setup.source, args.bytes, 1, args)
    into.runs.extend(one.runs)
    into.sink.extend(one.sink)


def under_flood(setup: SideSetup, args: argparse.Namespace) -> tuple[Phase, Phase, dict]:
    """N connections without, then with, the flood; then --repeat transfers, calm and flooded
    in turn, so that other work on the machine weighs on both alike."""
    reports: list[dict] = []
    calm_conns = run_clients(setup.netns, setup.host, args.port, args.n, 1, args.timeout,
                             args.deadline, f"{setup.label} without flood")
    with flooding(setup, args, reports):
        flood_conns = run_clients(setup.netns, setup.host, args.port, args.n, 1, args.timeout,
                                  args.deadline, f"{setup.label} under flood")
    calm = Phase(calm_conns, Bulk(f"{setup.label} transfer without flood", args.bytes))
    flooded = Phase(flood_conns, Bulk(f"{setup.label} transfer under flood", args.bytes))
    for _ in range(args.repeat):
        transfer(setup, args, calm.transfer)
        with flooding(setup, args, reports):
            transfer(setup, args, flooded.transfer)
    return calm, flooded, achieved(reports)


def achieved(reports: list[dict]) -> dict:
    """The floods' reports as one: SYNs sent, seconds, rate."""
    if any(r.get("sent") is None for r in reports):
        return {"sent": None, "note": "a flood stopped before its report"}
    sent, seconds = sum(r["sent"] for r in reports), sum(r["seconds"] for r in reports)
    return {"sent": sent, "seconds": round(seconds, 2),
            "rate": round(sent / seconds) if seconds else 0}


def bench_p4tas(args: argparse.Namespace, side: P4tasSide) -> tuple[Phase, Phase, dict, dict]:
    result, info = side.start(args.runtime_arg)
    peer = result.peers.peer(1)
    print(f"(a) p4tas: Linux client, sink and flood in {peer.netns} -> p4tas "
          f"{peer.local_ip}:{args.port}; runtime pid {info.pid}", flush=True)
    server = start_server(["p4tas", str(info.control_socket), str(args.port)], None,
                          "p4tas server (host_lib application)")
    setup = SideSetup("p4tas", peer.netns, peer.local_ip,
                      (["linux", peer.peer_ip, BULK_PORT], peer.netns, None),
                      (["p4tas", peer.peer_ip, BULK_PORT], None, info.control_socket))
    calm, flooded, flood = under_flood(setup, args)
    counts = stop_server(server, "p4tas server")
    counts.setdefault("runtime", {})["fast_path_syncookies_sent"] = fast_path_cookies(
        result.record.grpc_addr)
    side.cleanup()
    return calm, flooded, flood, counts


def fast_path_cookies(grpc_addr: str) -> int | None:
    """SYN-ACKs with a cookie the fast path sent (syn_cookie.p4's counter), read as an
    observer that leaves the runtime primary."""
    client = P4RuntimeClient(grpc_addr)
    try:
        client.connect(primary=False)
        client.fetch_p4info()
        return client.read_counter("syn_cookies_sent", 0)[0]
    except P4RuntimeError as exc:
        print(f"  (fast path's cookie counter not read: {exc})", flush=True)
        return None
    finally:
        client.close()


def bench_linux(args: argparse.Namespace, pair: LinuxPair) -> tuple[Phase, Phase, dict]:
    pair.create()
    subprocess.run(["ip", "netns", "exec", pair.server_ns, "sysctl", "-q", "-w",
                    "net.ipv4.tcp_syncookies=1"], check=True)
    print(f"(b) Linux: client, source and flood in {pair.client_ns} -> Linux server and sink "
          f"{pair.server_ip} (syncookies on)", flush=True)
    server = start_server(["linux", pair.server_ip, str(args.port)], pair.server_ns,
                          "Linux server")
    setup = SideSetup("Linux", pair.client_ns, pair.server_ip,
                      (["linux", pair.server_ip, BULK_PORT], pair.server_ns, None),
                      (["linux", pair.server_ip, BULK_PORT], pair.client_ns, None))
    calm, flooded, flood = under_flood(setup, args)
    stop_server(server, "Linux server")
    pair.destroy()
    return calm, flooded, flood


def figures(calm: Phase, flooded: Phase, flood: dict) -> dict:
    """One side's results: connections and transfer, calm and flooded, and what they kept."""
    out = {"calm": calm.conns.figures(),
           "flood": {**flooded.conns.figures(), "error_kinds": dict(flooded.conns.errors)},
           "transfer_calm": calm.transfer.figures(),
           "transfer_flood": flooded.transfer.figures(), "flood_achieved": flood}
    rate, calm_rate = flooded.conns.figures()["conn_per_s"], calm.conns.figures()["conn_per_s"]
    out["kept_fraction"] = round(rate / calm_rate, 3) if calm_rate else 0
    mbps, calm_mbps = flooded.transfer.mbps, calm.transfer.mbps
    out["transfer_kept_fraction"] = round(mbps / calm_mbps, 3) if mbps and calm_mbps else 0
    for phase in (calm, flooded):
        print(phase.conns.line())
        print(phase.transfer.line())
    print(f"  flood: {flood}", flush=True)
    return out


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
    parser.add_argument("--bytes", type=_int_range(1, 1 << 30), default=16 << 20,
                        help="bytes of the bulk transfer, with and without the flood (default "
                             "%(default)s)")
    parser.add_argument("--repeat", type=_int_range(1, 20), default=3,
                        help="transfers per phase, the median goodput compared (default "
                             "%(default)s)")
    parser.add_argument("--port", type=_int_range(1, 65535), default=5001)
    parser.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for the runtime daemon (repeat)")
    return parser.parse_args(argv)


def target_name() -> str:
    """The selected target's TARGET value (bmv2, soft, dpdk)."""
    try:
        return targets.select().target.name
    except (ToolNotFound, ValueError):
        return "none"


def load() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return [round(value, 2) for value in os.getloadavg()]


def summary(side_name: str, r: dict, n: int) -> str:
    """One side's line: connections and the transfer under the flood, against calm."""
    errors = ", ".join(f"{kind} {count}" for kind, count in r["flood"]["error_kinds"].items())
    return (f"{side_name}: {r['flood']['ok']}/{n} connections under the flood "
            f"({errors or 'no errors'}), "
            f"{r['flood']['conn_per_s']} conn/s = {r['kept_fraction']:.2f} of its calm rate; "
            f"transfer {r['transfer_flood']['mbit_per_s']} Mbit/s = "
            f"{r['transfer_kept_fraction']:.2f} of its calm "
            f"{r['transfer_calm']['mbit_per_s']} Mbit/s")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if skipped("flood"):
        return 0
    target, name, load_before = describe_target(), target_name(), load()
    print(f"bench-flood on {name}: {args.n} sequential connections and {args.repeat} transfers "
          f"without and with a {args.rate} SYN/s flood; fast path: {target}; load average "
          f"{load_before}", flush=True)
    side, pair = P4tasSide(), LinuxPair()
    results: dict = {}
    with guarded(lambda: cleanup_steps(side.cleanup, pair.destroy)) as outcome:
        calm, flooded, flood, counts = bench_p4tas(args, side)
        results["p4tas"] = figures(calm, flooded, flood)
        results["p4tas"]["runtime"] = {k: v for k, v in counts.get("runtime", {}).items()
                                       if any(word in k for word in RUNTIME_COUNTERS)}
        print(f"  runtime: {results['p4tas']['runtime']}", flush=True)
        results["linux"] = figures(*bench_linux(args, pair))
    if outcome.failed("bench-flood", {"bench": "flood", "n": args.n}, target):
        return 1
    load_after = load()
    print(summary(f"p4tas on {name}", results["p4tas"], args.n), flush=True)
    print(summary("Linux with syncookies", results["linux"], args.n), flush=True)
    print(f"load average {load_before} before, {load_after} after", flush=True)
    print(json.dumps({"bench": "flood", "target_name": name, "n": args.n, "rate": args.rate,
                      "bytes": args.bytes, "repeat": args.repeat, "target": target,
                      "python": platform.python_version(), "results": results,
                      "load_average": {"before": load_before, "after": load_after},
                      "runtime_args": args.runtime_arg}))
    return 0

if __name__ == "__main__":
    sys.exit(main())
