"""End to end: payload both ways between applications on host_lib sockets and the real Linux
TCP stack, through bmv2 (receive and transmit fast paths), the DMA bridge and the rings.

Every stream is checked by SHA-256 on both ends, and after every test GetStats must settle to
no connections and no flow ids in use (`no_leaks`).

Frames that bmv2's queues drop under bursts are recovered like any loss (fast retransmit in
the NIC, retransmission timeouts in the runtime); tests/e2e/test_e2e_loss.py adds real loss.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import selectors
import signal
import socket as std_socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import host_lib
from tests.support.e2e_helpers import (
    DRAIN, LINUX_CLIENT_ECHO, LINUX_ECHO_SERVER, LINUX_PINGPONG_CLIENTS, LINUX_STREAM_CLIENT, MIB,
    PORT, Worker, expect_line, finish, json_result, linux_echo_server, linux_with_stdin,
    p4tas_echo, p4tas_listener, recv_exactly, recv_until_eof, send_messages, settled_stats, sha,
    tell, echo_once, stats, accept_one, host_lib_stack, mapped_segments)
from bmv2_env.portmap import PortMap
from tests.support.stack import PREFIX, REPO, Stack

RUNTIME_ARGS = ["--time-wait", "0.5"]


# ================================================================================== fixtures

@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, RUNTIME_ARGS)


@pytest.fixture(autouse=True)
def no_leaks(stack: Stack):
    """After each test: every connection gone (TIME_WAIT is 0.5 s), no flow id held. (Not
    checked after a test that started with leftovers of a failed one.)"""
    before = settled_stats(stack)
    yield
    if before["connections"] == 0 and before["flows_in_use"] == 0:
        after = settled_stats(stack)
        assert after["connections"] == 0 and after["flows_in_use"] == 0, after


# ============================================================================ original tests

@pytest.mark.parametrize("size", [1, 1448, 100_000])
def test_linux_client_to_p4tas_echo_server(stack: Stack, size: int) -> None:
    with host_lib.socket() as listener:
        listener.settimeout(20)
        listener.bind((stack.peer.local_ip, PORT))
        listener.listen(8)
        result: dict[str, int] = {}
        server = threading.Thread(target=lambda: result.update(n=echo_once(listener)))
        server.start()
        client = stack.linux(LINUX_CLIENT_ECHO, stack.peer.local_ip, str(PORT), str(size))
        out, err = client.communicate(timeout=60)
        server.join(timeout=30)
        assert out.split() == [str(size), "True"], (out, err)
        assert result.get("n") == size


def _cpu_link_packets() -> tuple[int, int]:
    """(rx, tx) packets of the runtime's end of the CPU port's veth."""
    stats = Path(f"/sys/class/net/{PortMap(1, PREFIX, cpu_interface=True).cpu_link.peer_iface}"
                 "/statistics")
    return int((stats / "rx_packets").read_text()), int((stats / "tx_packets").read_text())


def test_packet_ins_and_outs_travel_the_cpu_interface(stack: Stack) -> None:
    """The CPU port is a veth here: a connection's SYN, handshake ACK and FIN reach the
    runtime on it, and its SYN-ACK and FIN leave on it (no P4Runtime stream message)."""
    assert "--cpu-interface" in Path(f"/proc/{stack.runtime.pid}/cmdline").read_text()
    rx, tx = _cpu_link_packets()
    test_linux_client_to_p4tas_echo_server(stack, 1)
    rx2, tx2 = _cpu_link_packets()
    assert rx2 - rx >= 3 and tx2 - tx >= 2, (rx2 - rx, tx2 - tx)


def test_p4tas_client_to_linux_echo_server(stack: Stack) -> None:
    server = stack.linux(LINUX_ECHO_SERVER, stack.peer.peer_ip, "7002")
    assert server.stdout.readline().strip() == "listening"
    data = os.urandom(200_000)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, 7002))
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(1)))
        sender.start()
        got = recv_until_eof(s, 65536)
        sender.join(timeout=30)
    out, err = server.communicate(timeout=30)
    assert out.split() == ["echoed", str(len(data))], (out, err)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


# ==================================================================== bulk and message sizes

# Message size -> total bytes moved each way; 1 MiB messages move 10 MiB.
VOLUME = {1: 1024, 100: 20_000, 1448: 1448 * 100, 65536: MIB, MIB: 10 * MIB}




@pytest.mark.parametrize("msg", list(VOLUME))
def test_linux_client_p4tas_echo_server_message_sizes(stack: Stack, msg: int) -> None:
    total = VOLUME[msg]
    kicks_before = stats(stack).get("kicks", 0)
    with p4tas_listener(stack) as listener:
        server = Worker(lambda: p4tas_echo(listener.accept()[0], min(msg, MIB)))
        server.start()
        client = stack.linux(LINUX_STREAM_CLIENT, stack.peer.local_ip, str(PORT), str(total),
                             str(msg), str(msg))
        report = json_result(client, timeout=90)
        echoed, echoed_sha = server.result(timeout=30)
    assert report["errors"] == [] and report["got"] == total, report
    assert echoed == total
    # Linux -> p4tas: what Linux sent is what the p4tas server received.
    assert echoed_sha == report["sent_sha"]
    # p4tas -> Linux: what the p4tas server sent (the same bytes) is what Linux received.
    assert report["got_sha"] == report["sent_sha"]
    kicks = stats(stack).get("kicks", 0) - kicks_before
    print(f"echo of {total} bytes in {msg}-byte messages: {kicks} doorbells "
          f"({kicks / (2 * total / MIB):.0f} per MiB moved)")


@pytest.mark.parametrize("msg", list(VOLUME))
def test_p4tas_client_linux_echo_server_message_sizes(stack: Stack, msg: int) -> None:
    total = VOLUME[msg]
    data = os.urandom(total)
    server = linux_echo_server(stack, 7002)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, 7002))
        sender = Worker(send_messages, s, data, msg)
        sender.start()
        got = recv_exactly(s, total, bufsize=min(msg, MIB))
        sender.result(timeout=30)
        # SHUT_WR only once the echo is all in: see the module notes (FIN while receiving).
        s.shutdown(host_lib.SHUT_WR)
        assert s.recv(1) == b""
        port = s.getsockname()[1]
    report = json_result(server)
    echoed, echoed_sha, error = report[str(port)]
    assert error is None and echoed == total
    assert echoed_sha == sha(data)  # p4tas -> Linux
    assert sha(got) == sha(data)  # Linux -> p4tas


# ============================================================== concurrency, selectors, asyncio

CONCURRENT = 50
PINGPONG_ROUNDS = 4
PINGPONG_MSG = 32 * 1024  # 128 KiB each way per connection, 6.25 MiB in all
GREETING = b"+"  # p4tas servers speak first (module notes)


class _EchoState:
    """One connection of the selectors echo server: what is still to be sent back."""

    def __init__(self, conn, peer) -> None:
        self.conn, self.peer = conn, peer
        self.pending = bytearray(GREETING)
        self.digest = hashlib.sha256()
        self.total = 0
        self.eof = False

    def service(self) -> bool:
        """Move what can move without blocking; True once finished (EOF and all echoed)."""
        while True:
            if self.pending:
                try:
                    sent = self.conn.send(self.pending)
                except BlockingIOError:
                    return False  # readable again once TX space frees
                del self.pending[:sent]
                continue
            if self.eof:
                return True
            try:
                data = self.conn.recv(65536)
            except BlockingIOError:
                return False
            if not data:
                self.eof = True
                continue
            self.digest.update(data)
            self.total += len(data)
            self.pending += data


def selectors_echo_server(listener, n: int, timeout: float = 60) -> dict[int, tuple[int, str]]:
    """Single-threaded echo server over non-blocking host_lib sockets and `selectors`; serves
    `n` connections until EOF. Returns peer port -> (bytes echoed, their SHA-256)."""
    done: dict[int, tuple[int, str]] = {}
    deadline = time.monotonic() + timeout
    listener.setblocking(False)
    with selectors.DefaultSelector() as sel:
        sel.register(listener, selectors.EVENT_READ, None)
        while len(done) < n:
            assert time.monotonic() < deadline, f"selectors server: {len(done)}/{n} done"
            for key, _ in sel.select(timeout=0.5):
                if key.data is None:
                    while True:
                        try:
                            conn, peer = listener.accept()
                        except BlockingIOError:
                            break
                        conn.setblocking(False)
                        state = _EchoState(conn, peer)
                        sel.register(conn, selectors.EVENT_READ, state)
                        if state.service():  # readiness is level-triggered, but be eager
                            raise AssertionError("EOF before any select")
                    continue
                state = key.data
                if state.service():
                    sel.unregister(state.conn)
                    state.conn.close()
                    done[state.peer[1]] = (state.total, state.digest.hexdigest())
        sel.unregister(listener)
    return done


def test_50_concurrent_linux_clients_selectors_p4tas_server(stack: Stack) -> None:
    with p4tas_listener(stack, backlog=CONCURRENT) as listener:
        server = Worker(selectors_echo_server, listener, CONCURRENT)
        server.start()
        clients = stack.linux(LINUX_PINGPONG_CLIENTS, stack.peer.local_ip, str(PORT),
                              str(CONCURRENT), str(PINGPONG_ROUNDS), str(PINGPONG_MSG))
        report = json_result(clients, timeout=90)
        served = server.result(timeout=30)
    assert len(report) == CONCURRENT
    failed = {port: r for port, r in report.items() if r[5] is not None or not r[4]}
    assert not failed, failed
    for port, (sent, sent_sha, got, got_sha, _eof, _error) in report.items():
        assert got == sent and got_sha == sent_sha  # p4tas -> Linux
        assert served[int(port)] == (sent, sent_sha)  # Linux -> p4tas


def test_50_concurrent_p4tas_clients_threads_linux_server(stack: Stack) -> None:
    server = linux_echo_server(stack, 7002, CONCURRENT)
    barrier = threading.Barrier(CONCURRENT, timeout=60)

    def client(i: int) -> tuple[int, str, str]:
        data = os.urandom(PINGPONG_ROUNDS * PINGPONG_MSG)
        with host_lib.socket() as s:
            s.settimeout(30)
            s.connect((stack.peer.peer_ip, 7002))
            barrier.wait()  # all 50 connections are open at once
            got = bytearray()
            for r in range(PINGPONG_ROUNDS):
                s.sendall(data[r * PINGPONG_MSG:(r + 1) * PINGPONG_MSG])
                got += recv_exactly(s, PINGPONG_MSG)
            s.shutdown(host_lib.SHUT_WR)
            assert s.recv(1) == b""
            return s.getsockname()[1], sha(data), sha(got)

    workers = [Worker(client, i) for i in range(CONCURRENT)]
    for worker in workers:
        worker.start()
    results = collect(workers, timeout=90)
    report = json_result(server)
    assert len(report) == CONCURRENT
    for port, sent_sha, got_sha in results:
        echoed, echoed_sha, error = report[str(port)]
        assert error is None and echoed == PINGPONG_ROUNDS * PINGPONG_MSG
        assert echoed_sha == sent_sha  # p4tas -> Linux
        assert got_sha == sent_sha  # Linux -> p4tas


def collect(workers: list[Worker], timeout: float = 60) -> list:
    """Every worker's result; on failure the first error that is not a broken barrier (one
    client's error breaks the barrier for all the others)."""
    outcomes = []
    for worker in workers:
        try:
            outcomes.append(worker.result(timeout=timeout))
        except BaseException as exc:  # noqa: BLE001 - sorted below
            outcomes.append(exc)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if errors:
        raise (real or errors)[0]
    return outcomes


