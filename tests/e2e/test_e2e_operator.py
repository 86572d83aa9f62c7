"""End to end: what an operator sees while a Linux peer talks to an application on p4tas —
`python -m runtime flows` (the real command, over the real control socket) and the Prometheus
endpoint (`--metrics-port`, parsed with prometheus_client's own parser)."""

from __future__ import annotations

import json
import os
import socket as std_socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.e2e_helpers import (PORT, Worker, expect_line, flows_json, host_lib_stack,
                                       json_result, linux_with_stdin, p4tas_listener,
                                       recv_exactly, run_flows, sha, tell)
from tests.support.stack import Stack

TO_P4TAS = 100_000     # bytes the Linux client sends
TO_LINUX = 50_000      # bytes the p4tas application answers with
FLOWS_TIMEOUT = 30.0


def _free_loopback_port() -> int:
    with std_socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


METRICS_PORT = _free_loopback_port()

# Connects, sends TO_P4TAS bytes, reads the answer, prints its local port and the answer's
# SHA-256 as JSON, then holds the connection open until told "close" on stdin.
LINUX_CLIENT = """
import hashlib, json, socket, sys
host, port, size, answer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection((host, port), timeout=30)
s.sendall(bytes(i % 251 for i in range(size)))
got = bytearray()
while len(got) < answer:
    chunk = s.recv(answer - len(got))
    if not chunk:
        break
    got += chunk
print(json.dumps({"port": s.getsockname()[1], "sha": hashlib.sha256(got).hexdigest()}),
      flush=True)
sys.stdin.readline()
s.close()
print(json.dumps({"closed": True}), flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory,
                              ["--time-wait", "0.5", "--metrics-port", str(METRICS_PORT)])


def scrape() -> dict[str, dict[tuple, float]]:
    """metric sample name -> {sorted label items: value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as r:
        text = r.read().decode()
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = \
                sample.value
    return samples


def wait_for_row(stack: Stack, peer_port: int, ready) -> dict:
    """The flows row of the Linux client's connection once `ready(row)` holds."""
    deadline = time.monotonic() + FLOWS_TIMEOUT
    while True:
        rows = [r for r in flows_json(stack) if r["peer_port"] == peer_port]
        if rows and ready(rows[0]) or time.monotonic() > deadline:
            assert rows, f"no flow with peer port {peer_port}"
            return rows[0]
        time.sleep(0.1)


def serve_one(listener) -> str:
    """Accept, read TO_P4TAS bytes, answer TO_LINUX bytes, hold until the peer closes."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(30)
        got = recv_exactly(conn, TO_P4TAS)
        conn.sendall(bytes(i % 239 for i in range(TO_LINUX)))
        while conn.recv(65536):
            pass
    return sha(got)


def test_flows_and_metrics_show_a_live_connection(stack: Stack) -> None:
    listener = p4tas_listener(stack)
    server = Worker(serve_one, listener)
    server.start()
    client = linux_with_stdin(stack, LINUX_CLIENT, stack.peer.local_ip, str(PORT),
                              str(TO_P4TAS), str(TO_LINUX))
    try:
        first = json.loads(expect_line(client, "{"))
        assert first["sha"] == sha(bytes(i % 239 for i in range(TO_LINUX)))
        row = wait_for_row(stack, first["port"], lambda r: r["bytes_acked"] == TO_LINUX)
        assert (row["state"], row["local_ip"], row["local_port"], row["peer_ip"]) == \
            ("ESTABLISHED", stack.peer.local_ip, PORT, stack.peer.peer_ip)
        assert (row["bytes_received"], row["bytes_sent"], row["bytes_acked"]) == \
            (TO_P4TAS, TO_LINUX, TO_LINUX)
        assert row["app"].endswith(f"[{os.getpid()}]"), row  # this process owns it
        assert row["rtt_us"] is not None and row["rtt_us"] > 0
        assert row["tx_ring_fill"] == 0 and row["rx_ring_size"] > 0 and row["congestion"]

        text = run_flows(stack, "--port", str(PORT), "--state", "estab")
        assert text.returncode == 0, text.stderr
        line = f"{stack.peer.local_ip}:{PORT}"
        assert any(line in l and f"{stack.peer.peer_ip}:{first['port']}" in l
                   for l in text.stdout.splitlines()), text.stdout
        assert f"bytes_received:{TO_P4TAS}" in text.stdout
        assert not [r for r in flows_json(stack, "--state", "TIME_WAIT")
                    if r["peer_port"] == first["port"]]
        assert not flows_json(stack, "--port", "1")

        samples = scrape()
        assert samples["p4tas_flows"][(("state", "ESTABLISHED"),)] >= 1
        assert samples["p4tas_connection_setup_seconds_count"][()] >= 1
        assert samples["p4tas_fast_path_readable"][()] == 1
        assert samples["p4tas_fast_path_exceptions_total"][(("reason", "syn"),)] >= 1
        assert samples["p4tas_runtime_events_total"][(("counter", "flows_installed"),)] >= 1
        assert samples["p4tas_runtime_in_use"][(("what", "connections"),)] >= 1
    finally:
        tell(client, "close")
    assert json_result(client) == {"closed": True}
    assert server.result() == sha(bytes(i % 251 for i in range(TO_P4TAS)))
    listener.close()


def test_a_monitor_session_cannot_open_connections(stack: Stack) -> None:
    from host_lib.control_channel import ControlChannel
    with ControlChannel(stack.socket_path, app_name="monitor", monitor=True) as channel:
        with pytest.raises(PermissionError):
            channel.create_context()
        assert channel.stats()["connections"] >= 0
