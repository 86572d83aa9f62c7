"""host_lib.sockets (host_lib.socket(), the POSIX socket emulation) against a fake in-process
runtime (tests/support/host_lib_fake.py)."""

from __future__ import annotations

import errno
import os
import selectors
import socket as std_socket
import threading
import time

import pytest

import host_lib
from host_lib import control_protocol as cp
from host_lib import sessions
from tests.support import host_lib_fake
from tests.support.host_lib_fake import LAYOUT, LOCAL, PEER, connected

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake


# ----------------------------------------------------------------- validation

def test_argument_validation(fake):
    with pytest.raises(OSError) as info:
        host_lib.socket(std_socket.AF_INET6)
    assert info.value.errno == errno.EAFNOSUPPORT
    with pytest.raises(OSError) as info:
        host_lib.socket(type=std_socket.SOCK_DGRAM)
    assert info.value.errno == errno.ESOCKTNOSUPPORT
    s = host_lib.socket()
    with pytest.raises(TypeError):
        s.connect("10.0.0.2:80")
    with pytest.raises(OverflowError):
        s.connect(("10.0.0.2", 70000))
    with pytest.raises(ValueError):
        s.settimeout(-1)
    with pytest.raises(TypeError):
        s.settimeout("x")
    with pytest.raises(ValueError):
        s.recv(-1)
    with pytest.raises(TypeError):
        s.send("text")
    with pytest.raises(OSError) as info:
        s.shutdown(7)
    assert info.value.errno == errno.EINVAL
    s.close()
    assert host_lib.socket(type=std_socket.SOCK_STREAM | std_socket.SOCK_NONBLOCK).gettimeout() \
        == 0.0


def test_misuse_errnos(fake):
    s = host_lib.socket()
    for call in (lambda: s.send(b"x"), lambda: s.recv(1), lambda: s.getpeername(),
                 lambda: s.shutdown(std_socket.SHUT_WR)):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as info:
        s.accept()
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        s.listen()  # not bound: p4tas needs an explicit port
    assert info.value.errno == errno.EINVAL
    s.connect(PEER)
    with pytest.raises(OSError) as info:
        s.listen()
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        s.bind(("0.0.0.0", 9))
    assert info.value.errno == errno.EINVAL
    with pytest.raises(OSError) as info:
        s.connect(PEER)
    assert info.value.errno == errno.EISCONN
    assert s.connect_ex(PEER) == errno.EISCONN
    s.close()
    s.close()  # idempotent
    assert s.fileno() == -1
    for call in (lambda: s.send(b"x"), lambda: s.recv(1), lambda: s.connect(PEER),
                 lambda: s.getsockname(), lambda: s.listen()):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EBADF


# -------------------------------------------------------------------- connect

def test_connect_recv_send_kick(fake):
    with connected(fake) as s:
        assert s.getpeername() == PEER and s.getsockname() == LOCAL
        conn_id = fake.wait_for(cp.Connect) and 101
        slot = fake.conn_slots[conn_id]
        fake.deliver(slot, b"hello world")
        assert s.recv(5) == b"hello"
        buf = bytearray(16)
        assert s.recv_into(buf) == 6 and bytes(buf[:6]) == b" world"
        assert fake.rx_space(slot) == LAYOUT.rx_ring_size  # consumed, tail advanced
        assert s.send(b"abc") == 3
        s.sendall(memoryview(b"defg"))
        assert fake.wait_for(cp.Kick).conn_id == conn_id
        assert fake.take_tx(slot) == b"abcdefg"
        # One doorbell: 11 bytes read are no window update worth one; the send's Kick (sent
        # with the TX bytes) carries them anyway.
        assert [m for m in list(fake.received.queue) if isinstance(m, cp.Kick)] == []


def test_reading_a_quarter_of_the_rx_ring_rings_the_doorbell(fake):
    with connected(fake) as s:
        slot = fake.conn_slots[101]
        quarter = LAYOUT.rx_ring_size // 4
        fake.deliver(slot, bytes(quarter - 1))
        assert len(s.recv(quarter)) == quarter - 1
        fake.deliver(slot, b"x")
        assert s.recv(1) == b"x"
        assert fake.wait_for(cp.Kick).conn_id == 101


def test_recv_wraps_and_recv_into_nbytes(fake):
    with connected(fake) as s:
        slot = fake.conn_slots[101]
        for _ in range(3):  # 3 * 3000 bytes through a 4096-byte ring: wraps
            chunk = os.urandom(3000)
            fake.deliver(slot, chunk)
            got = bytearray()
            while len(got) < len(chunk):
                got += s.recv(1000)
            assert got == chunk
        fake.deliver(slot, b"0123456789")
        buf = bytearray(10)
        assert s.recv_into(buf, 4) == 4 and buf[:4] == b"0123"
        with pytest.raises(ValueError):
            s.recv_into(buf, 11)
        assert s.recv(100, std_socket.MSG_PEEK) == b"456789"
        assert s.recv(100) == b"456789"