def selectors_clients(stack: Stack, port: int, payloads: list[bytes],
                      timeout: float = 60) -> list[tuple[tuple[str, int], bytes]]:
    """Single-threaded clients over non-blocking host_lib sockets and `selectors`: connect
    (EINPROGRESS; writable once connected), send each payload while reading its echo (readable
    and writable until all is sent, readable only after), SHUT_WR once it is all back, then
    wait for EOF. Returns (local address, bytes received) per payload."""
    deadline = time.monotonic() + timeout
    conns = []
    with selectors.DefaultSelector() as sel:
        for payload in payloads:
            s = host_lib.socket()
            s.setblocking(False)
            assert s.connect_ex((stack.peer.peer_ip, port)) == errno.EINPROGRESS
            state = {"sock": s, "out": memoryview(payload), "got": bytearray(),
                     "connected": False, "shut": False, "eof": False, "want": len(payload)}
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, state)
            conns.append(state)
        live = len(conns)
        while live:
            assert time.monotonic() < deadline, [
                (len(c["got"]), c["want"], len(c["out"])) for c in conns]
            for key, _ in sel.select(timeout=0.5):
                c = key.data
                s = c["sock"]
                if not c["connected"]:
                    # The usual idiom: SO_ERROR once ready (it also takes in the runtime's
                    # news; connect_ex alone keeps answering EALREADY: module notes).
                    code = s.getsockopt(std_socket.SOL_SOCKET, std_socket.SO_ERROR)
                    assert code == 0, os.strerror(code)
                    code = s.connect_ex((stack.peer.peer_ip, port))
                    assert code == errno.EISCONN, os.strerror(code)  # ready: connected
                    c["connected"] = True
                while c["out"]:
                    try:
                        sent = s.send(c["out"])
                    except BlockingIOError:
                        break
                    c["out"] = c["out"][sent:]
                    if not c["out"]:  # all sent: readable only, as the kernel's idiom has it
                        sel.modify(s, selectors.EVENT_READ, c)
                while not c["eof"]:
                    try:
                        data = s.recv(MIB)
                    except BlockingIOError:
                        break
                    if not data:
                        c["eof"] = True
                    c["got"] += data
                if not c["shut"] and len(c["got"]) >= c["want"] and not c["out"]:
                    s.shutdown(host_lib.SHUT_WR)
                    c["shut"] = True
                if c["eof"]:
                    c["addr"] = s.getsockname()
                    sel.unregister(s)
                    s.close()
                    live -= 1
    return [(c["addr"], bytes(c["got"])) for c in conns]


