#!/usr/bin/env python3
"""Scale (issue 18): fairness, state and costs at 10^3-10^6 flows, p4tas next to Linux.

In one run (--only picks parts):
  inproc  in this process, no target: bytes per flow of softnic's tables and registers, and
          its pipeline's time per data segment, at 1k, 100k and 1M installed flows (capped at
          MAX_FLOWS, read from nic_contract.constants); the runtime's per-flow records, its
          DMA bridge's time per RX_DATA frame and its control loop's (RateController.run_once)
          time per interval with every flow idle and with --active flows busy, at the same
          counts; the pacer's time per paced packet at 1k..1M waiting flows (bench_cc (c)).
  records in this process, no target: --records connections opened through the runtime's own
          handshake on bench_host's loopback to a host_lib application in its own process:
          bytes per connection in the runtime (tracemalloc) and in host_lib (the
          application's tracemalloc).
  fair    through the TARGET: --flows flows (256, 1,024, 4,096) from one sender to one sink
          through a token-bucket bottleneck, p4tas and Linux (bench_cc (b)): flows complete,
          Jain's index over delivered bytes, bottleneck utilization, and the fast path's
          RATE_LIMITED (and other) drops over the run.
  clients through the TARGET: --clients real Linux TCP connections from the peer namespace
          (several source addresses, several client processes: one process holds at most
          RLIMIT_NOFILE descriptors) to an asyncio echo server on host_lib, --active-fraction
          of them with closed-loop 64-byte RPCs: throughput, p50/p99/p99.9 latency, Jain over
          per-connection requests; the same against a Linux server on a Linux namespace pair;
          the target's and the runtime's RSS growth per connection (/proc).
Goals from issue 18 are printed next to the figures. Every figure says which target made it;
the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402 - after the path setup
    BenchError, LinuxPair, P4tasSide, _stop, cleanup_sides, describe_target, skip_reason,
    spawn_script, wait_listening)
from bmv2_env.shell import run  # noqa: E402
from nic_contract.constants import MAX_FLOWS  # noqa: E402
from scale_bottleneck import TxSampler, utilization  # noqa: E402
from scale_stats import (  # noqa: E402
    count_list, flatness, goal_line, jain, latency_summary, pid_rss_bytes)

FLOWS_PORT = 7202
ECHO_PORT = 7203
PER_PROCESS = 18_000       # connections per client/server process (RLIMIT_NOFILE here: 20,000)
PER_SOURCE = 30_000        # connections per client source address (ports 1024..65535)
GOAL_FASTPATH_B, GOAL_RUNTIME_B, GOAL_FLAT = 128, 1024, 1.5
HERE = Path(__file__).resolve().parent


# ---- in-process parts --------------------------------------------------------------------------
def inproc(args: argparse.Namespace) -> dict:
    import scale_fastpath
    import scale_runtime
    from bench_cc import pacer_costs
    fits, beyond = scale_fastpath.flow_counts(args.counts)
    out: dict = {"counts": fits, "not_fitting": beyond, "max_flows": scale_fastpath.MAX_FLOWS}
    if beyond:
        print(f"  {beyond} exceed MAX_FLOWS = {scale_fastpath.MAX_FLOWS:,} (nic_contract."
              f"constants, the P4 tables' size): measured up to {fits[-1]:,}", flush=True)
    print("  softnic in this process (tables through its P4Runtime Write path):", flush=True)
    fast = out["softnic"] = scale_fastpath.measure(fits, args.packet_flows, args.packets)
    declared = scale_fastpath.table_and_register_cells()
    out["softnic"]["p4_declared"] = declared
    for count, row in fast["per_count"].items():
        print(f"    {count:>9,} flows: {row['ns_per_packet']:>8,} ns/packet, install "
              f"{row['apply_flows_per_s'] or '-'} flows/s applied (+ entries built at "
              f"{row['build_flows_per_s'] or '-'}/s), entries {row['entries_bytes_per_flow']} "
              f"B/flow, registers {row['registers_bytes_per_used_flow']} B/used flow",
              flush=True)
    last = fast["per_count"][fits[-1]]
    soft_bytes = (fast["empty_state_bytes_per_flow_slot"] + last["entries_bytes_per_flow"]
                  + last["registers_bytes_per_used_flow"])
    out["softnic_bytes_per_flow"] = round(soft_bytes, 1)
    print(f"    preallocated per flow slot {fast['empty_state_bytes_per_flow_slot']} B; the P4 "
          f"program declares {declared['p4_bytes_per_flow']} B per flow (tables + registers)",
          flush=True)
    print("    " + goal_line("softnic fast-path state per flow (slot + entries + registers)",
                             soft_bytes, GOAL_FASTPATH_B, "B"), flush=True)
    out["softnic_flatness"] = flatness({n: r["ns_per_packet"]
                                        for n, r in fast["per_count"].items()})
    print("    " + goal_line(f"softnic per-packet cost {fits[-1]:,} / {fits[0]:,} flows",
                             out["softnic_flatness"], GOAL_FLAT, "x"), flush=True)

    print(f"  runtime in this process: bridge per RX_DATA frame and control loop per interval "
          f"({args.active:,} flows busy):", flush=True)
    rt = out["runtime"] = scale_runtime.measure(fits, args.active, args.rounds, args.intervals)
    for count, row in rt["per_count"].items():
        c = row["control"]
        print(f"    {count:>9,} flows: bridge {row['bridge_ns_per_frame']:>7,} ns/frame; control "
              f"loop {c['idle_us_per_interval']} us/interval all idle, "
              f"{c['busy_us_per_interval']} us with {args.active:,} busy "
              f"({c['us_per_active_flow_update']} us per active flow); records "
              f"{row['record_bytes_per_flow']} B/flow", flush=True)
    out["bridge_flatness"] = flatness({n: r["bridge_ns_per_frame"]
                                       for n, r in rt["per_count"].items()})
    out["loop_idle_us_per_flow"] = scale_runtime.idle_cost_per_flow(rt["per_count"])
    print("    " + goal_line(f"bridge per-frame cost {fits[-1]:,} / {fits[0]:,} flows",
                             out["bridge_flatness"], GOAL_FLAT, "x"), flush=True)
    idle = {n: r["control"]["idle_us_per_interval"] for n, r in rt["per_count"].items()}
    out["loop_idle_flatness"] = flatness(idle)
    slope = out["loop_idle_us_per_flow"]
    print(f"    control loop per idle flow and interval: "
          f"{'-' if slope is None else f'{slope * 1e3:.3f}'} ns (goal: zero)", flush=True)
    print("    " + goal_line(f"control loop with every flow idle, {fits[-1]:,} / {fits[0]:,} "
                             "flows", out["loop_idle_flatness"], GOAL_FLAT, "x"), flush=True)

    print("  pacer per paced packet (bench_cc (c)):", flush=True)
    pacer = out["pacer_ns_per_packet"] = {}
    for flows in args.pacer_flows:
        costs = pacer[flows] = pacer_costs(flows, args.pacer_packets)
        print(f"    {flows:>9,} flows waiting: wheel {costs['wheel']:7.1f} ns (own "
              f"{costs['wheel_own']:.1f}), heap {costs['heap']:7.1f} ns", flush=True)
    out["pacer_flatness"] = flatness({n: c["wheel"] for n, c in pacer.items()})
    print("    " + goal_line(f"pacer per-packet cost {max(pacer):,} / {min(pacer):,} flows",
                             out["pacer_flatness"], GOAL_FLAT, "x"), flush=True)
    return out


def records(args: argparse.Namespace) -> dict:
    import scale_runtime
    with tempfile.TemporaryDirectory(prefix="p4tas-scale-") as directory:
        out = scale_runtime.connection_records(args.records, Path(directory))
    app = out.get("app", {})
    print(f"  {out['established']:,}/{out['connections']:,} connections through the runtime's "
          f"handshake (loopback peer, {out['connections_per_s_traced']}/s under tracemalloc)",
          flush=True)
    print("    " + goal_line("runtime state per connection", out["bytes_per_connection"],
                             GOAL_RUNTIME_B, "B"), flush=True)
    print(f"    host_lib per socket: {app.get('bytes_per_socket')} B (tracemalloc), RSS "
          f"{app.get('rss_growth_bytes_per_socket')} B; shared-memory rings per connection "
          f"{2 * scale_runtime.RING} B here (the runtime's default: 2 x 256 KiB, touched "
          f"pages only)", flush=True)
    return out


# ---- through the target ------------------------------------------------------------------------
def fast_path_drops(grpc_addr: str) -> dict[str, int]:
    """The fast path's drop counter by reason (packets), read without mastership."""
    from nic_contract.constants import DropReason
    from nic_contract.p4rt.client import P4RuntimeClient
    client = P4RuntimeClient(grpc_addr)
    try:
        client.connect(primary=False)
        client.fetch_p4info()
        return {reason.name: packets for reason in DropReason
                if (packets := client.read_counter("drop_counter", int(reason))[0])}
    finally:
        client.close()


