#!/usr/bin/env python3
"""Congestion control and loss recovery: p4tas next to Linux TCP on the same kind of topology.

In one run:
  (a) goodput penalty under random loss (0.1, 1 and 5 % of segments dropped each way by
      nftables on the receiver's namespace; bmv2_env/impairments.py): p4tas (host_lib sender
      -> Linux sink through the TARGET's switch), Linux -> Linux (two namespaces, one veth
      pair) at full speed, and Linux -> Linux through a token bucket at p4tas's clean rate
      (so that both are compared at like rates); the penalty is
      1 - goodput(loss) / goodput(no loss) of the same stack in the same run, the median of
      --repeat transfers each, every transfer sized so that a clean one lasts --seconds (a
      single 200 ms RTO must not be the whole result);
  (b) fairness: 16 and 256 flows from one sender to one sink through a token-bucket
      bottleneck on the sender's egress veth, Jain's index over the bytes each flow delivered,
      for p4tas (rate-based DCTCP, paced) and Linux (its default congestion control);
  (c) the pacer's cost per paced packet with 1k, 100k and 1M flows waiting (it must stay flat:
      a timing wheel, not a heap), next to a heap doing the same work.
Prints every figure with the target (bmv2 build or softnic) it came from; the last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402 - after the path setup
    BenchError, LinuxPair, P4tasSide, _int_range, cleanup_sides, describe_target, skip_reason)
from bmv2_env import impairments  # noqa: E402
from host_lib.control_channel import ControlChannel  # noqa: E402
from scale_stats import jain  # noqa: E402
from runtime.pacing import Pacer, TokenBucket  # noqa: E402
from transfer_procs import finish, spawn, start_server, stop_server  # noqa: E402
from transfer_workloads import Bulk, bulk  # noqa: E402

BULK_PORT = 7101
FLOWS_PORT = 7102
RUNTIME_ARGS = ["--time-wait", "0.5", "--max-app-connections", "300"]


def penalty(loss_mbps: float | None, clean_mbps: float | None) -> float | None:
    if not loss_mbps or not clean_mbps:
        return None
    return round(1 - loss_mbps / clean_mbps, 4)


# ---- (a) loss ----------------------------------------------------------------------------------
MAX_TRANSFER_BYTES = 1 << 30


def transfer_size(name: str, sink, source, args: argparse.Namespace) -> int:
    """Bytes per transfer so that a clean one lasts about --seconds (at least --bytes): one
    clean transfer of --bytes measures the rate."""
    if not args.seconds:
        return args.bytes
    run: Bulk = bulk(f"{name} sizing", sink, source, args.bytes, 1, args)
    if run.mbps is None:
        return args.bytes
    size = int(min(max(args.bytes, run.mbps * 1e6 / 8 * args.seconds), MAX_TRANSFER_BYTES))
    print(f"  {name}: {run.mbps:.1f} Mbit/s clean: {size / 2**20:.1f} MiB per transfer "
          f"(~{args.seconds:g} s clean)", flush=True)
    return size


RECOVERY_COUNTERS = ("fast_retransmits", "rto_timeouts", "retransmitted_bytes", "sack_frames")


def recovery_counters(control: Path | None) -> dict[str, int]:
    """The p4tas runtime's loss-recovery counters ({} for Linux: no control socket)."""
    if control is None:
        return {}
    with ControlChannel(control, app_name="bench-cc") as channel:
        counters = channel.stats()
    return {name: counters.get(name, 0) for name in RECOVERY_COUNTERS}


def loss_sweep(name: str, set_loss, sink, source, args: argparse.Namespace) -> dict:
    results: dict[str, dict] = {}
    clean = None
    size = transfer_size(name, sink, source, args)
    for percent in [0.0, *args.loss]:
        set_loss(percent)
        before = recovery_counters(source[2])
        run: Bulk = bulk(f"{name} {percent:g}% loss", sink, source, size, args.repeat, args)
        after = recovery_counters(source[2])
        set_loss(0)
        if percent == 0:
            clean = run.mbps
        recovery = {k: after[k] - before[k] for k in after}
        results[f"{percent:g}"] = {**run.figures(), "penalty": penalty(run.mbps, clean),
                                   **({"recovery": recovery} if recovery else {})}
        pen = results[f"{percent:g}"]["penalty"]
        print(run.line() + ("" if pen is None or percent == 0 else f"  penalty {pen:.1%}")
              + (f"\n    recovery over {args.repeat} transfers: {recovery}" if recovery
                 else ""), flush=True)
    return results


