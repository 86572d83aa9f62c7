"""bench_transfer's workloads: (a) bulk transfers, (b) closed-loop RPC, (d) host_lib's ring
against loopback TCP; each run through transfer_peer.py processes."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import READY_TIMEOUT, BenchError, _readline
from host_lib.shm_layout import Layout, Segment
from transfer_procs import finish, median, spawn, start_server, stop_server

PREFIX = "p4bt"  # the p4tas environment of this benchmark (tests: p4e2e, p4ptf; make run: p4t)
BULK_PORT, RPC_PORT = 5101, 5102


@dataclass
class Bulk:
    """--repeat transfers of one direction."""

    name: str
    nbytes: int
    runs: list[dict] = field(default_factory=list)
    sink: list[dict] = field(default_factory=list)  # the sink's connections that were not ok

    @property
    def ok_runs(self) -> list[dict]:
        """The runs that completed."""
        return [r for r in self.runs if r.get("status") == "ok"]

    @property
    def stalls(self) -> int:
        """How many runs stalled."""
        return sum(1 for r in self.runs if str(r.get("status", "")).startswith("stalled"))

    @property
    def mbps(self) -> float | None:
        """Median goodput of the runs that completed, Mbit/s."""
        return median([r["bytes"] * 8 / r["seconds"] / 1e6 for r in self.ok_runs
                        if r["seconds"] > 0])

    def status(self) -> str:
        """`ok`, or how many runs were not ok and the first one's status."""
        bad = [r["status"] for r in self.runs if r.get("status") != "ok"]
        return "ok" if not bad else f"{len(bad)}/{len(self.runs)} not ok: {bad[0]}"

    def line(self) -> str:
        """The runs as a text line."""
        rates = ", ".join(f"{r['bytes'] * 8 / r['seconds'] / 1e6:.1f}" if r.get("status") == "ok"
                          and r["seconds"] > 0 else "STALL" if str(r.get("status", "")).
                          startswith("stalled") else "ERR" for r in self.runs)
        median = f"{self.mbps:9.2f} Mbit/s" if self.mbps is not None else "   no completed run"
        sink = f"; sink saw {self.sink}" if self.sink else ""
        return (f"  {self.name:<26} {self.nbytes / 2**20:6.2f} MiB x {len(self.runs)}: {median} "
                f"(runs: {rates}){'' if self.status() == 'ok' else '  ' + self.status()}{sink}")

    def figures(self) -> dict:
        """The runs for the JSON line."""
        return {"mbit_per_s": None if self.mbps is None else round(self.mbps, 2),
                "bytes": self.nbytes, "stalls": self.stalls, "status": self.status(),
                "sink_not_ok": self.sink,
                "runs_mbit_per_s": [round(r["bytes"] * 8 / r["seconds"] / 1e6, 2)
                                    if r.get("status") == "ok" and r["seconds"] > 0 else
                                    r.get("status") for r in self.runs]}


def bulk(name: str, sink: tuple[list, str | None, Path | None],
         source: tuple[list, str | None, Path | None], nbytes: int, repeat: int,
         args: argparse.Namespace) -> Bulk:
    """A sink server, then `repeat` source clients one after another."""
    sink_argv, sink_ns, sink_sock = sink
    server = start_server(["sink", *sink_argv, "--timeout", args.timeout], sink_ns,
                          f"{name}: sink", sink_sock)
    result = Bulk(name, nbytes)
    src_argv, src_ns, src_sock = source
    for _ in range(repeat):
        client = spawn(["source", *src_argv, "--bytes", nbytes, "--timeout", args.timeout,
                        "--deadline", args.deadline], src_ns, src_sock)
        run = finish(client, args.deadline + args.timeout + 10, f"{name}: source")
        result.runs.append(run)
    sink_result = stop_server(server, f"{name}: sink")
    result.sink = [c for c in sink_result.get("connections", []) if c.get("status") != "ok"] \
        or ([sink_result] if "error" in sink_result else [])
    return result


