"""An application's session with the p4tas runtime over its control socket.

Two ways to use it:

- blocking (tools, tests): requests wait for their reply; events that arrive meanwhile are
  queued for next_event() / wait_for();
- message-level (host_lib.sessions, under the sockets, the streams and the low-level API):
  send() and kick() write one message, and wait_readable() + read_messages() hand over every
  message the runtime sent, non-blocking, for the caller to dispatch (replies by req_id, events
  by conn_id, Wake by ctx_id). fileno() is the control socket, readable when the runtime has
  sent something.

Don't mix the two on one channel. Either way, frames are split by a control_protocol.FrameReader,
so a timeout never leaves the stream half-read."""

from __future__ import annotations

import collections
import errno
import itertools
import os
import select
import socket
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from host_lib import control_protocol as cp

_RECV_CHUNK = 256 * 1024


def default_socket_path() -> Path:
    """$P4TAS_CONTROL_SOCKET, read now (not at import), or the runtime's default path."""
    return Path(os.environ.get("P4TAS_CONTROL_SOCKET") or cp.DEFAULT_CONTROL_SOCKET)
E = TypeVar("E", bound=cp.Message)


class RuntimeUnavailable(ConnectionError):
    """The runtime daemon is not reachable or went away."""

    def __init__(self, message: str, code: int = errno.ECONNREFUSED) -> None:
        super().__init__(code, message)

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class ControlChannel:
    """One application's connection to the runtime."""

    def __init__(self, path: Path | str | None = None, app_name: str | None = None,
                 timeout: float = 10.0, monitor: bool = False) -> None:
        """`monitor`: an operator's session (no shared memory; only stats and flows)."""
        path = Path(path) if path is not None else default_socket_path()
        self.path = path
        self.timeout = timeout
        self._req_ids = itertools.count(1)
        self._events: collections.deque[cp.Message] = collections.deque()
        self._inbox: collections.deque[cp.Message] = collections.deque()
        self._reader = cp.FrameReader(expect=cp.ServerMessage)
        self._gone: str | None = None  # why the runtime is unreachable now
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise RuntimeUnavailable(
                f"cannot reach the p4tas runtime at {path} ({exc}): is the runtime running "
                "(`python -m runtime`, or `make run`), and does $P4TAS_CONTROL_SOCKET name its "
                "control socket (--control-socket)?") from None
        self._sock.setblocking(False)  # every wait is a poll() with a timeout (wait_readable)
        self._fd = self._sock.fileno()
        self.shm_fd: int | None = None  # the segment's descriptor, which HelloOk carries
        self._want_fd = True            # until the Hello is answered (read with recvmsg)
        name = app_name or Path(sys.argv[0] or "python").name or "python"
        try:
            self.send(cp.Hello(version=cp.PROTOCOL_VERSION, app_name=name[:cp.MAX_APP_NAME_CHARS],
                               pid=os.getpid(), monitor=monitor))
            reply = self._receive()
        except BaseException:
            self._sock.close()
            raise
        if isinstance(reply, cp.Error):
            self._sock.close()
            raise reply.to_exception()
        if not isinstance(reply, cp.HelloOk):
            self._sock.close()
            raise RuntimeUnavailable(f"the p4tas runtime at {path} answered Hello with {reply!r}")
        self._want_fd = False
        self.app_id = reply.app_id
        self.shm_name: str | None = reply.shm_name

    def close(self) -> None:
        if self.shm_fd is not None:  # never mapped (a monitor, or the session failed first)
            os.close(self.shm_fd)
            self.shm_fd = None
        if self._sock.fileno() < 0:
            return
        if self._gone is None:
            try:
                self.send(cp.Bye())
            except OSError:
                pass
        self._gone = self._gone or "the control channel was closed by this application"
        self._sock.close()

    @property
    def closed(self) -> bool:
        """True once close() ran or the runtime went away."""
        return self._gone is not None

    def __enter__(self) -> "ControlChannel":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def create_context(self) -> int:
        return self._request(lambda r: cp.CreateContext(req_id=r)).ctx_id

    def listen(self, ctx_id: int, port: int, backlog: int = 128,
               local_ip: str | None = None) -> cp.Listening:
        return self._request(lambda r: cp.Listen(req_id=r, ctx_id=ctx_id, port=port,
                                                 backlog=backlog, local_ip=local_ip))

    def connect(self, ctx_id: int, peer_ip: str, peer_port: int, timeout_s: float = 10.0,
                local_ip: str | None = None, local_port: int | None = None) -> int:
        """Start connecting; the outcome is a Connected or ConnectFailed event."""
        return self._request(lambda r: cp.Connect(
            req_id=r, ctx_id=ctx_id, peer_ip=peer_ip, peer_port=peer_port, timeout_s=timeout_s,
            local_ip=local_ip, local_port=local_port)).conn_id

    def accept(self, timeout: float | None = None) -> cp.IncomingConnection:
        """Wait for the next incoming connection and take it off the accept queue."""
        incoming = self.wait_for(cp.IncomingConnection, timeout=timeout)
        self._request(lambda r: cp.Accept(req_id=r, conn_id=incoming.conn_id))
        return incoming

    def close_connection(self, conn_id: int) -> None:
        self._request(lambda r: cp.Close(req_id=r, conn_id=conn_id))

    def shutdown(self, conn_id: int, how: str) -> None:
        self._request(lambda r: cp.Shutdown(req_id=r, conn_id=conn_id, how=how))

    def close_listener(self, listener_id: int) -> None:
        self._request(lambda r: cp.CloseListener(req_id=r, listener_id=listener_id))

    def stats(self) -> dict[str, int]:
        """The runtime's counters (connections, flows and ports in use, drops...)."""
        return self._request(lambda r: cp.GetStats(req_id=r)).counters

    def flows(self) -> list[cp.FlowInfo]:
        """Every connection this session may see (all of them for root or the daemon's user),
        asked for a page at a time."""
        rows: list[cp.FlowInfo] = []
        after = 0
        while True:
            page = self._request(lambda r: cp.ListFlows(req_id=r, after_conn_id=after))
            rows.extend(page.rows())
            if not page.more or not page.flows:
                return rows
            after = rows[-1].conn_id

    # ------------------------------------------------------------------ message level

    def fileno(self) -> int:
        """The control socket: readable when the runtime has sent something (or hung up)."""
        return self._fd

    def next_req_id(self) -> int:
        """A fresh req_id for a request built by the caller (see send)."""
        return next(self._req_ids)

    def send(self, message: cp.ClientMessage) -> None:
        """Write one message (no waiting for a reply); RuntimeUnavailable if the runtime is gone."""
        self._check_alive()
        data = memoryview(cp.encode(message))
        while data:
            try:
                sent = self._sock.send(data)
            except BlockingIOError:
                # The runtime reads its socket continuously; a full buffer is momentary.
                if not select.select([], [self._fd], [], self.timeout)[1]:
                    raise self._lost(f"the p4tas runtime did not read its control socket for "
                                     f"{self.timeout:g} s") from None
                continue
            except OSError as exc:
                raise self._lost(f"the p4tas runtime went away ({exc})") from None
            data = data[sent:]

    def kick(self, conn_id: int) -> None:
        """Doorbell: conn_id's TX ring has new bytes and/or RX ring space was consumed."""
        self.send(cp.Kick(conn_id=conn_id))

    def wait_readable(self, timeout: float | None, wake_fd: int | None = None) -> bool:
        """Block (no state touched, no lock needed) until messages may be read or `wake_fd`
        is readable; False on timeout. timeout None waits for ever; 0 only checks."""
        if self._inbox or self._gone is not None:
            return True
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if wake_fd is not None:
            poller.register(wake_fd, select.POLLIN)
        ms = -1 if timeout is None else max(0, int(timeout * 1000 + 0.999))
        try:
            return bool(poller.poll(ms))
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return False

    def read_messages(self) -> list[cp.Message]:
        """Every message received so far, without blocking ([] if none).

        RuntimeUnavailable when the runtime hung up (after the messages that preceded it)."""
        messages = list(self._inbox)
        self._inbox.clear()
        if self._gone is not None:
            if messages:
                return messages
            raise RuntimeUnavailable(self._gone, errno.ECONNRESET)
        while True:
            try:
                data = self._recv_chunk()
            except (BlockingIOError, InterruptedError):
                return messages
            except OSError as exc:
                error = self._lost(f"the p4tas runtime's control connection failed ({exc})")
                if messages:
                    return messages
                raise error from None
            if not data:
                error = self._lost("the p4tas runtime closed the control connection (did it "
                                   "stop or restart? its connections of this process are gone)")
                if messages:
                    return messages
                raise error
            try:
                messages.extend(self._reader.feed(data))
            except cp.FramingError as exc:
                messages.extend(exc.decoded_before)
                error = self._lost(f"the p4tas runtime sent an unreadable stream ({exc})")
                if messages:
                    return messages
                raise error from None
            except cp.ProtocolError as exc:  # one bad message: skip it, keep the good ones
                messages.extend(exc.decoded_before)
                messages.extend(self._reader.feed(b""))
            if len(data) < _RECV_CHUNK:
                return messages

    def _lost(self, why: str) -> RuntimeUnavailable:
        self._gone = self._gone or why
        return RuntimeUnavailable(self._gone, errno.ECONNRESET)

    def _check_alive(self) -> None:
        if self._gone is not None:
            raise RuntimeUnavailable(self._gone, errno.ECONNRESET)

    # ------------------------------------------------------------------ events

    def next_event(self, timeout: float | None = None) -> cp.Message | None:
        """The next event, or None after `timeout` seconds."""
        if self._events:
            return self._events.popleft()
        msg = self._receive(timeout)
        return msg

    def wait_for(self, kind: type[E] | tuple[type, ...], conn_id: int | None = None,
                 timeout: float | None = None) -> E:
        """Wait for an event of `kind` (about `conn_id`); other events stay queued."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        for i, event in enumerate(self._events):
            if isinstance(event, kind) and conn_id in (None, getattr(event, "conn_id", None)):
                del self._events[i]
                return event
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {kind} event within the timeout")
            msg = self._receive(left)
            if msg is None:
                continue
            if isinstance(msg, kind) and conn_id in (None, getattr(msg, "conn_id", None)):
                return msg
            self._events.append(msg)

    # ------------------------------------------------------------------ plumbing

    def _request(self, build: Callable[[int], cp.Message]) -> cp.Message:
        req_id = next(self._req_ids)
        self.send(build(req_id))
        while True:
            msg = self._receive()
            if isinstance(msg, cp.Event):
                self._events.append(msg)
            elif isinstance(msg, cp.Error) and msg.req_id in (req_id, None):
                raise msg.to_exception()
            elif getattr(msg, "req_id", None) == req_id:
                return msg

    def _recv_chunk(self) -> bytes:
        """What the socket holds; while the Hello is unanswered also the descriptor that comes
        with HelloOk (SCM_RIGHTS), kept as shm_fd."""
        if not self._want_fd:
            return self._sock.recv(_RECV_CHUNK)
        data, fds, _, _ = socket.recv_fds(self._sock, _RECV_CHUNK, 1)
        for fd in fds:
            if self.shm_fd is None:
                self.shm_fd = fd
            else:
                os.close(fd)
        return data

    def _receive(self, timeout: float | None = None) -> cp.Message | None:
        """The next message; None after `timeout` s, TimeoutError after self.timeout if None."""
        limit = timeout if timeout is not None else self.timeout
        deadline = time.monotonic() + limit
        while not self._inbox:
            self._inbox.extend(self.read_messages())
            if self._inbox:
                break
            left = deadline - time.monotonic()
            if left <= 0 or not self.wait_readable(left):
                if timeout is not None:
                    return None
                raise TimeoutError(f"the p4tas runtime did not answer within {limit:g} s")
        return self._inbox.popleft()