def rate_matched_sweep(p4tas: dict, linux: tuple, pair: LinuxPair,
                       args: argparse.Namespace) -> dict | None:
    """Linux -> Linux through a token bucket at p4tas's clean goodput (the client's veth)."""
    clean = p4tas.get("0", {}).get("mbit_per_s")
    if not clean:
        return None
    ifname = f"{pair.tag}va"
    impairments.set_bottleneck(ifname, round(clean, 1), pair.client_ns)
    try:
        return loss_sweep(f"Linux@{clean:.0f}Mbit", *linux, args)
    finally:
        impairments.clear_bottleneck(ifname, pair.client_ns)


def penalty_table(out: dict) -> str:
    """Penalties per loss rate, one column per sweep, saying which is which."""
    columns = [("p4tas", "loss_p4tas"), ("Linux full speed", "loss_linux"),
               ("Linux at p4tas's rate", "loss_linux_at_p4tas_rate")]
    rates = [k for k in (out.get("loss_p4tas") or {}) if k != "0"]
    lines = ["  goodput penalty  " + "".join(f"{title:>24}" for title, _ in columns)]
    for rate in rates:
        cells = []
        for _, key in columns:
            pen = ((out.get(key) or {}).get(rate) or {}).get("penalty")
            cells.append(f"{'-' if pen is None else f'{pen:.1%}':>24}")
        lines.append(f"  {rate:>6} % loss   " + "".join(cells))
    return "\n".join(lines)


# ---- (b) fairness ------------------------------------------------------------------------------
def fairness(name: str, sink: tuple, flows_argv: list, flows_ns: str | None, control,
             bottleneck: tuple[str, str | None], args: argparse.Namespace) -> dict:
    ifname, netns = bottleneck
    impairments.set_bottleneck(ifname, args.bottleneck_mbit, netns)
    out = {}
    try:
        for conns in args.flows:
            sink_argv, sink_ns = sink
            # The sink waits on a flow as long as the flow waits on its send: a flow that gets
            # nothing for a while through a shared bottleneck is slow, not gone.
            server = start_server(["sink", *sink_argv, "--timeout", args.flow_timeout], sink_ns,
                                  f"{name}: sink")
            client = spawn(["flows", *flows_argv, "--asyncio", "--conns", conns, "--seconds",
                            args.flow_seconds, "--timeout", args.flow_timeout, "--deadline",
                            args.deadline], flows_ns, control)
            report = finish(client, args.flow_seconds + args.deadline + 30, f"{name}: flows")
            # What the sink read of every flow, of stalled ones too (the client knows the
            # count of completed flows only).
            received = [c.get("bytes", 0) for c in
                        stop_server(server, f"{name}: sink").get("connections", [])]
            received += [0] * (conns - len(received))
            flows = report.get("flows", [])
            delivered = [f.get("delivered") or 0 for f in flows]
            ok = sum(1 for f in flows if f.get("status") == "ok")
            index = jain(delivered) if delivered else None
            total_mb = sum(delivered) / 1e6
            failures = Counter(str(f.get("status"))[:60] for f in flows if f.get("status") != "ok")
            out[conns] = {"jain": index, "flows_ok": ok, "flows": conns,
                          "not_ok": dict(failures),
                          "delivered_MB": round(total_mb, 2),
                          "received_MB": round(sum(received) / 1e6, 2),
                          "received_jain": jain(received[:conns]),
                          "min_kB": round(min(delivered) / 1e3, 1) if delivered else None,
                          "max_kB": round(max(delivered) / 1e3, 1) if delivered else None}
            print(f"  {name:<6} {conns:>4} flows through {args.bottleneck_mbit} Mbit/s: Jain "
                  f"{index}, {ok}/{conns} ok, {total_mb:.1f} MB delivered "
                  f"({out[conns]['received_MB']:.1f} MB read by the sink, Jain "
                  f"{out[conns]['received_jain']}), per flow "
                  f"{out[conns]['min_kB']}..{out[conns]['max_kB']} kB"
                  + (f"; not ok: {dict(failures)}" if failures else ""), flush=True)
    finally:
        impairments.clear_bottleneck(ifname, netns)
    return out


# ---- (c) pacer ---------------------------------------------------------------------------------
PACED_MSS = 1448


@dataclass(slots=True)
class PacedFlow(TokenBucket):
    """A paced flow as the pacer sees it: its bucket and the pacer's mark."""

    pacer_slot: int | None = None


