#!/usr/bin/env python3
"""bench-scale's servers (one role per process; the last line of output is one JSON object):

    python scale_app.py echo API HOST PORT     # asyncio echo server: linux (asyncio streams) or
                                               # p4tas (host_lib.start_server); prints
                                               # `listening`, runs until SIGTERM
    python scale_app.py hold HOST PORT --conns N   # host_lib: accept N connections and hold
                                               # them; prints its JSON (bytes per socket from
                                               # tracemalloc, RSS growth), waits for stdin EOF

The p4tas roles find the runtime through $P4TAS_CONTROL_SOCKET. Both raise RLIMIT_NOFILE to
the hard limit (the echo server holds one descriptor per Linux connection).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import signal
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scale_stats import rss_bytes  # noqa: E402

REQUEST = 64


def raise_fd_limit() -> int:
    """RLIMIT_NOFILE up to its hard limit (root: up to fs.nr_open); the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard
    if hard != resource.RLIM_INFINITY and hard < (1 << 20):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (1 << 20, 1 << 20))
            return 1 << 20
        except (ValueError, OSError):
            wanted = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return wanted


async def serve_echo(args: argparse.Namespace) -> dict:
    counts = {"connections": 0, "open": 0, "max_open": 0, "requests": 0, "errors": 0}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts["connections"] += 1
        counts["open"] += 1
        counts["max_open"] = max(counts["max_open"], counts["open"])
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                counts["requests"] += len(data) // REQUEST
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            counts["open"] -= 1
            writer.close()

    if args.api == "p4tas":
        import host_lib
        server = await host_lib.start_server(handle, args.host, args.port, backlog=65535)
    else:
        # Several processes share the port (SO_REUSEPORT): one holds at most RLIMIT_NOFILE.
        server = await asyncio.start_server(handle, args.host, args.port, backlog=65535,
                                            reuse_port=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("listening", flush=True)
    # The counts every second and at the end: a loop busy with 10^5 connections may not get
    # to its SIGTERM before the bench's patience ends, and the bench reads the last line.
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            print(json.dumps(counts), flush=True)
    print(json.dumps(counts), flush=True)
    server.close()
    return counts


def hold(args: argparse.Namespace) -> dict:
    """Accept --conns connections on host_lib and hold them: what each costs host_lib."""
    import host_lib
    srv = host_lib.socket()
    srv.bind((args.host, args.port))
    srv.listen(4096)
    srv.settimeout(args.timeout)
    print("listening", flush=True)
    held = []
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    status = "ok"
    start = time.monotonic()
    try:
        while len(held) < args.conns:
            held.append(srv.accept()[0])
    except OSError as exc:
        status = f"accept: {exc!r}"
    elapsed = time.monotonic() - start
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    count = len(held)
    result = {"status": status, "accepted": count, "seconds": round(elapsed, 3),
              "bytes_per_socket": round((after - before) / count, 1) if count else None,
              "rss_growth_bytes_per_socket": round((rss_bytes() - rss0) / count, 1)
              if count else None}
    print(json.dumps(result), flush=True)
    sys.stdin.read()   # until the bench closes our stdin
    for sock in held:
        sock.close()
    srv.close()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("echo")
    p.add_argument("api", choices=["linux", "p4tas"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p = sub.add_parser("hold")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--conns", type=int, required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    raise_fd_limit()
    if args.role == "echo":
        asyncio.run(serve_echo(args))
    else:
        hold(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