SELECTOR_CLIENTS = 4
SELECTOR_BYTES = 128 * 1024


def test_selectors_p4tas_clients_linux_echo_server(stack: Stack) -> None:
    server = linux_echo_server(stack, 7002, SELECTOR_CLIENTS)
    payloads = [os.urandom(SELECTOR_BYTES) for _ in range(SELECTOR_CLIENTS)]
    results = selectors_clients(stack, 7002, payloads)
    report = json_result(server)
    for payload, ((_, port), got) in zip(payloads, results):
        echoed, echoed_sha, error = report[str(port)]
        assert error is None and echoed == len(payload)
        assert echoed_sha == sha(payload)  # p4tas -> Linux
        assert sha(got) == sha(payload)  # Linux -> p4tas


ASYNC_BYTES = MIB


def test_asyncio_open_connection_linux_echo_server(stack: Stack) -> None:
    server = linux_echo_server(stack, 7002)
    data = os.urandom(ASYNC_BYTES)

    async def client() -> tuple[int, bytes]:
        reader, writer = await host_lib.open_connection(stack.peer.peer_ip, 7002)

        async def write() -> None:
            view = memoryview(data)
            for off in range(0, len(data), 65536):
                writer.write(view[off:off + 65536])
                await writer.drain()
        sender = asyncio.ensure_future(write())
        got = await reader.readexactly(len(data))
        await sender
        writer.write_eof()
        assert await reader.read() == b""
        port = writer.get_extra_info("sockname")[1]
        writer.close()
        await writer.wait_closed()
        return port, got

    port, got = asyncio.run(asyncio.wait_for(client(), 60))
    echoed, echoed_sha, error = json_result(server)[str(port)]
    assert error is None and echoed == len(data)
    assert echoed_sha == sha(data)  # p4tas -> Linux
    assert sha(got) == sha(data)  # Linux -> p4tas


