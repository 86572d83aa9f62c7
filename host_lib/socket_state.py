"""What a p4tas socket (host_lib.sockets.Socket) keeps under the session lock: its connection or
listener, the connect in flight and its outcome, its readiness for fileno(), and the internals its
calls share (waiting, error reporting)."""

from __future__ import annotations

import errno
import os
import socket as _std
from typing import Any, Callable

from host_lib import control_protocol as cp
from host_lib.context import DEFAULT_CONNECT_TIMEOUT, Connection, Listener, _oserror
from host_lib.control_channel import RuntimeUnavailable
from host_lib.doorbell import Doorbell, Readiness
from host_lib.sessions import Session

_MISSING = object()
# Linux's defaults: tcp_keepalive_time, tcp_keepalive_intvl, tcp_keepalive_probes.
KEEPALIVE_DEFAULTS = {(_std.SOL_SOCKET, _std.SO_KEEPALIVE): 0,
                      (_std.IPPROTO_TCP, _std.TCP_KEEPIDLE): 7200,
                      (_std.IPPROTO_TCP, _std.TCP_KEEPINTVL): 75,
                      (_std.IPPROTO_TCP, _std.TCP_KEEPCNT): 9}
KEEPALIVE_LIMITS = {(_std.IPPROTO_TCP, _std.TCP_KEEPIDLE): cp.MAX_KEEPALIVE_S,
                    (_std.IPPROTO_TCP, _std.TCP_KEEPINTVL): cp.MAX_KEEPALIVE_S,
                    (_std.IPPROTO_TCP, _std.TCP_KEEPCNT): cp.MAX_KEEPALIVE_PROBES}


WRITABLE_FRACTION = 4  # POLLOUT once a quarter of the TX ring is free (Linux: a third of sndbuf)


def _would_block() -> BlockingIOError:
    return BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")