def test_connect_refused_and_error(make_fake):
    fake = make_fake(connect="refused")
    s = host_lib.socket()
    with pytest.raises(ConnectionRefusedError):
        s.connect(PEER)
    s.close()
    assert host_lib.socket().connect_ex(PEER) == errno.ECONNREFUSED
    fake.connect_mode = "error"
    with pytest.raises(OSError) as info:
        host_lib.socket().connect(PEER)
    assert info.value.errno == errno.EADDRINUSE


def test_connect_timeout_closes_attempt(make_fake):
    fake = make_fake(connect="silent")
    s = host_lib.socket()
    s.settimeout(0.2)
    started = time.monotonic()
    with pytest.raises(std_socket.timeout):
        s.connect(PEER)
    assert 0.15 < time.monotonic() - started < 2
    assert fake.wait_for(cp.Close).conn_id == 101  # the runtime gives up the attempt
    s.close()


def test_nonblocking_connect(fake):
    fake.connect_mode = "silent"
    s = host_lib.socket()
    s.setblocking(False)
    with pytest.raises(BlockingIOError) as info:
        s.connect(PEER)
    assert info.value.errno == errno.EINPROGRESS
    assert s.connect_ex(PEER) == errno.EALREADY
    with pytest.raises(BlockingIOError):
        s.send(b"x")
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    assert sel.select(0.05) == []  # connecting: neither readable nor writable
    fake.wait_for(cp.Connect)
    fake.send(cp.Connected(ctx_id=0, conn_id=101, local_ip=LOCAL[0], local_port=LOCAL[1],
                           peer_ip=PEER[0], peer_port=PEER[1], slot=0))
    assert [events for _, events in sel.select(5)] == [selectors.EVENT_WRITE]  # it finished
    assert s.getsockopt(std_socket.SOL_SOCKET, std_socket.SO_ERROR) == 0
    assert s.connect_ex(PEER) == errno.EISCONN
    assert s.send(b"ok") == 2
    sel.close()
    s.close()


def test_nonblocking_connect_is_in_progress_however_fast_the_handshake(fake, monkeypatch):
    """As Linux: the call that starts a non-blocking connect says EINPROGRESS even when the
    handshake finished before it looked (a loaded machine); writability tells the outcome."""
    wait = sessions.Session.wait

    def late_wait(self, ready, timeout):
        time.sleep(0.1)   # the runtime's Connecting and Connected arrive meanwhile
        return wait(self, ready, timeout)

    monkeypatch.setattr(sessions.Session, "wait", late_wait)
    s = host_lib.socket()
    s.setblocking(False)
    assert s.connect_ex(PEER) == errno.EINPROGRESS
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    assert [events for _, events in sel.select(5)] == [selectors.EVENT_WRITE]
    assert s.getsockopt(std_socket.SOL_SOCKET, std_socket.SO_ERROR) == 0
    assert s.connect_ex(PEER) == errno.EISCONN
    sel.close()
    s.close()


# -------------------------------------------------------------- timeouts etc.

def test_recv_timeout_and_nonblocking(fake):
    with connected(fake, timeout=0.2) as s:
        started = time.monotonic()
        with pytest.raises(std_socket.timeout):
            s.recv(10)
        assert 0.15 < time.monotonic() - started < 2
        s.setblocking(False)
        with pytest.raises(BlockingIOError) as info:
            s.recv(10)
        assert info.value.errno == errno.EAGAIN
        with pytest.raises(BlockingIOError):
            s.recv(10, std_socket.MSG_DONTWAIT)
        fake.deliver(fake.conn_slots[101], b"x", wake=True)
        deadline = time.monotonic() + 5
        while True:  # non-blocking: poll until the Wake is here
            try:
                assert s.recv(10) == b"x"
                break
            except BlockingIOError:
                assert time.monotonic() < deadline
                time.sleep(0.01)


def test_blocking_recv_woken_by_wake(fake):
    with connected(fake, timeout=None) as s:
        slot = fake.conn_slots[101]
        threading.Timer(0.1, fake.deliver, (slot, b"later")).start()
        assert s.recv(100) == b"later"


def test_send_backpressure_timeout_and_nonblocking(fake):
    with connected(fake, timeout=0.2) as s:
        slot = fake.conn_slots[101]
        payload = os.urandom(LAYOUT.tx_ring_size + 100)
        assert s.send(payload) == LAYOUT.tx_ring_size  # short send: ring full
        with pytest.raises(std_socket.timeout):
            s.send(b"more")
        s.setblocking(False)
        with pytest.raises(BlockingIOError):
            s.send(b"more")
        assert fake.take_tx(slot) == payload[:LAYOUT.tx_ring_size]
        s.settimeout(5)
        assert s.send(b"more") == 4