def _paced_flows(flows: int, seed: int) -> tuple[list[PacedFlow], list[float]]:
    """`flows` empty buckets at 1..100 Mbit/s and when each first comes due (within 100 ms)."""
    rng = random.Random(seed)
    buckets = [PacedFlow.for_rate(rng.uniform(1e6, 1e8), PACED_MSS, 0.0) for _ in range(flows)]
    for bucket in buckets:
        bucket.tokens = 0.0
    return buckets, [rng.uniform(0, 0.1) for _ in range(flows)]


def _turn(bucket: TokenBucket, now: float) -> tuple[bool, float]:
    """A flow's turn: whether it sent a segment, and the seconds until its next turn."""
    wait = bucket.take(PACED_MSS, now)
    if wait:
        return False, wait
    return True, bucket.take(PACED_MSS, now) or 1e-4


def wheel_pacer_run(flows: int, packets: int, seed: int = 1) -> tuple[float, list]:
    """ns per paced packet with the runtime's Pacer (a timing wheel), and the (flow, time)
    order in which flows came due."""
    buckets, first = _paced_flows(flows, seed)
    pacer: Pacer[PacedFlow] = Pacer(0.0)
    for flow, due in zip(buckets, first):
        pacer.defer(flow, due)
    turns: list[tuple[PacedFlow, float]] = []
    done, now = 0, 0.0
    start = time.perf_counter()
    while done < packets:
        now += 0.0005
        for flow in pacer.due(now):
            turns.append((flow, now))
            sent, wait = _turn(flow, now)
            done += sent
            pacer.defer(flow, now + wait)
    elapsed = time.perf_counter() - start
    index = {id(flow): flow_id for flow_id, flow in enumerate(buckets)}
    return elapsed / done * 1e9, [(index[id(flow)], now) for flow, now in turns]


def heap_pacer_run(flows: int, packets: int, seed: int = 1) -> tuple[float, list]:
    """The same workload with a binary heap of deadlines (what the wheel avoids): what
    O(log n) per packet costs at the same flow counts."""
    buckets, first = _paced_flows(flows, seed)
    heap = [(due, flow_id) for flow_id, due in enumerate(first)]
    heapq.heapify(heap)
    order: list[tuple[int, float]] = []
    done, now = 0, 0.0
    start = time.perf_counter()
    while done < packets:
        now += 0.0005
        while heap and heap[0][0] <= now:
            _, flow_id = heapq.heappop(heap)
            order.append((flow_id, now))
            sent, wait = _turn(buckets[flow_id], now)
            done += sent
            heapq.heappush(heap, (now + wait, flow_id))
    return (time.perf_counter() - start) / done * 1e9, order


def flow_state_cost(flows: int, order: list, seed: int = 1) -> float:
    """ns per packet of the same turns replayed without any scheduler: touching one flow's
    bucket out of `flows` (cache misses grow with the flow count for any pacer)."""
    buckets, _ = _paced_flows(flows, seed)
    replayed: list[tuple[int, float]] = []
    done = 0
    start = time.perf_counter()
    for flow_id, now in order:
        # The timed runs' own bookkeeping too, so that the difference is the scheduler alone.
        replayed.append((flow_id, now))
        sent, wait = _turn(buckets[flow_id], now)
        done += sent
        _ = now + wait
    return (time.perf_counter() - start) / done * 1e9


