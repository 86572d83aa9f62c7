"""End to end: half-close (shutdown(SHUT_WR)) in both directions against the Linux stack.

After our FIN the peer may keep sending as long as it likes: every byte reaches the
application (SHA-256), the peer's ACK of our FIN moves the connection on (FIN_WAIT_2), and
the exchange ends with a FIN each way and no RST on the wire. The rings live as long as the
application holds the connection, whatever TIME_WAIT does meanwhile.
"""

from __future__ import annotations

import random
import time

import pytest

import host_lib
from tests.support.e2e_helpers import (MIB, PORT, WireCapture, accept_one, assert_fins_no_rst,
                               expect_line, host_lib_stack, json_result, p4tas_listener,
                               recv_until_eof, sha, stall_report, stats)
from tests.support.stack import Stack

ANSWER = 2 * MIB
REQUEST = 100
TIME_WAIT_S = 0.5

# Linux server: reads the request to EOF (our FIN), answers ANSWER seeded bytes, closes.
LINUX_ANSWERING_SERVER = """
import hashlib, json, random, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
""" + accept_one(60) + """request = bytearray()
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    request += chunk
answer = random.Random(5).randbytes(size)
conn.sendall(answer)
conn.close()
print(json.dumps({"request": hashlib.sha256(request).hexdigest(), "bytes": len(request)}),
      flush=True)
"""

# Linux client: connects, reads what the p4tas server sends until its FIN, then sends ANSWER
# seeded bytes and closes; prints what it read.
LINUX_LATE_SENDER = """
import hashlib, json, random, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
got = bytearray()
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
s.sendall(random.Random(6).randbytes(size))
s.close()
print(json.dumps({"got": hashlib.sha256(got).hexdigest(), "bytes": len(got)}), flush=True)
"""


# Linux client: sends a seeded request, half-closes (SHUT_WR), reads the answer to EOF.
LINUX_HALF_CLOSING_CLIENT = """
import hashlib, json, random, socket, sys
host, port, request_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
request = random.Random(3).randbytes(request_len)
s = socket.create_connection((host, port), timeout=60)
s.sendall(request)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    chunk = s.recv(1 << 20)
    if not chunk:
        break
    got += chunk
s.close()
print(json.dumps({"got": hashlib.sha256(got).hexdigest(), "bytes": len(got)}), flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", str(TIME_WAIT_S)])


def test_p4tas_client_half_closes_and_reads_the_whole_answer(stack: Stack) -> None:
    port = 7301
    request = random.Random(1).randbytes(REQUEST)
    server = stack.linux(LINUX_ANSWERING_SERVER, stack.peer.peer_ip, str(port), str(ANSWER))
    expect_line(server, "listening")
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(request)
        s.shutdown(host_lib.SHUT_WR)
        try:
            answer = recv_until_eof(s)
        except TimeoutError as exc:
            pytest.fail(f"{exc}\n{stall_report(stack, port, wire, server)}")
        # TIME_WAIT passes while the application still holds the socket: nothing is lost.
        time.sleep(TIME_WAIT_S * 2)
        assert s.recv(1) == b""
    report = json_result(server)
    seen = wire.stop()
    assert report == {"request": sha(request), "bytes": REQUEST}
    assert len(answer) == ANSWER and sha(answer) == sha(random.Random(5).randbytes(ANSWER))
    assert_fins_no_rst(seen)


def test_p4tas_server_half_closes_first_then_reads(stack: Stack) -> None:
    greeting = random.Random(2).randbytes(3000)
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT)
        client = stack.linux(LINUX_LATE_SENDER, stack.peer.local_ip, str(PORT), str(ANSWER))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            conn.sendall(greeting)
            conn.shutdown(host_lib.SHUT_WR)
            try:
                got = recv_until_eof(conn)
            except TimeoutError as exc:
                pytest.fail(f"{exc}\n{stall_report(stack, PORT, wire, client)}")
        report = json_result(client)
        seen = wire.stop()
    assert report == {"got": sha(greeting), "bytes": len(greeting)}
    assert len(got) == ANSWER and sha(got) == sha(random.Random(6).randbytes(ANSWER))
    assert_fins_no_rst(seen)


def test_linux_client_half_closes_and_p4tas_answers(stack: Stack) -> None:
    """The other direction: the Linux peer half-closes, p4tas answers 2 MiB and closes."""
    request = random.Random(3).randbytes(REQUEST)
    answer = random.Random(4).randbytes(ANSWER)
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT)
        client = stack.linux(LINUX_HALF_CLOSING_CLIENT, stack.peer.local_ip, str(PORT),
                             str(REQUEST))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            try:
                assert recv_until_eof(conn) == request
                conn.sendall(answer)
            except TimeoutError as exc:
                pytest.fail(f"{exc}\n{stall_report(stack, PORT, wire, client)}")
        report = json_result(client)
        seen = wire.stop()
    assert report == {"got": sha(answer), "bytes": ANSWER}
    assert_fins_no_rst(seen)


def test_no_state_is_left_behind(stack: Stack) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        current = stats(stack)
        if current["connections"] == 0 and current["flows_in_use"] == 0:
            break
        time.sleep(0.1)
    assert current["connections"] == 0 and current["flows_in_use"] == 0, current
