"""The control API for applications: host_lib.control_protocol over a UNIX stream socket.

One AppSession per connected application; it owns contexts (event queues) and may only act on
its own listeners and connections. A bad message gets an Error reply; nothing an application
sends can stop the daemon. An application that hangs up loses its listeners, and its
connections are closed as if it had closed them (ConnectionControl.abort_owned_by)."""

from __future__ import annotations

import asyncio
import grp
import errno
import itertools
import logging
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from host_lib import control_protocol as cp
from host_lib.shm_layout import Layout
from runtime.app_memory import AppMemory
from runtime.connection_control import ConnectionControl
from runtime.connections import Connection, Listener
from runtime.flow_report import list_flows
from runtime.keepalive import KeepaliveParams

log = logging.getLogger(__name__)

_WRITE_BUFFER_LIMIT = 4 << 20  # an application that stops reading events is disconnected
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid (SO_PEERCRED)
# What a monitor session (Hello.monitor: an operator's tool) may ask.
_MONITOR_REQUESTS = (cp.GetStats, cp.ListFlows)


@dataclass(eq=False)
class AppContext:
    """A per-thread event queue of an application (TAS's context); ctx_id is also its queue's
    index in the application's shared memory."""

    ctx_id: int
    session: "AppSession"

    @property
    def memory(self) -> AppMemory | None:
        return self.session.memory

    def deliver(self, event: cp.Message) -> None:
        self.session.send(event)


@dataclass(eq=False)
class AppSession:
    """One connected application."""

    app_id: int
    writer: asyncio.StreamWriter
    contexts: dict[int, AppContext] = field(default_factory=dict)
    name: str = "?"
    memory: AppMemory | None = None
    uid: int | None = None    # from SO_PEERCRED; None if the kernel would not say
    monitor: bool = False     # an operator's tool: no shared memory, no connections

    @property
    def privileged(self) -> bool:
        """Root or the daemon's own user: may see every application's connections."""
        return self.uid is not None and self.uid in (0, os.geteuid())

    def send(self, msg: cp.Message) -> None:
        if self.writer.is_closing():
            return
        if self.writer.transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
            log.warning("application %s does not read its events: disconnecting it", self.name)
            self.writer.close()
            return
        self.writer.write(cp.encode(msg))


