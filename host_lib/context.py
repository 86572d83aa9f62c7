"""The low-level event API (TAS's lib/tas): contexts, connections, listeners and their events, on
the process's session (host_lib.sessions) that the sockets (host_lib.sockets) use too.

    ctx = host_lib.session().create_context()
    conn = ctx.connect("10.0.0.2", 7)      # CONNECTED or CONNECT_FAILED follows on poll()
    for event in ctx.poll(timeout=1.0):    # list of ConnEvent
        ...

Data path. Every connection has an RX ring that the application consumes and a TX ring that it
fills (rings.connection_ring of the slot the runtime named in IncomingConnection/Connected).
Payload never crosses the control socket: conn.rx_peek() are zero-copy memoryviews of received
bytes and conn.rx_done(n) releases them; conn.tx_alloc(n) are writable memoryviews of free TX
space and conn.tx_send(n) publishes them (conn.recv/send copy, ByteRing.read/read_into and
memoryview slices, no per-byte loops). A Kick(conn_id) doorbell tells the runtime when it must
act: new TX bytes that no pending ACK, retransmission or pacing timer will pick up anyway (every
byte before them already acknowledged), or freed RX space worth a window update (a quarter of
the ring: short of it, the window the NIC advertises is still over three quarters of the ring,
as a receiver avoiding the silly window syndrome keeps it). Bulk transfers and request/response
exchanges thus ring the doorbell rarely (virtio-style event suppression); kick=False batches,
then conn.kick().
"""

from __future__ import annotations

import collections
import errno
import os
import socket as _std
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from host_lib import control_protocol as cp
from host_lib.control_channel import RuntimeUnavailable
from host_lib.rings import ByteRing, EventQueue, connection_ring, context_queue
from host_lib.shm_layout import Direction, EventType

if TYPE_CHECKING:
    from host_lib.sessions import Session

RX_UPDATE_FRACTION = 4  # window updates once a quarter of the RX ring was read
DEFAULT_CONNECT_TIMEOUT = 75.0  # the runtime's SYN timeout when the socket has none


def _oserror(code: int, text: str | None = None) -> OSError:
    return OSError(code, text or os.strerror(code))  # OSError picks the errno's subclass


def _pieces(view: memoryview, start: int, count: int) -> list[memoryview]:
    """Up to two slices of a ring's bytes: `count` bytes from offset `start`, wrapping."""
    if count <= 0:
        return []
    first = min(count, len(view) - start)
    pieces = [view[start:start + first]]
    if first < count:
        pieces.append(view[:count - first])
    return pieces


@dataclass(frozen=True)
class ConnEvent:
    """What Context.poll returns. kind is one of the ConnEvent.* names below."""

    kind: str
    conn: "Connection | None" = None
    listener: "Listener | None" = None
    length: int = 0  # RX: bytes that became readable; TX_ACKED: bytes freed
    error: OSError | None = None

    INCOMING = "incoming"  # listener has a connection to accept()
    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"  # error set
    RX = "rx"
    TX_ACKED = "tx_acked"
    PEER_CLOSED = "peer_closed"  # EOF after the readable bytes
    RESET = "reset"  # error set
    CLOSED = "closed"  # conn_id void, rings detached


