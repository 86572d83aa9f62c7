"""End to end: TCP keepalive (RFC 1122 4.2.3.6) against a real Linux peer, seen on the wire.

- A p4tas connection with SO_KEEPALIVE and short TCP_KEEPIDLE/TCP_KEEPINTVL probes its idle
  Linux peer (one byte below snd_una), Linux answers every probe, and the connection lives on:
  it still moves data (SHA-256) and closes with FIN.
- When the peer goes silent (an nftables rule drops everything in its namespace), p4tas sends
  TCP_KEEPCNT probes, then an RST, and the application gets ETIMEDOUT.
- The reverse: a Linux peer with SO_KEEPALIVE probes its idle p4tas connection, p4tas (the
  fast path) answers, and the connection survives Linux's probe count.
"""

from __future__ import annotations

import errno
import json
import socket as std_socket
import subprocess
import sys
import time

import pytest

import host_lib
from bmv2_env.impairments import clear_loss, nft_available, set_silence
from bmv2_env.peers import popen_in
from tests.support.e2e_helpers import (CAPTURE_LOOP, CAPTURE_SETUP, LINUX_ECHO_SERVER, Worker,
                                       accept_one, expect_line, flows_json, host_lib_stack,
                                       json_result, p4tas_listener, recv_exactly, sha, stats,
                                       tell)
from tests.support.stack import Stack

PORT_ANSWERED, PORT_SILENT, PORT_REVERSE = 7311, 7312, 7313
IDLE_S, INTERVAL_S, COUNT = 1, 1, 3
CHUNK = 256 * 1024

# Every TCP segment of `port` on the peer's veth with its time: a JSON list of
# [t, side, flags, seq, ack, payload length].
SEGMENT_LOG = CAPTURE_SETUP + """
log = []
def seen(side, ip, ihl):
    total = struct.unpack("!H", ip[2:4])[0]
    seq, ack = struct.unpack("!II", ip[ihl + 4:ihl + 12])
    doff = (ip[ihl + 12] >> 4) * 4
    log.append([time.monotonic(), side, ip[ihl + 13], seq, ack, total - ihl - doff])
def report():
    return log
""" + CAPTURE_LOOP
OUT, IN = "from_p4tas", "to_p4tas"

SYN, RST, FIN = 0x02, 0x04, 0x01


class SegmentLog:
    """Every segment of one port on the peer's veth, with its time."""

    def __init__(self, stack: Stack, port: int) -> None:
        self.proc = popen_in(stack.peer, [sys.executable, "-c", SEGMENT_LOG, stack.peer.ifname,
                                          stack.peer.local_ip, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        expect_line(self.proc, "capturing")

    def stop(self, settle: float = 0.5) -> list[list]:
        time.sleep(settle)
        tell(self.proc, "stop")
        return json_result(self.proc, timeout=20)


def probes(log: list[list], side: str) -> list[list]:
    """Keepalive probes sent by `side`: at most one byte, one below the highest sequence that
    side had reached (snd_una - 1 of an idle connection)."""
    highest, found = None, []
    for seg in log:
        t, who, flags, seq, ack, length = seg
        if who != side:
            continue
        end = (seq + length + (1 if flags & (SYN | FIN) else 0)) % (1 << 32)
        if highest is not None and length <= 1 and not flags & (SYN | FIN | RST) \
                and seq == (highest - 1) % (1 << 32):
            found.append(seg)
            continue
        if highest is None or 0 < (end - highest) % (1 << 32) < 1 << 31:
            highest = end
    return found


def answered(log: list[list], probe: list, within: float = 0.5) -> bool:
    """Whether the other side sent a segment within `within` seconds after the probe."""
    other = IN if probe[1] == OUT else OUT
    return any(seg[1] == other and 0 <= seg[0] - probe[0] <= within for seg in log)


def gaps(segments: list[list]) -> list[float]:
    return [b[0] - a[0] for a, b in zip(segments, segments[1:])]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5"])


def keepalive_socket(idle: int = IDLE_S, interval: int = INTERVAL_S, count: int = COUNT):
    s = host_lib.socket()
    s.setsockopt(std_socket.SOL_SOCKET, std_socket.SO_KEEPALIVE, 1)
    s.setsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_KEEPIDLE, idle)
    s.setsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_KEEPINTVL, interval)
    s.setsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_KEEPCNT, count)
    s.settimeout(30)
    return s


def echo_round(s, seed: int) -> None:
    data = bytes((i * seed + 11) % 251 for i in range(CHUNK))
    s.sendall(data)
    assert sha(recv_exactly(s, len(data))) == sha(data)


