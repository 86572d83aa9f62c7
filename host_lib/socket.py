"""Sockets for applications of p4tas: `host_lib.socket()` behaves like the standard library's TCP
socket, and a small low-level event API (TAS's) sits under it on the same session.

    import host_lib
    with host_lib.socket() as s:          # AF_INET, SOCK_STREAM
        s.connect(("10.0.0.2", 7))
        s.sendall(b"hello")
        print(s.recv(4096))

Session. One per process (created lazily by the first socket, re-created after a fork or after the
runtime went away): a ControlChannel to the runtime's control socket ($P4TAS_CONTROL_SOCKET, else
/tmp/p4tas-runtime.sock), the application's shared-memory segment (HelloOk.shm_name) mapped with
shm_layout.Segment.attach, and context 0 for the sockets. Every connection has an RX ring that the
application consumes and a TX ring that it fills (rings.connection_ring of the slot the runtime
named in IncomingConnection/Connected). Payload never crosses the control socket: recv copies out of
the RX ring (ByteRing.read/read_into, memoryview slices, no per-byte loops), send copies into the TX
ring, and a Kick(conn_id) doorbell tells the runtime when it must act: new TX bytes that no
pending ACK, retransmission or pacing timer will pick up anyway (every byte before them already
acknowledged), or freed RX space worth a window update (a quarter of the ring, or the reader
caught up). Bulk transfers thus ring the doorbell rarely (virtio-style event suppression).

Waiting and wakeup. An operation first checks what it needs (ring positions, connection state:
connected, EOF, reset, the accept queue); if that is not there it "pumps" the session: reads every
control message already received without blocking and dispatches it (replies to the request that
waits for them, connection events to their Connection, Wake(ctx_id) -> drain that context's
event queue; queue events are only hints, ring positions are the truth), then checks again. If the
operation still cannot proceed: non-blocking -> BlockingIOError, otherwise block in poll() on the
control socket for the remaining timeout (socket.timeout at the end) and repeat. Threads: the
session has one lock; one thread at a time blocks in poll() (without the lock), the others wait on
a condition that it signals after every wakeup, so a thread blocked in recv() never stops another
thread's send(). A thread that reads or dispatches anything while another is in poll() wakes it
(an eventfd in the same poll()): what it read may be what the poller waits for.

fileno(). Each socket has its own descriptor (an epoll instance, so selectors can register several
sockets) that is readable when the runtime has sent this process something (the control socket is
in it) or this socket can make progress now (received bytes, EOF, an error, a connection to
accept, a finished connect, TX space after a send that raised BlockingIOError: an eventfd that
the library sets and clears). It never reports *writable*: wait for readable, or just retry the
send. Readiness may be spurious (another socket's message), so use it with non-blocking sockets,
as selectors' documentation asks anyway. Session.fileno() is the bare control socket (asyncio's
add_reader uses it: host_lib.streams).

Semantics follow Linux: b"" at EOF (after the bytes received before the FIN), ECONNRESET reported
once by the first call after a reset (ring data received before it is still delivered first),
then recv gives b"" and send BrokenPipeError, as after shutdown(SHUT_WR); OSError(EBADF) on a
closed socket; ENOTCONN for data calls on a socket that is not connected; EINVAL for listen() on
a connected socket. Differences: bind() only records the address (conflicts show at listen() or
connect()), listen() needs an explicit port, only AF_INET/SOCK_STREAM exist, and the runtime
being gone raises RuntimeUnavailable (a ConnectionError) naming what to check.

Low-level API (on the same session): `session().create_context()` -> Context; ctx.connect(),
ctx.listen() -> Connection / Listener; ctx.poll(timeout) -> list of ConnEvent; conn.rx_peek() are
zero-copy memoryviews of received bytes, conn.rx_done(n) releases them; conn.tx_alloc(n) are
writable memoryviews of free TX space, conn.tx_send(n) publishes them; each of those rings the
doorbell when needed (kick=False to batch, then conn.kick()).
"""

from __future__ import annotations

import atexit
import collections
import errno
import os
import select
import socket as _std
import threading
import struct
import time
from dataclasses import dataclass
from typing import Any, Callable

from host_lib import control_protocol as cp
from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.rings import ByteRing, EventQueue, connection_ring, context_queue
from host_lib.shm_layout import Direction, EventType, Segment

