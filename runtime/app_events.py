"""What connection control tells applications: connection events on their control channel,
and wake-ups (coalesced: one per context per loop pass) when their rings moved."""

from __future__ import annotations

import asyncio
import time

from host_lib import control_protocol as cp
from runtime.connections import Connection, EventSink
from runtime.slow_path_stats import Stats
from runtime.tcp_state import State


def ctx_of(conn: Connection) -> int:
    """The owning context's id (0 once the application is gone)."""
    return conn.owner.ctx_id if conn.owner is not None else 0


class AppEvents:
    """Delivers connection events to their owners and coalesces wake-ups."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._wake_pending: dict[int, EventSink] = {}  # id(context) -> context

    def established(self, conn: Connection, slot: int | None) -> None:
        """Connected (active) or IncomingConnection (passive): the application may use it."""
        t = conn.tuple
        if conn.owner is None:
            return
        conn.announced = True
        self.stats.setup.observe(time.monotonic() - conn.opened_at)
        if conn.active:
            conn.owner.deliver(cp.Connected(ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id,
                                            local_ip=t.local_ip, local_port=t.local_port,
                                            peer_ip=t.peer_ip, peer_port=t.peer_port,
                                            slot=slot))
        else:
            conn.listener.unaccepted.add(conn.conn_id)
            conn.owner.deliver(cp.IncomingConnection(
                ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id,
                listener_id=conn.listener.listener_id, local_ip=t.local_ip,
                local_port=t.local_port, peer_ip=t.peer_ip, peer_port=t.peer_port, slot=slot))
        if conn.state is State.CLOSE_WAIT:  # the peer's FIN beat the flow installation
            self.tell(conn, cp.PeerClosed(ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id))

    def wake(self, owner: EventSink) -> None:
        """The owner's rings moved: one Wake per context, sent at the end of this loop pass."""
        if id(owner) in self._wake_pending:
            return
        if not self._wake_pending:
            asyncio.get_running_loop().call_soon(self._send_wakes)
        self._wake_pending[id(owner)] = owner

    def _send_wakes(self) -> None:
        pending, self._wake_pending = self._wake_pending, {}
        for owner in pending.values():
            owner.deliver(cp.Wake(ctx_id=owner.ctx_id))

    def tell_closed(self, conn: Connection) -> None:
        """The Closed event, once: the conn_id is void for the application from then on."""
        if not conn.closed_told:
            conn.closed_told = True
            self.tell(conn, cp.Closed(ctx_id=ctx_of(conn), conn_id=conn.conn_id))

    @staticmethod
    def tell(conn: Connection, event: cp.Message) -> None:
        """Deliver an event about a connection the application knows of."""
        if conn.owner is not None and conn.announced:
            conn.owner.deliver(event)
