"""An application's session with the p4tas runtime over its control socket (blocking).

Requests wait for their reply; events that arrive meanwhile are queued for next_event().
The socket API (host_lib.socket) is built on this."""

from __future__ import annotations

import collections
import itertools
import os
import socket
import sys
import time
from pathlib import Path
from typing import Callable, TypeVar

from host_lib import control_protocol as cp

DEFAULT_SOCKET = Path(os.environ.get("P4TAS_CONTROL_SOCKET", "/tmp/p4tas-runtime.sock"))
E = TypeVar("E", bound=cp.Message)


class RuntimeUnavailable(ConnectionError):
    """The runtime daemon is not reachable or went away."""


class ControlChannel:
    """One application's connection to the runtime."""

    def __init__(self, path: Path = DEFAULT_SOCKET, app_name: str | None = None,
                 timeout: float = 10.0) -> None:
        self.timeout = timeout
        self._req_ids = itertools.count(1)
        self._events: collections.deque[cp.Message] = collections.deque()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise RuntimeUnavailable(f"cannot reach the p4tas runtime at {path} ({exc}): is "
                                     "`python -m runtime` running?") from None
        name = app_name or Path(sys.argv[0] or "python").name
        cp.send_message(self._sock, cp.Hello(version=cp.PROTOCOL_VERSION, app_name=name,
                                             pid=os.getpid()))
        reply = self._receive()
        if isinstance(reply, cp.Error):
            raise reply.to_exception()
        self.app_id = reply.app_id

    def close(self) -> None:
        try:
            cp.send_message(self._sock, cp.Bye())
        except OSError:
            pass
        self._sock.close()

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
        try:
            cp.send_message(self._sock, build(req_id))
        except OSError as exc:
            raise RuntimeUnavailable(f"the p4tas runtime went away ({exc})") from None
        while True:
            msg = self._receive()
            if isinstance(msg, cp.Event):
                self._events.append(msg)
            elif isinstance(msg, cp.Error) and msg.req_id in (req_id, None):
                raise msg.to_exception()
            elif getattr(msg, "req_id", None) == req_id:
                return msg

    def _receive(self, timeout: float | None = None) -> cp.Message | None:
        self._sock.settimeout(timeout if timeout is not None else self.timeout)
        try:
            return cp.recv_message(self._sock, expect=cp.ServerMessage)
        except socket.timeout:
            if timeout is not None:
                return None
            raise TimeoutError("the p4tas runtime did not answer in time") from None
        except cp.ConnectionClosed as exc:
            raise RuntimeUnavailable(f"the p4tas runtime closed the connection ({exc})") from None