class Connection:
    """One TCP connection of this process: its rings, its state, its events."""

    # One per socket, up to a million: no __dict__ (ARCHITECTURE.md 5, state per flow).
    __slots__ = ("session", "ctx", "conn_id", "state", "slot", "rx", "tx", "_tx_bytes", "local",
                 "peer", "eof", "error", "dead", "wr_shut", "rd_shut", "close_sent", "gone",
                 "rx_reported", "watcher")

    def __init__(self, session: Session, ctx: Context, conn_id: int) -> None:
        self.session = session
        self.ctx = ctx
        self.conn_id = conn_id
        self.state = "connecting"  # -> open | failed | closed
        self.slot: int | None = None
        self.rx: ByteRing | None = None
        self.tx: ByteRing | None = None
        self._tx_bytes: memoryview | None = None
        self.local: tuple[str, int] = ("0.0.0.0", 0)
        self.peer: tuple[str, int] | None = None
        self.eof = False  # PeerClosed: nothing after the bytes in the RX ring
        self.error: OSError | None = None  # pending, reported once
        self.dead = False  # reset / errored / runtime gone: no more data calls
        self.wr_shut = False
        self.rd_shut = False
        self.close_sent = False
        self.gone = False  # Closed received (or never established)
        self.rx_reported = 0  # RX ring tail as of the last doorbell (the runtime's window)
        self.watcher: Callable[[], None] | None = None

    # -- state -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Connection {self.conn_id} {self.state} slot={self.slot} peer={self.peer}>"

    def rx_readable(self) -> int:
        return self.rx.readable() if self.rx is not None else 0

    def tx_free(self) -> int:
        """TX bytes this connection may queue now (within the runtime's send budget)."""
        return self.tx.room() if self.tx is not None else 0

    def take_error(self) -> OSError | None:
        error, self.error = self.error, None
        return error

    # -- data, zero copy (call with the session lock: `with conn.session.lock:`, or from
    #    one thread only) ----------------------------------------------------------------------

    def rx_peek(self, count: int | None = None) -> list[memoryview]:
        """Views (one, or two when wrapping) of up to `count` received bytes; valid until rx_done."""
        if self.rx is None:
            return []
        readable = self.rx.readable()
        return self.rx.peek(readable if count is None else min(count, readable))

    def rx_done(self, count: int, kick: bool = True) -> None:
        """Release the oldest `count` received bytes (the runtime reopens the window)."""
        if self.rx is None:
            raise _oserror(errno.ENOTCONN)
        self.rx.consume(count)
        if kick and count:
            self._rx_doorbell()

    def tx_alloc(self, count: int | None = None) -> list[memoryview]:
        """Writable views of up to `count` bytes of free TX space; fill them, then tx_send(n)."""
        if self.tx is None or self._tx_bytes is None:
            raise _oserror(errno.ENOTCONN)
        head, free = self.tx.head, self.tx.room()
        return _pieces(self._tx_bytes, head & (self.tx.size - 1),
                       free if count is None else min(count, free))

    def tx_send(self, count: int, kick: bool = True) -> None:
        """Publish the first `count` bytes written into tx_alloc's views."""
        if self.tx is None:
            raise _oserror(errno.ENOTCONN)
        head = self.tx.head
        self.tx.publish(count)
        if kick and count:
            self._tx_doorbell(head)

    def send(self, data: Any, kick: bool = True) -> int:
        """Copy as much of `data` as fits into the TX ring; returns the count (0: ring full)."""
        if self.tx is None:
            raise _oserror(errno.ENOTCONN)
        head = self.tx.head
        sent = self.tx.write(data, self.tx.room())
        if kick and sent:
            self._tx_doorbell(head)
        return sent

    def recv(self, count: int, kick: bool = True) -> bytes:
        """Copy out and release up to `count` received bytes (b"" when none are there)."""
        if self.rx is None:
            return b""
        data = self.rx.read(count)
        if kick and data:
            self._rx_doorbell()
        return data

    def recv_into(self, buffer: Any, kick: bool = True) -> int:
        if self.rx is None:
            return 0
        done = self.rx.read_into(buffer)
        if kick and done:
            self._rx_doorbell()
        return done

    def _tx_doorbell(self, old_head: int) -> None:
        """After publishing TX bytes from `old_head` on: kick unless bytes before them are still
        unacknowledged (their ACK, retransmission or pacing makes the runtime send ours too).
        Checked after publishing: if the runtime's last look at the ring missed our bytes, it
        had already taken every earlier byte off, and then the tail is at old_head here."""
        if self.tx.tail == old_head:
            self.kick()

    def _rx_doorbell(self) -> None:
        """Kick when the freed RX space is worth a window update: a quarter of the ring. (A
        reader that caught up with less freed leaves the NIC's window over three quarters of the
        ring; when the window was smaller, catching up freed a quarter.)"""
        if self.rx.tail - self.rx_reported >= self.rx.size // RX_UPDATE_FRACTION:
            self.kick()

    def kick(self) -> None:
        """Tell the runtime this connection's rings moved (one message, no reply)."""
        if self.rx is not None:
            self.rx_reported = self.rx.tail
        if not self.gone:
            try:
                self.session.channel.kick(self.conn_id)
            except RuntimeUnavailable:
                pass  # recorded by the channel; the next call reports it

    def shutdown(self, how: str = "wr") -> None:
        """Shutdown(how); no waiting for the reply."""
        if how in ("wr", "rdwr"):
            self.wr_shut = True
        if how in ("rd", "rdwr"):
            self.rd_shut = True
        if not self.gone and not self.dead:
            self.session.request_nowait(lambda r: cp.Shutdown(req_id=r, conn_id=self.conn_id,
                                                              how=how))

    def set_keepalive(self, enabled: bool, idle_s: int, interval_s: int, count: int) -> None:
        """SetKeepalive (SO_KEEPALIVE and TCP_KEEP*); no waiting for the reply."""
        if not self.gone and not self.dead and not self.close_sent:
            self.session.request_nowait(lambda r: cp.SetKeepalive(
                req_id=r, conn_id=self.conn_id, enabled=enabled, idle_s=idle_s,
                interval_s=interval_s, count=count))

    def close(self, abort: bool = False) -> None:
        """Close: the runtime sends FIN once the TX bytes are acknowledged (RST at once with
        `abort`, or if received bytes were left unread); Closed follows."""
        if self.close_sent:
            return
        self.close_sent = True
        if self.gone or self.session.dead is not None:
            self.session._forget(self)
            return
        try:
            self.session.request_nowait(lambda r: cp.Close(req_id=r, conn_id=self.conn_id,
                                                           abort=abort))
        except RuntimeUnavailable:
            self.session._forget(self)

    # -- events (session lock held) ------------------------------------------------------------

    def _attach(self, slot: int | None) -> None:
        if slot is None:
            raise RuntimeUnavailable("the p4tas runtime gave a connection no ring slot: it runs "
                                     "without a data path", errno.EOPNOTSUPP)
        session = self.session
        self.slot = slot
        self.rx = connection_ring(session.segment.buf, session.layout, slot, Direction.RX)
        self.tx = connection_ring(session.segment.buf, session.layout, slot, Direction.TX)
        start = session.layout.ring_bytes_offset(slot, Direction.TX)
        self._tx_bytes = session.segment.buf[start:start + session.layout.tx_ring_size]
        session._slots[slot] = self

    def _detach(self) -> None:
        if self.slot is not None and self.session._slots.get(self.slot) is self:
            del self.session._slots[self.slot]
        self.rx = self.tx = self._tx_bytes = None

    def _on_message(self, msg: cp.Message) -> None:
        ev: ConnEvent | None = None
        if isinstance(msg, cp.Connected):
            self.local = (msg.local_ip, msg.local_port)
            self.peer = (msg.peer_ip, msg.peer_port)
            self._attach(msg.slot)
            self.state = "open"
            ev = ConnEvent(ConnEvent.CONNECTED, self)
        elif isinstance(msg, cp.ConnectFailed):
            self.state = "failed"
            self.error = msg.to_exception()
            self.dead = self.gone = True
            self.session._forget(self)
            ev = ConnEvent(ConnEvent.CONNECT_FAILED, self, error=self.error)
        elif isinstance(msg, cp.PeerClosed):
            self.eof = True
            ev = ConnEvent(ConnEvent.PEER_CLOSED, self)
        elif isinstance(msg, (cp.ConnectionReset, cp.ConnectionErrorEvent)):
            self.error = msg.to_exception()
            self.dead = True
            ev = ConnEvent(ConnEvent.RESET, self, error=self.error)
        elif isinstance(msg, cp.Closed):
            self.gone = True
            if self.state == "connecting":
                self.state = "failed"
            self.session._forget(self)
            ev = ConnEvent(ConnEvent.CLOSED, self)
        if ev is not None:
            self.ctx._post(ev)
        self._notify()

    def _on_ring_event(self, event: Any) -> None:
        if event.kind == EventType.RX_DATA:
            self.ctx._post(ConnEvent(ConnEvent.RX, self, length=event.length))
        elif event.kind == EventType.TX_ACKED:
            self.ctx._post(ConnEvent(ConnEvent.TX_ACKED, self, length=event.length))
        self._notify()

    def _runtime_gone(self, exc: RuntimeUnavailable) -> None:
        if not self.gone:
            self.error = self.error or exc
            self.dead = True
            self.ctx._post(ConnEvent(ConnEvent.RESET, self, error=exc))
            self._notify()

    def _notify(self) -> None:
        if self.watcher is not None:
            self.watcher()