class SocketState:
    """A socket's state and lock-held internals; Socket adds the standard library's calls."""

    def _setup(self, sess: Session, timeout_value: float | None) -> None:
        self.family, self.type, self.proto = _std.AF_INET, _std.SOCK_STREAM, _std.IPPROTO_TCP
        self._timeout = timeout_value
        self._session = sess
        self._closed = False
        self._abandoned = False
        self._bound: tuple[str, int] | None = None
        self._conn: Connection | None = None
        self._listener: Listener | None = None
        self._connecting = False  # Connect sent, no Connecting reply yet
        self._connect_error: OSError | None = None  # for SO_ERROR / the next connect call
        self._ready: Doorbell | None = None
        self._on_change: Callable[[], None] | None = None  # e.g. host_lib.streams' waker
        self._options: dict[tuple[int, int], Any] = {}

    def _attach(self, conn: Connection) -> None:
        self._conn = conn
        conn.watcher = self._changed
        if self._keepalive_option(_std.SOL_SOCKET, _std.SO_KEEPALIVE):
            self._push_keepalive()

    def _keepalive_option(self, level: int, option: int) -> int:
        """SO_KEEPALIVE or a TCP_KEEP* value, Linux's default when not set."""
        return self._options.get((level, option), KEEPALIVE_DEFAULTS[(level, option)])

    def _push_keepalive(self) -> None:
        """Tell the runtime this socket's keepalive settings (its connection exists)."""
        if self._conn is None:
            return
        get = self._keepalive_option
        self._conn.set_keepalive(bool(get(_std.SOL_SOCKET, _std.SO_KEEPALIVE)),
                                 get(_std.IPPROTO_TCP, _std.TCP_KEEPIDLE),
                                 get(_std.IPPROTO_TCP, _std.TCP_KEEPINTVL),
                                 get(_std.IPPROTO_TCP, _std.TCP_KEEPCNT))

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

    # -- internals (lock held unless said otherwise) ------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise _oserror(errno.EBADF)
        if self._session.pid != os.getpid():
            raise _oserror(errno.EBADF, "a p4tas socket does not survive fork(): its connection "
                           "belongs to the parent's session")

    def _check_alive(self) -> None:
        self._session._check_alive()

    @staticmethod
    def _check_flags(flags: int, allowed: int) -> bool:
        if flags & ~allowed:
            raise _oserror(errno.EOPNOTSUPP, f"flags {flags:#x} are not supported by p4tas")
        return bool(flags & _std.MSG_DONTWAIT)

    def _wait(self, ready: Callable[[], bool], limit: Any = _MISSING) -> None:
        limit = self._timeout if limit is _MISSING else limit
        if ready():
            return
        if not self._session.wait(ready, limit):
            if limit == 0.0:
                raise _would_block()
            raise _std.timeout("timed out")

    def _data_conn(self) -> Connection:
        self._check_open()
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

    def _raise_pending(self, conn: Connection) -> None:
        """Raise the connection's pending error (SO_ERROR), or ENOTCONN after a failed connect."""
        if conn.error is not None:
            error = conn.take_error()
            self._update_ready()
            raise error
        if conn.state == "failed":
            raise _oserror(errno.ENOTCONN)

    def _send_check(self, conn: Connection) -> None:
        self._check_open()
        self._raise_pending(conn)
        if conn.wr_shut or conn.dead or conn.gone:
            if isinstance(self._session.dead, RuntimeUnavailable) and not conn.wr_shut:
                self._check_alive()
            raise _oserror(errno.EPIPE)

    @staticmethod
    def _can_send(conn: Connection) -> bool:
        """A send may go on: TX space, or an end (the next _send_check raises it)."""
        return conn.state != "connecting" and (conn.tx_free() > 0 or conn.dead or conn.gone
                                              or conn.error is not None)

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
        self._raise_pending(conn)
        if self._session.dead is not None and not conn.gone and not conn.close_sent:
            self._check_alive()

    def _start_connect(self, host: str, port: int, congestion: str | None) -> None:
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
        session.request_nowait(lambda r: cp.Connect(
            req_id=r, ctx_id=session.socket_context.ctx_id, peer_ip=host, peer_port=port,
            local_ip=local[0] if local and local[0] not in ("", "0.0.0.0") else None,
            local_port=local[1] if local and local[1] else None, timeout_s=limit,
            congestion=congestion), on_reply)

    def _so_error(self) -> int:
        """SO_ERROR: a finished connect's error, taken (0: none, or still connecting)."""
        self._session.wait(lambda: True, 0)
        conn = self._conn
        if not self._connect_pending() and (self._connect_error is not None or (
                conn is not None and conn.state == "failed")):
            error = self._take_connect_error()
            self._update_ready()
            return error.errno or errno.EIO
        return 0

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
            self._ready.set(self._readiness())

    def _readiness(self) -> Readiness:
        """What select/poll report, as Linux's tcp_poll would (see host_lib.doorbell)."""
        if self._closed:
            return Readiness(True, True, True, True)
        if self._listener is not None:
            return Readiness(readable=bool(self._listener.queue) or self._listener.closed)
        conn = self._conn
        if self._connect_error is not None or (conn is None and self._session.dead is not None):
            return Readiness(True, True)  # a failed connect: writable, SO_ERROR tells
        if conn is None or conn.state == "connecting":
            return Readiness()
        broken = conn.dead or conn.gone or conn.error is not None
        rdhup = conn.eof or conn.rd_shut or broken
        return Readiness(readable=rdhup or conn.rx_readable() > 0,
                         writable=broken or conn.wr_shut or self._tx_roomy(conn),
                         rdhup=rdhup, hup=conn.dead or (conn.eof and conn.wr_shut))

    @staticmethod
    def _tx_roomy(conn: Connection) -> bool:
        """Writable as Linux's sk_stream_is_writeable: a good share of the TX ring (or of the
        send budget the runtime gave a slow flow) is free."""
        tx = conn.tx
        return tx is not None and tx.room() >= max(1, tx.capacity() // WRITABLE_FRACTION)

    def _local(self) -> tuple[str, int]:
        if self._listener is not None:
            return self._listener.local
        if self._conn is not None and self._conn.state == "open":
            return self._conn.local
        return self._bound or ("0.0.0.0", 0)

    def _peer_or_none(self) -> tuple[str, int] | None:
        conn = self._conn
        return conn.peer if conn is not None and conn.state == "open" else None
