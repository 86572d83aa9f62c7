"""The control protocol between applications (host_lib) and the runtime daemon.

This module is the protocol's one definition and its documentation; both sides import it, and it
imports nothing from `runtime` (applications must not carry the controller). The transport is a
UNIX stream socket that only the daemon's owner can connect to. Data never flows here: payload
goes through shared-memory rings, whose setup messages will be added by the data-transfer work.

Framing
    Every message is one frame: a 4-byte big-endian unsigned length, then that many bytes (at most
    MAX_FRAME_BYTES) of UTF-8 JSON holding one object; except the doorbells Kick and Wake, which
    are sent per request and per wake-up and travel as 9 binary bytes: a tag (1 Kick, 2 Wake;
    never a byte JSON may start with), then the id (conn_id, ctx_id) as a big-endian u64.
    A JSON object's "type" key names the message; the other keys are its fields, checked on
    decode (types; ports and backlog 1..65535; IPv4 addresses as dotted quads; ids 0..2^63-1;
    errno 1..4095; timeouts in (0, MAX_TIMEOUT_S]; no NaN).
    An unknown "type" is rejected. Unknown fields are IGNORED, so a later version can add optional
    fields without breaking older peers; a new message type needs a PROTOCOL_VERSION bump.
    A frame that cannot be delimited (length over the limit, EOF inside a frame) raises
    FramingError: the stream is lost, close it. Any other bad frame raises ProtocolError and is
    skipped: the daemon answers it with Error.from_protocol_error (req_id echoed when readable)
    and carries on. Error texts (`message` fields) are clipped to MAX_TEXT_CHARS.

Handshake
    The application's first message is Hello(version, app_name, pid, monitor). The daemon answers
    HelloOk(app_id, version), or Error(req_id=None, EPROTONOSUPPORT, ...) and hangs up. `pid` is
    informational: the daemon identifies its peer with SO_PEERCRED, not with what it is told.
    A `monitor` session (an operator's tool, `python -m runtime flows`) gets no shared memory
    and may only send GetStats and ListFlows.

Requests, application -> daemon; each carries a client-chosen `req_id` that its reply echoes:
    CreateContext()                       -> ContextCreated(ctx_id): a per-thread event queue
    Listen(ctx_id, local_ip|None, port, backlog)
                                          -> Listening(listener_id, local_ip, port), then
                                             IncomingConnection events on ctx_id
    Connect(ctx_id, peer_ip, peer_port, local_ip|None, local_port|None, timeout_s)
                                          -> Connecting(conn_id), then Connected | ConnectFailed
    Close(conn_id, abort)                 -> Ok; the Closed event follows once fully closed;
                                             abort: RST at once (SO_LINGER with timeout 0)
    Shutdown(conn_id, how='rd'|'wr'|'rdwr') -> Ok
    SetKeepalive(conn_id, enabled, idle_s, interval_s, count)
                                          -> Ok: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
                                             TCP_KEEPCNT (seconds, 1..32767; probes, 1..127)
    CloseListener(listener_id)            -> Ok
    GetStats()                            -> Stats(counters)
    ListFlows(after_conn_id, limit)       -> FlowList(flows, more): the connections with ids
                                             above after_conn_id, at most `limit`, as FlowInfo
                                             rows; every application's when the peer runs as
                                             root or as the daemon's user, else its own
    Any request may get Error(req_id, errno, message) instead. errno values are Python's `errno`
    (EADDRINUSE, ECONNREFUSED, ETIMEDOUT, EINVAL, EBADF, ...); Error.to_exception() rebuilds the
    OSError subclass a socket call would raise.
    Bye() has no reply: a clean disconnect. An application that hangs up without it is treated
    the same way: its listeners are removed and each connection ends as the kernel ends a
    dead process's sockets: closed (FIN after its queued data, finishing as an orphan), or
    reset when received data was left unread.

Events, daemon -> application, on the context (ctx_id) that owns the connection (conn_id):
    IncomingConnection(listener_id, local_ip, local_port, peer_ip, peer_port): one to accept
    Connected(local_ip, local_port, peer_ip, peer_port): an active open completed
    ConnectFailed(errno, message): an active open failed (ECONNREFUSED, ETIMEDOUT, ...)
    PeerClosed(): the peer sent FIN: end of stream after the data that came before it
    ConnectionReset(message): a RST ended the connection
    ConnectionError(errno, message): any other error that ended the connection
        (class ConnectionErrorEvent, so that the builtin ConnectionError stays unshadowed)
    Closed(): fully closed; the conn_id is void from now on

Adding a message type is adding one frozen dataclass decorated with @register.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import math
import os
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import cache
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar

PROTOCOL_VERSION = 5
DEFAULT_CONTROL_SOCKET = "/tmp/p4tas-runtime.sock"  # the daemon's --control-socket default
MAX_FRAME_BYTES = 64 * 1024
MAX_TEXT_CHARS = 1024
MAX_APP_NAME_CHARS = 256
MAX_TIMEOUT_S = 3600.0
MAX_ID = 2**63 - 1
# Congestion control a listener or connection may ask for (runtime/congestion/; "none": no
# rate limit, only the peer's window). None in a request: the runtime's default.
CONGESTION_CONTROLS = ("dctcp", "timely", "none")
FRAME_HEADER = struct.Struct("!I")

ShutdownHow = Literal["rd", "wr", "rdwr"]


class ProtocolError(ValueError):
    """A message that breaks the protocol; `req_id` is the offending request's, when readable.

    FrameReader.feed sets `decoded_before` to the good messages that preceded the bad frame.
    """

    def __init__(self, message: str, req_id: int | None = None) -> None:
        super().__init__(message)
        self.req_id = req_id
        self.decoded_before: list[Message] = []


class FramingError(ProtocolError):
    """The byte stream can no longer be split into frames: close the connection."""


class ConnectionClosed(ConnectionError):
    """The peer closed the control connection (cleanly between frames, or inside one)."""


# --- field checks: each returns the (normalized) value or raises ValueError("must be ...") ---

Check = Callable[[Any], Any]


def _integer(low: int, high: int) -> Check:
    """Integers in low..high (JSON booleans are not integers here)."""
    def check(value: Any) -> int:
        if type(value) is not int or not low <= value <= high:
            raise ValueError(f"must be an integer in {low}..{high}")
        return value
    return check


def _seconds(value: Any) -> float:
    """A timeout in seconds, 0 < value <= MAX_TIMEOUT_S."""
    if type(value) not in (int, float) or not math.isfinite(value) or \
            not 0 < value <= MAX_TIMEOUT_S:
        raise ValueError(f"must be a number of seconds in (0, {MAX_TIMEOUT_S:g}]")
    return float(value)


def _boolean(value: Any) -> bool:
    """true or false."""
    if type(value) is not bool:
        raise ValueError("must be true or false")
    return value


def _ipv4(value: Any) -> str:
    """An IPv4 address in dotted-quad form."""
    try:
        if isinstance(value, str):
            return str(ipaddress.IPv4Address(value))
    except ValueError:
        pass
    raise ValueError("must be an IPv4 address in dotted-quad form, e.g. '10.0.0.1'")


def _text(max_chars: int, *, clip: bool, min_chars: int = 0) -> Check:
    """Strings of min_chars..max_chars characters; longer ones clipped if `clip`."""
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("must be a string")
        if clip and len(value) > max_chars:
            return value[:max_chars - 1] + "\u2026"
        if not min_chars <= len(value) <= max_chars:
            raise ValueError(f"must be a string of {min_chars}..{max_chars} characters")
        return value
    return check


def _choice(*options: str) -> Check:
    """One of the given strings."""
    def check(value: Any) -> str:
        if value not in options or not isinstance(value, str):
            raise ValueError(f"must be one of {', '.join(map(repr, options))}")
        return value
    return check


def _optional(check: Check) -> Check:
    """`check`, or null."""
    def optional(value: Any) -> Any:
        if value is None:
            return None
        try:
            return check(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (or null)") from None
    return optional


_ID = _integer(0, MAX_ID)
_PORT = _integer(1, 0xFFFF)
_ERRNO = _integer(1, 4095)
_MESSAGE_TEXT = _text(MAX_TEXT_CHARS, clip=True)


def _field(check: Check, **kwargs: Any) -> Any:
    """A dataclass field that `check` validates when a message is built or decoded."""
    return field(metadata={"check": check}, **kwargs)


@dataclass(frozen=True)
class _FieldInfo:
    """What decode and validation need to know about one message field."""

    name: str
    required: bool
    check: Check | None


@cache
def _field_table(cls: type[Message]) -> tuple[_FieldInfo, ...]:
    """The fields of a message class, computed once per class."""
    return tuple(_FieldInfo(f.name, f.default is MISSING and f.default_factory is MISSING,
                            f.metadata.get("check")) for f in fields(cls))


def _short(value: Any) -> str:
    """repr(value), cut to a length fit for an error message."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --- messages ---

