"""Pure helpers of the benchmarks (no I/O but /proc reads): Jain's fairness index, percentiles,
ratios, count lists, the goal lines bench-scale prints. Tested by tests/unit/test_bench_scale.py."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence


def jain(values: Sequence[float]) -> float | None:
    """Jain's fairness index (sum x)^2 / (n sum x^2), 1.0 for equal shares, 1/n for one flow
    taking everything; None for no values or all zero."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return round(total * total / (len(values) * squares), 4) if squares else None


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The nearest-rank q-quantile (0 < q <= 1) of ascending values; None for none."""
    if not sorted_values:
        return None
    if not 0 < q <= 1:
        raise ValueError(f"quantile {q} outside (0, 1]")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def ratio(top: float | None, bottom: float | None) -> float | None:
    """top / bottom rounded, None when either is missing or bottom is 0."""
    if top is None or not bottom:
        return None
    return round(top / bottom, 2)


def count_list(text: str) -> list[int]:
    """"256,1k,4096,1M" -> [256, 1000, 4096, 1000000]; argparse type (k = 1000, M = 10^6)."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        scale = {"k": 1000, "K": 1000, "m": 1_000_000, "M": 1_000_000}.get(part[-1], 1)
        digits = part[:-1] if scale != 1 else part
        try:
            value = int(float(digits) * scale)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a count: {part!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"counts must be at least 1, got {part!r}")
        out.append(value)
    if not out:
        raise argparse.ArgumentTypeError("no counts given")
    return out


def goal_line(what: str, measured: float | None, goal: float, unit: str,
              lower_is_better: bool = True) -> str:
    """`what: measured unit (goal <= goal unit: met|MISSED)`; `-` for no measurement."""
    sign = "<=" if lower_is_better else ">="
    if measured is None:
        verdict, shown = "not measured", "-"
    else:
        met = measured <= goal if lower_is_better else measured >= goal
        verdict, shown = ("met" if met else "MISSED"), f"{measured:,.1f}"
    return f"{what}: {shown} {unit} (goal {sign} {goal:,g} {unit}: {verdict})"


def flatness(costs: dict[int, float | None]) -> float | None:
    """Cost at the largest count over the cost at the smallest (the issue wants <= 1.5)."""
    known = {n: c for n, c in costs.items() if c}
    if len(known) < 2:
        return None
    return ratio(known[max(known)], known[min(known)])


def latency_summary(latencies_s: list[float]) -> dict:
    """p50/p99/p99.9 in microseconds of latencies in seconds (sorted here)."""
    ordered = sorted(latencies_s)

    def us(q: float) -> float | None:
        value = percentile(ordered, q)
        return None if value is None else round(value * 1e6, 1)
    return {"samples": len(ordered), "p50_us": us(0.5), "p99_us": us(0.99),
            "p999_us": us(0.999)}


def rss_bytes() -> int:
    """This process's resident set size (/proc/self/statm), bytes."""
    return pid_rss_bytes("self")


def pid_rss_bytes(pid: int | str) -> int:
    """A process's resident set size from /proc/PID/status (VmRSS), bytes; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
