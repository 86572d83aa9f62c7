"""host_lib.socket / streams / low-level API against a fake in-process runtime.

The fake is built from the real pieces: a UNIX stream server in a thread speaking
host_lib.control_protocol, a real shared-memory segment (shm_layout.Segment.create) and the real
rings. The test plays the NIC: it writes into a connection's RX ring, pushes an RX_DATA event on
the context's queue and sends Wake, and reads what the application queued in the TX ring. The real
end-to-end tests (bmv2, a Linux peer) are elsewhere."""

from __future__ import annotations

import asyncio
import errno
import os
import queue
import selectors
import socket as std_socket
import threading
import time
import uuid

import pytest

import host_lib
from host_lib import control_protocol as cp
from host_lib import sessions as hsock
from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.rings import Event, connection_ring, context_queue
from host_lib.shm_layout import Direction, EventType, Layout, Segment


LAYOUT = Layout(rx_ring_size=4096, tx_ring_size=4096, max_connections=4, max_contexts=4,
                queue_depth=64)
PEER = ("10.0.0.2", 5000)
LOCAL = ("10.0.0.1", 40000)


class FakeRuntime:
    """Speaks the control protocol to one application at a time; the test drives the data path."""

    def __init__(self, path: str, shm_name: str | None = "auto", connect: str = "ok") -> None:
        self.path = path
        self.segment = Segment.create(f"p4tas-test-{uuid.uuid4().hex[:12]}", LAYOUT) \
            if shm_name == "auto" else None
        self.shm_name = self.segment.name if self.segment else shm_name
        self.connect_mode = connect  # ok | refused | silent | error
        self.received: queue.Queue[cp.Message] = queue.Queue()
        self.kicks: list[int] = []
        self.listen_error: int | None = None
        self._server = std_socket.socket(std_socket.AF_UNIX, std_socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(4)
        self._client: std_socket.socket | None = None
        self._send_lock = threading.Lock()
        self._next_conn = 100
        self._next_slot = 0
        self.contexts = 0
        self.conn_slots: dict[int, int] = {}
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- the control socket ------------------------------------------------------------------

    def _serve(self) -> None:
        try:
            client, _ = self._server.accept()
        except OSError:
            return
        self._client = client
        try:
            hello = cp.recv_message(client)
            assert isinstance(hello, cp.Hello)
            self.send(cp.HelloOk(app_id=7, version=cp.PROTOCOL_VERSION, shm_name=self.shm_name))
            while True:
                msg = cp.recv_message(client, expect=cp.ClientMessage)
                self.received.put(msg)
                self._answer(msg)
        except (OSError, cp.ProtocolError):
            return

    def send(self, msg: cp.Message) -> None:
        with self._send_lock:
            cp.send_message(self._client, msg)

    def _answer(self, msg: cp.Message) -> None:
        if isinstance(msg, cp.Kick):
            self.kicks.append(msg.conn_id)
        elif isinstance(msg, cp.CreateContext):
            self.send(cp.ContextCreated(req_id=msg.req_id, ctx_id=self.contexts))
            self.contexts += 1
        elif isinstance(msg, cp.Connect):
            if self.connect_mode == "error":
                self.send(cp.Error(req_id=msg.req_id, errno=errno.EADDRINUSE,
                                   message="address in use"))
                return
            conn_id = self._new_conn()
            self.send(cp.Connecting(req_id=msg.req_id, conn_id=conn_id))
            if self.connect_mode == "ok":
                self.send(cp.Connected(ctx_id=msg.ctx_id, conn_id=conn_id, local_ip=LOCAL[0],
                                       local_port=LOCAL[1], peer_ip=msg.peer_ip,
                                       peer_port=msg.peer_port, slot=self._new_slot(conn_id)))
            elif self.connect_mode == "refused":
                self.send(cp.ConnectFailed(ctx_id=msg.ctx_id, conn_id=conn_id,
                                           errno=errno.ECONNREFUSED, message="refused"))
        elif isinstance(msg, cp.Listen):
            if self.listen_error:
                self.send(cp.Error(req_id=msg.req_id, errno=self.listen_error, message="no"))
                return
            self.send(cp.Listening(req_id=msg.req_id, listener_id=1,
                                   local_ip=msg.local_ip or "0.0.0.0", port=msg.port))
        elif isinstance(msg, cp.Close):
            self.send(cp.Ok(req_id=msg.req_id))
            self.send(cp.Closed(ctx_id=0, conn_id=msg.conn_id))
        elif isinstance(msg, cp.Request):
            self.send(cp.Ok(req_id=msg.req_id))

    def _new_conn(self) -> int:
        self._next_conn += 1
        return self._next_conn

    def _new_slot(self, conn_id: int) -> int:
        slot = self._next_slot
        self._next_slot += 1
        self.conn_slots[conn_id] = slot
        return slot

    def incoming(self, ctx_id: int = 0, peer: tuple[str, int] = PEER) -> tuple[int, int]:
        """A connection arrives on listener 1: (conn_id, slot)."""
        conn_id = self._new_conn()
        slot = self._new_slot(conn_id)
        self.send(cp.IncomingConnection(ctx_id=ctx_id, conn_id=conn_id, listener_id=1,
                                        local_ip=LOCAL[0], local_port=8080, peer_ip=peer[0],
                                        peer_port=peer[1], slot=slot))
        return conn_id, slot

    def wait_for(self, kind: type, timeout: float = 5.0) -> cp.Message:
        deadline = time.monotonic() + timeout
        while True:
            msg = self.received.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(msg, kind):
                return msg

    def hang_up(self) -> None:
        if self._client is not None:
            self._client.shutdown(std_socket.SHUT_RDWR)
            self._client.close()

    # -- the NIC ---------------------------------------------------------------------------------

    def deliver(self, slot: int, data: bytes, ctx_id: int = 0, wake: bool = True) -> None:
        ring = connection_ring(self.segment.buf, LAYOUT, slot, Direction.RX)
        offset = ring.head
        assert ring.write(data) == len(data)
        ring.release()
        q = context_queue(self.segment.buf, LAYOUT, ctx_id, Direction.RX)
        assert q.push(Event(EventType.RX_DATA, slot, offset, len(data)))
        q.release()
        if wake:
            self.send(cp.Wake(ctx_id=ctx_id))

    def take_tx(self, slot: int, ack: bool = True, ctx_id: int = 0) -> bytes:
        ring = connection_ring(self.segment.buf, LAYOUT, slot, Direction.TX)
        data = ring.read(ring.size)
        ring.release()
        if ack and data:
            q = context_queue(self.segment.buf, LAYOUT, ctx_id, Direction.RX)
            assert q.push(Event(EventType.TX_ACKED, slot, 0, len(data)))
            q.release()
            self.send(cp.Wake(ctx_id=ctx_id))
        return data

    def rx_space(self, slot: int) -> int:
        ring = connection_ring(self.segment.buf, LAYOUT, slot, Direction.RX)
        try:
            return ring.free_space()
        finally:
            ring.release()

    def close(self) -> None:
        self._server.close()
        if self._client is not None:
            try:
                self._client.close()
            except OSError:
                pass
        self._thread.join(timeout=5)
        if self.segment is not None:
            self.segment.unlink()
            try:
                self.segment.close()
            except BufferError:
                pass


@pytest.fixture
def make_fake(tmp_path, monkeypatch):
    fakes: list[FakeRuntime] = []

    def make(**kwargs) -> FakeRuntime:
        path = str(tmp_path / f"control{len(fakes)}.sock")
        fake = FakeRuntime(path, **kwargs)
        fakes.append(fake)
        monkeypatch.setenv("P4TAS_CONTROL_SOCKET", path)
        return fake
    yield make
    hsock.close_session()
    for fake in fakes:
        fake.close()


@pytest.fixture
def fake(make_fake) -> FakeRuntime:
    return make_fake()


def connected(fake: FakeRuntime, timeout: float | None = 5.0) -> host_lib.socket:
    s = host_lib.socket()
    s.settimeout(timeout)
    s.connect(PEER)
    return s


# ------------------------------------------------------------------------------ no runtime

def test_runtime_unavailable_names_what_to_check(tmp_path, monkeypatch):
    monkeypatch.setenv("P4TAS_CONTROL_SOCKET", str(tmp_path / "nothing.sock"))
    hsock.close_session()
    with pytest.raises(RuntimeUnavailable) as info:
        host_lib.socket()
    assert isinstance(info.value, ConnectionError)
    text = str(info.value)
    assert "nothing.sock" in text and "P4TAS_CONTROL_SOCKET" in text and "runtime" in text


def test_runtime_without_data_path(make_fake):
    make_fake(shm_name=None)
    with pytest.raises(RuntimeUnavailable, match="no data path"):
        host_lib.socket()


def test_exports():
    for name in ("socket", "open_connection", "start_server", "RuntimeUnavailable",
                 "Session", "session", "Context", "Connection", "ConnEvent", "timeout"):
        assert hasattr(host_lib, name), name
    assert host_lib.timeout is TimeoutError
    assert issubclass(host_lib.RuntimeUnavailable, ConnectionError)


# ------------------------------------------------------------------------------ validation

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


# ------------------------------------------------------------------------------ connect

def test_connect_recv_send_kick(fake):
    with connected(fake) as s:
        assert s.getpeername() == PEER and s.getsockname() == LOCAL
        conn_id = fake.wait_for(cp.Connect) and 101
        slot = fake.conn_slots[conn_id]
        fake.deliver(slot, b"hello world")
        assert s.recv(5) == b"hello"
        buf = bytearray(16)
        assert s.recv_into(buf) == 6 and bytes(buf[:6]) == b" world"
        assert fake.wait_for(cp.Kick).conn_id == conn_id
        assert fake.rx_space(slot) == LAYOUT.rx_ring_size  # consumed, tail advanced
        assert s.send(b"abc") == 3
        s.sendall(memoryview(b"defg"))
        assert fake.wait_for(cp.Kick).conn_id == conn_id
        assert fake.take_tx(slot) == b"abcdefg"


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


def test_blocked_thread_is_woken_when_another_reads_its_event(make_fake, monkeypatch):
    """Thread A blocks in poll() for its Connected; thread B pumps first and dispatches it
    (the control socket is empty again when A polls): A must still return at once."""
    fake = make_fake(connect="silent")
    session = hsock.session()
    real_wait = session.channel.wait_readable
    polling, proceed = threading.Event(), threading.Event()

    def wait_readable(*args):
        if not polling.is_set():  # A's first poll: let B read A's event before A polls
            polling.set()
            proceed.wait(5)
        return real_wait(*args)
    monkeypatch.setattr(session.channel, "wait_readable", wait_readable)
    outcome: list = []

    def thread_a() -> None:
        s = host_lib.socket()
        s.settimeout(5)
        started = time.monotonic()
        try:
            s.connect(PEER)
            outcome.append(time.monotonic() - started)
        except OSError as exc:
            outcome.append(exc)
    a = threading.Thread(target=thread_a)
    a.start()
    try:
        assert polling.wait(5)
        fake.wait_for(cp.Connect)
        fake.send(cp.Connected(ctx_id=0, conn_id=101, local_ip=LOCAL[0], local_port=LOCAL[1],
                               peer_ip=PEER[0], peer_port=PEER[1], slot=0))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # B reads and dispatches it while A still polls
            with session.lock:
                session.wait(lambda: True, 0)
                if 101 in session._conns and session._conns[101].state == "open":
                    break
            time.sleep(0.01)
    finally:
        proceed.set()
        a.join(10)
    assert isinstance(outcome[0], float) and outcome[0] < 2, outcome


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
    sel.register(s, selectors.EVENT_READ)
    fake.wait_for(cp.Connect)
    fake.send(cp.Connected(ctx_id=0, conn_id=101, local_ip=LOCAL[0], local_port=LOCAL[1],
                           peer_ip=PEER[0], peer_port=PEER[1], slot=0))
    assert sel.select(5)  # readable: the connect finished
    assert s.getsockopt(std_socket.SOL_SOCKET, std_socket.SO_ERROR) == 0
    assert s.connect_ex(PEER) == errno.EISCONN
    assert s.send(b"ok") == 2
    sel.close()
    s.close()


# ------------------------------------------------------------------------------ timeouts etc.

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


def test_runtime_goes_away(fake):
    s = connected(fake)
    fake.hang_up()
    with pytest.raises(RuntimeUnavailable):
        s.recv(10)
    with pytest.raises(RuntimeUnavailable):
        s.send(b"x")
    s.close()  # does not raise


# ------------------------------------------------------------------------------ server side

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
    with pytest.raises(BlockingIOError):  # the Accept's reply made both readable (spurious):
        conn.recv(1)                      # any call dispatches it
    assert sel.select(0.05) == []
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


def test_threads_send_while_other_blocks_in_recv(fake):
    with connected(fake, timeout=None) as s:
        slot = fake.conn_slots[101]
        got: list[bytes] = []
        reader = threading.Thread(target=lambda: got.append(s.recv(100)))
        reader.start()
        time.sleep(0.1)
        s.sendall(b"ping")  # not blocked by the reader's wait
        assert fake.take_tx(slot) == b"ping"
        fake.deliver(slot, b"pong")
        reader.join(5)
        assert got == [b"pong"]


# ------------------------------------------------------------------------------ low level

def test_low_level_event_api(fake):
    sess = host_lib.session()
    ctx = sess.create_context()
    assert ctx.ctx_id == 1  # 0 is the sockets' context
    conn = ctx.connect(*PEER)
    events = ctx.poll(5)
    assert [e.kind for e in events] == [host_lib.ConnEvent.CONNECTED] and events[0].conn is conn
    slot = fake.conn_slots[conn.conn_id]
    fake.deliver(slot, b"zero copy", ctx_id=1)
    events = ctx.poll(5)
    assert events[0].kind == host_lib.ConnEvent.RX and events[0].length == 9
    with sess.lock:
        pieces = conn.rx_peek()
        assert b"".join(bytes(p) for p in pieces) == b"zero copy"
        for piece in pieces:
            piece.release()
        conn.rx_done(9)
        views = conn.tx_alloc(5)
        views[0][:5] = b"hello"
        conn.tx_send(5)
    assert fake.wait_for(cp.Kick).conn_id == conn.conn_id
    assert fake.take_tx(slot, ctx_id=1) == b"hello"
    assert [e.kind for e in ctx.poll(5)] == [host_lib.ConnEvent.TX_ACKED]
    assert ctx.poll(0.05) == []
    with sess.lock:
        conn.close()
    assert [e.kind for e in ctx.poll(5)] == [host_lib.ConnEvent.CLOSED]


# ------------------------------------------------------------------------------ asyncio

def test_asyncio_open_connection(fake):
    async def main() -> None:
        reader, writer = await host_lib.open_connection(*PEER)
        assert writer.get_extra_info("peername") == PEER
        assert writer.get_extra_info("sockname") == LOCAL
        slot = fake.conn_slots[101]
        fake.deliver(slot, b"line one\nrest")
        assert await reader.readline() == b"line one\n"
        fake.deliver(slot, b"12345")
        assert await reader.readexactly(6) == b"rest12"
        assert await reader.read(100) == b"345"
        writer.write(b"a" * (3 * LAYOUT.tx_ring_size))  # more than the ring: buffered
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        received = bytearray()
        while len(received) < 3 * LAYOUT.tx_ring_size:
            received += fake.take_tx(slot)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(drained, 5)
        assert received == b"a" * (3 * LAYOUT.tx_ring_size)
        fake.send(cp.PeerClosed(ctx_id=0, conn_id=101))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
        assert fake.wait_for(cp.Close).conn_id == 101
    asyncio.run(main())


def test_asyncio_refused_and_reset(make_fake):
    fake = make_fake(connect="refused")

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await host_lib.open_connection(*PEER)
        fake.connect_mode = "ok"
        reader, writer = await host_lib.open_connection(*PEER)
        conn_id = max(fake.conn_slots)
        fake.send(cp.ConnectionReset(ctx_id=0, conn_id=conn_id, message="reset"))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 5)
        writer.close()
    asyncio.run(main())