# A Linux server for `n` connections: each is read to EOF, answered with the count of bytes
# read and closed at once, so that the reply and the FIN arrive together (often in one
# segment). One JSON object: peer port -> bytes read.
LINUX_COUNT_AND_CLOSE = """
import json, socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3])
srv.listen(n)
print("listening", flush=True)
srv.settimeout(30)
report = {}
def serve(conn, port):
    conn.settimeout(30)
    total = 0
    while chunk := conn.recv(1 << 16):
        total += len(chunk)
    conn.sendall(b"%d\\n" % total)
    conn.close()
    report[port] = total
threads = [threading.Thread(target=serve, args=(conn, peer[1]))
           for conn, peer in (srv.accept() for _ in range(n))]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(60)
print(json.dumps(report), flush=True)
"""
COUNT_CLIENTS = 16


def test_asyncio_clients_read_a_reply_that_comes_with_the_peers_fin(stack: Stack) -> None:
    """Each client sends, half-closes and reads to EOF: the server's count and its FIN come
    together, and read() must return both (it waited for ever when they were taken in one
    pump: 6 of 16 such clients in a benchmark)."""
    server = stack.linux(LINUX_COUNT_AND_CLOSE, stack.peer.peer_ip, "7002", str(COUNT_CLIENTS))
    expect_line(server, "listening")
    payloads = [os.urandom(64 * 1024 + i) for i in range(COUNT_CLIENTS)]

    async def client(payload: bytes) -> tuple[int, bytes]:
        reader, writer = await host_lib.open_connection(stack.peer.peer_ip, 7002)
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), 10)
        port = writer.get_extra_info("sockname")[1]
        writer.close()
        return port, reply

    async def main() -> list[tuple[int, bytes]]:
        return await asyncio.gather(*(client(p) for p in payloads))

    replies = asyncio.run(asyncio.wait_for(main(), 60))
    counts = json_result(server)
    for payload, (port, reply) in zip(payloads, replies):
        assert reply == b"%d\n" % len(payload) and counts[str(port)] == len(payload)