def pacer_costs(flows: int, packets: int) -> dict[str, float]:
    """Wheel and heap per paced packet: in all, and their own part (minus the flow state).
    The garbage collector is off while they run, as timeit has it: its full passes cost in
    proportion to all objects, the million flows included, and fall at random in one run."""
    gc.collect()
    gc.disable()
    try:
        wheel, order = wheel_pacer_run(flows, packets)
        state = flow_state_cost(flows, order)
        heap, _ = heap_pacer_run(flows, packets)
    finally:
        gc.enable()
    return {"wheel": round(wheel, 1), "flow_state": round(state, 1),
            "wheel_own": round(wheel - state, 1), "heap": round(heap, 1),
            "heap_own": round(heap - state, 1)}


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_cc.py", description=__doc__.split("\n\n")[0],
                                     epilog="The last line of output is one JSON object.")
    parser.add_argument("--bytes", type=_int_range(1, 1 << 30), default=4 << 20,
                        help="bytes per bulk transfer (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=2.0,
                        help="(a): size each stack's transfers so that a clean one lasts this "
                             "long, at least --bytes; 0: --bytes (default %(default)s)")
    parser.add_argument("--repeat", type=_int_range(1, 10), default=3,
                        help="transfers per loss rate; the median counts (default %(default)s)")
    parser.add_argument("--loss", type=lambda t: [float(x) for x in t.split(",")],
                        default=[0.1, 1.0, 5.0], help="loss rates in %% (default 0.1,1,5)")
    parser.add_argument("--flows", type=lambda t: [int(x) for x in t.split(",")],
                        default=[16, 256], help="flow counts for fairness (default 16,256)")
    parser.add_argument("--flow-seconds", type=float, default=5.0,
                        help="seconds every flow sends (default %(default)s)")
    parser.add_argument("--flow-timeout", type=float, default=30.0,
                        help="a flow whose send blocks this long counts as stalled (256 flows "
                             "through 20 Mbit/s get ~10 kB/s each; default %(default)s s)")
    parser.add_argument("--bottleneck-mbit", type=float, default=20.0,
                        help="the token bucket's rate (default %(default)s)")
    parser.add_argument("--pacer-flows", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1000, 100_000, 1_000_000],
                        help="waiting flows for the pacer's cost (default 1000,100000,1000000)")
    parser.add_argument("--pacer-packets", type=int, default=200_000,
                        help="paced packets timed per flow count (default %(default)s)")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="per socket operation (default %(default)s s)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="per transfer (default %(default)s s)")
    parser.add_argument("--only", default="a,b,c", help="parts to run (default %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    parts = set(args.only.split(","))
    out: dict = {"bench": "cc", "target": describe_target()}
    print(f"fast path: {out['target']}", flush=True)
    reason = skip_reason()
    if reason and parts & {"a", "b"}:
        print(f"(a,b) skipped: {reason}", flush=True)
        parts -= {"a", "b"}
        out["skipped"] = reason
    if "a" in parts and not impairments.nft_available():
        print("(a) skipped: packet loss needs nft (apt-get install nftables)", flush=True)
        parts.discard("a")
    side, pair = P4tasSide(), LinuxPair()
    try:
        if parts & {"a", "b"}:
            result, info = side.start(RUNTIME_ARGS)
            peer, control = result.peers.peer(1), info.control_socket
            pair.create()
            print(f"p4tas: host_lib sender -> the target -> Linux sink in {peer.netns}; Linux: "
                  f"{pair.client_ns} -> {pair.server_ns}", flush=True)
        if "a" in parts:
            print("(a) goodput under loss", flush=True)
            out["loss_p4tas"] = loss_sweep(
                "p4tas", lambda p: impairments.set_loss(peer, p),
                (["linux", peer.peer_ip, BULK_PORT], peer.netns, None),
                (["p4tas", peer.peer_ip, BULK_PORT], None, control), args)
            linux = (lambda p: impairments.set_loss(pair.server_ns, p),
                     (["linux", pair.server_ip, BULK_PORT], pair.server_ns, None),
                     (["linux", pair.server_ip, BULK_PORT], pair.client_ns, None))
            out["loss_linux"] = loss_sweep("Linux", *linux, args)
            out["loss_linux_at_p4tas_rate"] = rate_matched_sweep(out["loss_p4tas"], linux,
                                                                 pair, args)
            print(penalty_table(out), flush=True)
        if "b" in parts:
            print("(b) fairness through one bottleneck", flush=True)
            out["fair_p4tas"] = fairness(
                "p4tas", (["linux", peer.peer_ip, FLOWS_PORT], peer.netns),
                ["p4tas", peer.peer_ip, FLOWS_PORT], None, control,
                (peer.ifname.removesuffix("p"), None), args)
            out["fair_linux"] = fairness(
                "Linux", (["linux", pair.server_ip, FLOWS_PORT], pair.server_ns),
                ["linux", pair.server_ip, FLOWS_PORT], pair.client_ns, None,
                (f"{pair.tag}va", pair.client_ns), args)
        if "c" in parts:
            print("(c) pacer cost per paced packet (ns): in all = the scheduler's own part + "
                  "touching the flow's bucket", flush=True)
            out["pacer_ns_per_packet"] = {}
            for flows in args.pacer_flows:
                costs = out["pacer_ns_per_packet"][flows] = pacer_costs(flows, args.pacer_packets)
                print(f"  {flows:>9} flows waiting: wheel {costs['wheel']:7.1f} (own "
                      f"{costs['wheel_own']:7.1f}), heap {costs['heap']:7.1f} (own "
                      f"{costs['heap_own']:7.1f}), flow state {costs['flow_state']:7.1f}",
                      flush=True)
    except BenchError as exc:
        out["error"] = str(exc)
        print(f"error: {exc}", flush=True)
    finally:
        cleanup_sides(out, side, pair)
    print(json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