class ControlServer:
    """Accepts applications on `path`: mode 0600 (only the daemon's user), or 0660 owned by
    `group` so that its members run applications as themselves (ARCHITECTURE.md 6)."""

    def __init__(self, path: Path, control: ConnectionControl,
                 layout: Layout | None = None, group: str | None = None) -> None:
        """`layout`: each application's shared memory; None runs without a data path."""
        self.path = path
        self.group = group
        self.control = control
        self.layout = layout
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self.sessions: set[AppSession] = set()

    async def start(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()  # a stale socket of a previous run
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path))
        finally:
            os.umask(old_umask)
        if self.group is None:
            os.chmod(self.path, 0o600)
            return
        os.chown(self.path, -1, group_id(self.group))
        os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for session in list(self.sessions):
            session.writer.close()
        if self.path.exists():
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AppSession(next(self._ids), writer, uid=_peer_uid(writer))
        try:
            if not await self._handshake(session, reader):
                return
            self.sessions.add(session)
            # An operator's tool (a monitor: stats, flows) may poll: not worth a line each.
            log.log(logging.DEBUG if session.monitor else logging.INFO,
                    "application %s (app %d) connected", session.name, session.app_id)
            await self._requests(session, reader)
        except (ConnectionError, asyncio.IncompleteReadError, cp.FramingError) as exc:
            log.info("application %s left: %s", session.name, exc)
        finally:
            self.sessions.discard(session)
            try:
                for ctx in session.contexts.values():
                    self.control.abort_owned_by(ctx)
            finally:
                if session.memory is not None:
                    session.memory.retire()  # unmapped once its orphans let go of its rings
                writer.close()

    async def _handshake(self, session: AppSession, reader: asyncio.StreamReader) -> bool:
        try:
            hello = await cp.read_message(reader, expect=cp.ClientMessage)
        except cp.ProtocolError as exc:
            session.send(cp.Error.from_protocol_error(exc))
            return False
        if not isinstance(hello, cp.Hello) or hello.version != cp.PROTOCOL_VERSION:
            session.send(cp.Error(req_id=None, errno=errno.EPROTO, message=(
                f"expected Hello with version {cp.PROTOCOL_VERSION} first, got {hello!r}: "
                "use a host_lib matching this runtime")))
            return False
        session.name = f"{hello.app_name}[{hello.pid}]"
        session.monitor = hello.monitor
        if self.layout is None or session.monitor:
            session.send(cp.HelloOk(app_id=session.app_id, version=cp.PROTOCOL_VERSION))
            return True
        session.memory, fd = AppMemory.create(session.app_id, self.layout)
        try:
            _send_with_fd(session.writer, cp.HelloOk(app_id=session.app_id,
                                                     version=cp.PROTOCOL_VERSION,
                                                     shm_name=session.memory.name), fd)
        finally:
            os.close(fd)  # the application has its own descriptor now; ours is not needed
        return True

    async def _requests(self, session: AppSession, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                msg = await cp.read_message(reader, expect=cp.ClientMessage)
            except cp.FramingError:
                raise
            except cp.ProtocolError as exc:
                session.send(cp.Error.from_protocol_error(exc))
                continue
            if isinstance(msg, cp.Bye):
                return
            if session.monitor and not isinstance(msg, _MONITOR_REQUESTS):
                session.send(cp.Error(req_id=getattr(msg, "req_id", None), errno=errno.EPERM,
                                      message=f"{msg.TYPE} is not for a monitor session"))
                continue
            if isinstance(msg, cp.Kick):   # no reply: the data path's doorbell
                self.control.stats.bump("kicks")
                conn = self.control.table.by_id.get(msg.conn_id)
                if conn is not None and conn.owner in session.contexts.values():
                    self.control.kick(conn)
                continue
            try:
                reply = await self._handle(session, msg)
            except OSError as exc:
                reply = cp.Error.from_os_error(getattr(msg, "req_id", None), exc)
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the daemon
                log.exception("request %r failed", msg)
                reply = cp.Error(req_id=getattr(msg, "req_id", None), errno=errno.EIO,
                                 message=f"internal error: {exc}")
            session.send(reply)

    def _check_congestion(self, name: str | None) -> None:
        """An application's TCP_CONGESTION must be on the operator's allow-list (EPERM)."""
        allowed = self.control.config.allowed_congestion
        if name is not None and name not in allowed:
            raise OSError(errno.EPERM, f"congestion control {name!r} is not allowed for "
                          f"applications (the runtime's --allow-congestion: "
                          f"{','.join(allowed)})")

    def _check_listeners(self, session: AppSession) -> None:
        """At most --max-app-listeners listeners per application (EMFILE, as for fds)."""
        limit = self.control.tcp.max_app_listeners
        owned = sum(1 for listener in self.control.table.listeners.values()
                    if isinstance(listener.owner, AppContext) and listener.owner.session is session)
        if owned >= limit:
            raise OSError(errno.EMFILE, f"this application has {owned} listeners, the most the "
                          f"runtime allows (--max-app-listeners {limit})")

    def _check_slots(self, session: AppSession) -> None:
        """A connection needs a ring slot: refuse at once when every one is taken (ENOBUFS),
        rather than after the handshake."""
        memory = session.memory
        if memory is None:
            return
        opening = sum(1 for conn in self.control.table.by_id.values()
                      if conn.channel is None and conn.active and conn.owner is not None
                      and isinstance(conn.owner, AppContext) and conn.owner.session is session)
        if len(memory.free_slots) <= opening:
            raise OSError(errno.ENOBUFS, f"all {memory.layout.max_connections} connection slots "
                          "of this application are in use or being opened (--max-app-connections)")

    async def _handle(self, session: AppSession, msg: cp.Message) -> cp.Message:
        if isinstance(msg, cp.CreateContext):
            ctx = AppContext(len(session.contexts), session)
            if session.memory is not None:
                session.memory.events(ctx.ctx_id)  # EMFILE beyond the layout's contexts
            session.contexts[ctx.ctx_id] = ctx
            return cp.ContextCreated(req_id=msg.req_id, ctx_id=ctx.ctx_id)
        if isinstance(msg, cp.Listen):
            ctx = self._context(session, msg.ctx_id)
            self._check_congestion(msg.congestion)
            self._check_listeners(session)
            listener = self.control.listen(ctx, msg.local_ip, msg.port, msg.backlog,
                                           msg.congestion)
            return cp.Listening(req_id=msg.req_id, listener_id=listener.listener_id,
                                local_ip=msg.local_ip or "0.0.0.0", port=msg.port)
        if isinstance(msg, cp.Connect):
            ctx = self._context(session, msg.ctx_id)
            self._check_congestion(msg.congestion)
            self._check_slots(session)
            conn_id = await self.control.connect(ctx, msg.peer_ip, msg.peer_port, msg.local_ip,
                                                 msg.local_port, msg.timeout_s, msg.congestion)
            return cp.Connecting(req_id=msg.req_id, conn_id=conn_id)
        if isinstance(msg, cp.Accept):
            self.control.accept(self._connection(session, msg.conn_id))
            return cp.Ok(req_id=msg.req_id)
        if isinstance(msg, cp.Close):
            self.control.close(self._connection(session, msg.conn_id), abort=msg.abort)
            return cp.Ok(req_id=msg.req_id)
        if isinstance(msg, cp.Shutdown):
            conn = self._connection(session, msg.conn_id)
            if msg.how in ("wr", "rdwr"):
                self.control.shutdown_write(conn)
            return cp.Ok(req_id=msg.req_id)
        if isinstance(msg, cp.SetKeepalive):
            params = KeepaliveParams(msg.idle_s, msg.interval_s, msg.count) if msg.enabled \
                else None
            self.control.set_keepalive(self._connection(session, msg.conn_id), params)
            return cp.Ok(req_id=msg.req_id)
        if isinstance(msg, cp.GetStats):
            return cp.Stats(req_id=msg.req_id, counters=self.control.snapshot())
        if isinstance(msg, cp.ListFlows):
            return self._list_flows(session, msg)
        if isinstance(msg, cp.CloseListener):
            self.control.close_listener(self._listener(session, msg.listener_id))
            return cp.Ok(req_id=msg.req_id)
        raise OSError(errno.EOPNOTSUPP, f"{type(msg).__name__} is not a request")

    def _list_flows(self, session: AppSession, msg: cp.ListFlows) -> cp.FlowList:
        """A page of the connections this session may see (see AppSession.privileged)."""
        def visible(conn: Connection) -> bool:
            return session.privileged or _session_of(conn) is session

        def owner_of(conn: Connection) -> str:
            owner = _session_of(conn)
            return owner.name if owner is not None else ""

        rows, more = list_flows(self.control, msg.after_conn_id, msg.limit, owner_of, visible)
        return cp.FlowList(req_id=msg.req_id, flows=[r.to_dict() for r in rows], more=more)

    @staticmethod
    def _context(session: AppSession, ctx_id: int) -> AppContext:
        try:
            return session.contexts[ctx_id]
        except KeyError:
            raise OSError(errno.EBADF, f"no context {ctx_id} in this application") from None

    def _connection(self, session: AppSession, conn_id: int) -> Connection:
        conn = self.control.table.by_id.get(conn_id)
        if conn is None or not isinstance(conn.owner, AppContext) or conn.owner.session is not session:
            raise OSError(errno.EBADF, f"no connection {conn_id} of this application")
        return conn

    def _listener(self, session: AppSession, listener_id: int) -> Listener:
        listener = self.control.table.listeners.get(listener_id)
        if listener is None or listener.owner.session is not session:
            raise OSError(errno.EBADF, f"no listener {listener_id} of this application")
        return listener


def _session_of(conn: Connection) -> AppSession | None:
    """The application that owns a connection (None: nobody, e.g. after it left)."""
    owner = conn.owner
    return owner.session if isinstance(owner, AppContext) else None


def group_id(name: str) -> int:
    """The id of a group; OSError if there is no such group."""
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise OSError(errno.EINVAL, f"no group {name!r} (--control-group): create it with "
                      f"`groupadd {name}` and add the users who run applications") from None


def _send_with_fd(writer: asyncio.StreamWriter, msg: cp.Message, fd: int) -> None:
    """The first message of a session, with a descriptor (SCM_RIGHTS), on a duplicate of the
    transport's socket: nothing is buffered in the transport yet, so the order holds."""
    sock = writer.get_extra_info("socket")
    with socket.socket(fileno=os.dup(sock.fileno())) as dup:
        cp.send_with_fd(dup, msg, fd)


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The connecting process's user id, as the kernel tells it (SO_PEERCRED)."""
    sock = writer.get_extra_info("socket")
    try:
        _pid, uid, _gid = _UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        _UCRED.size))
    except (OSError, AttributeError):
        return None
    return uid