def test_asyncio_start_server_linux_clients(stack: Stack) -> None:
    served: dict[int, tuple[int, str]] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        digest, total = hashlib.sha256(), 0
        writer.write(GREETING)
        while data := await reader.read(65536):
            digest.update(data)
            total += len(data)
            writer.write(data)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        served[writer.get_extra_info("peername")[1]] = (total, digest.hexdigest())

    async def clients(n: int, rounds: int, msg: int) -> dict:
        proc = stack.linux(LINUX_PINGPONG_CLIENTS, stack.peer.local_ip, str(PORT), str(n),
                           str(rounds), str(msg))
        report = await asyncio.to_thread(json_result, proc)
        for _ in range(100):  # each handler finishes right after its client's EOF
            if all(int(port) in served for port in report):
                break
            await asyncio.sleep(0.05)
        return report

    async def main() -> tuple[dict, dict]:
        server = await host_lib.start_server(handle, stack.peer.local_ip, PORT)
        async with server:
            bulk = await clients(1, ASYNC_BYTES // 65536, 65536)  # 1 MiB in 64 KiB messages
            many = await clients(10, PINGPONG_ROUNDS, PINGPONG_MSG)  # ten at once
        return bulk, many

    bulk, many = asyncio.run(asyncio.wait_for(main(), 90))
    assert len(bulk) == 1 and len(many) == 10
    for port, (sent, sent_sha, got, got_sha, eof, error) in {**bulk, **many}.items():
        assert error is None and eof, (port, error)
        assert got == sent and got_sha == sent_sha  # p4tas -> Linux
        assert served[int(port)] == (sent, sent_sha)  # Linux -> p4tas


# ================================================================================ half-close

HALF_FIRST = 8 * 1024  # sent by the other side before it sees our FIN (in flight with it)
HALF_AFTER = 4 * 1024  # sent by the other side after it saw our FIN
HALF_OURS = 256 * 1024  # sent by the side that shuts down first, before its SHUT_WR
# After a p4tas SHUT_WR the peer's data must fit in what Linux sends without new ACKs (its
# initial congestion window, 10 segments): see the module notes.

# Linux server: accepts one connection; a thread reads until EOF; once the first bytes came in,
# sends `first` seeded bytes; after EOF sends `after` more, then closes. One JSON line.
LINUX_HALF_CLOSE_SERVER = DRAIN + """
import hashlib, json, random, socket, sys, threading, time
host, port, first, after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
data = random.Random(5).randbytes(first + after)
""" + accept_one(30) + """got, errors = bytearray(), []
def reader():
    try:
        while chunk := conn.recv(1 << 20):
            got.extend(chunk)
    except OSError as exc:
        errors.append(repr(exc))
thread = threading.Thread(target=reader)
thread.start()
while not got and thread.is_alive():  # the peer's data path is up (module notes)
    time.sleep(0.001)
conn.sendall(data[:first])
thread.join(30)
eof = not thread.is_alive() and not errors
conn.sendall(data[first:])  # the half-open direction still carries data
drain(conn, unsent_only=True)
conn.close()
print(json.dumps({"got": len(got), "got_sha": hashlib.sha256(got).hexdigest(), "eof": eof,
                  "sent_sha": hashlib.sha256(data).hexdigest(), "errors": errors}), flush=True)
"""


def test_half_close_p4tas_shuts_down_first(stack: Stack) -> None:
    """p4tas: send, SHUT_WR while the Linux server is sending; keep reading until its EOF."""
    server = stack.linux(LINUX_HALF_CLOSE_SERVER, stack.peer.peer_ip, "7002", str(HALF_FIRST),
                         str(HALF_AFTER))
    expect_line(server, "listening")
    ours = os.urandom(HALF_OURS)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, 7002))
        s.sendall(ours)
        s.shutdown(host_lib.SHUT_WR)
        with pytest.raises(BrokenPipeError):
            s.send(b"x")  # like Linux: EPIPE after SHUT_WR
        got = recv_until_eof(s)
        assert s.recv(1) == b""  # EOF stays EOF
    report = json_result(server)
    assert report["errors"] == [] and report["eof"], report
    assert report["got"] == HALF_OURS and report["got_sha"] == sha(ours)  # p4tas -> Linux
    assert len(got) == HALF_FIRST + HALF_AFTER and sha(got) == report["sent_sha"]


