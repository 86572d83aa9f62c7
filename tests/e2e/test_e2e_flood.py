"""End to end: a SYN flood at a p4tas port does not stop p4tas's own connects (ARCHITECTURE.md 6).

The fast path meters what it punts to the slow path per reason (`--punt-rate`). SYN-ACKs answer
our own opens: if they shared the SYNs' bucket, a flood of spoofed SYNs would empty it and each
of our connects would wait for SYN retransmissions (1 s, 3 s, ...). Here a flood 50 times the
punt rate runs from the peer's namespace while a host_lib client opens connections to a Linux
sink there: every connect completes at once, the bytes arrive whole (SHA-256) and close with FIN.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

import pytest

import host_lib
from tests.support.e2e_helpers import (WireCapture, assert_fins_no_rst, expect_line,
                                       host_lib_stack, json_result, linux_sink, sink_got)
from bmv2_env.peers import popen_in
from tests.support.stack import REPO, Stack

PUNT_RATE = 20           # PacketIns/s per reason
FLOOD_RATE = 1000        # spoofed SYNs/s at a p4tas port (50 x the punt rate)
FLOOD_PORT = 7401
CONNECTS = 8
CONNECT_BUDGET_S = 0.5   # a SYN-ACK lost to the meter costs Linux's 1 s SYN retransmission


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5",
                                                 "--punt-rate", str(PUNT_RATE)])


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