_REGISTRY: dict[str, type[Message]] = {}
MESSAGE_TYPES: Mapping[str, type[Message]] = MappingProxyType(_REGISTRY)

M = TypeVar("M", bound="Message")


def register(cls: type[M]) -> type[M]:
    """Class decorator: make a message dataclass decodable under its TYPE."""
    type_name = cls.__dict__.get("TYPE")
    if not isinstance(type_name, str) or not type_name:
        raise TypeError(f"{cls.__name__} must define its own TYPE string")
    if type_name in _REGISTRY:
        raise TypeError(f"message type {type_name!r} is already {_REGISTRY[type_name].__name__}")
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} must be a dataclass (apply @dataclass below @register)")
    _REGISTRY[type_name] = cls
    return cls


@dataclass(frozen=True, kw_only=True)
class Message:
    """Base of every message: validates its fields on construction."""

    TYPE: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for info in _field_table(type(self)):
            if info.check is None:
                continue
            value = getattr(self, info.name)
            try:
                normalized = info.check(value)
            except ValueError as exc:
                raise ProtocolError(f"{self.TYPE}.{info.name} = {_short(value)} is invalid: "
                                    f"it {exc}") from None
            if normalized is not value:
                object.__setattr__(self, info.name, normalized)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this message, "type" first."""
        data: dict[str, Any] = {"type": self.TYPE}
        data.update((info.name, getattr(self, info.name)) for info in _field_table(type(self)))
        return data


@dataclass(frozen=True, kw_only=True)
class ClientMessage(Message):
    """A message the application sends to the daemon."""


@dataclass(frozen=True, kw_only=True)
class ServerMessage(Message):
    """A message the daemon sends to an application."""


@dataclass(frozen=True, kw_only=True)
class Request(ClientMessage):
    """An application request; the daemon's reply echoes its req_id."""

    req_id: int = _field(_ID)