def runtime_counters(control: Path) -> dict[str, int]:
    """The runtime's counters (GetStats on its control socket)."""
    from host_lib.control_channel import ControlChannel
    with ControlChannel(control, app_name="bench-scale") as channel:
        return {k: v for k, v in channel.stats().items() if isinstance(v, int)}


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


def fair(args: argparse.Namespace, peer, control, grpc_addr: str, pair: LinuxPair) -> dict:
    from bench_cc import fairness
    out: dict = {"p4tas": {}, "linux": {}}
    for conns in args.flows:
        sub = argparse.Namespace(**{**vars(args), "flows": [conns]})
        before, counters = fast_path_drops(grpc_addr), runtime_counters(control)
        bottleneck = (peer.ifname.removesuffix("p"), None)
        with TxSampler(*bottleneck) as tx:
            got = fairness("p4tas", (["linux", peer.peer_ip, FLOWS_PORT], peer.netns),
                           ["p4tas", peer.peer_ip, FLOWS_PORT], None, control, bottleneck,
                           sub)[conns]
        got["fast_path_drops"] = _delta(fast_path_drops(grpc_addr), before)
        got["runtime_counters"] = _delta(runtime_counters(control), counters)
        got.update(utilization(tx.samples, args.bottleneck_mbit))
        got["goodput_share"] = _goodput_share(got, args)
        out["p4tas"][conns] = got
        print(f"    p4tas: bottleneck {_share(got['utilization'])} utilized over the "
              f"{got['busy_seconds']} s it carried traffic, {_share(got['goodput_share'])} "
              f"of it delivered data; RATE_LIMITED drops "
              f"{got['fast_path_drops'].get('RATE_LIMITED', 0)} (all fast-path drops: "
              f"{got['fast_path_drops'] or 'none'})", flush=True)
        print(f"    p4tas runtime counters over the run: {got['runtime_counters']}", flush=True)
        bottleneck = (f"{pair.tag}va", pair.client_ns)
        with TxSampler(*bottleneck) as tx:
            linux = fairness("Linux", (["linux", pair.server_ip, FLOWS_PORT], pair.server_ns),
                             ["linux", pair.server_ip, FLOWS_PORT], pair.client_ns, None,
                             bottleneck, sub)[conns]
        linux.update(utilization(tx.samples, args.bottleneck_mbit))
        linux["goodput_share"] = _goodput_share(linux, args)
        out["linux"][conns] = linux
        print(f"    Linux: bottleneck {_share(linux['utilization'])} utilized over the "
              f"{linux['busy_seconds']} s it carried traffic, {_share(linux['goodput_share'])} "
              "of it delivered data", flush=True)
    return out


