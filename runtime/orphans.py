"""Orphans: connections that their application closed or left (it exited or hung up) while
data or the FIN exchange was still under way. Like the kernel's orphan sockets they live on
until the close completes, so application exit never turns a graceful close into a reset;
one that makes no progress for `orphan_timeout_s` is reset, and at most `max_orphans` exist."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable

from runtime.config import TcpParams
from runtime.connections import Connection


def progress_mark(conn: Connection) -> Hashable:
    """What changes while a closing connection gets anywhere: acknowledged bytes, its state,
    the peer's FIN."""
    acked = conn.channel.tx_acked if conn.channel is not None else None
    return acked, conn.state, conn.fin_received


class Orphans:
    """The orphaned connections and their no-progress deadlines."""

    def __init__(self, params: TcpParams, reset: Callable[[Connection], None]) -> None:
        """`reset(conn)`: abort an orphan that stopped making progress (sends RST)."""
        self._params = params
        self._reset = reset
        self._timers: dict[int, asyncio.TimerHandle] = {}  # conn_id -> its deadline

    def __len__(self) -> int:
        return len(self._timers)

    def __contains__(self, conn: Connection) -> bool:
        return conn.conn_id in self._timers

    def full(self) -> bool:
        return len(self._timers) >= self._params.max_orphans

    def adopt(self, conn: Connection) -> None:
        """Watch a connection nobody owns any more until it finishes (forget) or stalls."""
        if conn.conn_id not in self._timers:
            self._arm(conn, progress_mark(conn))

    def forget(self, conn: Connection) -> None:
        """The connection is gone (or no longer needs watching)."""
        timer = self._timers.pop(conn.conn_id, None)
        if timer is not None:
            timer.cancel()

    def _arm(self, conn: Connection, mark: Hashable) -> None:
        self._timers[conn.conn_id] = asyncio.get_running_loop().call_later(
            self._params.orphan_timeout_s, self._check, conn, mark)

    def _check(self, conn: Connection, mark: Hashable) -> None:
        self._timers.pop(conn.conn_id, None)
        now = progress_mark(conn)
        if now != mark:
            self._arm(conn, now)
        else:
            self._reset(conn)