@dataclass(frozen=True, kw_only=True)
class Reply(ServerMessage):
    """The daemon's answer to the request with the same req_id."""

    req_id: int = _field(_ID)


@dataclass(frozen=True, kw_only=True)
class Event(ServerMessage):
    """Something that happened to connection conn_id, queued on context ctx_id."""

    ctx_id: int = _field(_ID)
    conn_id: int = _field(_ID)


def os_error(code: int, message: str) -> OSError:
    """The exception a socket call raises for errno `code`: OSError picks the subclass."""
    return OSError(code, message or os.strerror(code))


@register
@dataclass(frozen=True, kw_only=True)
class Hello(ClientMessage):
    """First message of a connection: the application introduces itself."""

    TYPE: ClassVar[str] = "Hello"
    version: int = _field(_integer(0, 2**31 - 1))
    app_name: str = _field(_text(MAX_APP_NAME_CHARS, clip=False, min_chars=1))
    pid: int = _field(_integer(1, 2**31 - 1))
    monitor: bool = _field(_boolean, default=False)


@register
@dataclass(frozen=True, kw_only=True)
class Bye(ClientMessage):
    """Clean disconnect; no reply."""

    TYPE: ClassVar[str] = "Bye"


@register
@dataclass(frozen=True, kw_only=True)
class CreateContext(Request):
    """Create a per-thread event queue."""

    TYPE: ClassVar[str] = "CreateContext"


@register
@dataclass(frozen=True, kw_only=True)
class Listen(Request):
    """Passive open on port (local_ip None: every local address)."""

    TYPE: ClassVar[str] = "Listen"
    ctx_id: int = _field(_ID)
    local_ip: str | None = _field(_optional(_ipv4), default=None)
    port: int = _field(_PORT)
    backlog: int = _field(_integer(1, 0xFFFF))
    congestion: str | None = _field(_optional(_choice(*CONGESTION_CONTROLS)), default=None)


