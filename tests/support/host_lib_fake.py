"""A fake in-process p4tas runtime for host_lib's unit tests (tests/test_host_lib_*.py).

The fake is built from the real pieces: a UNIX stream server in a thread speaking
host_lib.control_protocol, a real shared-memory segment (shm_layout.Segment.create) and the real
rings. The test plays the NIC: it writes into a connection's RX ring, pushes an RX_DATA event on
the context's queue and sends Wake, and reads what the application queued in the TX ring. The real
end-to-end tests (bmv2, a Linux peer) are elsewhere. A test module uses the fixtures by naming
them: `make_fake = host_lib_fake.make_fake`, `fake = host_lib_fake.fake`."""

from __future__ import annotations

import errno
import os
import queue
import socket as std_socket
import threading
import time

import pytest

from host_lib import control_protocol as cp
from host_lib.rings import Event, connection_ring, context_queue
from host_lib.sessions import close_session
from host_lib.shm_layout import Direction, EventType, Layout, Segment
from host_lib.sockets import Socket

LAYOUT = Layout(rx_ring_size=4096, tx_ring_size=4096, max_connections=4, max_contexts=4,
                queue_depth=64)
PEER = ("10.0.0.2", 5000)
LOCAL = ("10.0.0.1", 40000)


class FakeRuntime:
    """Speaks the control protocol to one application at a time; the test drives the data path."""

    def __init__(self, path: str, shm_name: str | None = "auto", connect: str = "ok") -> None:
        """`shm_name` None: a runtime without a data path (no segment passed)."""
        self.path = path
        self.segment, self._shm_fd = (Segment.create_memfd("p4tas-test", LAYOUT)
                                      if shm_name == "auto" else (None, None))
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
            hello_ok = cp.HelloOk(app_id=7, version=cp.PROTOCOL_VERSION, shm_name=self.shm_name)
            if self._shm_fd is None:
                self.send(hello_ok)
            else:
                with self._send_lock:
                    cp.send_with_fd(client, hello_ok, self._shm_fd)
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
        if self._shm_fd is not None:
            os.close(self._shm_fd)
        if self.segment is not None:
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
    close_session()
    for fake in fakes:
        fake.close()


@pytest.fixture
def fake(make_fake) -> FakeRuntime:
    return make_fake()


def connected(fake: FakeRuntime, timeout: float | None = 5.0) -> Socket:
    """A socket connected to PEER through `fake` (connect mode "ok")."""
    s = Socket()
    s.settimeout(timeout)
    s.connect(PEER)
    return s
