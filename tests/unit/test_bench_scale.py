"""bench-scale's pure parts: Jain's index, percentiles, count lists, goal lines, flatness,
bottleneck utilization, and the driver's and load generator's argument parsing."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import bench_scale  # noqa: E402
import scale_clients  # noqa: E402
from scale_bottleneck import utilization  # noqa: E402
from scale_stats import (count_list, flatness, goal_line, jain, latency_summary,  # noqa: E402
                         percentile, ratio)


def test_jain_is_one_for_equal_shares_and_one_over_n_for_one_taker() -> None:
    assert jain([5, 5, 5, 5]) == 1.0
    assert jain([1, 0, 0, 0]) == 0.25
    assert jain([1, 3]) == round(16 / (2 * 10), 4)
    assert jain([]) is None and jain([0, 0]) is None


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))   # 1..100
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 0.999) == 100
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.5) == 7
    assert percentile([], 0.5) is None
    with pytest.raises(ValueError):
        percentile(values, 0)


def test_latency_summary_sorts_and_reports_microseconds() -> None:
    summary = latency_summary([0.003, 0.001, 0.002] * 10)
    assert summary == {"samples": 30, "p50_us": 2000.0, "p99_us": 3000.0, "p999_us": 3000.0}
    assert latency_summary([])["p50_us"] is None


def test_count_list_takes_suffixes_and_refuses_nonsense() -> None:
    assert count_list("256,1k,4096,1M") == [256, 1000, 4096, 1_000_000]
    assert count_list("1.5k") == [1500]
    for bad in ("", "x", "0", "-3", "1q"):
        with pytest.raises(argparse.ArgumentTypeError):
            count_list(bad)


def test_ratio_and_flatness() -> None:
    assert ratio(3, 2) == 1.5 and ratio(None, 2) is None and ratio(1, 0) is None
    assert flatness({1000: 10.0, 100_000: 12.0, 65536: 11.0}) == 1.2
    assert flatness({1000: 10.0}) is None
    assert flatness({1000: None, 2000: 5.0}) is None


def test_goal_line_says_met_or_missed() -> None:
    assert goal_line("fast path", 117.0, 128, "B") == \
        "fast path: 117.0 B (goal <= 128 B: met)"
    assert goal_line("runtime", 5455.4, 1024, "B").endswith("(goal <= 1,024 B: MISSED)")
    assert goal_line("jain", 0.9, 0.95, "", lower_is_better=False).endswith("MISSED)")
    assert "not measured" in goal_line("x", None, 1, "x")


def test_utilization_counts_only_the_time_the_link_carried_traffic() -> None:
    rate = 8.0   # Mbit/s: 1 MB/s
    idle, busy = 0, 1_000_000
    samples = [(0.0, 0), (1.0, idle), (2.0, busy), (3.0, 2 * busy), (4.0, 2 * busy + busy // 2),
               (5.0, 2 * busy + busy // 2)]
    got = utilization(samples, rate)
    assert got == {"utilization": round(2.5e6 / (1e6 * 3), 3), "busy_seconds": 3.0}
    assert utilization([(0.0, 0), (1.0, 0)], rate) == {"utilization": None, "busy_seconds": 0.0}


def test_bench_scale_arguments() -> None:
    args = bench_scale.parse_args(["--only", "inproc", "--counts", "1k,100k,1M",
                                   "--clients", "100k"])
    assert args.parts == {"inproc"} and args.counts == [1000, 100_000, 1_000_000]
    assert args.clients == 100_000 and args.flows == [256, 1024, 4096]
    for bad in (["--only", "inproc,nope"], ["--active-fraction", "2"], ["--counts", "0"]):
        with pytest.raises(SystemExit):
            bench_scale.parse_args(bad)


def test_load_generator_arguments() -> None:
    args = scale_clients.parse_args(["10.0.0.1", "7000", "--conns", "100k", "--sources",
                                     "10.0.0.5,10.0.0.6,"])
    assert args.conns == 100_000 and args.sources == ["10.0.0.5", "10.0.0.6"]
    with pytest.raises(SystemExit):
        scale_clients.parse_args(["10.0.0.1", "7000", "--active", "1.5"])