@register
@dataclass(frozen=True, kw_only=True)
class Connect(Request):
    """Active open; local_ip / local_port None: chosen by the daemon."""

    TYPE: ClassVar[str] = "Connect"
    ctx_id: int = _field(_ID)
    peer_ip: str = _field(_ipv4)
    peer_port: int = _field(_PORT)
    local_ip: str | None = _field(_optional(_ipv4), default=None)
    local_port: int | None = _field(_optional(_PORT), default=None)
    timeout_s: float = _field(_seconds)
    congestion: str | None = _field(_optional(_choice(*CONGESTION_CONTROLS)), default=None)


@register
@dataclass(frozen=True, kw_only=True)
class Kick(ClientMessage):
    """No reply: the application queued TX bytes and/or consumed RX bytes of conn_id's rings."""

    TYPE: ClassVar[str] = "Kick"
    conn_id: int = _field(_ID)


@register
@dataclass(frozen=True, kw_only=True)
class Wake(ServerMessage):
    """Events wait in context ctx_id's queue in shared memory."""

    TYPE: ClassVar[str] = "Wake"
    ctx_id: int = _field(_ID)


@register
@dataclass(frozen=True, kw_only=True)
class Accept(Request):
    """The application took an IncomingConnection off its accept queue (frees backlog)."""

    TYPE: ClassVar[str] = "Accept"
    conn_id: int = _field(_ID)


@register
@dataclass(frozen=True, kw_only=True)
class Close(Request):
    """Close the connection: FIN after the queued data; Closed follows."""

    TYPE: ClassVar[str] = "Close"
    conn_id: int = _field(_ID)
    abort: bool = _field(_boolean, default=False)  # RST instead of FIN (SO_LINGER 0)


@register
@dataclass(frozen=True, kw_only=True)
class Shutdown(Request):
    """Shut down one or both directions, like socket.shutdown."""

    TYPE: ClassVar[str] = "Shutdown"
    conn_id: int = _field(_ID)
    how: ShutdownHow = _field(_choice("rd", "wr", "rdwr"))


MAX_KEEPALIVE_S = 32767   # Linux's MAX_TCP_KEEPIDLE and MAX_TCP_KEEPINTVL
MAX_KEEPALIVE_PROBES = 127  # Linux's MAX_TCP_KEEPCNT


@register
@dataclass(frozen=True, kw_only=True)
class SetKeepalive(Request):
    """TCP keepalive for a connection (RFC 1122 4.2.3.6): off, or probe after idle_s without
    a segment from the peer, every interval_s, and reset after `count` unanswered probes."""

    TYPE: ClassVar[str] = "SetKeepalive"
    conn_id: int = _field(_ID)
    enabled: bool = _field(_boolean)
    idle_s: int = _field(_integer(1, MAX_KEEPALIVE_S), default=7200)
    interval_s: int = _field(_integer(1, MAX_KEEPALIVE_S), default=75)
    count: int = _field(_integer(1, MAX_KEEPALIVE_PROBES), default=9)


@register
@dataclass(frozen=True, kw_only=True)
class CloseListener(Request):
    """Stop listening; connections not yet accepted are reset."""

    TYPE: ClassVar[str] = "CloseListener"
    listener_id: int = _field(_ID)


def _counters(value: Any) -> dict[str, int]:
    """A JSON object of counter name -> non-negative integer."""
    if not isinstance(value, dict):
        raise ValueError("must be an object of counter names to integers")
    for name, count in value.items():
        if not isinstance(name, str) or type(count) is not int or count < 0:
            raise ValueError(f"has a bad counter {_short(name)}: {_short(count)}")
    return value


@register
@dataclass(frozen=True, kw_only=True)
class GetStats(Request):
    """Ask for the daemon's counters (connections, flows, ports, drops...)."""

    TYPE: ClassVar[str] = "GetStats"


@register
@dataclass(frozen=True, kw_only=True)
class Stats(Reply):
    """The daemon's counters, by name."""

    TYPE: ClassVar[str] = "Stats"
    counters: dict = _field(_counters)


MAX_FLOWS_PER_LIST = 48  # FlowInfo rows per FlowList: inside MAX_FRAME_BYTES with long app names