AF_INET = _std.AF_INET
SOCK_STREAM = _std.SOCK_STREAM
TCP_CONGESTION = 13  # <netinet/tcp.h>; socket.TCP_CONGESTION where Python defines it
SHUT_RD, SHUT_WR, SHUT_RDWR = _std.SHUT_RD, _std.SHUT_WR, _std.SHUT_RDWR
timeout = _std.timeout  # == TimeoutError
RX_UPDATE_FRACTION = 4  # window updates once a quarter of the RX ring was read (or all of it)
DEFAULT_CONNECT_TIMEOUT = 75.0  # the runtime's SYN timeout when the socket has none

_HOW = {SHUT_RD: "rd", SHUT_WR: "wr", SHUT_RDWR: "rdwr"}
_LINGER = struct.Struct("ii")  # struct linger: l_onoff, l_linger
_MISSING = object()


def _oserror(code: int, text: str | None = None) -> OSError:
    return OSError(code, text or os.strerror(code))  # OSError picks the errno's subclass


def _would_block() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")


def _pieces(view: memoryview, start: int, count: int) -> list[memoryview]:
    """Up to two slices of a ring's bytes: `count` bytes from offset `start`, wrapping."""
    if count <= 0:
        return []
    first = min(count, len(view) - start)
    pieces = [view[start:start + first]]
    if first < count:
        pieces.append(view[:count - first])
    return pieces


# ================================================================================ low level

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
        self.want_write = False  # a send found the TX ring full
        self.watcher: Callable[[], None] | None = None

    # -- state -------------------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"<Connection {self.conn_id} {self.state} slot={self.slot} peer={self.peer}>"

    def rx_readable(self) -> int:
        return self.rx.readable() if self.rx is not None else 0

    def tx_free(self) -> int:
        return self.tx.free_space() if self.tx is not None else 0

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
        head, tail = self.tx.head, self.tx.tail
        free = self.tx.size - (head - tail)
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
        sent = self.tx.write(data)
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
        """Kick when the freed RX space is worth a window update: a quarter of the ring, or
        everything read (an interactive reader updates at once)."""
        tail = self.rx.tail
        if tail - self.rx_reported >= self.rx.size // RX_UPDATE_FRACTION \
                or self.rx.readable() == 0:
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


# ================================================================================ session

