"""POSIX socket emulation on p4tas: `host_lib.socket()` behaves like the standard library's TCP
socket, on the process's session (host_lib.sessions) with the low-level API (host_lib.context).

    import host_lib
    with host_lib.socket() as s:          # AF_INET, SOCK_STREAM
        s.connect(("10.0.0.2", 7))
        s.sendall(b"hello")
        print(s.recv(4096))

recv copies out of the connection's RX ring, send copies into its TX ring (see host_lib.context
for the rings and doorbells); a call that cannot proceed pumps the session and waits (see
host_lib.sessions): non-blocking -> BlockingIOError, a timeout -> socket.timeout.

fileno(). Each socket has a kernel descriptor of its own (host_lib.doorbell) whose poll state is
the socket's, as Linux's tcp_poll reports it: readable with received bytes, EOF, an error or a
connection to accept; writable once a quarter of the TX ring is free, when a non-blocking connect
finished (SO_ERROR tells how) and after an error; POLLRDHUP once the peer's FIN came, POLLHUP
after a reset. select, poll, epoll, selectors and asyncio's event loop use it as they are. The
first fileno() starts the session's event thread (host_lib.event_thread), which dispatches the
runtime's messages as they come, so the state is exact while the application waits.

Semantics follow Linux: b"" at EOF (after the bytes received before the FIN), ECONNRESET reported
once by the first call after a reset (ring data received before it is still delivered first),
then recv gives b"" and send BrokenPipeError, as after shutdown(SHUT_WR); OSError(EBADF) on a
closed socket; ENOTCONN for data calls on a socket that is not connected; EINVAL for listen() on
a connected socket. Differences: bind() only records the address (conflicts show at listen() or
connect()), listen() needs an explicit port, only AF_INET/SOCK_STREAM exist, and the runtime
being gone raises RuntimeUnavailable (a ConnectionError) naming what to check.
"""

from __future__ import annotations

import errno
import socket as _std
import struct
import time
from typing import Any

from host_lib import control_protocol as cp
from host_lib.context import Connection, _ipv4, _oserror
from host_lib.control_channel import RuntimeUnavailable
from host_lib.sessions import session
from host_lib.doorbell import Doorbell
from host_lib.event_thread import ensure_event_thread
from host_lib.socket_state import KEEPALIVE_DEFAULTS, KEEPALIVE_LIMITS, SocketState

AF_INET = _std.AF_INET
SOCK_STREAM = _std.SOCK_STREAM
TCP_CONGESTION = 13  # <netinet/tcp.h>; socket.TCP_CONGESTION where Python defines it
SHUT_RD, SHUT_WR, SHUT_RDWR = _std.SHUT_RD, _std.SHUT_WR, _std.SHUT_RDWR
timeout = _std.timeout  # == TimeoutError

_HOW = {SHUT_RD: "rd", SHUT_WR: "wr", SHUT_RDWR: "rdwr"}
_LINGER = struct.Struct("ii")  # struct linger: l_onoff, l_linger