def test_half_close_linux_shuts_down_first(stack: Stack) -> None:
    """Linux: send, SHUT_WR while p4tas is sending; p4tas sees EOF and keeps sending."""
    theirs_len = HALF_OURS
    data = os.urandom(HALF_FIRST + HALF_AFTER)

    def serve(listener) -> tuple[bytes, bool]:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            conn.sendall(data[:HALF_FIRST])
            got = recv_until_eof(conn)  # the Linux client's SHUT_WR
            assert conn.recv(1) == b""
            conn.sendall(data[HALF_FIRST:])  # the half-open direction still carries data
            return got

    with p4tas_listener(stack) as listener:
        server = Worker(serve, listener)
        server.start()
        client = stack.linux(LINUX_STREAM_CLIENT, stack.peer.local_ip, str(PORT),
                             str(theirs_len), "65536", "3")
        report = json_result(client)
        got = server.result(timeout=30)
    assert report["errors"] == [] and report["got"] == len(data), report
    assert report["got_sha"] == sha(data)  # p4tas -> Linux
    assert len(got) == theirs_len and sha(got) == report["sent_sha"]  # Linux -> p4tas


# ============================================================ peer closes with data in flight

# Linux server: accepts, reads `count` bytes, then closes with the rest unread and SO_LINGER 0
# (an RST, whatever is in flight).
LINUX_READ_THEN_RESET = """
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
""" + accept_one(30) + """left = int(sys.argv[3])
while left > 0:
    chunk = conn.recv(min(left, 65536))
    if not chunk:
        break
    left -= len(chunk)
conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
conn.close()
print("reset", left, flush=True)
"""

# Linux client: "fin": sends `total` seeded bytes and closes at once (its FIN right behind the
# data in flight); "rst": sends what the peer takes within 2 s without ever reading, then
# aborts (SO_LINGER 0: an RST). Prints what it meant to send.
LINUX_SEND_AND_CLOSE = """
import hashlib, random, socket, struct, sys, time
host, port, total, abort = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "rst"
data = random.Random(11).randbytes(total)
s = socket.create_connection((host, port), timeout=30)
if abort:  # never reads: an echo stalls once buffers fill, so send what fits in 2 s
    s.settimeout(2)
    try:
        s.sendall(data)
    except TimeoutError:
        pass
    time.sleep(0.2)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
else:
    s.sendall(data)
s.close()
print("sent", total, hashlib.sha256(data).hexdigest(), flush=True)
"""


def test_linux_resets_while_p4tas_sends(stack: Stack) -> None:
    """The Linux peer aborts while megabytes are on their way: sendall fails, no hang."""
    server = stack.linux(LINUX_READ_THEN_RESET, stack.peer.peer_ip, "7002", str(64 * 1024))
    expect_line(server, "listening")
    with host_lib.socket() as s:
        s.settimeout(20)
        s.connect((stack.peer.peer_ip, 7002))
        start = time.monotonic()
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            s.sendall(os.urandom(8 * MIB))
        assert time.monotonic() - start < 15
        # After the reset has been reported: EOF for recv, EPIPE for send (as on Linux).
        assert s.recv(1) == b""
        with pytest.raises(BrokenPipeError):
            s.send(b"x")
    out, err = finish(server)
    assert out.split()[0] == "reset", (out, err)
    stats_after = settled_stats(stack)
    assert stats_after["connections"] == 0 and stats_after["flows_in_use"] == 0, stats_after


def test_linux_closes_while_sending_to_p4tas(stack: Stack) -> None:
    """Linux sends 1 MiB and closes at once (its FIN right behind the data in flight): p4tas
    reads every byte, then EOF, and closes."""
    with p4tas_listener(stack) as listener:
        client = stack.linux(LINUX_SEND_AND_CLOSE, stack.peer.local_ip, str(PORT), str(MIB),
                             "fin")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(20)
            time.sleep(0.3)  # let the data and the FIN pile up before reading
            got = recv_until_eof(conn)
            assert conn.recv(1) == b""
            out, err = finish(client)
            assert out.split() == ["sent", str(MIB), sha(got)], (out, err)
    stats_after = settled_stats(stack)
    assert stats_after["connections"] == 0 and stats_after["flows_in_use"] == 0, stats_after


def test_linux_aborts_while_p4tas_echoes(stack: Stack) -> None:
    """Linux sends 1 MiB to the p4tas echo server and aborts (RST) without reading: the echo
    server gets ConnectionResetError (or EPIPE) instead of hanging."""
    with p4tas_listener(stack) as listener:
        server = Worker(lambda: p4tas_echo(listener.accept()[0], 65536))
        server.start()
        client = stack.linux(LINUX_SEND_AND_CLOSE, stack.peer.local_ip, str(PORT), str(MIB),
                             "rst")
        out, err = finish(client)
        assert out.startswith("sent"), (out, err)
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            server.result(timeout=20)
    stats_after = settled_stats(stack)
    assert stats_after["connections"] == 0 and stats_after["flows_in_use"] == 0, stats_after