def test_sendall_larger_than_ring(fake):
    with connected(fake, timeout=5) as s:
        slot = fake.conn_slots[101]
        payload = os.urandom(5 * LAYOUT.tx_ring_size + 123)
        received = bytearray()
        stop = threading.Event()

        def nic() -> None:
            while not stop.is_set():
                received.extend(fake.take_tx(slot))
                time.sleep(0.002)
        thread = threading.Thread(target=nic)
        thread.start()
        try:
            s.sendall(payload)
            deadline = time.monotonic() + 5
            while len(received) < len(payload) and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            stop.set()
            thread.join()
        assert bytes(received) == payload


def test_eof_after_data(fake):
    with connected(fake) as s:
        slot = fake.conn_slots[101]
        fake.deliver(slot, b"last words")
        fake.send(cp.PeerClosed(ctx_id=0, conn_id=101))
        assert s.recv(100) == b"last words"
        assert s.recv(100) == b""
        assert s.recv(100) == b""
        assert s.send(b"still allowed") == 13  # half-close: our direction is open


def test_reset(fake):
    with connected(fake) as s:
        slot = fake.conn_slots[101]
        fake.deliver(slot, b"before")
        fake.send(cp.ConnectionReset(ctx_id=0, conn_id=101, message="reset by peer"))
        assert s.recv(100) == b"before"  # data received before the RST first
        with pytest.raises(ConnectionResetError):
            s.recv(100)
        assert s.recv(100) == b""  # reported once, as on Linux
        with pytest.raises(BrokenPipeError):
            s.send(b"x")


def test_reset_seen_first_by_send(fake):
    with connected(fake) as s:
        fake.send(cp.ConnectionReset(ctx_id=0, conn_id=101, message="reset by peer"))
        s.settimeout(0.5)
        with pytest.raises(OSError):  # ECONNRESET once (may need the message to arrive)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                s.send(b"x")
                time.sleep(0.01)
        with pytest.raises(BrokenPipeError):
            s.send(b"x")


def test_shutdown_wr_and_close(fake):
    s = connected(fake)
    s.shutdown(std_socket.SHUT_WR)
    assert fake.wait_for(cp.Shutdown).how == "wr"
    with pytest.raises(BrokenPipeError):
        s.send(b"x")
    with pytest.raises(BrokenPipeError):
        s.sendall(b"x")
    s.close()
    assert fake.wait_for(cp.Close).conn_id == 101
    with pytest.raises(OSError) as info:
        s.recv(1)
    assert info.value.errno == errno.EBADF


# ---------------------------------------------------------------- server side

def test_listen_accept(fake):
    srv = host_lib.socket()
    srv.bind(("", 8080))
    srv.listen(16)
    listen = fake.wait_for(cp.Listen)
    assert (listen.port, listen.backlog, listen.local_ip) == (8080, 16, None)
    assert srv.getsockname() == ("0.0.0.0", 8080)
    srv.settimeout(0.1)
    with pytest.raises(std_socket.timeout):
        srv.accept()
    srv.setblocking(False)
    with pytest.raises(BlockingIOError):
        srv.accept()
    srv.setblocking(True)
    conn_id, slot = fake.incoming()
    fake.deliver(slot, b"early data")  # before accept: kept in the ring
    conn, addr = srv.accept()
    assert addr == PEER and conn.getpeername() == PEER
    assert fake.wait_for(cp.Accept).conn_id == conn_id
    assert conn.recv(100) == b"early data"
    conn.sendall(b"reply")
    assert fake.take_tx(slot) == b"reply"
    conn.close()
    srv.close()
    assert fake.wait_for(cp.CloseListener).listener_id == 1


def test_listen_error(fake):
    fake.listen_error = errno.EADDRINUSE
    s = host_lib.socket()
    s.bind(("0.0.0.0", 80))
    with pytest.raises(OSError) as info:
        s.listen()
    assert info.value.errno == errno.EADDRINUSE


def test_selectors_readiness(fake):
    srv = host_lib.socket()
    srv.bind(("0.0.0.0", 8080))
    srv.listen()
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, "srv")
    assert sel.select(0.05) == []
    conn_id, slot = fake.incoming()
    assert [key.data for key, _ in sel.select(5)] == ["srv"]
    conn, _ = srv.accept()
    conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, "conn")  # a second, distinct fd
    assert conn.fileno() != srv.fileno()
    fake.wait_for(cp.Accept)
    time.sleep(0.05)
    assert sel.select(0.05) == []  # the Accept's reply is no readiness (no spurious wakeups)
    fake.deliver(slot, b"x" * 3000)
    ready = [key.data for key, _ in sel.select(5)]
    assert "conn" in ready
    assert conn.recv(1000) == b"x" * 1000
    # level-triggered: bytes left in the ring keep the fd readable with no new message
    assert [key.data for key, _ in sel.select(0.5)] == ["conn"]
    assert len(conn.recv(5000)) == 2000
    assert sel.select(0.05) == []
    poller = __import__("select").poll()
    poller.register(conn.fileno(), __import__("select").POLLIN)
    fake.send(cp.PeerClosed(ctx_id=0, conn_id=conn_id))
    assert poller.poll(5000)
    assert conn.recv(10) == b""
    sel.close()
    conn.close()
    srv.close()