class Socket(SocketState):
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

    @classmethod
    def _accepted(cls, conn: Connection, timeout: float | None,
                  options: dict[tuple[int, int], Any]) -> Socket:
        sock = cls.__new__(cls)
        sock._setup(conn.session, timeout)
        sock._options.update(options)  # what Linux's accepted sockets inherit (keepalive)
        sock._attach(conn)
        return sock

    # -- stdlib surface ------------------------------------------------------------------------

    def __repr__(self) -> str:
        state = "closed" if self._closed else "listening" if self._listener else \
            (self._conn.state if self._conn else "new")
        return f"<host_lib.socket {state} laddr={self._local()} raddr={self._peer_or_none()}>"

    def __enter__(self) -> Socket:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def fileno(self) -> int:
        if self._closed:
            return -1
        if self._ready is None:
            with self._session.lock:
                if self._ready is None:
                    self._ready = Doorbell()
                    self._update_ready()
            ensure_event_thread(self._session)
        return self._ready.fileno()

    def take_descriptor(self, fd: int) -> None:
        """Make `fd` this socket's fileno() (the launcher keeps a kernel socket's number, which
        the application may have seen already); whatever it was is closed."""
        with self._session.lock:
            if self._ready is not None:
                raise _oserror(errno.EINVAL, "the socket has a descriptor already")
            self._ready = Doorbell(fd)
            self._update_ready()
        ensure_event_thread(self._session)

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
            inherited = {key: value for key, value in self._options.items()
                         if key in KEEPALIVE_DEFAULTS}
            sock = Socket._accepted(conn, _std.getdefaulttimeout(), inherited)
            return sock, conn.peer

    def connect(self, address: tuple[str, int]) -> None:
        host, port = _address(address)
        if not host:
            raise _oserror(errno.EINVAL, "connect() needs a host")
        with self._session.lock:
            self._check_open()
            if self._listener is not None:
                raise _oserror(errno.EISCONN, "connect() on a listening socket")
            started = False
            if self._conn is None and not self._connecting:
                if self._connect_error is not None:
                    raise self._take_connect_error()
                self._abandoned = False
                self._start_connect(_ipv4(host), port, self._congestion())
                started = True
            elif self._conn is not None and self._conn.state == "open":
                raise _oserror(errno.EISCONN)
            elif self._timeout == 0.0 and self._connect_pending():
                raise _oserror(errno.EALREADY)
            if self._timeout == 0.0:
                self._session.wait(lambda: not self._connect_pending(), 0)
                # As Linux: the call that starts a non-blocking connect never completes it,
                # however fast the handshake (its outcome is writability and SO_ERROR).
                if started or self._connect_pending():
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
            self._wait(lambda: self._can_send(conn), 0.0 if nonblocking else self._timeout)
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
                    self._update_ready()
                    return
                if not self._can_send(conn):
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if self._timeout == 0.0:
                        left = 0.0
                    self._wait(lambda: self._can_send(conn), left)
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
        congestion control, as on Linux; SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
        TCP_KEEPCNT work as on Linux (an accepted socket inherits them from its listener);
        others (TCP_NODELAY, SO_REUSEADDR...) are accepted and remembered without effect;
        SO_REUSEPORT is refused (p4tas does not spread a port's connections over sockets)."""
        self._check_open()
        if (level, option) == (_std.SOL_SOCKET, _std.SO_REUSEPORT) and _int_option(value):
            raise _oserror(errno.ENOPROTOOPT, "setsockopt(SO_REUSEPORT): p4tas does not spread "
                           "one port's connections over several sockets")
        if (level, option) in KEEPALIVE_DEFAULTS:
            with self._session.lock:
                self._set_keepalive_option(level, option, value)
            return
        if (level, option) == (_std.IPPROTO_TCP, TCP_CONGESTION):
            name = value.decode() if isinstance(value, (bytes, bytearray)) else str(value)
            name = name.rstrip("\0")
            if name not in cp.CONGESTION_CONTROLS:
                raise _oserror(errno.ENOENT, f"no congestion control {name!r}: p4tas has "
                               f"{', '.join(cp.CONGESTION_CONTROLS)}")
            value = name.encode()
        self._options[(level, option)] = value

    def _set_keepalive_option(self, level: int, option: int, value: Any) -> None:
        """SO_KEEPALIVE or TCP_KEEP*: checked as Linux does (EINVAL), then sent to the runtime
        when it changes what a connected socket does."""
        number = _int_option(value)
        limit = KEEPALIVE_LIMITS.get((level, option))
        if limit is not None and not 1 <= number <= limit:
            raise _oserror(errno.EINVAL, f"must be 1..{limit}")
        if limit is None:
            number = int(bool(number))
        old = self._keepalive_option(level, option)
        self._options[(level, option)] = number
        enabled = self._keepalive_option(_std.SOL_SOCKET, _std.SO_KEEPALIVE)
        if number != old and (enabled or limit is None):
            self._push_keepalive()

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
                return self._so_error()
        if (level, option) == (_std.SOL_SOCKET, _std.SO_TYPE):
            return SOCK_STREAM
        if (level, option) in KEEPALIVE_DEFAULTS:
            return self._keepalive_option(level, option)
        return self._options.get((level, option), 0)


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


def _int_option(value: Any) -> int:
    """An integer socket option given as an int or as a C int's bytes."""
    if isinstance(value, (bytes, bytearray)):
        if len(value) < 4:
            raise _oserror(errno.EINVAL, "option value too short")
        return struct.unpack_from("i", value)[0]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("a bytes-like object or an integer is required")
    return value


def _byte_view(data: Any) -> memoryview:
    if isinstance(data, str):
        raise TypeError("a bytes-like object is required, not 'str'")
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 and view.c_contiguous else \
        view.cast("B") if view.c_contiguous else memoryview(view.tobytes())