# Linux client: sends 100 bytes while sniffing its own segments, waits for p4tas's FIN (EOF),
# then replays its data segment (what a peer does when our ACK was lost) and reports; on
# "more" from stdin it sends new data and reports how the connection ended.
LINUX_REPLAY_THEN_SEND = """
import errno, socket, sys, time
from scapy.all import AsyncSniffer, IP, TCP, Raw, send
host, port = sys.argv[1], int(sys.argv[2])
sniffer = AsyncSniffer(lfilter=lambda p: TCP in p and p[TCP].dport == port and Raw in p)
sniffer.start()
time.sleep(0.5)
s = socket.create_connection((host, port), timeout=10)
s.sendall(bytes(100))
print("eof" if s.recv(1) == b"" else "data", flush=True)
seg = sniffer.stop()[0]
send(IP(src=seg[IP].src, dst=seg[IP].dst) / TCP(sport=seg[TCP].sport, dport=port, flags="PA",
     seq=seg[TCP].seq, ack=seg[TCP].ack, window=seg[TCP].window) / Raw(seg[Raw].load),
     verbose=False)
print("replayed", flush=True)
sys.stdin.readline()
s.sendall(b"more")
deadline = time.monotonic() + 5  # recv reports EOF (the FIN came first): look at SO_ERROR
while time.monotonic() < deadline:
    error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if error:
        break
    time.sleep(0.02)
print(errno.errorcode.get(error, "none"), flush=True)
"""


def test_data_after_close_old_is_reacked_new_is_reset(stack: Stack) -> None:
    """After the application's close(): a retransmission of data it already received (the
    peer lost our ACK) is only ACKed again; new data gets an RST (RFC 1122 4.2.2.13)."""
    before = stats(stack)
    with p4tas_listener(stack) as listener:
        client = linux_with_stdin(stack, LINUX_REPLAY_THEN_SEND, stack.peer.local_ip, str(PORT))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(10)
            assert recv_exactly(conn, 100) == bytes(100)
        expect_line(client, "eof")
        expect_line(client, "replayed")
        deadline = time.monotonic() + 10
        while stats(stack).get("old_data_reacked", 0) == before.get("old_data_reacked", 0):
            assert time.monotonic() < deadline, "the replayed segment never reached the runtime"
            time.sleep(0.05)
        assert stats(stack).get("data_after_close", 0) == before.get("data_after_close", 0)
        tell(client, "more")
        out, err = finish(client)
        # Linux reports an RST that comes in CLOSE_WAIT as EPIPE (tcp_reset()).
        assert out.split() == ["EPIPE"], (out, err)
    assert stats(stack)["data_after_close"] == before.get("data_after_close", 0) + 1


# ======================================================================= application killed

# The application: connects to the Linux sink and listens for the Linux source; sends to the
# one and drains the other until it is killed. Prints its shared-memory segment's name.
APP_MID_TRANSFER = """
import sys, host_lib
peer_ip, peer_port, local_ip, local_port = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
listener = host_lib.socket()
listener.bind((local_ip, local_port))
listener.listen(4)
out = host_lib.socket()
out.settimeout(30)
out.connect((peer_ip, peer_port))
print("shm", host_lib.session().channel.shm_name, flush=True)
inc, _ = listener.accept()
inc.setblocking(False)
chunk = bytes(range(256)) * 256
while True:
    out.sendall(chunk)
    try:
        while inc.recv(1 << 20):
            pass
    except BlockingIOError:
        pass
"""

# Linux side of it: a sink server (reads) and, after "go" on stdin, a source client (writes);
# "progress" once both moved `threshold` bytes; then each reports how its connection ended.
LINUX_SINK_AND_SOURCE = """
import json, socket, sys, threading
host, port, app_ip, app_port, threshold = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
""" + accept_one(30, 15) + """assert sys.stdin.readline().strip() == "go"
client = socket.create_connection((app_ip, app_port), timeout=15)
moved = {"sink": 0, "source": 0}
ended = {}
progress = threading.Event()
def check():
    if min(moved.values()) >= threshold and not progress.is_set():
        progress.set()
        print("progress", flush=True)
def sink():
    try:
        while chunk := conn.recv(1 << 20):
            moved["sink"] += len(chunk)
            check()
        ended["sink"] = "eof"
    except ConnectionResetError:
        ended["sink"] = "reset"
    except OSError as exc:
        ended["sink"] = repr(exc)
def source():
    chunk = bytes(65536)
    try:
        while True:
            moved["source"] += client.send(chunk)
            check()
    except (ConnectionResetError, BrokenPipeError):
        ended["source"] = "reset"
    except OSError as exc:
        ended["source"] = repr(exc)
threads = [threading.Thread(target=sink), threading.Thread(target=source)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(40)
print(json.dumps({"ended": ended, "moved": moved}), flush=True)
"""