def _goodput_share(result: dict, args: argparse.Namespace) -> float | None:
    """Bytes the sink read (of every flow, stalled ones too) over what the bottleneck passed
    while busy (the rest were retransmissions and headers)."""
    if not result.get("busy_seconds"):
        return None
    return round(result["received_MB"] * 8 / (args.bottleneck_mbit * result["busy_seconds"]),
                 3)


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def tune(netns: str) -> None:
    """Room for many connections in a namespace: client ports 1024..65535, listen backlogs
    up to 65,535 (before anything listens there: a backlog is capped when listen() runs)."""
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w",
         "net.ipv4.ip_local_port_range=1024 65535", "net.core.somaxconn=65535",
         "net.ipv4.tcp_max_syn_backlog=65535"])


def add_sources(netns: str, ifname: str, prefix: str, count: int, first: int = 100) -> list[str]:
    """`count` more addresses prefix.<first..> on the namespace's interface (each gives a
    client PER_SOURCE connections to one server port), the namespace tuned."""
    addrs = [f"{prefix}.{first + i}" for i in range(count)]
    for addr in addrs:
        run(["ip", "-n", netns, "addr", "add", f"{addr}/24", "dev", ifname])
    tune(netns)
    return addrs


def client_run(name: str, server_ip: str, client_ns: str, sources: list[str],
               args: argparse.Namespace, rss_pids: dict[str, list[int]]) -> dict:
    """--clients connections from `client_ns` in ceil(N / PER_PROCESS) processes, merged;
    the RSS growth of each group of `rss_pids` per connection opened."""
    procs_n = max(1, math.ceil(args.clients / PER_PROCESS))
    rss0 = {k: sum(map(pid_rss_bytes, pids)) for k, pids in rss_pids.items()}
    with tempfile.TemporaryDirectory(prefix="p4tas-scale-") as directory:
        procs = []
        for i in range(procs_n):
            share = args.clients // procs_n + (i < args.clients % procs_n)
            dump = Path(directory) / f"clients{i}.json"
            mine = sources[i::procs_n] or sources
            procs.append((spawn_script(HERE / "scale_clients.py", [
                server_ip, ECHO_PORT, "--conns", share, "--active", args.active_fraction,
                "--sources", ",".join(mine), "--open-seconds", args.open_seconds,
                "--seconds", args.rpc_seconds, "--warmup", "1", "--dump", dump], client_ns,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True), dump))
        results, counts, latencies = [], [], []
        budget = args.open_seconds + args.rpc_seconds + 60
        for proc, dump in procs:
            try:
                out, err = proc.communicate(timeout=budget)
            except subprocess.TimeoutExpired:   # a stuck client is stopped, not waited for
                out, err = _stop(proc, timeout=5)
            lines = [l for l in out.splitlines() if l.startswith("{")]
            results.append(json.loads(lines[-1]) if lines else {"error": err[-500:]})
            if dump.is_file():
                data = json.loads(dump.read_text())
                counts += data["counts"]
                latencies += [x / 1e6 for x in data["latencies_us"]]
            budget = 30   # the others ran alongside
    rss1 = {k: sum(map(pid_rss_bytes, pids)) for k, pids in rss_pids.items()}
    opened = sum(r.get("opened", 0) for r in results)
    seconds = max((r.get("seconds", 0) for r in results), default=0) or 1e-9
    failures: dict[str, int] = {}
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in (r.get("open_failures") or {}).items():
            failures[k] = failures.get(k, 0) + v
        for k, v in (r.get("rpc_status") or {}).items():
            statuses[k] = statuses.get(k, 0) + v
    out = {"processes": procs_n, "wanted": args.clients, "opened": opened,
           "open_seconds": max((r.get("open_seconds", 0) for r in results), default=None),
           "open_failures": failures, "active": len(counts), "requests": sum(counts),
           "requests_per_s": round(sum(counts) / seconds, 1), **latency_summary(latencies),
           "jain": jain(counts) if counts else None, "rpc_status": statuses,
           "rss_growth_bytes_per_conn": {k: round((rss1[k] - rss0[k]) / opened, 1)
                                         for k in rss0} if opened else {},
           "errors": [r["error"] for r in results if "error" in r]}
    print(f"    {name:<6} {opened:,}/{args.clients:,} connections open in "
          f"{out['open_seconds']} s ({failures or 'no failures'}); {len(counts):,} active: "
          f"{out['requests_per_s']:,.0f} req/s, p50 {out['p50_us']} us, p99 {out['p99_us']} "
          f"us, p99.9 {out['p999_us']} us, Jain {out['jain']}, active connections ended "
          f"{statuses}"
          + (f"; RSS growth per connection {out['rss_growth_bytes_per_conn']}"
             if out["rss_growth_bytes_per_conn"] else ""), flush=True)
    return out