@dataclass(frozen=True, kw_only=True)
class FlowInfo:
    """One connection as an operator sees it (`python -m runtime flows`, like `ss -ti`).

    Byte counts are since the connection was established; `rate_bps` is what congestion
    control paces it to (None: unlimited); `rtt_us` the smoothed RTT (None: no sample yet);
    `ooo_bytes` how far the out-of-order interval reaches past the in-order data (0: none);
    ring fills are bytes queued (RX: received, not yet read; TX: written, not yet acknowledged);
    keepalive (SO_KEEPALIVE; idle None: off): its parameters, the probes sent unanswered and
    the seconds since the peer was last heard.
    """

    conn_id: int
    state: str
    local_ip: str
    local_port: int
    peer_ip: str
    peer_port: int
    app: str = ""
    congestion: str | None = None
    bytes_sent: int = 0
    bytes_acked: int = 0
    bytes_received: int = 0
    rate_bps: float | None = None
    rtt_us: int | None = None
    fast_retransmits: int = 0
    rto_timeouts: int = 0
    retransmitted_bytes: int = 0
    ece_bytes: int = 0
    ooo_bytes: int = 0
    rx_ring_fill: int = 0
    rx_ring_size: int = 0
    tx_ring_fill: int = 0
    tx_ring_size: int = 0
    keepalive_idle_s: float | None = None
    keepalive_interval_s: float | None = None
    keepalive_count: int = 0
    keepalive_probes: int = 0
    keepalive_heard_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FlowInfo:
        """A row from its JSON object; unknown keys are ignored (newer daemons may add some)."""
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError as exc:
            raise ProtocolError(f"bad FlowInfo row: {exc}") from None


def _flow_rows(value: Any) -> list[dict[str, Any]]:
    """A list of at most MAX_FLOWS_PER_LIST FlowInfo objects."""
    if not isinstance(value, list) or len(value) > MAX_FLOWS_PER_LIST:
        raise ValueError(f"must be a list of at most {MAX_FLOWS_PER_LIST} flow objects")
    for row in value:
        if not isinstance(row, dict) or not all(isinstance(k, str) for k in row):
            raise ValueError("must hold JSON objects with string keys")
    return value


@register
@dataclass(frozen=True, kw_only=True)
class ListFlows(Request):
    """Ask for the connections with ids above after_conn_id (an operator's view)."""

    TYPE: ClassVar[str] = "ListFlows"
    after_conn_id: int = _field(_ID, default=0)
    limit: int = _field(_integer(1, MAX_FLOWS_PER_LIST), default=MAX_FLOWS_PER_LIST)


@register
@dataclass(frozen=True, kw_only=True)
class FlowList(Reply):
    """Up to `limit` connections in id order; `more`: ask again after the last one."""

    TYPE: ClassVar[str] = "FlowList"
    flows: list = _field(_flow_rows)
    more: bool = _field(_boolean, default=False)

    def rows(self) -> list[FlowInfo]:
        return [FlowInfo.from_dict(row) for row in self.flows]


@register
@dataclass(frozen=True, kw_only=True)
class HelloOk(ServerMessage):
    """The daemon accepted the Hello."""

    TYPE: ClassVar[str] = "HelloOk"
    app_id: int = _field(_ID)
    version: int = _field(_integer(0, 2**31 - 1))
    # The application's shared-memory segment (host_lib.shm_layout): payload rings of its
    # connections and its contexts' event queues; None when the runtime has no data path.
    # The segment itself is a file descriptor passed with this frame (SCM_RIGHTS, see
    # send_with_fd): it has no name another process could open; shm_name is for messages.
    shm_name: str | None = _field(_optional(_text(MAX_APP_NAME_CHARS, clip=False, min_chars=1)),
                                  default=None)


@register
@dataclass(frozen=True, kw_only=True)
class Ok(Reply):
    """The request succeeded and has nothing to return."""

    TYPE: ClassVar[str] = "Ok"


@register
@dataclass(frozen=True, kw_only=True)
class Error(Reply):
    """The request (or, with req_id None, the connection or a bad message) failed."""

    TYPE: ClassVar[str] = "Error"
    req_id: int | None = _field(_optional(_ID), default=None)
    errno: int = _field(_ERRNO)
    message: str = _field(_MESSAGE_TEXT)

    def to_exception(self) -> OSError:
        """The OSError subclass a socket call raises for this errno."""
        return os_error(self.errno, self.message)

    @classmethod
    def from_os_error(cls, req_id: int | None, exc: OSError) -> Error:
        """The reply to send for a request that failed with `exc` (EIO when it has no errno)."""
        return cls(req_id=req_id, errno=exc.errno or errno.EIO,
                   message=exc.strerror or str(exc) or os.strerror(exc.errno or errno.EIO))

    @classmethod
    def from_protocol_error(cls, exc: ProtocolError) -> Error:
        """The reply to send for a bad message (EPROTO)."""
        return cls(req_id=exc.req_id, errno=errno.EPROTO, message=str(exc))


