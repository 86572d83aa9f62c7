"""Data transfer through p4tas against Linux TCP, the target's and bmv2's own ceilings and the
rings, in one run.

(a) bulk goodput: a Linux client (peer namespace) -> a host_lib sink, and a host_lib client -> a
    Linux sink in the peer namespace, through TARGET's switch + the runtime's DMA bridge;
    against the same client and sink on two namespaces joined by one veth pair (Linux to
    Linux, as bench_conn).
    A transfer is connect, send N bytes, SHUT_WR, and the sink's byte count back; goodput is
    N / (connected .. count received). --repeat runs, the median is reported.
(b) RPC: 64-byte requests echoed, one outstanding per connection (closed loop), 1 and 16
    connections from a Linux client to a host_lib echo server, and Linux to Linux: requests
    per second and the p50/p99 request latency.
(c) bmv2's forwarding ceiling: bench/fwd.p4 (port 1 <-> port 2, nothing else), compiled with
    p4c into a temporary folder, on a simple_switch_grpc of its own (the same binary); MSS-sized
    frames (1514 bytes) blasted into port 1 from a raw socket for --fwd-seconds, the frames that
    come out of port 2 counted (the interface's rx_packets). p4tas goodput is then reported as a
    fraction of the payload bmv2 itself moves (frames/s x 1448 bytes). Skipped without p4c.
(e) the target's ceiling (target_ceiling.py): TARGET's own pipeline rate, measured alone in
    this run, over the passes one unit of work needs (a segment in: 1; a segment out: 1.5 with
    the peer's ACKs; an RPC: 3); each p4tas figure is also given as a fraction of it, and the
    1-connection RPC p50 next to twice the latency of the two passes on its path.
(d) host_lib's SPSC byte ring (host_lib.rings, a /dev/shm segment) between two processes, 64 KiB
    messages, against a Linux loopback TCP connection between two processes.

p4tas has no loss recovery yet: a dropped segment stalls a connection. Every client therefore
has a per-operation timeout and a deadline; a run that misses them is reported as "stalled"
(in the text and the JSON), never waited for. Everything created (the p4tas environment with
prefix p4bt, namespaces, veths, processes, temporary folders, the ring benchmark's /dev/shm
segment of this run) is removed at the end, also on failure or Ctrl-C. Without root, a target or the compiled
pipeline the benchmark is skipped (exit 0). The last line of the output is one JSON object.

--profile DIR: after the measured runs of (a), one more transfer each way with py-spy sampling
the runtime daemon (the DMA bridge runs in it) and the host_lib application; the raw stacks go
to DIR and the top hot spots (self time, file:line) are printed and put in the JSON.

    .venv/bin/python bench/bench_transfer.py [--p4tas-bytes N] [--profile DIR]
                                                            # or: make bench-transfer

This file is the command line and the run; the parts are in transfer_workloads.py ((a), (b),
(d)), forwarding_ceiling.py ((c)), transfer_sides.py (p4tas and Linux), transfer_profile.py,
transfer_report.py, and transfer_procs.py starts transfer_peer.py's roles.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from benchlib import (  # noqa: E402  (also puts the repository on sys.path)
    LinuxPair,
    P4tasSide,
    _base36,
    _int_range,
    describe_target,
    guarded,
    skipped,
)
from forwarding_ceiling import Forwarder, bench_forwarding  # noqa: E402
from bmv2_env import targets  # noqa: E402
from target_ceiling import measure_ceiling  # noqa: E402
from transfer_report import report  # noqa: E402
from transfer_sides import bench_linux, bench_p4tas, cleanup  # noqa: E402
from transfer_workloads import PREFIX, bench_rings  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's command line; `args.parts` holds the parts of --only."""
    parser = argparse.ArgumentParser(
        prog="bench_transfer.py", description=__doc__.split("\n\n")[0],
        epilog="Output: every figure with its ratios and the target (bmv2 build or softnic); "
               "the last line is JSON.")
    parser.add_argument("--p4tas-bytes", type=_int_range(1, 1 << 30), default=2 << 20,
                        help="bytes per p4tas bulk transfer (default %(default)s)")
    parser.add_argument("--linux-bytes", type=_int_range(1, 1 << 32), default=64 << 20,
                        help="bytes per Linux-to-Linux bulk transfer (default %(default)s)")
    parser.add_argument("--repeat", type=_int_range(1, 20), default=3,
                        help="runs of each bulk and ring figure; the median is reported "
                             "(default %(default)s)")
    parser.add_argument("--rpc-seconds", type=float, default=2.0,
                        help="measured seconds per RPC variant, after 0.5 s of warm-up "
                             "(default %(default)s)")
    parser.add_argument("--rpc-conns", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 16], help="connection counts of the RPC variants "
                                              "(default 1,16)")
    parser.add_argument("--fwd-seconds", type=float, default=1.0,
                        help="measured seconds per offered rate of the forwarding ceiling "
                             "(default %(default)s)")
    parser.add_argument("--fwd-offered", default=[20000, 30000, 45000, 60000, 75000, 0],
                        type=lambda text: [float(x) for x in text.split(",")],
                        help="frames/s offered to the forwarder, one step each; the ceiling is "
                             "the most delivered by any step (0: as fast as one Python raw socket "
                             "sends, which takes a CPU from bmv2; bmv2 delivers less when "
                             "overloaded) (default 20000,30000,45000,60000,75000,0)")
    parser.add_argument("--fwd-warmup", type=float, default=0.3,
                        help="blasting before the count starts (default %(default)s)")
    parser.add_argument("--ring-msgs", type=_int_range(1, 1 << 20), default=32768,
                        help="messages per ring/loopback run (default %(default)s)")
    parser.add_argument("--msg-bytes", type=_int_range(8, 1 << 24), default=65536,
                        help="ring/loopback message size (default %(default)s)")
    parser.add_argument("--ring-bytes", type=_int_range(16, 1 << 30), default=1 << 18,
                        help="ring size, a power of two (default %(default)s: the runtime's "
                             "per-connection ring)")
    parser.add_argument("--timeout", type=float, default=4.0,
                        help="per socket operation: longer without progress is a stall "
                             "(default %(default)s s)")
    parser.add_argument("--deadline", type=float, default=30.0,
                        help="per transfer or ring run (default %(default)s s)")
    parser.add_argument("--only", default="a,b,c,d,e",
                        help="parts to run, e.g. a,b (default %(default)s)")
    parser.add_argument("--profile", metavar="DIR",
                        help="also sample the runtime and the host_lib application with py-spy "
                             "during one extra transfer each way; raw stacks go to DIR")
    parser.add_argument("--profile-rate", type=int, default=250,
                        help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--profile-runs", type=int, default=4,
                        help="transfers sampled in the Linux -> p4tas direction (the host_lib "
                             "sink stays the same process) (default %(default)s)")
    parser.add_argument("--profile-top", type=int, default=12,
                        help="hot spots listed per process (default %(default)s)")
    parser.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for the runtime daemon (repeat)")
    args = parser.parse_args(argv)
    args.parts = set(args.only.split(","))
    if args.ring_bytes & (args.ring_bytes - 1):
        parser.error(f"--ring-bytes {args.ring_bytes} is not a power of two")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the parts asked for, clean up, report; the exit status."""
    args = parse_args(argv)
    if skipped("transfer"):
        return 0
    started = time.monotonic()
    target = describe_target()
    print(f"bench-transfer: bulk {args.p4tas_bytes} B (p4tas) / {args.linux_bytes} B (Linux) x "
          f"{args.repeat}, RPC {args.rpc_conns} connections x {args.rpc_seconds:g} s, "
          f"forwarding {len(args.fwd_offered)} x {args.fwd_seconds:g} s, rings {args.ring_msgs} x "
          f"{args.msg_bytes} B")
    print(f"fast path: {target}", flush=True)
    side, pair, fwd = P4tasSide(prefix=PREFIX), LinuxPair(tag=f"p4bt{os.getpid() % 10**7}"), \
        Forwarder()
    p4tas: dict = {}
    linux: dict = {}
    ring = forwarding = ceiling = None
    with guarded(lambda: cleanup(side, pair, fwd, p4tas.get("runtime_pid"))) as outcome:
        if "d" in args.parts:
            print("(d) host_lib ring vs Linux loopback TCP, two processes", flush=True)
            ring = bench_rings(args)
            print(f"  ring {ring['ring_mbyte_per_s']} MB/s, loopback TCP "
                  f"{ring['tcp_loopback_mbyte_per_s']} MB/s ({ring['status']})", flush=True)
        if "c" in args.parts:
            print("(c) bmv2 forwarding ceiling (bench/fwd.p4, port 1 -> 2)", flush=True)
            forwarding = bench_forwarding(args, fwd)
            print(f"  ceiling {forwarding.get('frames_per_s')} frames/s "
                  f"{forwarding.get('skipped', '')}", flush=True)
        if args.parts & {"a", "b"}:
            bench_p4tas(args, side, p4tas)
            bench_linux(args, pair, linux)
        if "e" in args.parts:
            ceiling = measure_ceiling(targets.select().name, f"e{_base36(os.getpid())}"[:6])
            print(f"(e) {ceiling.line()}", flush=True)
    if outcome.failed("bench-transfer", {"bench": "transfer"}, target):
        return 1
    return report(args, target, p4tas, linux, forwarding, ring, ceiling, outcome.problems,
                  time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