class Session:
    """This process's session with the runtime: channel, segment, contexts, connections."""

    def __init__(self, path: str | os.PathLike | None = None, app_name: str | None = None,
                 timeout: float = 10.0) -> None:
        self.channel = ControlChannel(path, app_name=app_name, timeout=timeout)
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self._cond = threading.Condition(self.lock)
        self._polling = False
        # Written when a thread reads what the poller may be waiting for (it blocks in poll()
        # on the control socket, which that read has emptied): a wakeup is never lost.
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closed = False
        self.dead: RuntimeUnavailable | None = None
        self._awaiting: dict[int, Callable[[cp.Message], None]] = {}  # req_id -> callback
        self._replies: dict[int, tuple[cp.Message, Any]] = {}  # for request(): (reply, result)
        self._conns: dict[int, Connection] = {}
        self._slots: dict[int, Connection] = {}
        self._listeners: dict[int, Listener] = {}
        self.contexts: dict[int, Context] = {}
        self.deferred: collections.deque[Callable[[], None]] = collections.deque()
        self.last_error: cp.Error | None = None
        try:
            if not self.channel.shm_name:
                raise RuntimeUnavailable(
                    f"the p4tas runtime at {self.channel.path} has no data path (its HelloOk "
                    "named no shared-memory segment): start it with the bmv2 target and its "
                    "DMA bridge (`make run`)", errno.EOPNOTSUPP)
            self.segment = Segment.attach(self.channel.shm_name)
            self.layout = self.segment.layout
            with self.lock:
                self.socket_context = self._create_context(collect=False)
        except BaseException:
            self.channel.close()
            self._release_wake_fd()
            raise

    # -- public --------------------------------------------------------------------------------

    def fileno(self) -> int:
        """The control socket: readable when the runtime sent something (for add_reader)."""
        return self.channel.fileno()

    def create_context(self) -> Context:
        """A new context for the low-level API (ids count from 0 per application)."""
        with self.lock:
            return self._create_context(collect=True)

    def pump(self) -> None:
        """Dispatch whatever the runtime sent, without blocking (for event-loop integration)."""
        with self.lock:
            self._pump()

    def close(self) -> None:
        """Say Bye (the runtime closes this process's connections as close() would: FIN after
        their queued data, RST where received data is unread) and unmap the segment."""
        with self.lock:
            self.channel.close()
            self._closed = True
            self._wake_poller()
            if not self._polling:
                self._release_wake_fd()  # else the poller does, once it is out of poll()
            self._runtime_gone(RuntimeUnavailable("this process closed its p4tas session",
                                                  errno.ESHUTDOWN))
            for ctx in self.contexts.values():
                ctx.queue.release()
            for conn in list(self._conns.values()):
                conn._detach()
            try:
                self.segment.close()
            except BufferError:
                pass  # views still held by the application; the mapping goes with the process

    # -- requests (lock held) ------------------------------------------------------------------

    def request(self, build: Callable[[int], cp.Request], timeout: float | None = None,
                on_reply: Callable[[cp.Message], Any] | None = None) -> Any:
        """Send a request and wait for its reply; its Error raises as the matching OSError.

        on_reply(reply) runs during dispatch, before the events that came with the reply are
        dispatched (so it can register the listener/connection they are about); request()
        returns its result (or the reply without one)."""
        self._check_alive()
        req_id = self.channel.next_req_id()

        def got(reply: cp.Message) -> None:
            result = reply
            if on_reply is not None and not isinstance(reply, cp.Error):
                result = on_reply(reply)
            self._replies[req_id] = (reply, result)
        self._awaiting[req_id] = got
        try:
            self.channel.send(build(req_id))
        except BaseException:
            self._awaiting.pop(req_id, None)
            raise
        limit = self.channel.timeout if timeout is None else timeout
        if not self.wait(lambda: req_id in self._replies, limit):
            self._awaiting.pop(req_id, None)
            raise TimeoutError(f"the p4tas runtime did not answer within {limit:g} s (is it "
                               "overloaded or stuck?)")
        if req_id not in self._replies:
            self._awaiting.pop(req_id, None)
            self._check_alive()
            raise RuntimeUnavailable("no reply from the p4tas runtime")
        reply, result = self._replies.pop(req_id)
        if isinstance(reply, cp.Error):
            raise reply.to_exception()
        return result

    def request_nowait(self, build: Callable[[int], cp.Request],
                       on_reply: Callable[[cp.Message], None] | None = None) -> int:
        """Send a request; its reply goes to on_reply (or is dropped) when it comes."""
        self._check_alive()
        req_id = self.channel.next_req_id()
        self._awaiting[req_id] = on_reply or (lambda reply: None)
        try:
            self.channel.send(build(req_id))
        except BaseException:
            self._awaiting.pop(req_id, None)
            raise
        return req_id

    def listen(self, ctx: Context, port: int, host: str | None, backlog: int,
               congestion: str | None = None) -> Listener:
        def register(reply: cp.Listening) -> Listener:
            listener = Listener(self, ctx, reply)
            self._listeners[listener.listener_id] = listener
            return listener
        return self.request(lambda r: cp.Listen(req_id=r, ctx_id=ctx.ctx_id, port=port,
                                                backlog=max(1, min(backlog, 0xFFFF)),
                                                local_ip=host, congestion=congestion),
                            on_reply=register)

    # -- waiting (lock held) -------------------------------------------------------------------

    def wait(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Pump until ready() (True) or the timeout passes (False); True too when the runtime is
        gone, so that the caller looks at the connection's state and raises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._pump()
            if ready() or self.dead is not None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if self._polling:  # another thread is in poll(): it wakes us after each message
                self._cond.wait(left)
                continue
            self._polling = True
            self.lock.release()
            try:
                self.channel.wait_readable(left, self._wake_fd)
            finally:
                self.lock.acquire()
                self._polling = False
                self._take_wakeup()
                self._cond.notify_all()

    def _wake_poller(self) -> None:
        """The thread blocked in poll() (if any) looks again: this one changed what it waits on."""
        if self._polling and self._wake_fd >= 0:
            os.eventfd_write(self._wake_fd, 1)

    def _take_wakeup(self) -> None:
        if self._closed:
            self._release_wake_fd()
            return
        try:
            os.eventfd_read(self._wake_fd)
        except BlockingIOError:
            pass

    def _release_wake_fd(self) -> None:
        if self._wake_fd >= 0:
            os.close(self._wake_fd)
            self._wake_fd = -1

    def _check_alive(self) -> None:
        if self.dead is not None:
            raise RuntimeUnavailable(str(self.dead), self.dead.errno or errno.ECONNRESET)

    def _pump(self) -> None:
        progressed = bool(self.deferred)
        while self.deferred:
            try:
                self.deferred.popleft()()
            except OSError:
                pass
        if self.dead is None:
            try:
                messages = self.channel.read_messages()
            except RuntimeUnavailable as exc:
                self._runtime_gone(exc)
                messages = []
            for msg in messages:
                self._dispatch(msg)
            progressed |= bool(messages)
            for ctx in self.contexts.values():  # events without a Wake yet: cheap, one load each
                progressed |= ctx._drain()
        if progressed or self.dead is not None:
            self._wake_poller()

    def _dispatch(self, msg: cp.Message) -> None:
        if isinstance(msg, cp.Wake):
            ctx = self.contexts.get(msg.ctx_id)
            if ctx is not None:
                ctx._drain()
        elif isinstance(msg, cp.Reply):
            callback = self._awaiting.pop(msg.req_id, None) if msg.req_id is not None else None
            if callback is not None:
                callback(msg)
            elif isinstance(msg, cp.Error):
                self.last_error = msg
        elif isinstance(msg, cp.IncomingConnection):
            listener = self._listeners.get(msg.listener_id)
            if listener is None:
                return  # closed meanwhile: the runtime resets it
            conn = Connection(self, listener.ctx, msg.conn_id)
            conn.local = (msg.local_ip, msg.local_port)
            conn.peer = (msg.peer_ip, msg.peer_port)
            self._conns[conn.conn_id] = conn
            conn._attach(msg.slot)
            conn.state = "open"
            listener.queue.append(conn)
            listener.ctx._post(ConnEvent(ConnEvent.INCOMING, None, listener))
            listener._notify()
        elif isinstance(msg, cp.Event):
            conn = self._conns.get(msg.conn_id)
            if conn is not None:
                conn._on_message(msg)

    def _runtime_gone(self, exc: RuntimeUnavailable) -> None:
        if self.dead is not None:
            return
        self.dead = exc
        for conn in list(self._conns.values()):
            conn._runtime_gone(exc)
        for listener in list(self._listeners.values()):
            listener.closed = True
            listener._notify()

    # -- bookkeeping (lock held) ---------------------------------------------------------------

    def _create_context(self, collect: bool) -> Context:
        ctx_id = self.request(lambda r: cp.CreateContext(req_id=r)).ctx_id
        if ctx_id >= self.layout.max_contexts:
            raise OSError(errno.EMFILE, f"context {ctx_id} is beyond the segment's "
                          f"{self.layout.max_contexts} contexts")
        ctx = Context(self, ctx_id, collect)
        self.contexts[ctx_id] = ctx
        return ctx

    def _connection_for(self, reply: cp.Connecting, ctx: Context | None = None) -> Connection:
        conn = self._conns.get(reply.conn_id)
        if conn is None:
            conn = Connection(self, ctx or self.socket_context, reply.conn_id)
            self._conns[conn.conn_id] = conn
        return conn

    def _forget(self, conn: Connection) -> None:
        if self._conns.get(conn.conn_id) is conn:
            del self._conns[conn.conn_id]
        conn._detach()


_SESSION: Session | None = None
_SESSION_LOCK = threading.Lock()


def session() -> Session:
    """The process-wide session, created on first use (again after a fork or a dead runtime)."""
    global _SESSION
    with _SESSION_LOCK:
        current = _SESSION
        if current is None or current.pid != os.getpid() or current.dead is not None:
            _SESSION = current = Session()
        return current


def close_session() -> None:
    """Close the process-wide session (at exit, or in tests); sockets of it stop working."""
    global _SESSION
    with _SESSION_LOCK:
        current, _SESSION = _SESSION, None
    if current is not None and current.pid == os.getpid():
        current.close()


atexit.register(close_session)


# ================================================================================ sockets

class _Readiness:
    """fileno() of a socket: an epoll fd over the control socket and a per-socket eventfd."""

    def __init__(self, control_fd: int) -> None:
        self.epoll = select.epoll()
        self.event_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.epoll.register(control_fd, select.EPOLLIN)
        self.epoll.register(self.event_fd, select.EPOLLIN)
        self.signalled = False

    def set(self, ready: bool) -> None:
        if ready and not self.signalled:
            os.eventfd_write(self.event_fd, 1)
            self.signalled = True
        elif not ready and self.signalled:
            try:
                os.eventfd_read(self.event_fd)
            except BlockingIOError:
                pass
            self.signalled = False

    def close(self) -> None:
        self.epoll.close()
        os.close(self.event_fd)


class Socket:
    """A TCP socket whose data path is p4tas (see the module docstring)."""

    def __init__(self, family: int = AF_INET, type: int = SOCK_STREAM, proto: int = 0,
                 fileno: int | None = None) -> None:
        if fileno is not None:
            raise OSError(errno.EOPNOTSUPP, "host_lib sockets cannot wrap a file descriptor")
        if family != AF_INET:
            raise OSError(errno.EAFNOSUPPORT, "p4tas sockets are AF_INET (IPv4) only")
        kind = type & ~(_std.SOCK_NONBLOCK | _std.SOCK_CLOEXEC)
        if kind != SOCK_STREAM:
            raise OSError(errno.ESOCKTNOSUPPORT, "p4tas sockets are SOCK_STREAM (TCP) only")
        if proto not in (0, _std.IPPROTO_TCP):
            raise OSError(errno.EPROTONOSUPPORT, "p4tas sockets speak TCP only")
        self._setup(session(), 0.0 if type & _std.SOCK_NONBLOCK else _std.getdefaulttimeout())

    def _setup(self, sess: Session, timeout_value: float | None) -> None:
        self.family, self.type, self.proto = AF_INET, SOCK_STREAM, _std.IPPROTO_TCP
        self._timeout = timeout_value
        self._session = sess
        self._closed = False
        self._abandoned = False
        self._bound: tuple[str, int] | None = None
        self._conn: Connection | None = None
        self._listener: Listener | None = None
        self._connecting = False  # Connect sent, no Connecting reply yet
        self._connect_error: OSError | None = None  # for SO_ERROR / the next connect call
        self._connect_noticed = True
        self._ready: _Readiness | None = None
        self._on_change: Callable[[], None] | None = None  # e.g. host_lib.streams' waker
        self._options: dict[tuple[int, int], int] = {}

    @classmethod
    def _accepted(cls, conn: Connection, timeout: float | None) -> Socket:
        sock = cls.__new__(cls)
        sock._setup(conn.session, timeout)
        sock._attach(conn)
        return sock

    def _attach(self, conn: Connection) -> None:
        self._conn = conn
        conn.watcher = self._changed

    # -- stdlib surface ------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._listener else \
            (self._conn.state if self._conn else "new")
        return f"<host_lib.socket {state} laddr={self._local()} raddr={self._peer_or_none()}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        # No lock here (the GC may run while it is held): queue the close for the next pump.
        if not getattr(self, "_closed", True):
            self._closed = True
            conn, listener, ready = self._conn, self._listener, self._ready
            if conn is not None:
                self._session.deferred.append(conn.close)
            if listener is not None:
                self._session.deferred.append(listener.close)
            if ready is not None:
                ready.close()

    def fileno(self) -> int:
        if self._closed:
            return -1
        if self._ready is None:
            with self._session.lock:
                self._ready = _Readiness(self._session.fileno())
                self._update_ready()
        return self._ready.epoll.fileno()

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise TypeError("Timeout value must be int, float or None") from None
            if not value >= 0.0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def bind(self, address: tuple[str, int]) -> None:
        host, port = _address(address)
        with self._session.lock:
            self._check_open()
            if self._bound is not None or self._conn is not None or self._listener is not None:
                raise _oserror(errno.EINVAL, "socket is already bound or in use")
            self._bound = (host or "0.0.0.0", port)

    def listen(self, backlog: int = 128) -> None:
        if not isinstance(backlog, int):
            raise TypeError("backlog must be an integer")
        with self._session.lock:
            self._check_open()
            if self._listener is not None:
                return
            if self._conn is not None or self._connecting:
                raise _oserror(errno.EINVAL, "listen() on a connected socket")
            if self._bound is None or self._bound[1] == 0:
                raise _oserror(errno.EINVAL, "p4tas needs bind((host, port)) with an explicit "
                               "port before listen()")
            host = None if self._bound[0] in ("", "0.0.0.0") else self._bound[0]
            self._listener = self._session.listen(self._session.socket_context,
                                                  self._bound[1], host, backlog,
                                                  self._congestion())
            self._listener.watcher = self._changed

    def accept(self) -> tuple[Socket, tuple[str, int]]:
        with self._session.lock:
            self._check_open()
            listener = self._listener
            if listener is None:
                raise _oserror(errno.EINVAL, "accept() on a socket that is not listening")
            self._session._pump()
            self._wait(lambda: bool(listener.queue) or listener.closed)
            if self._closed or listener.closed:
                self._check_alive()
                raise _oserror(errno.EBADF)
            conn = listener.accept()
            self._update_ready()
            sock = Socket._accepted(conn, _std.getdefaulttimeout())
            return sock, conn.peer

    def connect(self, address: tuple[str, int]) -> None:
        host, port = _address(address)
        if not host:
            raise _oserror(errno.EINVAL, "connect() needs a host")
        with self._session.lock:
            self._check_open()
            if self._listener is not None:
                raise _oserror(errno.EISCONN, "connect() on a listening socket")
            self._connect_noticed = True
            if self._conn is None and not self._connecting:
                if self._connect_error is not None:
                    raise self._take_connect_error()
                self._abandoned = False
                self._start_connect(_ipv4(host), port)
            elif self._conn is not None and self._conn.state == "open":
                raise _oserror(errno.EISCONN)
            elif self._timeout == 0.0 and self._connect_pending():
                raise _oserror(errno.EALREADY)
            if self._timeout == 0.0:
                self._session.wait(lambda: not self._connect_pending(), 0)
                if self._connect_pending():
                    raise BlockingIOError(errno.EINPROGRESS, "Operation now in progress")
            elif not self._session.wait(lambda: not self._connect_pending(), self._timeout):
                self._abandon_connect()
                raise timeout("timed out")
            self._check_alive()
            if self._conn is None or self._conn.state != "open":
                raise self._take_connect_error()

    def connect_ex(self, address: tuple[str, int]) -> int:
        try:
            self.connect(address)
        except timeout:
            return errno.EWOULDBLOCK
        except RuntimeUnavailable:
            raise
        except OSError as exc:
            if exc.errno is None:
                raise
            return exc.errno
        return 0

    def send(self, data: Any, flags: int = 0) -> int:
        view = _byte_view(data)
        nonblocking = self._check_flags(flags, _std.MSG_DONTWAIT | _std.MSG_NOSIGNAL)
        with self._session.lock:
            conn = self._data_conn()
            self._session._pump()  # a reset or close that already came: one recv() syscall
            self._send_check(conn)
            if not len(view):
                return 0

            def ready() -> bool:
                return conn.state != "connecting" and (conn.tx_free() > 0 or conn.dead
                                                      or conn.gone or conn.error is not None)
            self._wait(ready, 0.0 if nonblocking else self._timeout, writing=conn)
            self._send_check(conn)
            sent = conn.send(view)
            self._update_ready()
            return sent

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = _byte_view(data)
        self._check_flags(flags, _std.MSG_NOSIGNAL)
        deadline = None if not self._timeout else time.monotonic() + self._timeout
        with self._session.lock:
            conn = self._data_conn()
            self._session._pump()
            while True:
                self._send_check(conn)
                if not len(view):
                    return

                def ready() -> bool:
                    return conn.state != "connecting" and (conn.tx_free() > 0 or conn.dead
                                                          or conn.gone or conn.error is not None)
                if not ready():
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if self._timeout == 0.0:
                        left = 0.0
                    self._wait(ready, left, writing=conn)
                    self._send_check(conn)
                sent = conn.send(view)
                view = view[sent:]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not isinstance(bufsize, int):
            raise TypeError("bufsize must be an integer")
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        peek = bool(flags & _std.MSG_PEEK)
        nonblocking = self._check_flags(flags, _std.MSG_DONTWAIT | _std.MSG_PEEK)
        with self._session.lock:
            conn = self._recv_ready(nonblocking)
            if bufsize == 0:
                return b""
            if peek:
                pieces = conn.rx_peek(bufsize)
                data = b"".join(pieces)
                for piece in pieces:
                    piece.release()
            else:
                data = conn.recv(bufsize)
            if not data:
                self._recv_error(conn)
            self._update_ready()
            return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer)
        if view.readonly:
            raise TypeError("recv_into() argument 'buffer' must be read-write bytes-like object")
        view = _byte_view(view)
        if nbytes < 0:
            raise ValueError("negative buffersize in recv_into")
        if nbytes > len(view):
            raise ValueError("buffer too small for requested bytes")
        target = view[:nbytes or len(view)]
        nonblocking = self._check_flags(flags, _std.MSG_DONTWAIT)
        with self._session.lock:
            conn = self._recv_ready(nonblocking)
            if not len(target):
                return 0
            count = conn.recv_into(target)
            if not count:
                self._recv_error(conn)
            self._update_ready()
            return count

    def shutdown(self, how: int) -> None:
        if how not in _HOW:
            raise _oserror(errno.EINVAL, "shutdown(how): how must be SHUT_RD, SHUT_WR or "
                           "SHUT_RDWR")
        with self._session.lock:
            self._check_open()
            conn = self._conn
            if conn is None or conn.state != "open":
                raise _oserror(errno.ENOTCONN)
            self._check_alive()
            conn.shutdown(_HOW[how])
            self._update_ready()

    def close(self) -> None:
        if self._closed:
            return
        with self._session.lock:
            if self._closed:
                return
            self._closed = True
            if self._connecting and self._conn is None:
                self._abandon_connect()
            if self._conn is not None:
                self._conn.watcher = None
                self._conn.close(abort=self._linger_zero())
            if self._listener is not None:
                self._listener.watcher = None
                self._listener.close()
            if self._ready is not None:
                self._ready.close()
                self._ready = None

    def detach(self) -> int:
        raise OSError(errno.EOPNOTSUPP, "host_lib sockets have no file descriptor to detach")

    def getsockname(self) -> tuple[str, int]:
        self._check_open()
        return self._local()

    def getpeername(self) -> tuple[str, int]:
        self._check_open()
        peer = self._peer_or_none()
        if peer is None:
            raise _oserror(errno.ENOTCONN)
        return peer

    def setsockopt(self, level: int, option: int, value: Any, optlen: int | None = None) -> None:
        """TCP_CONGESTION (b"dctcp", b"timely", b"none"; before connect/listen) chooses the
        congestion control, as on Linux; others (TCP_NODELAY, SO_REUSEADDR...) are accepted
        and remembered without effect."""
        self._check_open()
        if (level, option) == (_std.IPPROTO_TCP, TCP_CONGESTION):
            name = value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
            name = name.rstrip("\0")
            if name not in cp.CONGESTION_CONTROLS:
                raise _oserror(errno.ENOENT, f"no congestion control {name!r}: p4tas has "
                               f"{', '.join(cp.CONGESTION_CONTROLS)}")
            value = name.encode()
        self._options[(level, option)] = value

    def _linger_zero(self) -> bool:
        """SO_LINGER on with a zero timeout: close() resets the connection (as on Linux)."""
        value = self._options.get((_std.SOL_SOCKET, _std.SO_LINGER))
        if not isinstance(value, (bytes, bytearray)) or len(value) < _LINGER.size:
            return False
        onoff, seconds = _LINGER.unpack_from(value)
        return bool(onoff) and seconds == 0

    def _congestion(self) -> str | None:
        value = self._options.get((_std.IPPROTO_TCP, TCP_CONGESTION))
        return value.decode() if value else None

    def getsockopt(self, level: int, option: int, buflen: int | None = None) -> Any:
        self._check_open()
        if (level, option) == (_std.SOL_SOCKET, _std.SO_ERROR):
            with self._session.lock:
                self._session.wait(lambda: True, 0)
                self._connect_noticed = True
                conn = self._conn
                if not self._connect_pending() and (self._connect_error is not None or (
                        conn is not None and conn.state == "failed")):
                    error = self._take_connect_error()
                    self._update_ready()
                    return error.errno or errno.EIO
                return 0
        if (level, option) == (_std.SOL_SOCKET, _std.SO_TYPE):
            return SOCK_STREAM
        return self._options.get((level, option), 0)

    # -- internals (lock held unless said otherwise) ------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _oserror(errno.EBADF)

    def _check_alive(self) -> None:
        self._session._check_alive()

    @staticmethod
    def _check_flags(flags: int, allowed: int) -> bool:
        if flags & ~allowed:
            raise _oserror(errno.EOPNOTSUPP, f"flags {flags:#x} are not supported by p4tas")
        return bool(flags & _std.MSG_DONTWAIT)

    def _wait(self, ready: Callable[[], bool], limit: Any = _MISSING,
              writing: Connection | None = None) -> None:
        limit = self._timeout if limit is _MISSING else limit
        if ready():
            return
        if not self._session.wait(ready, limit if limit is not None else None):
            if writing is not None:
                writing.want_write = True
                self._update_ready()
            if limit == 0.0:
                raise _would_block()
            raise timeout("timed out")
        if writing is not None:
            writing.want_write = False

    def _data_conn(self) -> Connection:
        self._check_open()
        self._connect_noticed = True
        conn = self._conn
        if conn is None:
            if self._connecting:  # Connect sent, reply pending: wait for the connection object
                self._wait(lambda: self._conn is not None or not self._connecting)
                if self._conn is not None:
                    return self._conn
            self._check_alive()
            if self._connect_error is not None:
                raise self._take_connect_error()
            raise _oserror(errno.ENOTCONN)
        return conn

    def _send_check(self, conn: Connection) -> None:
        self._check_open()
        if conn.error is not None:
            error = conn.take_error()
            self._update_ready()
            raise error
        if conn.state == "failed":
            raise _oserror(errno.ENOTCONN)
        if conn.wr_shut or conn.dead or conn.gone:
            if isinstance(self._session.dead, RuntimeUnavailable) and not conn.wr_shut:
                self._check_alive()
            raise _oserror(errno.EPIPE)

    def _recv_ready(self, nonblocking: bool) -> Connection:
        conn = self._data_conn()
        self._session._pump()  # keeps fileno() readiness exact: no message left unread

        def ready() -> bool:
            return conn.state != "connecting" and (
                conn.rx_readable() > 0 or conn.eof or conn.rd_shut or conn.dead or conn.gone
                or conn.error is not None)
        self._wait(ready, 0.0 if nonblocking else self._timeout)
        return conn

    def _recv_error(self, conn: Connection) -> None:
        """Nothing was read: raise the pending error, if any (then b"" means EOF)."""
        if conn.error is not None:
            error = conn.take_error()
            self._update_ready()
            raise error
        if conn.state == "failed":
            raise _oserror(errno.ENOTCONN)
        if self._session.dead is not None and not conn.gone and not conn.close_sent:
            self._check_alive()

    def _start_connect(self, host: str, port: int) -> None:
        local = self._bound
        limit = self._timeout if self._timeout else DEFAULT_CONNECT_TIMEOUT
        limit = min(max(limit, 0.001), cp.MAX_TIMEOUT_S)
        session = self._session

        def on_reply(reply: cp.Message) -> None:
            self._connecting = False
            if isinstance(reply, cp.Connecting):
                conn = session._connection_for(reply)
                if self._closed or self._abandoned:
                    conn.close()
                    return
                self._attach(conn)
            elif isinstance(reply, cp.Error):
                self._connect_error = reply.to_exception()
            self._changed()

        self._connecting = True
        self._connect_noticed = False
        session.request_nowait(lambda r: cp.Connect(
            req_id=r, ctx_id=session.socket_context.ctx_id, peer_ip=host, peer_port=port,
            local_ip=local[0] if local and local[0] not in ("", "0.0.0.0") else None,
            local_port=local[1] if local and local[1] else None, timeout_s=limit,
            congestion=self._congestion()), on_reply)

    def _connect_pending(self) -> bool:
        if self._session.dead is not None:
            return False
        return self._connecting or (self._conn is not None and self._conn.state == "connecting")

    def _abandon_connect(self) -> None:
        if self._conn is not None:
            self._conn.watcher = None
            self._conn.close()
            self._conn = None
        # A Connect still waiting for its reply: on_reply closes the connection it names.
        self._abandoned = self._connecting
        self._connecting = False

    def _take_connect_error(self) -> OSError:
        conn = self._conn
        error = self._connect_error or (conn.take_error() if conn else None) or \
            _oserror(errno.ECONNREFUSED)
        self._connect_error = None
        if conn is not None:
            conn.watcher = None
            self._conn = None
        return error

    def _changed(self) -> None:
        """A watcher: the connection/listener changed (called during dispatch)."""
        self._update_ready()
        if self._on_change is not None:
            self._on_change()

    def _update_ready(self) -> None:
        if self._ready is not None:
            self._ready.set(self._can_progress())

    def _can_progress(self) -> bool:
        if self._closed:
            return True
        if self._listener is not None:
            return bool(self._listener.queue) or self._listener.closed
        if self._connect_error is not None:
            return True
        conn = self._conn
        if conn is None:
            return self._session.dead is not None
        if conn.state == "connecting":
            return False
        if not self._connect_noticed:
            return True
        return (conn.rx_readable() > 0 or conn.eof or conn.dead or conn.gone
                or conn.error is not None or (conn.want_write and conn.tx_free() > 0))

    def _local(self) -> tuple[str, int]:
        if self._listener is not None:
            return self._listener.local
        if self._conn is not None and self._conn.state == "open":
            return self._conn.local
        return self._bound or ("0.0.0.0", 0)

    def _peer_or_none(self) -> tuple[str, int] | None:
        conn = self._conn
        return conn.peer if conn is not None and conn.state == "open" else None


socket = Socket


def _address(address: Any) -> tuple[str, int]:
    if not isinstance(address, tuple) or len(address) != 2:
        raise TypeError("AF_INET address must be a pair (host, port)")
    host, port = address
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not 0 <= port <= 0xFFFF:
        raise OverflowError("port must be 0-65535.")
    if host in ("", "0.0.0.0"):
        return "", port
    return _ipv4(host), port


def _byte_view(data: Any) -> memoryview:
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 and view.c_contiguous else \
        view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
