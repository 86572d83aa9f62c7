"""Prometheus metrics of the runtime (`--metrics-port`), served on loopback by prometheus_client.

A scrape runs on prometheus_client's HTTP thread: it asks the event loop for a snapshot of the
slow path's own state (no data structure is read from another thread), and reads the fast
path's per-reason exception and drop counters over P4Runtime once (two small indirect counters,
one Read request).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import start_http_server
from prometheus_client.core import (CollectorRegistry, CounterMetricFamily, GaugeMetricFamily,
                                    HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from runtime.connection_control import ConnectionControl
from nic_contract.constants import DropReason, PacketInReason
from runtime.flow_report import flows_by_state
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import P4RuntimeError
from runtime.slow_path_stats import SETUP_BUCKETS_S

log = logging.getLogger(__name__)

METRICS_ADDR = "127.0.0.1"  # loopback only: the metrics name every connection's state
SNAPSHOT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 2.0  # a hung switch must not pile scrapes up
# Counter names of the slow path that are levels (in use now), not event totals.
GAUGES = ("connections", "listeners", "flows_in_use", "orphans_live", "local_ports_in_use",
          "local_ports_quarantined")
FAST_PATH_COUNTERS = {"exception_counter": PacketInReason, "drop_counter": DropReason}


@dataclass(frozen=True)
class RuntimeSnapshot:
    """The slow path's numbers at one instant, taken on the event loop."""

    counters: dict[str, int]
    bridge_drops: dict[str, int]
    by_state: dict[str, int]
    setup_counts: list[int]
    setup_sum_s: float


def take_snapshot(control: ConnectionControl) -> RuntimeSnapshot:
    """Copy what a scrape reports (call on the event loop)."""
    drops = ({cause.value: n for cause, n in control.nic.stats.drops.items()}
             if control.nic is not None else {})
    setup = control.stats.setup
    return RuntimeSnapshot(control.snapshot(), drops, dict(flows_by_state(control)),
                           list(setup.counts), setup.total_s)


def read_fast_path_counters(client: P4RuntimeClient) -> dict[str, dict[str, int]]:
    """Packets per reason of the fast path's exception and drop counters (one Read)."""
    p4info = client.p4info
    entries = [p4info.counter_entry(name) for name in FAST_PATH_COUNTERS]
    ids = {p4info.counter(name).preamble.id: name for name in FAST_PATH_COUNTERS}
    found: dict[str, dict[str, int]] = {name: {} for name in FAST_PATH_COUNTERS}
    for entity in client.read(entries, timeout=READ_TIMEOUT_S):
        entry = entity.counter_entry
        name = ids.get(entry.counter_id)
        reasons = FAST_PATH_COUNTERS.get(name)
        try:
            reason = reasons(entry.index.index).name.lower()
        except (TypeError, ValueError):
            continue  # index 0 and any index no reason names: never counted
        found[name][reason] = entry.data.packet_count
    return found


class RuntimeCollector(Collector):
    """Turns a snapshot and the fast path's counters into metric families."""

    def __init__(self, snapshot: Callable[[], RuntimeSnapshot],
                 fast_path: Callable[[], dict[str, dict[str, int]]] | None) -> None:
        self._snapshot = snapshot
        self._fast_path = fast_path

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _slow_path_families(snap)
        if self._fast_path is not None:
            yield from _fast_path_families(self._fast_path)


def _slow_path_families(snap: RuntimeSnapshot) -> Iterator[Metric]:
    events = CounterMetricFamily("p4tas_runtime_events", "What the slow path saw and did, "
                                 "by counter name (GetStats)", labels=["counter"])
    levels = GaugeMetricFamily("p4tas_runtime_in_use", "What the slow path holds now",
                               labels=["what"])
    for name, value in sorted(snap.counters.items()):
        (levels if name in GAUGES else events).add_metric([name], value)
    yield events
    yield levels
    drops = CounterMetricFamily("p4tas_bridge_drops", "Host-port frames the DMA bridge "
                                "dropped or could not act on, by cause", labels=["cause"])
    for cause, value in sorted(snap.bridge_drops.items()):
        drops.add_metric([cause], value)
    yield drops
    states = GaugeMetricFamily("p4tas_flows", "Connections by TCP state", labels=["state"])
    for state, value in sorted(snap.by_state.items()):
        states.add_metric([state], value)
    yield states
    buckets, running = [], 0
    for bound, count in zip([*map(str, SETUP_BUCKETS_S), "+Inf"], snap.setup_counts):
        running += count
        buckets.append((bound, running))
    yield HistogramMetricFamily("p4tas_connection_setup_seconds",
                                "From the first SYN to the application being told the "
                                "connection is established (flow installed)",
                                buckets=buckets, sum_value=snap.setup_sum_s)


def _fast_path_families(read: Callable[[], dict[str, dict[str, int]]]) -> Iterator[Metric]:
    up = GaugeMetricFamily("p4tas_fast_path_readable",
                           "1 if this scrape read the fast path's counters over P4Runtime")
    try:
        counters = read()
    except P4RuntimeError as exc:
        log.warning("metrics: reading the fast path's counters failed: %s", exc)
        up.add_metric([], 0)
        yield up
        return
    up.add_metric([], 1)
    yield up
    exceptions = CounterMetricFamily("p4tas_fast_path_exceptions", "Packets the fast path "
                                     "sent to the slow path, by reason", labels=["reason"])
    for reason, value in sorted(counters["exception_counter"].items()):
        exceptions.add_metric([reason], value)
    yield exceptions
    drops = CounterMetricFamily("p4tas_fast_path_drops", "Packets the fast path dropped, by "
                                "reason", labels=["reason"])
    for reason, value in sorted(counters["drop_counter"].items()):
        drops.add_metric([reason], value)
    yield drops


def serve_metrics(port: int, loop: asyncio.AbstractEventLoop, control: ConnectionControl,
                  client: P4RuntimeClient | None):
    """Start the HTTP endpoint on METRICS_ADDR:port; returns (server, thread) to shut down."""
    def snapshot() -> RuntimeSnapshot:
        async def take() -> RuntimeSnapshot:
            return take_snapshot(control)
        return asyncio.run_coroutine_threadsafe(take(), loop).result(SNAPSHOT_TIMEOUT_S)

    registry = CollectorRegistry(auto_describe=False)
    fast_path = (lambda: read_fast_path_counters(client)) if client is not None else None
    registry.register(RuntimeCollector(snapshot, fast_path))
    return start_http_server(port, addr=METRICS_ADDR, registry=registry)