def clients(args: argparse.Namespace, peer, control, side_pids: dict[str, int],
            pair: LinuxPair) -> dict:
    n_sources = max(1, math.ceil(args.clients / PER_SOURCE))
    n_procs = max(1, math.ceil(args.clients / PER_PROCESS))
    out = {}
    env = dict(os.environ, P4TAS_CONTROL_SOCKET=str(control), PYTHONUNBUFFERED="1")
    server = wait_listening(spawn_script(HERE / "scale_app.py", [
        "echo", "p4tas", peer.local_ip, ECHO_PORT], None, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=env), "p4tas echo server")
    pids = {name: [pid] for name, pid in side_pids.items()} | {"server": [server.pid]}
    target_rss = sum(pid_rss_bytes(p) for k, p in side_pids.items() if k.startswith("target"))
    out["target_rss_before"] = target_rss
    print(f"    target process RSS before the clients: {target_rss / 2**20:.1f} MiB, its "
          f"tables and registers sized for MAX_FLOWS = {MAX_FLOWS:,} flows: at most "
          f"{target_rss / MAX_FLOWS:,.0f} B per flow slot (code and buffers included)",
          flush=True)
    sources = add_sources(peer.netns, peer.ifname, peer.peer_ip.rsplit(".", 1)[0], n_sources)
    before = runtime_counters(control)
    try:
        out["p4tas"] = client_run("p4tas", peer.local_ip, peer.netns, sources, args, pids)
    finally:
        out.setdefault("p4tas", {})["server"] = _server_result([server])
    _print_server("p4tas", out["p4tas"]["server"])
    changed = _delta(runtime_counters(control), before)
    out["p4tas"]["runtime_counters"] = changed
    print(f"    p4tas  runtime counters over the run: {changed}", flush=True)
    tune(pair.server_ns)
    servers = [wait_listening(spawn_script(HERE / "scale_app.py", [
        "echo", "linux", pair.server_ip, ECHO_PORT], pair.server_ns, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True), "Linux echo server") for _ in range(n_procs)]
    linux_sources = add_sources(pair.client_ns, f"{pair.tag}va",
                                pair.client_ip.rsplit(".", 1)[0], n_sources)
    try:
        out["linux"] = client_run("Linux", pair.server_ip, pair.client_ns, linux_sources, args,
                                  {"server": [proc.pid for proc in servers]})
    finally:
        out.setdefault("linux", {})["server"] = _server_result(servers)
    _print_server("Linux", out["linux"]["server"])
    return out


