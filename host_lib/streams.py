"""asyncio streams over p4tas: open_connection / start_server return the standard library's own
asyncio.StreamReader and StreamWriter, driven by a transport over the connection's rings.

Event-loop integration. One pump per (event loop, session): loop.add_reader(session.fileno())
on the control socket; when it is readable the pump dispatches the runtime's messages without
blocking (Session.pump). A connection's watcher (called during dispatch, from whichever thread
pumped) schedules its transport's service on the loop (call_soon, or call_soon_threadsafe from
another thread). The service moves received bytes out of the RX ring into the StreamReader (one
Kick), flushes buffered writes into the TX ring as space frees (one Kick), reports EOF, resets
and the end of the connection. Socket calls are non-blocking, except two short round trips to the
local runtime that block the loop briefly: the session's creation (first use in the process) and
listen(). Writes that do not fit the TX ring wait in the transport's buffer; above the high-water
mark drain() waits for TX_ACKED to make room (backpressure, nothing dropped).
"""

from __future__ import annotations

import asyncio
import errno
import threading
import weakref
from typing import Any, Awaitable, Callable

from host_lib.context import Connection
from host_lib.sessions import Session, session
from host_lib.sockets import Socket

_READ_CHUNK = 1 << 20
_PUMPS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pump]" = \
    weakref.WeakKeyDictionary()


class _Pump:
    """add_reader on the session's control socket: dispatch messages as they come."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sess: Session) -> None:
        self.loop = loop
        self.session = sess
        loop.add_reader(sess.fileno(), self._readable)

    def _readable(self) -> None:
        self.session.pump()
        if self.session.dead is not None:  # EOF stays readable: stop watching it
            self.loop.remove_reader(self.session.fileno())


def _pump_for(loop: asyncio.AbstractEventLoop) -> Session:
    sess = session()
    pump = _PUMPS.get(loop)
    if pump is None or pump.session is not sess:
        if pump is not None and pump.session.dead is None:
            loop.remove_reader(pump.session.fileno())
        _PUMPS[loop] = _Pump(loop, sess)
    return sess


class _Waker:
    """Schedules a callback on the loop at most once until it runs; safe from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        self.loop = loop
        self.thread = threading.get_ident()
        self.callback = callback
        self.scheduled = False

    def __call__(self) -> None:
        if self.scheduled or self.loop.is_closed():
            return
        self.scheduled = True
        if threading.get_ident() == self.thread:
            self.loop.call_soon(self._run)
        else:
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        self.scheduled = False
        self.callback()


class RingTransport(asyncio.Transport):
    """An asyncio transport whose bytes go through a p4tas connection's rings."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket,
                 protocol: asyncio.Protocol) -> None:
        super().__init__(extra={"peername": sock.getpeername(), "sockname": sock.getsockname(),
                                "socket": sock})
        self._loop = loop
        self._sock = sock
        self._conn: Connection = sock._conn
        self._session = sock._session
        self._protocol = protocol
        self._buffer = bytearray()
        self._high, self._low = 64 * 1024, 16 * 1024
        self._writing_paused = False
        self._reading_paused = False
        self._closing = False
        self._eof_pending = False
        self._eof_received = False
        self._lost = False
        self._waker = _Waker(loop, self._service)
        self._conn.watcher = self._waker
        protocol.connection_made(self)
        self._waker()

    # -- asyncio.Transport -------------------------------------------------------------------

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing or self._lost

    def is_reading(self) -> bool:
        return not self._reading_paused and not self._lost

    def pause_reading(self) -> None:
        self._reading_paused = True

    def resume_reading(self) -> None:
        if self._reading_paused:
            self._reading_paused = False
            self._waker()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        high = 64 * 1024 if high is None else high
        low = high // 4 if low is None else low
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def can_write_eof(self) -> bool:
        return True

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not "
                            f"{type(data).__name__!r}")
        if self._closing or self._eof_pending or self._lost or not data:
            return
        view = memoryview(data).cast("B")
        if not self._buffer:
            with self._session.lock:
                if not self._conn.dead and not self._conn.gone and self._conn.tx is not None:
                    view = view[self._conn.send(view):]  # one Kick
        if len(view):
            self._buffer += view
            self._maybe_pause()

    def write_eof(self) -> None:
        if self._closing or self._eof_pending:
            return
        self._eof_pending = True
        self._waker()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._waker()

    def abort(self) -> None:
        self._buffer.clear()
        self._closing = True
        self._finish(None)

    # -- service --------------------------------------------------------------------------------

    def _maybe_pause(self) -> None:
        if not self._writing_paused and len(self._buffer) > self._high:
            self._writing_paused = True
            self._protocol.pause_writing()

    def _service(self) -> None:
        if self._lost:
            return
        conn = self._conn
        data = b""
        error: OSError | None = None
        with self._session.lock:
            kick = False
            if self._buffer and not conn.dead and not conn.gone and conn.tx is not None:
                sent = conn.send(self._buffer, kick=False)
                del self._buffer[:sent]
                kick = sent > 0
            if not self._reading_paused:
                data = conn.recv(_READ_CHUNK, kick=False)
                kick = kick or bool(data)
            if kick:
                conn.kick()
            more = conn.rx_readable() > 0
            eof = (conn.eof or conn.gone) and not more and not self._eof_received and not data
            if conn.error is not None and not more and not data:
                error = conn.take_error()
            elif (conn.dead or conn.gone) and self._buffer and not more:
                error = OSError(errno.EPIPE, "connection closed with unsent data")
            if self._eof_pending and not self._buffer and not conn.wr_shut and not conn.dead:
                conn.shutdown("wr")
            close_now = self._closing and (not self._buffer or conn.dead or conn.gone)
            if close_now:
                conn.watcher = None
                conn.close()
                self._sock._closed = True  # the Close is sent; the Socket object is done too
        if data:
            self._protocol.data_received(data)
            if more or conn.eof or conn.gone or conn.error is not None:
                self._waker()   # an EOF or error behind these bytes goes in the next service
        if self._writing_paused and len(self._buffer) <= self._low:
            self._writing_paused = False
            self._protocol.resume_writing()
        if error is not None:
            self._finish(error)
            return
        if eof:
            self._eof_received = True
            if not self._protocol.eof_received():
                self.close()
        if close_now:
            self._finish(None)

    def _finish(self, exc: OSError | None) -> None:
        if self._lost:
            return
        self._lost = True
        with self._session.lock:
            self._conn.watcher = None
            if exc is not None or not self._conn.close_sent:
                self._conn.close()
            self._sock._closed = True
        self._loop.call_soon(self._protocol.connection_lost, exc)


# ------------------------------------------------------------------------------------ API

def _streams(loop: asyncio.AbstractEventLoop, sock: Socket, limit: int,
             callback: Callable[..., Any] | None = None
             ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Reader and writer over sock; with a callback (server side) the protocol makes the writer
    and calls it (a second StreamWriter would close the transport when collected)."""
    reader = asyncio.StreamReader(limit=limit, loop=loop)
    protocol = asyncio.StreamReaderProtocol(reader, callback, loop=loop)
    transport = RingTransport(loop, sock, protocol)
    if callback is not None:
        return reader, None  # type: ignore[return-value]
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