def test_killed_application_closes_like_the_kernel_and_leaks_nothing(stack: Stack) -> None:
    """SIGKILL mid-transfer: the connection it was sending on is closed gracefully (its TX
    ring drains, then FIN), the one with unread received data is reset (RFC 2525 2.17)."""
    linux = linux_with_stdin(stack, LINUX_SINK_AND_SOURCE, stack.peer.peer_ip, "7002",
                             stack.peer.local_ip, str(PORT), str(256 * 1024))
    expect_line(linux, "listening")
    app = subprocess.Popen([sys.executable, "-c", APP_MID_TRANSFER, stack.peer.peer_ip, "7002",
                            stack.peer.local_ip, str(PORT)], cwd=REPO, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        shm = expect_line(app, "shm").split()[1]
        assert shm in mapped_segments(stack.runtime.pid)
        tell(linux, "go")
        expect_line(linux, "progress")  # both directions are moving
        assert app.poll() is None
        app.send_signal(signal.SIGKILL)
        app.wait(timeout=10)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        app.stdout.close()
        app.stderr.close()
    report = json_result(linux, timeout=60)
    assert report["ended"] == {"sink": "eof", "source": "reset"}, report
    stats_after = settled_stats(stack)
    assert stats_after["connections"] == 0 and stats_after["flows_in_use"] == 0, stats_after
    assert stats_after["listeners"] == 0 and stats_after["local_ports_in_use"] == 0, stats_after
    deadline = time.monotonic() + 5
    while shm in mapped_segments(stack.runtime.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shm not in mapped_segments(stack.runtime.pid), f"{shm} still mapped by the runtime"


# =============================================================================== slow reader

SLOW_TOTAL = 4 * MIB
SMALL_BUFFER = 64 * 1024

# Linux server with a small receive buffer: accepts, reports, reads nothing until "read" on
# stdin, then reads until EOF. One JSON line.
LINUX_PAUSED_READER = """
import hashlib, json, socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(sys.argv[3]))
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("listening", flush=True)
srv.settimeout(30)
conn, _ = srv.accept()
conn.settimeout(30)
print("accepted", flush=True)
assert sys.stdin.readline().strip() == "read"
got = bytearray()
while chunk := conn.recv(1 << 20):
    got += chunk
print(json.dumps({"got": len(got), "got_sha": hashlib.sha256(got).hexdigest()}), flush=True)
"""

def test_slow_linux_reader_p4tas_sender_blocks(stack: Stack) -> None:
    """The Linux reader pauses: non-blocking sends get BlockingIOError, a blocking sendall
    waits; once the reader resumes every byte arrives intact."""
    reader = linux_with_stdin(stack, LINUX_PAUSED_READER, stack.peer.peer_ip, "7002",
                              str(SMALL_BUFFER))
    expect_line(reader, "listening")
    data = os.urandom(SLOW_TOTAL)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, 7002))
        expect_line(reader, "accepted")
        s.setblocking(False)
        sent, before, deadline = 0, -1, time.monotonic() + 10
        while sent != before:  # fill the TX ring until the peer's window is full too
            assert time.monotonic() < deadline and sent < len(data), sent
            before = sent
            with pytest.raises(BlockingIOError):
                while sent < len(data):
                    sent += s.send(data[sent:sent + 65536])
            time.sleep(0.3)
        assert 0 < sent < len(data)  # TX ring + the peer's buffer, not the 4 MiB
        with pytest.raises(BlockingIOError):  # still nothing moves while the reader sleeps
            s.send(data[sent:sent + 65536])
        s.settimeout(30)
        sender = Worker(lambda: (s.sendall(data[sent:]), s.shutdown(host_lib.SHUT_WR)))
        sender.start()
        time.sleep(0.5)
        assert sender.is_alive(), "a blocking sendall must wait for the paused reader"
        tell(reader, "read")
        sender.result(timeout=60)
        assert s.recv(1) == b""  # the reader's close after EOF
    report = json_result(reader)
    assert report["got"] == len(data) and report["got_sha"] == sha(data)
