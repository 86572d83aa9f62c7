"""End to end: how p4tas connections end, checked against a real Linux peer and on the wire.

- An application that sends, closes and exits at once (or exits without closing) does not
  lose its data: the connection lives on as an orphan until every byte is acknowledged and
  FIN is exchanged (never an RST).
- An orphan that makes no progress (its peer never reads) is reset after --orphan-timeout.
- close() with unread received data resets the connection (RFC 2525 2.17), and so does
  close() after SO_LINGER with a zero timeout.
Every byte is checked by SHA-256; FIN and RST are counted on the peer's veth (WireCapture).
"""

from __future__ import annotations

import os
import random
import socket as std_socket
import struct
import subprocess
import sys
import time

import pytest

import host_lib
from tests.support.e2e_helpers import (CONTROL_SOCKET_ENV, MIB, PORT, WireCapture, accept_one,
                               assert_fins_no_rst,
                               host_lib_stack, json_result, linux_sink, p4tas_listener,
                               send_and_close, settled_stats, sink_got, stats)
from tests.support.stack import REPO, Stack

ORPHAN_TIMEOUT_S = 4.0
GIVE_UP_S = 3.0   # a silent peer is reset after this; one that answers probes never is
RUNTIME_ARGS = ["--time-wait", "0.5", "--orphan-timeout", str(ORPHAN_TIMEOUT_S),
                "--give-up", str(GIVE_UP_S)]

# A p4tas application in its own process: connects, sends `size` seeded bytes, then
# `close`s and exits, or exits without closing (`exit`), or (`fill`) sends without blocking
# only what fits, closes and exits. Prints the SHA-256 of what it handed to p4tas.
P4TAS_SENDER = """
import hashlib, random, sys
import host_lib
host, port, size, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
data = random.Random(7).randbytes(size)
s = host_lib.socket()
s.settimeout(60)
s.connect((host, port))
if mode == "fill":
    s.setblocking(False)
    sent = 0
    try:
        while sent < size:
            sent += s.send(data[sent:sent + 65536])
    except BlockingIOError:
        pass
    data = data[:sent]
else:
    s.sendall(data)
if mode in ("close", "fill"):
    s.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""

# A Linux client: connects, sends `size` bytes, then reads: prints "eof", "reset" or "data".
LINUX_SEND_THEN_READ = """
import socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=30)
s.sendall(b"q" * size)
try:
    print("eof" if s.recv(65536) == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, RUNTIME_ARGS)


@pytest.fixture(autouse=True)
def no_leaks(stack: Stack):
    before = settled_stats(stack)
    yield
    if before["connections"] == 0 and before["flows_in_use"] == 0:
        after = settled_stats(stack, timeout=ORPHAN_TIMEOUT_S + 10)
        assert after["connections"] == 0 and after["flows_in_use"] == 0, after


def run_sender(stack: Stack, port: int, size: int, mode: str) -> tuple[int, str]:
    env = dict(os.environ, **{CONTROL_SOCKET_ENV: str(stack.socket_path)})
    done = subprocess.run([sys.executable, "-c", P4TAS_SENDER, stack.peer.peer_ip, str(port),
                           str(size), mode], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    count, digest = done.stdout.split()
    return int(count), digest


@pytest.mark.parametrize("mode,size", [("close", 16 * MIB), ("exit", 2 * MIB)])
def test_data_outlives_the_application(stack: Stack, mode: str, size: int) -> None:
    """sendall(); [close();] exit(): every byte arrives, then FIN, never RST."""
    port = 7101 if mode == "close" else 7102
    sink = linux_sink(stack, port)
    wire = WireCapture(stack, port)
    count, digest = run_sender(stack, port, size, mode)
    result = json_result(sink, timeout=120)
    seen = wire.stop()
    assert result == {"bytes": count, "sha": digest, "error": None}
    assert count == size
    assert_fins_no_rst(seen)


def test_an_orphan_that_makes_no_progress_is_reset(stack: Stack) -> None:
    """The peer reads nothing for longer than the orphan timeout: the orphan is reset."""
    port = 7103
    before = stats(stack).get("orphans_reset", 0)
    sink = linux_sink(stack, port, delay=ORPHAN_TIMEOUT_S * 3)
    wire = WireCapture(stack, port)
    count, _ = run_sender(stack, port, 64 * MIB, "fill")
    assert count > 0
    result = json_result(sink, timeout=60)
    seen = wire.stop()
    assert result["error"] == "ConnectionResetError", result
    assert seen["from_p4tas"].get("RST"), seen
    assert stats(stack).get("orphans_reset", 0) == before + 1


def test_close_with_unread_data_resets(stack: Stack) -> None:
    """RFC 2525 2.17: closing with received data unread tells the peer with an RST."""
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT)
        client = stack.linux(LINUX_SEND_THEN_READ, stack.peer.local_ip, str(PORT), "1000")
        conn, _ = listener.accept()
        deadline = time.monotonic() + 10
        while conn.recv(1, std_socket.MSG_PEEK) == b"" and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the data is there, read none of it
        conn.close()
        out, err = client.communicate(timeout=30)
        seen = wire.stop()
    assert out.strip() == "reset", (out, err)
    assert seen["from_p4tas"].get("RST") and not seen["from_p4tas"].get("FIN"), seen