async def open_connection(host: str, port: int, *, limit: int = 2 ** 16,
                          local_addr: tuple[str, int] | None = None
                          ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Like asyncio.open_connection, over p4tas."""
    loop = asyncio.get_running_loop()
    _pump_for(loop)  # this loop pumps the session (add_reader) from now on
    sock = Socket()
    sock.setblocking(False)
    if local_addr is not None:
        sock.bind(local_addr)
    done = loop.create_future()
    sock._on_change = _Waker(loop, lambda: None if done.done() or sock._connect_pending()
                             else done.set_result(None))
    try:
        try:
            sock.connect((host, port))
        except BlockingIOError:
            await done
            try:
                sock.connect((host, port))  # raises the connect error, if any
            except OSError as exc:
                if exc.errno != errno.EISCONN:
                    raise
        finally:
            sock._on_change = None
    except BaseException:
        sock.close()
        raise
    return _streams(loop, sock, limit)


class Server:
    """What start_server returns: like asyncio.Server for the parts applications use."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: Socket,
                 callback: Callable[..., Any], limit: int) -> None:
        self._loop = loop
        self._sock = sock
        self._callback = callback
        self._limit = limit
        self._closed = loop.create_future()
        self._waker = _Waker(loop, self._accept_all)
        sock._listener.watcher = self._waker
        self._waker()

    @property
    def sockets(self) -> tuple[Socket, ...]:
        return () if self._closed.done() else (self._sock,)

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def is_serving(self) -> bool:
        return not self._closed.done()

    async def start_serving(self) -> None:
        return None

    async def serve_forever(self) -> None:
        await asyncio.shield(self._closed)

    def close(self) -> None:
        if not self._closed.done():
            self._sock.close()
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed) if not self._closed.done() else None

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    def _accept_all(self) -> None:
        while not self._closed.done():
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return
            except OSError:
                self.close()
                return
            conn.setblocking(False)
            _streams(self._loop, conn, self._limit, self._callback)


async def start_server(client_connected_cb: Callable[[asyncio.StreamReader,
                                                      asyncio.StreamWriter],
                                                     Awaitable[None] | None],
                       host: str | None = None, port: int | None = None, *,
                       limit: int = 2 ** 16, backlog: int = 100) -> Server:
    """Like asyncio.start_server, over p4tas (host None or "": every local address)."""
    if port is None or not port:
        raise OSError(errno.EINVAL, "p4tas start_server needs an explicit port")
    loop = asyncio.get_running_loop()
    _pump_for(loop)
    sock = Socket()
    try:
        sock.bind((host or "0.0.0.0", port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Server(loop, sock, client_connected_cb, limit)
