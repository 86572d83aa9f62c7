#!/usr/bin/env python3
"""bench-scale's many-client load generator: one asyncio process holding N real Linux TCP
connections to one server, a fraction of them active with closed-loop 64-byte RPCs.

    python scale_clients.py HOST PORT --conns N [--active F] [--sources IP,IP,...]
        [--open-seconds S] [--seconds S] [--warmup S]

Connections are opened --concurrency at a time, their source addresses taken round robin
from --sources (the 4-tuple space of one address holds ~64k connections to one server port),
until N are open or --open-seconds have passed (what did not open in time is reported, not
waited for). Then the first ceil(F * open) connections each keep one request outstanding for
--warmup + --seconds; the others stay open and idle. Reports what opened (and why the rest did
not), requests/s, p50/p99/p99.9 latency, and Jain's index over the active connections' request
counts. Every phase is bounded in time; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import socket
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale_app import REQUEST, raise_fd_limit  # noqa: E402
from scale_stats import count_list, jain, latency_summary  # noqa: E402


async def open_all(args: argparse.Namespace) -> tuple[list, Counter, float]:
    """(reader, writer) pairs of the connections that opened, the failures by kind, the
    seconds opening took."""
    sources = args.sources or [None]
    conns: list = []
    failures: Counter = Counter()
    deadline = time.monotonic() + args.open_seconds
    start = time.monotonic()
    next_index = 0
    lock = asyncio.Lock()

    async def opener() -> None:
        nonlocal next_index
        while True:
            async with lock:
                index = next_index
                next_index += 1
            if index >= args.conns or time.monotonic() > deadline:
                return
            source = sources[index % len(sources)]
            left = max(0.1, min(args.connect_timeout, deadline - time.monotonic()))
            try:
                pair = await asyncio.wait_for(asyncio.open_connection(
                    args.host, args.port, local_addr=(source, 0) if source else None), left)
            except (asyncio.TimeoutError, TimeoutError):
                failures["connect timeout"] += 1
                continue
            except OSError as exc:
                failures[f"connect: {exc.strerror or exc!r}"[:80]] += 1
                if exc.errno in (24, 23):   # EMFILE/ENFILE: no point in trying on
                    return
                continue
            pair[1].get_extra_info("socket").setsockopt(socket.IPPROTO_TCP,
                                                        socket.TCP_NODELAY, 1)
            conns.append(pair)

    await asyncio.gather(*(opener() for _ in range(args.concurrency)))
    return conns, failures, time.monotonic() - start


async def rpc_loop(reader, writer, until: float, measure_from: float, latencies: list,
                   timeout: float) -> tuple[int, str]:
    """Closed-loop requests until `until`; requests answered after `measure_from`."""
    request = bytes(range(REQUEST))
    done = 0
    while True:
        now = time.monotonic()
        if now >= until:
            return done, "ok"
        writer.write(request)
        try:
            await asyncio.wait_for(reader.readexactly(REQUEST), timeout)
        except (asyncio.TimeoutError, TimeoutError):
            return done, "stalled"
        except (OSError, asyncio.IncompleteReadError) as exc:
            return done, f"error: {type(exc).__name__}"
        end = time.monotonic()
        if now >= measure_from:
            latencies.append(end - now)
            done += 1


async def run(args: argparse.Namespace) -> dict:
    limit = raise_fd_limit()
    conns, failures, open_s = await open_all(args)
    active = conns[:math.ceil(args.active * len(conns))] if conns else []
    latencies: list[float] = []
    start = time.monotonic()
    measure_from = start + args.warmup
    until = measure_from + args.seconds
    results = await asyncio.gather(*(rpc_loop(r, w, until, measure_from, latencies,
                                              args.timeout) for r, w in active))
    elapsed = max(time.monotonic() - measure_from, 1e-9)
    for _, writer in conns:
        writer.close()
    counts = [done for done, _ in results]
    statuses = Counter(status for _, status in results)
    requests = sum(counts)
    if args.dump:   # for a bench that merges several client processes
        Path(args.dump).write_text(json.dumps({"counts": counts, "latencies_us": [
            round(x * 1e6, 1) for x in latencies]}))
    return {"wanted": args.conns, "opened": len(conns), "open_seconds": round(open_s, 2),
            "opened_per_s": round(len(conns) / open_s, 1) if open_s else None,
            "open_failures": dict(failures), "fd_limit": limit, "active": len(active),
            "requests": requests, "seconds": round(elapsed, 3),
            "requests_per_s": round(requests / elapsed, 1),
            **latency_summary(latencies), "jain": jain(counts) if counts else None,
            "rpc_status": dict(statuses)}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--conns", type=lambda t: count_list(t)[0], default=1000)
    parser.add_argument("--active", type=float, default=0.1,
                        help="fraction of the open connections that send RPCs")
    parser.add_argument("--sources", type=lambda t: [s for s in t.split(",") if s],
                        default=[], help="source addresses, round robin")
    parser.add_argument("--concurrency", type=int, default=256, help="connects in flight")
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--open-seconds", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=10.0, help="per request")
    parser.add_argument("--dump", help="also write per-connection counts and latencies here")
    args = parser.parse_args(argv)
    if not 0 <= args.active <= 1:
        parser.error(f"--active must be a fraction from 0 to 1, got {args.active}")
    return args


def main() -> int:
    result = asyncio.run(run(parse_args()))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
