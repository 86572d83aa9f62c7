"""Connection and listener state of the slow path, and the tables that hold them."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Protocol

from host_lib import control_protocol as cp
from runtime.app_memory import AppMemory
from runtime.config import Interface
from runtime.flow_channel import FlowChannel
from nic_contract.flow_entries import FlowSpec, FlowTuple
from runtime.flow_ids import FlowLease
from runtime.keepalive import KeepaliveParams
from runtime.tcp_segments import TcpOptions, TcpSegment
from runtime.tcp_state import State, TcpStateMachine


class EventSink(Protocol):
    """Where a connection's application events go (an application context)."""

    ctx_id: int
    memory: AppMemory | None  # the application's shared memory, if the data path is on

    def deliver(self, event: cp.Message) -> None: ...


@dataclass(eq=False)
class Listener:
    """A passive open: `ip` None listens on every local address."""

    listener_id: int
    ip: str | None
    port: int
    backlog: int
    owner: EventSink
    handshaking: int = 0  # SYN received, not yet established
    establishing: int = 0  # established, flow being installed, not announced yet
    unaccepted: set = field(default_factory=set)  # conn ids announced, not yet accepted
    congestion: str | None = None  # for its connections; None: the runtime's default

    def queue_full(self) -> bool:
        """The backlog bounds half-open plus not-yet-accepted connections (like Linux's)."""
        return self.handshaking + len(self.unaccepted) >= self.backlog

    def accept_queue_full(self) -> bool:
        """No room for another established connection until the application accepts one
        (what Linux checks before it completes a handshake or takes a SYN cookie)."""
        return self.establishing + len(self.unaccepted) >= self.backlog

    def matches(self, ip: str, port: int) -> bool:
        return self.port == port and self.ip in (None, ip)


@dataclass(eq=False, slots=True)
class Connection:
    """One TCP connection as the slow path tracks it."""

    conn_id: int
    tuple: FlowTuple
    interface: Interface
    peer_mac: str
    sm: TcpStateMachine
    iss: int
    irs: int = 0
    snd_nxt: int = 0
    rcv_nxt: int = 0
    peer_options: TcpOptions = field(default_factory=TcpOptions)
    peer_window: int = 0    # the peer's raw window at setup (the fast path tracks it after)
    peer_window_bytes: int = 0  # the same in bytes (a SYN's window is not scaled, later ones are)
    window_shift: int = 0   # ours; 0 unless the peer also does window scaling
    timestamps: bool = False
    ecn: bool = False       # negotiated in the handshake (RFC 3168 6.1.1)
    sack: bool = False      # SACK-permitted both ways (RFC 2018 2), with timestamps
    owner: EventSink | None = None
    listener: Listener | None = None
    active: bool = False    # we connected (the local port is ours to release)
    announced: bool = False  # the application was told about it (Connected/Incoming...)
    flow: FlowLease | None = None
    flow_spec: FlowSpec | None = None
    fin_seq: int | None = None  # sequence number of our FIN once sent
    fin_received: bool = False
    close_pending: bool = False   # the application closed; FIN once its TX data is acked
    shutdown_pending: bool = False  # shutdown(SHUT_WR): FIN once the TX data is acked
    channel: FlowChannel | None = None  # the data path: rings and bridge state
    memory: AppMemory | None = None
    rx_consumed_seen: int = 0     # RX ring tail already returned to the NIC
    timer: asyncio.TimerHandle | None = None
    retries: int = 0
    congestion: str | None = None  # congestion control asked for; None: the runtime's default
    opened_at: float = 0.0  # time.monotonic() of the first SYN sent or received
    lingering: bool = False  # TCP is over, but the application still holds (reads) its rings
    held_fin: TcpSegment | None = None  # the peer's FIN, ahead of RX data not yet delivered
    installing: bool = False  # the flow's entries are being written to the switch
    held_segments: list = field(default_factory=list)  # data that raced the installation
    held_bytes: int = 0
    reinjected_until: int | None = None  # ACK RX data up to this sequence as it lands
    installed_at: float = 0.0  # time.monotonic() when the flow reached the fast path
    race_reinjects: int = 0    # unknown-flow data handed back after that (see _raced_...)
    reinjected_ce: bool = False  # reinjected data arrived CE-marked: echo ECE on its ACK
    app_closed: bool = False   # the application called close() (or left)
    closed_told: bool = False  # the Closed event went out
    held_fin_timer: asyncio.TimerHandle | None = None
    keepalive: KeepaliveParams | None = None  # SO_KEEPALIVE on: probe the idle peer

    @property
    def state(self) -> State:
        return self.sm.state

    def cancel_timer(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def describe(self) -> str:
        t = self.tuple
        return f"#{self.conn_id} {t.local_ip}:{t.local_port}<->{t.peer_ip}:{t.peer_port}"


class ConnectionTable:
    """Connections by id and by 4-tuple, listeners by id; all lookups O(1) or O(listeners
    on a port)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.by_tuple: dict[FlowTuple, Connection] = {}
        self.by_id: dict[int, Connection] = {}
        self.listeners: dict[int, Listener] = {}
        self._listeners_by_port: dict[int, list[Listener]] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def add(self, conn: Connection) -> None:
        self.by_tuple[conn.tuple] = conn
        self.by_id[conn.conn_id] = conn

    def remove(self, conn: Connection) -> None:
        self.release_tuple(conn)
        self.by_id.pop(conn.conn_id, None)

    def release_tuple(self, conn: Connection) -> None:
        """The 4-tuple may serve a new connection (this one keeps its id until removed)."""
        if self.by_tuple.get(conn.tuple) is conn:
            del self.by_tuple[conn.tuple]

    def add_listener(self, listener: Listener) -> None:
        self.listeners[listener.listener_id] = listener
        self._listeners_by_port.setdefault(listener.port, []).append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self.listeners.pop(listener.listener_id, None)
        same_port = self._listeners_by_port.get(listener.port, [])
        if listener in same_port:
            same_port.remove(listener)
        if not same_port:
            self._listeners_by_port.pop(listener.port, None)

    def find_listener(self, ip: str, port: int) -> Listener | None:
        """The listener for a SYN to ip:port; a specific address wins over the wildcard."""
        candidates = [l for l in self._listeners_by_port.get(port, []) if l.matches(ip, port)]
        candidates.sort(key=lambda l: l.ip is None)
        return candidates[0] if candidates else None