def test_so_linger_zero_resets(stack: Stack) -> None:
    port = 7104
    sink = linux_sink(stack, port)
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(b"x" * 100)
        s.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_LINGER, struct.pack("ii", 1, 0))
        time.sleep(0.5)  # the 100 bytes are acknowledged
    result = json_result(sink, timeout=30)
    seen = wire.stop()
    assert result["error"] == "ConnectionResetError", result
    assert seen["from_p4tas"].get("RST") and not seen["from_p4tas"].get("FIN"), seen


def test_a_paused_reader_that_answers_probes_is_never_given_up(stack: Stack) -> None:
    """RFC 1122 4.2.2.17: while the peer's window stays closed we probe it, and as long as it
    answers the connection lives, however long past --give-up the pause lasts."""
    port = 7106
    data = random.Random(11).randbytes(2 * MIB)
    reader = linux_sink(stack, port, delay=GIVE_UP_S * 3, rcvbuf=64 * 1024)
    wire = WireCapture(stack, port)
    send_and_close(stack, port, data)
    assert json_result(reader, timeout=90) == sink_got(data)
    assert_fins_no_rst(wire.stop())


def test_graceful_close_is_a_fin_both_ways(stack: Stack) -> None:
    """The ordinary case stays ordinary: close() after the peer read everything is a FIN."""
    port = 7105
    data = random.Random(3).randbytes(300_000)
    sink = linux_sink(stack, port)
    wire = WireCapture(stack, port)
    send_and_close(stack, port, data)
    assert json_result(sink, timeout=60) == sink_got(data)
    assert_fins_no_rst(wire.stop())


# A Linux server that reads to EOF (our FIN, which it acknowledges) and then neither closes nor
# sends for `hold` seconds: the p4tas side sits in FIN_WAIT_2. With `answer`, it then sends
# that many bytes and closes; prints "eof <bytes read>" and, after the hold, what happened.
LINUX_READ_THEN_HOLD = """
import socket, sys, time
host, port, hold, answer = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
""" + accept_one(30) + """total = 0
while chunk := conn.recv(65536):
    total += len(chunk)
print("eof", total, flush=True)
time.sleep(hold)
try:
    if answer:
        conn.sendall(bytes(i % 251 for i in range(answer)))
    conn.close()
    print("closed", flush=True)
except OSError as exc:
    print(type(exc).__name__, flush=True)
"""


def test_a_closed_connection_stuck_in_fin_wait_2_is_released(stack: Stack) -> None:
    """The peer acknowledges our FIN but never sends its own: once the application closed,
    the connection (an orphan in FIN_WAIT_2) ends after --orphan-timeout, as Linux ends one
    after tcp_fin_timeout, and everything it held is freed."""
    port = 7107
    before = stats(stack)
    server = stack.linux(LINUX_READ_THEN_HOLD, stack.peer.peer_ip, str(port),
                         str(ORPHAN_TIMEOUT_S * 4), "0")
    assert server.stdout.readline().strip() == "listening"
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(b"f" * 5000)
    assert server.stdout.readline().split() == ["eof", "5000"]
    time.sleep(1.0)
    held = stats(stack)
    assert held["connections"] == before["connections"] + 1   # FIN_WAIT_2, orphaned
    after = settled_stats(stack, timeout=ORPHAN_TIMEOUT_S + 5)
    assert after["connections"] == 0 and after["flows_in_use"] == 0, after
    assert after["local_ports_in_use"] == 0 and after["orphans_live"] == 0, after
    assert after.get("orphans_reset", 0) == before.get("orphans_reset", 0) + 1
    seen = wire.stop()
    server.kill()
    server.communicate()
    assert seen["from_p4tas"].get("FIN") and seen["from_p4tas"].get("RST"), seen
    assert not seen["to_p4tas"].get("FIN"), seen


def test_a_half_closed_connection_never_times_out(stack: Stack) -> None:
    """shutdown(SHUT_WR) with the application still reading: FIN_WAIT_2 lasts as long as the
    peer likes (no orphan timeout), and its late data and FIN arrive intact."""
    port = 7108
    answer = 200_000
    server = stack.linux(LINUX_READ_THEN_HOLD, stack.peer.peer_ip, str(port),
                         str(ORPHAN_TIMEOUT_S * 2), str(answer))
    assert server.stdout.readline().strip() == "listening"
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(ORPHAN_TIMEOUT_S * 2 + 30)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(b"h" * 5000)
        s.shutdown(host_lib.SHUT_WR)
        got = bytearray()
        while chunk := s.recv(65536):
            got += chunk
    out, err = server.communicate(timeout=30)
    assert out.split()[-1] == "closed", (out, err)
    assert bytes(got) == bytes(i % 251 for i in range(answer))
    assert_fins_no_rst(wire.stop())