class Listener:
    """A listening port; IncomingConnections queue here until accepted."""

    def __init__(self, session: Session, ctx: Context, reply: cp.Listening) -> None:
        self.session = session
        self.ctx = ctx
        self.listener_id = reply.listener_id
        self.local = (reply.local_ip, reply.port)
        self.queue: collections.deque[Connection] = collections.deque()
        self.closed = False
        self.watcher: Callable[[], None] | None = None

    def accept(self) -> Connection | None:
        """The next established connection (Accept sent to the runtime), or None. Lock held."""
        if not self.queue:
            return None
        conn = self.queue.popleft()

        def failed(reply: cp.Message) -> None:
            if isinstance(reply, cp.Error) and not conn.gone:
                conn.error = conn.error or _oserror(errno.ECONNABORTED)
                conn.dead = True
                conn._notify()
        self.session.request_nowait(lambda r: cp.Accept(req_id=r, conn_id=conn.conn_id), failed)
        return conn

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.session._listeners.pop(self.listener_id, None)
        for conn in self.queue:  # the runtime resets them
            self.session._forget(conn)
        self.queue.clear()
        if self.session.dead is None:
            try:
                self.session.request_nowait(lambda r: cp.CloseListener(
                    req_id=r, listener_id=self.listener_id))
            except RuntimeUnavailable:
                pass
        self._notify()

    def _notify(self) -> None:
        if self.watcher is not None:
            self.watcher()


