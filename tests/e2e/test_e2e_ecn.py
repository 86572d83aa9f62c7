"""End to end: ECN as TAS uses it (RFC 3168), against the Linux stack with a marking
bottleneck (nftables sets CE on a share of the ECN-capable segments, as an AQM would).

Both handshakes negotiate ECN; once negotiated our data leaves ECT(0), the peer's ECE on
ACKs reaches DCTCP (the flow's ECE-marked bytes), and we set CWR on the next new data. In the
other direction a Linux sender's CE-marked data is echoed with ECE and Linux answers with CWR.
A peer that does not negotiate ECN gets Not-ECT data. Every byte is checked by SHA-256, and
the close on the wire is FIN, not RST.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

import host_lib
from bmv2_env import impairments
from bmv2_env.peers import run_in
from tests.support.e2e_helpers import (MIB, PORT, WireCapture, assert_fins_no_rst, expect_line,
                               host_lib_stack, json_result, linux_sink, p4tas_listener,
                               recv_until_eof, send_and_close, sha, sink_got)
from tests.support.stack import REPO, Stack

MARK_PERCENT = 5.0
VOLUME = 4 * MIB

LINUX_SENDER = """
import random, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
s.sendall(random.Random(9).randbytes(size))
s.close()
print("sent", flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not impairments.nft_available():
        pytest.skip("ECN marking needs nft (Debian package nftables; `make setup` installs it)")
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5"])


@pytest.fixture
def peer_ecn(stack: Stack):
    """Set the Linux peer's net.ipv4.tcp_ecn for one test, then restore it."""
    def sysctl(*args: str) -> str:
        done = run_in(stack.peer, ["sysctl", "-n", *args], capture_output=True, text=True,
                      check=True)
        return done.stdout.strip()
    before = sysctl("net.ipv4.tcp_ecn")
    yield lambda value: sysctl("-w", f"net.ipv4.tcp_ecn={value}")
    sysctl("-w", f"net.ipv4.tcp_ecn={before}")
    impairments.clear_ecn_marking(stack.peer)


def flow_row(stack: Stack, peer_port: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "runtime", "flows", "--json", "--port",
                           str(peer_port), "--control-socket", str(stack.socket_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 1, rows
    return rows[0]


def test_p4tas_sender_negotiates_ecn_and_hears_ece(stack: Stack, peer_ecn) -> None:
    peer_ecn(2)   # Linux's default: ECN when the other side asks for it
    port = 7401
    data = random.Random(8).randbytes(VOLUME)
    sink = linux_sink(stack, port)
    impairments.set_ecn_marking(stack.peer, MARK_PERCENT)
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(60)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(data)
        ours = s.getsockname()[1]
        # Everything is acknowledged before the look: the feedback has reached the runtime.
        row = flow_row(stack, ours)
    report = json_result(sink)
    seen = wire.stop()
    assert report == sink_got(data)
    assert seen["from_p4tas"].get("SYN_ECE") and seen["to_p4tas"].get("SYN_ECE"), seen
    assert seen["from_p4tas"].get("ECT", 0) > VOLUME // 1448 // 2, seen  # our data is ECT(0)
    assert seen["to_p4tas"].get("ECE"), seen       # the marks came back ...
    assert seen["from_p4tas"].get("CWR"), seen     # ... and we answered them
    assert row["ece_bytes"] > 0, row               # what DCTCP reads each interval
    assert_fins_no_rst(seen)


def test_linux_sender_gets_ece_and_answers_with_cwr(stack: Stack, peer_ecn) -> None:
    peer_ecn(1)   # Linux asks for ECN on its own connections
    data = random.Random(9).randbytes(VOLUME)
    impairments.set_ecn_marking(stack.peer, MARK_PERCENT)
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT)
        client = stack.linux(LINUX_SENDER, stack.peer.local_ip, str(PORT), str(VOLUME))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            got = recv_until_eof(conn)
        expect_line(client, "sent")
        seen = wire.stop()
    assert sha(got) == sha(data)
    assert seen["to_p4tas"].get("SYN_ECE") and seen["from_p4tas"].get("SYN_ECE"), seen
    assert seen["to_p4tas"].get("ECT") and seen["to_p4tas"].get("CE"), seen
    assert seen["from_p4tas"].get("ECE"), seen    # CE echoed
    assert seen["to_p4tas"].get("CWR"), seen      # Linux reduced and said so
    assert_fins_no_rst(seen)


def test_a_peer_without_ecn_gets_not_ect_data(stack: Stack, peer_ecn) -> None:
    peer_ecn(0)
    port = 7402
    data = random.Random(10).randbytes(MIB)
    sink = linux_sink(stack, port)
    wire = WireCapture(stack, port)
    send_and_close(stack, port, data)
    report = json_result(sink)
    seen = wire.stop()
    assert report == sink_got(data)
    assert seen["from_p4tas"].get("SYN_ECE") and not seen["to_p4tas"].get("SYN_ECE"), seen
    assert not seen["from_p4tas"].get("ECT") and not seen["to_p4tas"].get("ECT"), seen