@register
@dataclass(frozen=True, kw_only=True)
class ContextCreated(Reply):
    """Reply to CreateContext."""

    TYPE: ClassVar[str] = "ContextCreated"
    ctx_id: int = _field(_ID)


@register
@dataclass(frozen=True, kw_only=True)
class Listening(Reply):
    """Reply to Listen: the listener and the address it is bound to."""

    TYPE: ClassVar[str] = "Listening"
    listener_id: int = _field(_ID)
    local_ip: str = _field(_ipv4)
    port: int = _field(_PORT)


@register
@dataclass(frozen=True, kw_only=True)
class Connecting(Reply):
    """Reply to Connect: the open is under way; Connected or ConnectFailed follows."""

    TYPE: ClassVar[str] = "Connecting"
    conn_id: int = _field(_ID)


@register
@dataclass(frozen=True, kw_only=True)
class IncomingConnection(Event):
    """A connection to a listener is established and waits to be accepted."""

    TYPE: ClassVar[str] = "IncomingConnection"
    listener_id: int = _field(_ID)
    local_ip: str = _field(_ipv4)
    local_port: int = _field(_PORT)
    peer_ip: str = _field(_ipv4)
    peer_port: int = _field(_PORT)
    slot: int | None = _field(_optional(_ID), default=None)  # ring slot in the segment


@register
@dataclass(frozen=True, kw_only=True)
class Connected(Event):
    """An active open completed."""

    TYPE: ClassVar[str] = "Connected"
    local_ip: str = _field(_ipv4)
    local_port: int = _field(_PORT)
    peer_ip: str = _field(_ipv4)
    peer_port: int = _field(_PORT)
    slot: int | None = _field(_optional(_ID), default=None)  # ring slot in the segment


@register
@dataclass(frozen=True, kw_only=True)
class ConnectFailed(Event):
    """An active open failed; conn_id is void."""

    TYPE: ClassVar[str] = "ConnectFailed"
    errno: int = _field(_ERRNO)
    message: str = _field(_MESSAGE_TEXT)

    def to_exception(self) -> OSError:
        """The exception connect() raises for this failure."""
        return os_error(self.errno, self.message)


@register
@dataclass(frozen=True, kw_only=True)
class PeerClosed(Event):
    """The peer sent FIN: end of stream after the data received before it."""

    TYPE: ClassVar[str] = "PeerClosed"


@register
@dataclass(frozen=True, kw_only=True)
class ConnectionReset(Event):
    """A RST ended the connection."""

    TYPE: ClassVar[str] = "ConnectionReset"
    message: str = _field(_MESSAGE_TEXT)

    def to_exception(self) -> OSError:
        """The exception socket calls raise on this connection now."""
        return os_error(errno.ECONNRESET, self.message)


@register
@dataclass(frozen=True, kw_only=True)
class Closed(Event):
    """The connection is fully closed; conn_id is void."""

    TYPE: ClassVar[str] = "Closed"


@register
@dataclass(frozen=True, kw_only=True)
class ConnectionErrorEvent(Event):
    """An error other than a reset ended the connection (wire type "ConnectionError")."""

    TYPE: ClassVar[str] = "ConnectionError"
    errno: int = _field(_ERRNO)
    message: str = _field(_MESSAGE_TEXT)

    def to_exception(self) -> OSError:
        """The exception socket calls raise on this connection now."""
        return os_error(self.errno, self.message)


# --- codec ---

DOORBELL = struct.Struct("!BQ")   # a binary doorbell's payload: tag, id
_DOORBELL_FRAME = struct.Struct("!IBQ")
_DOORBELLS: dict[type[Message], tuple[int, str]] = {Kick: (1, "conn_id"), Wake: (2, "ctx_id")}
_DOORBELL_TAGS = {tag: (cls, name) for cls, (tag, name) in _DOORBELLS.items()}


