"""End to end: a SYN flood at a p4tas port stops neither p4tas's own connects nor the
listener's legitimate clients (ARCHITECTURE.md 6).

The fast path meters what it punts to the slow path per reason (`--punt-rate`). Here a flood
20 times the punt rate runs from the peer's namespace at a p4tas listener, and:
- SYN-ACKs answer our own opens: if they shared the SYNs' bucket, the flood would empty it and
  each of our connects would wait for SYN retransmissions (1 s, 3 s, ...); a host_lib client's
  connects to a Linux sink complete at once;
- a legitimate SYN beyond the budget is answered by the fast path with a SYN cookie
  (syn_cookie.p4) instead of dropped like the flood's: Linux clients' connects to the flooded
  listener complete at once too, and the slow path opens them from the returned cookie.
Every transfer is checked with SHA-256, and the close on the wire (FIN, no RST).
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

import host_lib
from tests.support.e2e_helpers import (Worker, WireCapture, assert_fins_no_rst, echo_once,
                                       expect_line, host_lib_stack, json_result, linux_sink,
                                       p4tas_listener, settled_stats, sink_got, stats)
from bmv2_env.peers import popen_in
from tests.support.stack import REPO, Stack

PUNT_RATE = 20           # PacketIns/s per reason
FLOOD_RATE = 400         # spoofed SYNs/s at a p4tas port (20 x the punt rate)
FLOOD_PORT = 7401
CONNECTS = 8
CONNECT_BUDGET_S = 0.5   # a SYN-ACK lost to the meter costs Linux's 1 s SYN retransmission

# Connects (timed), sends `size` bytes, half-closes, reads the echo to EOF; one JSON line.
LINUX_TIMED_ECHO_CLIENT = """
import json, socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes((i * 13 + 5) % 251 for i in range(size))
start = time.monotonic()
s = socket.create_connection((host, port), timeout=10)
took = time.monotonic() - start
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
s.close()
print(json.dumps({"connect_s": took, "echoed": bytes(got) == data, "bytes": len(got)}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5",
                                                 "--punt-rate", str(PUNT_RATE),
                                                 "--syn-punt-rate", str(PUNT_RATE)])


def start_flood(stack: Stack, seconds: float) -> subprocess.Popen:
    """bench/syn_flood.py in the peer's namespace, at a p4tas port, from spoofed sources."""
    subnet = stack.peer.local_ip.rsplit(".", 1)[0]
    flood = popen_in(stack.peer, [sys.executable, str(REPO / "bench" / "syn_flood.py"),
                                  stack.peer.local_ip, str(FLOOD_PORT), subnet,
                                  str(FLOOD_RATE), str(seconds)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    expect_line(flood, "flooding")
    return flood


def test_our_connects_go_on_under_a_syn_flood(stack: Stack) -> None:
    flood = start_flood(stack, seconds=60)
    try:
        time.sleep(0.5)   # the meter's bucket for SYNs is empty by now
        for i in range(CONNECTS):
            port = 7410 + i
            data = random.Random(i).randbytes(64 * 1024)
            sink = linux_sink(stack, port)
            wire = WireCapture(stack, port)
            with host_lib.socket() as s:
                s.settimeout(10)
                start = time.monotonic()
                s.connect((stack.peer.peer_ip, port))
                took = time.monotonic() - start
                s.sendall(data)
            assert json_result(sink) == sink_got(data)
            assert_fins_no_rst(wire.stop())
            assert took < CONNECT_BUDGET_S, f"connect {i} took {took:.2f} s under the flood"
    finally:
        flood.terminate()
        report = json_result(flood, timeout=10)
    assert report["rate"] > FLOOD_RATE * 0.8, report   # the flood really ran


def test_legitimate_clients_of_a_flooded_listener_connect_at_once(stack: Stack) -> None:
    before = settled_stats(stack)
    listener = p4tas_listener(stack, FLOOD_PORT)
    flood = start_flood(stack, seconds=60)
    try:
        time.sleep(0.5)   # the SYN bucket is empty and the backlog full of the flood's SYNs
        for i in range(CONNECTS):
            server = Worker(echo_once, listener)
            server.start()
            wire = WireCapture(stack, FLOOD_PORT)
            client = stack.linux(LINUX_TIMED_ECHO_CLIENT, stack.peer.local_ip, str(FLOOD_PORT),
                                 str(32 * 1024))
            got = json_result(client)
            assert server.result() == 32 * 1024
            seen = wire.stop()
            assert got["echoed"], got
            assert got["connect_s"] < CONNECT_BUDGET_S, f"connect {i}: {got}"
            assert seen["from_p4tas"].get("FIN") and not seen["from_p4tas"].get("RST"), seen
    finally:
        flood.terminate()
        report = json_result(flood, timeout=10)
        listener.close()
    assert report["rate"] > FLOOD_RATE * 0.8, report
    after = stats(stack)
    # The slow path opened them from cookies (its own or the fast path's) and kept nothing of
    # the flood's SYNs beyond its budget.
    assert after.get("syncookies_accepted", 0) - before.get("syncookies_accepted", 0) >= 1