# ---- (b) RPC -----------------------------------------------------------------------------------
def rpc(name: str, server: tuple[list, str | None, Path | None], client_ns: str, host: str,
        args: argparse.Namespace) -> dict[int, dict]:
    """An echo server, then one closed-loop RPC client per --rpc-conns count; results by count."""
    argv, ns, sock = server
    proc = start_server(["echo", *argv], ns, f"{name}: echo server", sock)
    out = {}
    for conns in args.rpc_conns:
        client = spawn(["rpc", host, RPC_PORT, "--conns", conns, "--seconds", args.rpc_seconds,
                        "--timeout", args.timeout], client_ns)
        out[conns] = finish(client, args.rpc_seconds + 2 * args.timeout + 10, f"{name}: rpc")
    stop_server(proc, f"{name}: echo server")
    return out


def rpc_line(name: str, conns: int, r: dict) -> str:
    """One RPC result as a text line."""
    if r.get("status") != "ok" and not r.get("requests"):
        return f"  {name:<8} {conns:>2} conn: {r.get('status')}"
    tail = "" if r.get("status") == "ok" else f"  ({r['status']})"
    return (f"  {name:<8} {conns:>2} conn: {r['rate']:9.1f} req/s, p50 {r['p50_us']} us, "
            f"p99 {r['p99_us']} us ({r['requests']} requests in {r['seconds']:.2f} s){tail}")


def ring_segment_name() -> str:
    """The /dev/shm segment of this run's ring benchmark."""
    return f"p4tas-{PREFIX}{os.getpid()}-ring"


def bench_rings(args: argparse.Namespace) -> dict:
    """--repeat runs of the ring and of loopback TCP, producer and consumer processes; medians."""
    msgs, size = args.ring_msgs, args.msg_bytes
    common = ["--msgs", msgs, "--msg-bytes", size, "--timeout", args.timeout,
              "--deadline", args.deadline]
    ring_rates, tcp_rates, statuses = [], [], []
    name = ring_segment_name()
    layout = Layout(rx_ring_size=args.ring_bytes, tx_ring_size=16, max_connections=1,
                    max_contexts=1, queue_depth=2)
    for _ in range(args.repeat):
        seg = Segment.create(name, layout)
        try:
            consumer = spawn(["ring-consumer", name, *common], None)
            if _readline(consumer, READY_TIMEOUT, "ring consumer") != "ready":
                raise BenchError("ring consumer did not say ready")
            producer = spawn(["ring-producer", name, *common], None)
            prod = finish(producer, args.deadline + 10, "ring producer")
            cons = finish(consumer, args.deadline + 10, "ring consumer")
        finally:
            seg.close()
            seg.unlink()
        statuses.append(cons.get("status"))
        if cons.get("status") == "ok" and prod.get("status") == "ok" \
                and not cons["sequence_errors"]:
            ring_rates.append(msgs * size / (cons["end"] - prod["start"]))
        consumer = spawn(["tcp-consumer", *common], None)
        line = _readline(consumer, READY_TIMEOUT, "tcp consumer")
        producer = spawn(["tcp-producer", line.split()[1], *common], None)
        prod = finish(producer, args.deadline + 10, "tcp producer")
        cons = finish(consumer, args.deadline + 10, "tcp consumer")
        statuses.append(cons.get("status"))
        if cons.get("status") == "ok" and not cons["sequence_errors"]:
            tcp_rates.append(msgs * size / (cons["end"] - prod["start"]))
    ring, tcp = median(ring_rates), median(tcp_rates)
    return {"msg_bytes": size, "msgs": msgs, "ring_bytes": args.ring_bytes,
            "ring_mbyte_per_s": None if ring is None else round(ring / 1e6, 1),
            "tcp_loopback_mbyte_per_s": None if tcp is None else round(tcp / 1e6, 1),
            "ring_runs": [round(r / 1e6, 1) for r in ring_rates],
            "tcp_runs": [round(r / 1e6, 1) for r in tcp_rates],
            "ratio_ring_tcp": round(ring / tcp, 3) if ring and tcp else None,
            "status": "ok" if all(s == "ok" for s in statuses) else
            next(s for s in statuses if s != "ok")}