def test_asyncio_start_server(fake):
    async def main() -> None:
        done = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(4)
            writer.write(data.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.set_result(writer.get_extra_info("peername"))

        server = await host_lib.start_server(handle, "0.0.0.0", 8080)
        assert fake.wait_for(cp.Listen).port == 8080
        async with server:
            conn_id, slot = fake.incoming()
            fake.deliver(slot, b"ping")
            assert await asyncio.wait_for(done, 5) == PEER
            assert fake.take_tx(slot) == b"PING"
        assert fake.wait_for(cp.CloseListener).listener_id == 1
    asyncio.run(main())


# ------------------------------------------------------------------------------ ControlChannel

def test_control_channel_blocking_api_still_works(fake):
    with ControlChannel(fake.path, app_name="compat") as ch:
        assert ch.app_id == 7 and ch.shm_name == fake.shm_name
        ctx = ch.create_context()
        conn_id = ch.connect(ctx, *PEER, timeout_s=5)
        event = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=5)
        assert isinstance(event, cp.Connected) and event.slot == 0
        assert ch.next_event(timeout=0.05) is None
        ch.kick(conn_id)
        assert fake.wait_for(cp.Kick).conn_id == conn_id
        ch.close_connection(conn_id)
        assert isinstance(ch.wait_for(cp.Closed, conn_id=conn_id, timeout=5), cp.Closed)
        with pytest.raises(TimeoutError):
            ch.wait_for(cp.PeerClosed, timeout=0.05)
