"""bench_transfer's report: every figure with its ratios to Linux and to bmv2's ceiling, then
the one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from forwarding_ceiling import FRAME_BYTES
from target_ceiling import Ceiling
from transfer_profile import print_profile
from transfer_sides import RUNTIME_ARGS


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    """a / b rounded, None if either is missing (or b is 0)."""
    return round(a / b, digits) if a is not None and b else None


def report(args: argparse.Namespace, target: str, p4tas: dict, linux: dict,
           forwarding: dict | None, ring: dict | None, target_ceiling: Ceiling | None,
           problems: list[str], elapsed: float) -> int:
    """Print every figure with its ratios and the JSON line; exit status 1 on cleanup problems."""
    print("")
    figures: dict = {"bench": "transfer", "target": target, "python": platform.python_version(),
                     "cpus": os.cpu_count(), "repeat": args.repeat}
    stalls = 0
    ceiling = forwarding.get("payload_mbit_per_s") if forwarding else None
    if "bulk_in" in p4tas:
        lin = linux["bulk"].mbps if "bulk" in linux else None
        bulk_fig = {"linux_to_linux": linux["bulk"].figures() if "bulk" in linux else None}
        for key, label in (("bulk_in", "linux_to_p4tas"), ("bulk_out", "p4tas_to_linux")):
            b = p4tas[key]
            stalls += b.stalls
            limit = target_ceiling.bulk_mbps(key) if target_ceiling is not None else None
            fig = b.figures() | {"ratio_to_linux": _ratio(b.mbps, lin),
                                 "fraction_of_bmv2_ceiling": _ratio(b.mbps, ceiling),
                                 "target_ceiling_mbps": limit,
                                 "fraction_of_target_ceiling": _ratio(b.mbps, limit)}
            bulk_fig[label] = fig
            print(f"(a) {b.name}: {b.mbps and round(b.mbps, 2)} Mbit/s = "
                  f"{fig['ratio_to_linux']} x Linux-to-Linux ({lin and round(lin, 1)} Mbit/s), "
                  f"{fig['fraction_of_target_ceiling']} of the target's ceiling ({limit} "
                  f"Mbit/s), {fig['fraction_of_bmv2_ceiling']} of the bmv2 forwarding ceiling "
                  f"({ceiling} Mbit/s payload)" + (f"; {b.stalls} STALLED" if b.stalls else ""))
        figures["bulk"] = bulk_fig
    if "rpc" in p4tas:
        rpc_fig = {}
        for conns, r in p4tas["rpc"].items():
            lr = linux.get("rpc", {}).get(conns, {})
            if str(r.get("status", "")).startswith("stalled"):
                stalls += 1
            rate_ratio = _ratio(r.get("rate"), lr.get("rate"))
            p50_ratio = _ratio(r.get("p50_us"), lr.get("p50_us"), 2)
            limit = target_ceiling.per_s("rpc") if target_ceiling is not None else None
            bound = target_ceiling.rpc_latency_bound_us() if target_ceiling is not None else None
            rpc_fig[f"{conns}_conn"] = {"p4tas": r, "linux": lr, "rate_ratio": rate_ratio,
                                        "p50_latency_ratio": p50_ratio,
                                        "p99_latency_ratio": _ratio(r.get("p99_us"),
                                                                    lr.get("p99_us"), 2),
                                        "target_ceiling_per_s": limit,
                                        "fraction_of_target_ceiling": _ratio(r.get("rate"),
                                                                             limit),
                                        "p50_bound_us": bound,
                                        "p50_over_bound": _ratio(r.get("p50_us"), bound, 2)}
            print(f"(b) RPC 64 B, {conns} conn: p4tas {r.get('rate')} req/s (p50 "
                  f"{r.get('p50_us')} us, p99 {r.get('p99_us')} us), Linux {lr.get('rate')} "
                  f"req/s (p50 {lr.get('p50_us')} us, p99 {lr.get('p99_us')} us): rate ratio "
                  f"{rate_ratio}, p50 latency x{p50_ratio}; "
                  f"{rpc_fig[f'{conns}_conn']['fraction_of_target_ceiling']} of the target's "
                  f"ceiling ({limit} req/s), p50 {rpc_fig[f'{conns}_conn']['p50_over_bound']} x "
                  f"the bound ({bound} us)"
                  + ("" if r.get("status") == "ok" else f"; p4tas {r.get('status')}"))
        figures["rpc"] = rpc_fig
    if forwarding is not None:
        figures["bmv2_forwarding"] = forwarding
        if "skipped" in forwarding:
            print(f"(c) bmv2 forwarding ceiling: SKIPPED: {forwarding['skipped']}")
        else:
            curve = ", ".join(f"{s['offered_frames_per_s']} -> {s['frames_per_s']:.0f}"
                              for s in forwarding["curve"])
            print(f"(c) bmv2 forwarding ceiling: {forwarding['frames_per_s']} frames/s of "
                  f"{FRAME_BYTES} B = {ceiling} Mbit/s of MSS payload (best step; offered -> "
                  f"delivered frames/s: {curve})")
    if target_ceiling is not None:
        figures["target_ceiling"] = target_ceiling.figures()
        print(f"(e) {target_ceiling.line()}")
    if ring is not None:
        figures["rings"] = ring
        print(f"(d) host_lib ring {ring['ring_mbyte_per_s']} MB/s vs loopback TCP "
              f"{ring['tcp_loopback_mbyte_per_s']} MB/s for {ring['msg_bytes']} B messages: "
              f"ratio {ring['ratio_ring_tcp']}")
    if "profile" in p4tas:
        print("profile of the runtime (DMA bridge) and the host_lib application during (a):")
        print_profile(p4tas["profile"])
        figures["profile"] = p4tas["profile"]
    figures |= {"stalls": stalls, "seconds": round(elapsed, 1),
                "runtime_args": RUNTIME_ARGS + args.runtime_arg}
    if problems:
        figures["cleanup_problems"] = problems
    if stalls:
        print(f"bench-transfer: {stalls} p4tas measurement(s) STALLED (no loss recovery yet)",
              file=sys.stderr)
    print(f"fast path: {target}; {elapsed:.0f} s in all")
    print(json.dumps(figures))
