"""The operator's view without a switch: `python -m runtime flows` formatting and filters, the
metrics' families as Prometheus parses them, the setup-latency histogram."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import generate_latest
from prometheus_client.core import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from host_lib import control_protocol as cp
from runtime import flows_cli
from runtime.metrics import RuntimeCollector, RuntimeSnapshot
from nic_contract.p4rt.errors import P4RuntimeError
from runtime.slow_path_stats import SETUP_BUCKETS_S, SetupLatency

ROW = cp.FlowInfo(conn_id=3, state="ESTABLISHED", local_ip="10.99.1.1", local_port=7,
                  peer_ip="10.99.1.2", peer_port=51834, app="echo_server.py[4711]",
                  congestion="dctcp", bytes_sent=6, bytes_acked=6, bytes_received=6,
                  rate_bps=1.0e7, rtt_us=412, rx_ring_size=262144, tx_ring_size=262144)


def test_flows_lines_look_like_ss() -> None:
    first, second = flows_cli.format_flow(ROW).split("\n")
    assert first.split() == ["ESTABLISHED", "10.99.1.1:7", "10.99.1.2:51834", "#3",
                             "echo_server.py[4711]"]
    assert second.startswith("\t ")
    fields = dict(item.split(":", 1) for item in second.split())
    assert fields["cc"] == "dctcp" and fields["rate"] == "10.0Mbps"
    assert fields["rtt"] == "0.412ms" and fields["bytes_received"] == "6"
    assert fields["rx_ring"] == "0/262144" and fields["retrans"] == "0/0"


def test_flows_without_samples_or_limits_say_so() -> None:
    row = cp.FlowInfo(conn_id=1, state="SYN_SENT", local_ip="1.1.1.1", local_port=1,
                      peer_ip="2.2.2.2", peer_port=2)
    assert "rate:unlimited rtt:-" in flows_cli.format_flow(row)


def test_flows_show_keepalive_like_its_socket_options() -> None:
    assert "keepalive:off" in flows_cli.format_flow(ROW)
    row = replace(ROW, keepalive_idle_s=7200.0, keepalive_interval_s=75.0, keepalive_count=9,
                  keepalive_probes=2, keepalive_heard_s=7351.25)
    fields = dict(item.split(":", 1) for item in flows_cli.format_flow(row).split()[5:])
    assert fields["keepalive"] == "7200s,75s,9,probes=2,heard=7351.2s"
    assert cp.FlowInfo.from_dict(row.to_dict()) == row


def test_flows_filters() -> None:
    assert flows_cli.state_name("estab") == "ESTABLISHED"
    assert flows_cli.state_name("time-wait") == "TIME_WAIT"
    assert flows_cli.selected(ROW, [], [])
    assert flows_cli.selected(ROW, [7], []) and flows_cli.selected(ROW, [51834], [])
    assert not flows_cli.selected(ROW, [8], [])
    assert flows_cli.selected(ROW, [], ["ESTABLISHED", "TIME_WAIT"])
    assert not flows_cli.selected(ROW, [7], ["TIME_WAIT"])


def test_flows_without_a_runtime_fails_with_a_message(tmp_path, capsys) -> None:
    assert flows_cli.main(["--control-socket", str(tmp_path / "none.sock")]) == 1
    assert "cannot reach the p4tas runtime" in capsys.readouterr().err


def test_setup_latency_buckets() -> None:
    setup = SetupLatency()
    for seconds in (0.0001, SETUP_BUCKETS_S[0], 0.003, 99.0):
        setup.observe(seconds)
    assert setup.counts[0] == 2  # a bound is inclusive, as Prometheus's `le`
    assert setup.counts[SETUP_BUCKETS_S.index(0.005)] == 1 and setup.counts[-1] == 1
    assert setup.count == 4 and abs(setup.total_s - 99.0036) < 1e-9


def _scrape(collector: RuntimeCollector) -> dict[str, dict[tuple, float]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return samples


def _snapshot() -> RuntimeSnapshot:
    setup = SetupLatency()
    setup.observe(0.0004)
    setup.observe(0.2)
    return RuntimeSnapshot(counters={"flows_installed": 5, "connections": 2},
                           bridge_drops={"bad_offset": 1},
                           by_state={"ESTABLISHED": 1, "TIME_WAIT": 1},
                           setup_counts=setup.counts, setup_sum_s=setup.total_s)


def test_metrics_parse_with_prometheus_parser() -> None:
    fast = {"exception_counter": {"syn": 4}, "drop_counter": {"rate_limited": 9}}
    samples = _scrape(RuntimeCollector(_snapshot, lambda: fast))
    assert samples["p4tas_runtime_events_total"][(("counter", "flows_installed"),)] == 5
    assert samples["p4tas_runtime_in_use"][(("what", "connections"),)] == 2
    assert samples["p4tas_bridge_drops_total"][(("cause", "bad_offset"),)] == 1
    assert samples["p4tas_flows"][(("state", "TIME_WAIT"),)] == 1
    buckets = samples["p4tas_connection_setup_seconds_bucket"]
    assert buckets[(("le", "0.0005"),)] == 1 and buckets[(("le", "+Inf"),)] == 2
    assert samples["p4tas_connection_setup_seconds_count"][()] == 2
    assert samples["p4tas_fast_path_readable"][()] == 1
    assert samples["p4tas_fast_path_exceptions_total"][(("reason", "syn"),)] == 4
    assert samples["p4tas_fast_path_drops_total"][(("reason", "rate_limited"),)] == 9


def test_metrics_survive_an_unreadable_switch() -> None:
    def broken() -> dict:
        raise P4RuntimeError("switch gone")
    samples = _scrape(RuntimeCollector(_snapshot, broken))
    assert samples["p4tas_fast_path_readable"][()] == 0
    assert "p4tas_fast_path_exceptions_total" not in samples
    assert samples["p4tas_flows"][(("state", "ESTABLISHED"),)] == 1
