"""End to end: a Linux sender whose segments reach p4tas as IPv4 fragments.

The peer's veth gets an MTU of 1000 while its route to p4tas keeps 1500, so Linux's TCP sizes
its segments for 1500 (1448 bytes of payload) and the IP layer fragments each one for the
link (IP_PMTUDISC_OMIT: use the interface's MTU, DF clear), as a router on a smaller-MTU hop
would. The fast path punts the fragments; the slow path reassembles each datagram and hands
its segment back to the fast path. Every byte is checked by SHA-256; the close is a FIN both
ways on the wire, no RST.
"""

from __future__ import annotations

import random
import time

import pytest

from bmv2_env.peers import run_in
from tests.support.e2e_helpers import (MIB, WireCapture, Worker, assert_fins_no_rst,
                                       host_lib_stack, json_result, p4tas_listener, recv_until_eof,
                                       sha, stall_report, stats)
from tests.support.stack import Stack

PORT = 7401
SMALL_MTU = 1000
REASSEMBLY_WAIT_S = 40.0   # the runtime's reassembly timeout (30 s, Linux's) and a margin

# A Linux client that fragments: IP_PMTUDISC_OMIT (5) on its socket; sends `size` seeded
# bytes, half-closes, waits for p4tas's FIN; prints one JSON object.
LINUX_FRAGMENTING_SENDER = """
import hashlib, json, random, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(5).randbytes(size)
s = socket.socket()
s.setsockopt(socket.IPPROTO_IP, 10, 5)  # IP_MTU_DISCOVER, IP_PMTUDISC_OMIT
s.settimeout(60)
s.connect((host, port))
try:
    s.sendall(data)
except TimeoutError:  # Linux's view of the stalled connection, for the failure's report
    import subprocess
    ss = ["ss", "-tino", "dport", "=", str(port)]
    sys.stderr.write(subprocess.run(ss, capture_output=True, text=True).stdout)
    raise
s.shutdown(socket.SHUT_WR)
eof = s.recv(10) == b""
print(json.dumps({"sha": hashlib.sha256(data).hexdigest(), "eof": eof}), flush=True)
"""


def stats_once(stack: Stack, done, timeout: float) -> dict:
    """The runtime's counters once `done(counters)` holds (or as they are at `timeout`)."""
    deadline = time.monotonic() + timeout
    counters = stats(stack)
    while not done(counters) and time.monotonic() < deadline:
        time.sleep(0.5)
        counters = stats(stack)
    return counters


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # Fragments reach the slow path one PacketIn each: above the default --punt-rate, a
    # sender's burst of them would be cut by the meter (counted as PUNT_LIMITED).
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5", "--punt-rate", "20000"])


@pytest.fixture
def small_mtu(stack: Stack):
    """The peer's link at SMALL_MTU, its route to p4tas at 1500; restored afterwards."""
    peer = stack.peer

    def ip(*args: str) -> None:
        done = run_in(peer, ["ip", *args], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr

    ip("link", "set", "dev", peer.ifname, "mtu", str(SMALL_MTU))
    ip("route", "replace", f"{peer.local_ip}/32", "dev", peer.ifname, "mtu", "1500")
    try:
        yield
    finally:
        run_in(peer, ["ip", "route", "del", f"{peer.local_ip}/32"], capture_output=True)
        ip("link", "set", "dev", peer.ifname, "mtu", "1500")


def test_fragmented_segments_are_reassembled(stack: Stack, small_mtu) -> None:
    size = 2 * MIB
    data = random.Random(5).randbytes(size)
    before = stats(stack)
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT)

        def receive() -> str:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(60)
                return sha(recv_until_eof(conn))

        worker = Worker(receive)
        worker.start()
        sender = stack.linux(LINUX_FRAGMENTING_SENDER, stack.peer.local_ip, str(PORT),
                             str(size))
        try:
            result = json_result(sender, timeout=120)
        except AssertionError as exc:
            pytest.fail(f"{exc}\n{stall_report(stack, PORT, wire, sender)}")
        assert worker.result(60) == sha(data) == result["sha"]
        assert result["eof"] is True
        seen = wire.stop()
    assert_fins_no_rst(seen)
    after = stats(stack)
    reassembled = after.get("ipfrag_reassembled", 0) - before.get("ipfrag_reassembled", 0)
    assert reassembled >= size // 1448 // 2, after   # most segments came in fragments
    if after["ipfrag_in_progress"]:
        # A fragment lost on the way (the switch under load drops some) leaves its partners
        # waiting out the 30 s reassembly timeout (the sender resent the segment whole or in
        # new fragments): what must hold is that they are then dropped, not kept for ever.
        after = stats_once(stack, lambda s: s["ipfrag_in_progress"] == 0, REASSEMBLY_WAIT_S)
        assert after["ipfrag_timeouts"] > before.get("ipfrag_timeouts", 0), after
    assert after["ipfrag_in_progress"] == 0 and after["ipfrag_held_bytes"] == 0, after
    assert not any(after.get(f"ipfrag_{cause}", 0) for cause in (
        "overlaps", "malformed", "too_big", "over_datagram_limit", "over_byte_limit")), after