def encode(message: Message) -> bytes:
    """One frame: length header + compact JSON (ASCII, so any str survives), or a doorbell's
    binary payload."""
    doorbell = _DOORBELLS.get(type(message))
    if doorbell is not None:
        tag, name = doorbell
        return _DOORBELL_FRAME.pack(DOORBELL.size, tag, getattr(message, name))
    payload = json.dumps(message.to_dict(), separators=(",", ":"), allow_nan=False).encode()
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"{message.TYPE} message encodes to {len(payload)} bytes, over the "
                            f"{MAX_FRAME_BYTES}-byte frame limit: shorten its string fields")
    return FRAME_HEADER.pack(len(payload)) + payload


def decode(payload: bytes | bytearray | memoryview,
           expect: type[Message] = Message) -> Message:
    """The message in one frame's payload; ProtocolError unless it is a valid `expect`."""
    if payload and payload[0] in _DOORBELL_TAGS:
        return _decode_doorbell(payload, expect)
    obj = _parse_object(payload)
    req_id = obj.get("req_id")
    try:
        cls = _message_class(obj.get("type"))
        message = cls(**_field_values(cls, obj))
        if not isinstance(message, expect):
            raise ProtocolError(f"{cls.TYPE} is not {_describe(expect)}; it travels the other "
                                "way (see the list of messages in host_lib/control_protocol.py)")
    except ProtocolError as exc:
        exc.req_id = req_id if type(req_id) is int and 0 <= req_id <= MAX_ID else None
        raise
    return message


def _decode_doorbell(payload: bytes | bytearray | memoryview,
                     expect: type[Message]) -> Message:
    """A binary Kick or Wake (see Framing)."""
    if len(payload) != DOORBELL.size:
        raise ProtocolError(f"a binary doorbell is {DOORBELL.size} bytes (tag, u64 id), not "
                            f"{len(payload)}")
    tag, value = DOORBELL.unpack_from(payload)
    cls, name = _DOORBELL_TAGS[tag]
    message = cls(**{name: value})
    if not isinstance(message, expect):
        raise ProtocolError(f"{cls.TYPE} is not {_describe(expect)}; it travels the other way")
    return message


def _describe(cls: type[Message]) -> str:
    """'a message the application sends to the daemon', from the class docstring."""
    summary = (cls.__doc__ or cls.__name__).splitlines()[0].rstrip(".")
    return summary[:1].lower() + summary[1:]


def _reject_constant(name: str) -> None:
    """json.loads hook: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _parse_object(payload: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The JSON object in a payload (strict UTF-8, no NaN/Infinity, bounded nesting)."""
    try:
        obj = json.loads(bytes(payload).decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise ProtocolError("frame payload is JSON nested too deeply; each frame must hold one "
                            "flat JSON object") from None
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise ProtocolError(f"frame payload is not UTF-8 JSON ({exc}); each frame must hold one "
                            "JSON object after its 4-byte big-endian length") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"frame payload is a JSON {type(obj).__name__}, not an object; each "
                            "frame must hold one JSON object with a \"type\" key")
    return obj


def _message_class(type_name: Any) -> type[Message]:
    """The registered class for a "type" value."""
    if not isinstance(type_name, str):
        raise ProtocolError(f"message has no \"type\" string (got {_short(type_name)}); every "
                            "message must name its type")
    cls = _REGISTRY.get(type_name)
    if cls is None:
        raise ProtocolError(f"unknown message type {_short(type_name)}: this side speaks control "
                            f"protocol version {PROTOCOL_VERSION} (types: "
                            f"{', '.join(sorted(_REGISTRY))}); check both sides' versions")
    return cls


def _field_values(cls: type[Message], obj: dict[str, Any]) -> dict[str, Any]:
    """The constructor arguments from a decoded object; unknown keys are ignored."""
    table = _field_table(cls)
    missing = [info.name for info in table if info.required and info.name not in obj]
    if missing:
        required = ", ".join(info.name for info in table if info.required)
        raise ProtocolError(f"{cls.TYPE} message lacks field(s) {', '.join(missing)}; "
                            f"it needs: {required}")
    return {info.name: obj[info.name] for info in table if info.name in obj}


def _frame_length(header: bytes | bytearray | memoryview, offset: int = 0) -> int:
    """The payload length announced by a frame header; FramingError if over the limit."""
    (length,) = FRAME_HEADER.unpack_from(header, offset)
    if length > MAX_FRAME_BYTES:
        raise FramingError(f"frame length {length} exceeds the {MAX_FRAME_BYTES}-byte limit: the "
                           "peer is not speaking this protocol (4-byte big-endian length + JSON "
                           "object) or sent an oversized message; close the connection")
    return length