class Context:
    """A context: an event queue in the segment (RX direction) and, for the low-level API, the
    list of ConnEvents that poll() returns."""

    def __init__(self, session: Session, ctx_id: int, collect: bool = True) -> None:
        self.session = session
        self.ctx_id = ctx_id
        self.queue: EventQueue = context_queue(session.segment.buf, session.layout, ctx_id,
                                               Direction.RX)
        self.collect = collect
        self.events: collections.deque[ConnEvent] = collections.deque()

    def _post(self, event: ConnEvent) -> None:
        if self.collect:
            self.events.append(event)

    def _drain(self) -> bool:
        """Hand this context's queued events to their connections; True if there were any."""
        slots = self.session._slots
        drained = False
        while (event := self.queue.pop()) is not None:
            drained = True
            conn = slots.get(event.slot)
            if conn is not None and conn.ctx is self:
                conn._on_ring_event(event)
        return drained

    # -- low-level API -------------------------------------------------------------------------

    def poll(self, timeout: float | None = None) -> list[ConnEvent]:
        """Events of this context's connections and listeners ([] after `timeout` s)."""
        with self.session.lock:
            self.session.wait(lambda: bool(self.events), timeout)
            events = list(self.events)
            self.events.clear()
            return events

    def connect(self, host: str, port: int, timeout: float = DEFAULT_CONNECT_TIMEOUT,
                local: tuple[str, int] | None = None,
                congestion: str | None = None) -> Connection:
        """Start an active open; CONNECTED or CONNECT_FAILED follows on poll().
        `congestion`: one of control_protocol.CONGESTION_CONTROLS (None: the default)."""
        peer_ip = _ipv4(host)
        with self.session.lock:
            return self.session.request(lambda r: cp.Connect(
                req_id=r, ctx_id=self.ctx_id, peer_ip=peer_ip, peer_port=port,
                local_ip=local[0] if local and local[0] else None,
                local_port=local[1] if local and local[1] else None, timeout_s=timeout,
                congestion=congestion),
                on_reply=lambda reply: self.session._connection_for(reply, self))

    def listen(self, port: int, host: str | None = None, backlog: int = 128,
               congestion: str | None = None) -> Listener:
        with self.session.lock:
            return self.session.listen(self, port, host, backlog, congestion)


def _ipv4(host: Any) -> str:
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    try:
        return str(_std.inet_ntoa(_std.inet_aton(host))) if host.count(".") == 3 else \
            _std.gethostbyname(host)
    except OSError:
        try:
            return _std.gethostbyname(host)
        except OSError as exc:
            raise _std.gaierror(exc.errno or _std.EAI_NONAME,
                                f"cannot resolve {host!r} to an IPv4 address") from None