def _server_result(servers: list[subprocess.Popen]) -> dict:
    """The echo servers' counts, summed (max_open: connections held at once, summed)."""
    total: dict[str, int] = {}
    for proc in servers:
        text, _ = _stop(proc)
        lines = [line for line in text.splitlines() if line.startswith("{")]
        for key, value in (json.loads(lines[-1]) if lines else {}).items():
            total[key] = total.get(key, 0) + value
    return total


def _print_server(name: str, server: dict) -> None:
    print(f"    {name:<6} server: held at most {server.get('max_open', 0):,} connections at "
          f"once, {server.get('connections', 0):,} in all, {server.get('errors', 0)} ended "
          "in an error", flush=True)


def target_pids(result, info) -> dict[str, int]:
    """The processes whose RSS a connection grows: the target's and the runtime's."""
    pids = {"target": result.pid, "runtime": info.pid}
    try:
        children = Path(f"/proc/{result.pid}/task/{result.pid}/children").read_text().split()
        if children:   # dpdk: the runner holds the pipeline
            pids["target_child"] = int(children[0])
    except OSError:
        pass
    return pids


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench_scale.py", description=__doc__.split("\n\n")[0],
                                epilog="Counts take k and M (1k = 1,000). The last line of "
                                       "output is one JSON object.")
    p.add_argument("--only", default="inproc,records,fair,clients",
                   help="parts to run (default %(default)s)")
    p.add_argument("--counts", type=count_list, default=[1000, 100_000, 1_000_000],
                   help="installed flows for the per-packet and per-interval costs (capped "
                        "at MAX_FLOWS; default 1k,100k,1M)")
    p.add_argument("--packets", type=int, default=4096,
                   help="data segments timed through softnic per count (default %(default)s)")
    p.add_argument("--packet-flows", type=int, default=256,
                   help="flows those segments belong to (default %(default)s)")
    p.add_argument("--active", type=int, default=1000,
                   help="busy flows for the bridge and control loop (default %(default)s)")
    p.add_argument("--rounds", type=int, default=8,
                   help="RX_DATA frames per busy flow timed through the bridge (default "
                        "%(default)s)")
    p.add_argument("--intervals", type=int, default=20,
                   help="control intervals timed (default %(default)s)")
    p.add_argument("--pacer-flows", type=count_list, default=[1000, 100_000, 1_000_000])
    p.add_argument("--pacer-packets", type=int, default=100_000)
    p.add_argument("--records", type=int, default=2000,
                   help="connections through the runtime's handshake for bytes per "
                        "connection (default %(default)s)")
    p.add_argument("--flows", type=count_list, default=[256, 1024, 4096],
                   help="flow counts through the bottleneck (default 256,1024,4096; add 10k)")
    p.add_argument("--flow-seconds", type=float, default=5.0)
    p.add_argument("--flow-timeout", type=float, default=30.0)
    p.add_argument("--deadline", type=float, default=120.0,
                   help="per fairness run's connects (default %(default)s s)")
    p.add_argument("--bottleneck-mbit", type=float, default=20.0)
    p.add_argument("--clients", type=lambda t: count_list(t)[0], default=10_000,
                   help="concurrent client connections (default 10k; the issue aims at 100k)")
    p.add_argument("--active-fraction", type=float, default=0.1)
    p.add_argument("--open-seconds", type=float, default=60.0,
                   help="time allowed to open the connections (default %(default)s s)")
    p.add_argument("--rpc-seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    parts = set(args.only.split(","))
    unknown = parts - {"inproc", "records", "fair", "clients"}
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}: choose from inproc,records,fair,clients")
    if not 0 <= args.active_fraction <= 1:
        p.error("--active-fraction must be from 0 to 1")
    args.parts = parts
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = args.parts
    out: dict = {"bench": "scale", "target": describe_target(),
                 "date": time.strftime("%Y-%m-%d")}
    print(f"fast path: {out['target']}", flush=True)
    reason = skip_reason() if parts & {"fair", "clients"} else None
    if reason:
        print(f"(fair, clients) skipped: {reason}", flush=True)
        parts -= {"fair", "clients"}
        out["skipped"] = reason
    side, pair = P4tasSide(), LinuxPair()
    try:
        if "inproc" in parts:
            print("(inproc) softnic, runtime and pacer in this process (no target)", flush=True)
            out["inproc"] = inproc(args)
        if "records" in parts:
            print("(records) runtime and host_lib state per connection (loopback, no target)",
                  flush=True)
            out["records"] = records(args)
        if parts & {"fair", "clients"}:
            most = max([*args.flows, args.clients] if "clients" in parts else args.flows)
            runtime_args = ["--time-wait", "0.5", "--max-app-connections", str(most + 64),
                            "--rx-ring-size", "65536", "--give-up", "120"]
            result, info = side.start(runtime_args)
            peer = result.peers.peer(1)
            pair.create()
            out["runtime_args"] = runtime_args
            print(f"p4tas: {out['target'].split(' (')[0]} target, runtime {runtime_args}; "
                  f"Linux: {pair.client_ns} -> {pair.server_ns}", flush=True)
            if "fair" in parts:
                print(f"(fair) flows through one {args.bottleneck_mbit:g} Mbit/s bottleneck",
                      flush=True)
                out["fair"] = fair(args, peer, info.control_socket, result.record.grpc_addr,
                                   pair)
            if "clients" in parts:
                if "fair" in parts:   # a fresh target and runtime: what the fairness runs
                    side.cleanup()    # left behind (orphans, RSTs) would weigh on this one
                    result, info = side.start(runtime_args)
                    peer = result.peers.peer(1)
                print(f"(clients) {args.clients:,} connections, {args.active_fraction:.0%} "
                      "active with 64 B RPCs (a fresh target and runtime)", flush=True)
                out["clients"] = clients(args, peer, info.control_socket,
                                         target_pids(result, info), pair)
    except BenchError as exc:
        out["error"] = str(exc)
        print(f"error: {exc}", flush=True)
    finally:
        cleanup_sides(out, side, pair)
    print(json.dumps(out, default=str), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