def _closed(got: int, wanted: int, at_boundary: bool) -> ConnectionClosed:
    """The error for EOF after `got` of `wanted` bytes."""
    if at_boundary and got == 0:
        return ConnectionClosed("the peer closed the control connection")
    return ConnectionClosed(f"the peer closed the control connection inside a frame ({got} of "
                            f"{wanted} bytes read); the message is lost")


class FrameReader:
    """Splits a byte stream into messages, for non-blocking sockets: feed it what recv returns."""

    def __init__(self, expect: type[Message] = Message) -> None:
        self._buffer = bytearray()
        self._expect = expect
        self._broken: str | None = None

    @property
    def pending_bytes(self) -> int:
        """Bytes of an incomplete frame; non-zero at EOF means the peer hung up inside one."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Buffer `data`; return every complete message, in order.

        A bad frame raises ProtocolError (with the messages before it in `decoded_before`) and is
        dropped; frames after it stay buffered for the next call (feed(b"") is fine). After a
        FramingError every call raises again.
        """
        if self._broken is not None:
            raise FramingError(self._broken)
        self._buffer += data
        messages: list[Message] = []
        offset = 0
        try:
            while (payload := self._payload_at(offset)) is not None:
                offset += FRAME_HEADER.size + len(payload)
                messages.append(decode(payload, self._expect))
        except ProtocolError as exc:
            if isinstance(exc, FramingError):
                self._broken = str(exc)
            exc.decoded_before = messages
            raise
        finally:
            del self._buffer[:offset]
        return messages

    def _payload_at(self, offset: int) -> bytes | None:
        """The payload of the complete frame at `offset`, or None if it is not all here."""
        if len(self._buffer) - offset < FRAME_HEADER.size:
            return None
        start = offset + FRAME_HEADER.size
        end = start + _frame_length(self._buffer, offset)
        return bytes(self._buffer[start:end]) if end <= len(self._buffer) else None


# --- blocking sockets ---

def send_message(sock: socket.socket, message: Message) -> None:
    """Send one message on a blocking socket (sendall handles partial sends)."""
    sock.sendall(encode(message))


def send_with_fd(sock: socket.socket, message: Message, fd: int) -> None:
    """Send one message with a file descriptor attached to its first byte (SCM_RIGHTS); the
    socket's send buffer must be empty (the first message of a connection)."""
    frame = encode(message)
    sent = socket.send_fds(sock, [frame], [fd])
    if sent < len(frame):
        sock.sendall(frame[sent:])


def recv_message(sock: socket.socket, expect: type[Message] = Message) -> Message:
    """Receive one message from a blocking socket; ConnectionClosed at EOF.

    A socket timeout inside a frame leaves the stream out of step: close it then.
    """
    length = _frame_length(_recv_exactly(sock, FRAME_HEADER.size, at_boundary=True))
    return decode(_recv_exactly(sock, length, at_boundary=False), expect)


def _recv_exactly(sock: socket.socket, count: int, at_boundary: bool) -> bytearray:
    """Exactly `count` bytes, however the kernel splits them."""
    buffer = bytearray(count)
    view = memoryview(buffer)
    got = 0
    while got < count:
        received = sock.recv_into(view[got:])
        if received == 0:
            raise _closed(got, count, at_boundary)
        got += received
    return buffer


# --- asyncio streams ---

async def read_message(reader: asyncio.StreamReader,
                       expect: type[Message] = Message) -> Message:
    """Read one message from a stream; ConnectionClosed at EOF."""
    header = await _read_exactly(reader, FRAME_HEADER.size, at_boundary=True)
    payload = await _read_exactly(reader, _frame_length(header), at_boundary=False)
    return decode(payload, expect)


async def write_message(writer: asyncio.StreamWriter, message: Message) -> None:
    """Write one message and wait until the transport has room again."""
    writer.write(encode(message))
    await writer.drain()


async def _read_exactly(reader: asyncio.StreamReader, count: int, at_boundary: bool) -> bytes:
    """Exactly `count` bytes from the stream."""
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise _closed(len(exc.partial), count, at_boundary) from None