def test_idle_peer_is_probed_answers_and_the_connection_lives_on(stack: Stack) -> None:
    server = stack.linux(LINUX_ECHO_SERVER, stack.peer.peer_ip, str(PORT_ANSWERED))
    expect_line(server, "listening")
    wire = SegmentLog(stack, PORT_ANSWERED)
    before = stats(stack).get("keepalive_probes", 0)
    with keepalive_socket() as s:
        assert s.getsockopt(std_socket.IPPROTO_TCP, std_socket.TCP_KEEPIDLE) == IDLE_S
        s.connect((stack.peer.peer_ip, PORT_ANSWERED))
        echo_round(s, 7)
        time.sleep(2.5 * IDLE_S)        # idle: a probe a second, each answered
        row, = [r for r in flows_json(stack, "--port", str(PORT_ANSWERED))]
        assert (row["keepalive_idle_s"], row["keepalive_interval_s"], row["keepalive_count"]) \
            == (IDLE_S, INTERVAL_S, COUNT), row
        assert row["keepalive_probes"] <= 1 and row["keepalive_heard_s"] <= 1.5 * IDLE_S, row
        time.sleep(2 * IDLE_S)
        echo_round(s, 13)
        s.shutdown(host_lib.SHUT_WR)
        assert s.recv(1) == b""
    assert finish_line(server) == f"echoed {2 * CHUNK}"
    log = wire.stop()
    ours = probes(log, OUT)
    assert 3 <= len(ours) <= 6, ours
    assert all(answered(log, p) for p in ours), (ours, log[-20:])
    # Answered probes come one idle time apart (Linux: the idle time restarts with the answer).
    assert all(0.7 * IDLE_S <= g <= 1.6 * IDLE_S for g in gaps(ours)), gaps(ours)
    assert not any(seg[2] & RST for seg in log)
    assert any(seg[2] & FIN for seg in log if seg[1] == OUT)
    assert any(seg[2] & FIN for seg in log if seg[1] == IN)
    assert stats(stack).get("keepalive_probes", 0) - before >= len(ours)


def finish_line(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (out, err)
    return out.strip().splitlines()[-1]


# A Linux server that accepts one connection, echoes one line, then holds it open in silence.
LINUX_HOLD = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
""" + accept_one(20) + """conn.sendall(conn.recv(100))
time.sleep(30)
"""


@pytest.mark.skipif(not nft_available(), reason="a silent peer needs nft (apt-get install nftables)")
def test_silent_peer_is_reset_after_keepcnt_probes_with_etimedout(stack: Stack) -> None:
    server = stack.linux(LINUX_HOLD, stack.peer.peer_ip, str(PORT_SILENT))
    expect_line(server, "listening")
    wire = SegmentLog(stack, PORT_SILENT)
    try:
        with keepalive_socket() as s:
            s.connect((stack.peer.peer_ip, PORT_SILENT))
            s.sendall(b"hello")
            assert recv_exactly(s, 5) == b"hello"
            set_silence(stack.peer)
            started = time.monotonic()
            s.settimeout(20)
            with pytest.raises(OSError) as caught:
                s.recv(100)
            waited = time.monotonic() - started
        assert caught.value.errno == errno.ETIMEDOUT, caught.value
        expected = IDLE_S + COUNT * INTERVAL_S
        assert expected - 0.5 <= waited <= expected + 2.5, waited
        log = wire.stop()
    finally:
        clear_loss(stack.peer)
        server.kill()
        server.communicate()
    ours = probes(log, OUT)
    assert len(ours) == COUNT, ours
    assert all(0.7 * INTERVAL_S <= g <= 1.6 * INTERVAL_S for g in gaps(ours)), gaps(ours)
    resets = [seg for seg in log if seg[1] == OUT and seg[2] & RST]
    assert resets and resets[0][0] > ours[-1][0], log[-10:]
    assert stats(stack).get("keepalive_timeouts", 0) >= 1


# A Linux client with keepalive (1 s, 1 s, 3 probes): echo round, idle 5 s (beyond what three
# unanswered probes allow), another round, then a clean close; prints one JSON object.
LINUX_KEEPALIVE_CLIENT = """
import hashlib, json, socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
s.settimeout(20)
s.connect((host, port))
def round_trip(data):
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        got += s.recv(65536)
    return hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
ok = [round_trip(b"a" * 100000)]
time.sleep(5)
ok.append(round_trip(b"b" * 100000))
s.shutdown(socket.SHUT_WR)
eof = s.recv(10) == b""
print(json.dumps({"ok": ok, "eof": eof}), flush=True)
"""


def test_linux_keepalive_probes_are_answered(stack: Stack) -> None:
    listener = p4tas_listener(stack, PORT_REVERSE)
    wire = SegmentLog(stack, PORT_REVERSE)

    def echo() -> int:
        conn, _ = listener.accept()
        total = 0
        with conn:
            conn.settimeout(30)
            while data := conn.recv(65536):
                conn.sendall(data)
                total += len(data)
        return total

    worker = Worker(echo)
    worker.start()
    client = stack.linux(LINUX_KEEPALIVE_CLIENT, stack.peer.local_ip, str(PORT_REVERSE))
    try:
        assert json.loads(finish_line(client)) == {"ok": [True, True], "eof": True}
        assert worker.result(30) == 200000
    finally:
        listener.close()
    log = wire.stop()
    theirs = probes(log, IN)
    assert len(theirs) >= 3, theirs
    assert all(answered(log, p) for p in theirs), theirs
    assert not any(seg[2] & RST for seg in log)
