"""This process's session with the p4tas runtime, shared by the sockets (host_lib.sockets) and
the low-level event API (host_lib.context).

Session. One per process (created lazily by the first socket, re-created after a fork or after the
runtime went away): a ControlChannel to the runtime's control socket ($P4TAS_CONTROL_SOCKET, else
/tmp/p4tas-runtime.sock), the application's shared-memory segment (HelloOk.shm_name) mapped with
shm_layout.Segment.attach, and context 0 for the sockets. Session.fileno() is the bare control
socket (asyncio's add_reader uses it: host_lib.streams).

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
"""

from __future__ import annotations

import atexit
import collections
import errno
import os
import threading
import time
from typing import Any, Callable

from host_lib import control_protocol as cp
from host_lib.context import ConnEvent, Connection, Context, Listener
from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.shm_layout import Segment


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
        try:
            if self.channel.shm_fd is None:
                raise RuntimeUnavailable(
                    f"the p4tas runtime at {self.channel.path} has no data path (its HelloOk "
                    "carried no shared-memory segment): start it with the bmv2 target and its "
                    "DMA bridge (`make run`)", errno.EOPNOTSUPP)
            try:
                self.segment = Segment.attach_fd(self.channel.shm_fd,
                                                 self.channel.shm_name or "")
            finally:
                os.close(self.channel.shm_fd)  # the mapping stays; the descriptor is not needed
                self.channel.shm_fd = None
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
