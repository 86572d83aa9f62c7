"""How connections end abruptly: the peer's RST (RFC 5961 checks), failed opens, aborts (our
RST), a broken data path, a vanished application, the daemon stopping; and forgetting a
connection (timers, entries, flow id, local port)."""

from __future__ import annotations

import errno
import logging

from host_lib import control_protocol as cp
from runtime.app_events import ctx_of
from runtime.connection_base import ConnectionControlBase
from runtime.connections import Connection, EventSink
from runtime.tcp_segments import TcpFlags, TcpSegment
from runtime.tcp_seq import seq_in_window
from runtime.tcp_state import Event, State

log = logging.getLogger(__name__)


class Endings(ConnectionControlBase):
    """Connection control's resets, aborts and endings (mixed into ConnectionControl)."""

    def _on_rst(self, conn: Connection | None, seg: TcpSegment) -> None:
        if conn is None:
            self.stats.bump("rst_for_unknown")
            return
        self._sync_sequences(conn)
        if conn.state is State.SYN_SENT:
            if seg.flags & TcpFlags.ACK and seg.ack == conn.snd_nxt:
                conn.sm.fire(Event.RCV_RST)
                self._fail(conn, errno.ECONNREFUSED, "connection refused by the peer")
            return
        window = max(1, self.tcp.rx_ring_size)
        if seg.seq == conn.rcv_nxt:
            self.stats.bump("resets")
            conn.sm.fire(Event.RCV_RST)
            self.events.tell(conn, cp.ConnectionReset(ctx_id=ctx_of(conn), conn_id=conn.conn_id,
                                                message="connection reset by the peer"))
            self._finish(conn, notify=False)
        elif seq_in_window(seg.seq, conn.rcv_nxt, window):
            # RFC 5961 3.2
            sent = self.sender.challenge_ack(conn)
            self.stats.bump("challenge_acks" if sent else "challenge_acks_limited")
        else:
            self.stats.bump("blind_rsts_ignored")

    def _on_flow_error(self, flow_id: int, cause: str) -> None:
        """A flow's data path broke (lost frame, scribbled ring) or its peer went silent
        (cause "timeout"): reset it and tell the application why."""
        conn = self.installer.connection(flow_id)
        if conn is None:
            return
        if cause == "timeout":
            self.stats.bump("data_timeouts")
            code, message = errno.ETIMEDOUT, "connection timed out: the peer acknowledged nothing"
        elif cause == "keepalive_timeout":
            self.stats.bump("keepalive_timeouts")
            code, message = errno.ETIMEDOUT, "connection timed out: keepalive probes unanswered"
        else:
            self.stats.bump("data_path_errors")
            code, message = errno.EIO, f"data path error: {cause}"
        self.events.tell(conn, cp.ConnectionErrorEvent(ctx_id=ctx_of(conn), conn_id=conn.conn_id,
                                                 errno=code, message=message))
        self._abort(conn, send_rst=True)

    def abort_owned_by(self, owner: EventSink) -> None:
        """An application vanished (exit, crash, hang-up): its listeners go, and each of its
        connections ends as the kernel ends a dead process's sockets: as close() would."""
        for listener in [l for l in self.table.listeners.values() if l.owner is owner]:
            self.close_listener(listener)
        for conn in [c for c in self.table.by_id.values() if c.owner is owner]:
            try:
                self._orphan(conn)
            except Exception:  # noqa: BLE001 - one broken connection must not spare the rest
                log.exception("%s: closing it for a vanished application failed", conn.describe())
                self._abort(conn, send_rst=True)

    def _orphan(self, conn: Connection) -> None:
        """Let go of a connection whose application is gone: handshakes are abandoned, open
        connections closed, closing ones finish as orphans (runtime.orphans)."""
        conn.owner = None
        if conn.lingering:
            self._finish(conn, notify=False)
            return
        if conn.state in (State.SYN_SENT, State.SYN_RECEIVED) or not conn.announced:
            self._abort(conn, send_rst=conn.state is not State.SYN_SENT)
            return
        if conn.channel is not None:
            conn.channel.orphan = True  # no events: nobody reads its queue any more
        self.close(conn)  # as close() would; closing connections become orphans there

    def _reset_orphan(self, conn: Connection) -> None:
        """An orphan made no progress for the orphan timeout: reset it."""
        self.stats.bump("orphans_reset")
        log.info("%s: orphan without progress for %g s: reset", conn.describe(),
                 self.tcp.orphan_timeout_s)
        self._abort(conn, send_rst=True)
        self.events.tell_closed(conn)  # an application that closed it waits for this

    async def shutdown_all(self) -> None:
        """Daemon stop: reset every connection and remove every flow and listener entry it
        installed."""
        self.cookie_listeners.close()
        self.syn_budget.close()
        for listener in list(self.table.listeners.values()):
            self.close_listener(listener)
        for conn in list(self.table.by_id.values()):
            if conn.state is not State.CLOSED:
                self.events.tell(conn, cp.ConnectionReset(ctx_id=ctx_of(conn), conn_id=conn.conn_id,
                                                    message="the p4tas runtime is stopping"))
            self._abort(conn, send_rst=conn.state not in (State.SYN_SENT, State.TIME_WAIT,
                                                          State.CLOSED))
        await self.flush_switch_writes()

    def _fail(self, conn: Connection, code: int, message: str) -> None:
        """The connection could not be opened (or installed): tell the app, clean up."""
        if conn.owner is not None and conn.active and not conn.announced:
            conn.owner.deliver(cp.ConnectFailed(ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id,
                                                errno=code, message=message))
        else:
            self.events.tell(conn, cp.ConnectionErrorEvent(ctx_id=ctx_of(conn), conn_id=conn.conn_id,
                                                     errno=code, message=message))
        conn.owner = None
        self._abort(conn, send_rst=False)

    def _abort(self, conn: Connection, send_rst: bool) -> None:
        self._sync_sequences(conn)  # the RST must carry the sequence the data path reached
        resets = self.sender.rst_sequences(conn) if send_rst and conn.peer_mac else []
        self.sender.resets(conn, resets)
        if not conn.sm.is_closed:
            conn.sm.fire(Event.APP_ABORT)
        self._finish(conn, notify=False, resets_after_removal=resets)

    def _finish(self, conn: Connection, notify: bool = True,
                resets_after_removal: list[int] | None = None) -> None:
        """Forget the connection: timers, fast-path entries, flow id, local port."""
        conn.cancel_timer()
        self.orphans.forget(conn)
        if conn.held_fin_timer is not None:
            conn.held_fin_timer.cancel()
        if conn.conn_id not in self.table.by_id:
            return
        self.table.remove(conn)
        if conn.listener is not None:
            conn.listener.unaccepted.discard(conn.conn_id)
        if conn.listener is not None and conn.state is State.CLOSED and conn.flow is None:
            conn.listener.handshaking = max(0, conn.listener.handshaking - 1)
        if conn.active:
            self.ports.release(conn.tuple.local_ip, conn.tuple.local_port)
        self.installer.detach(conn)
        if notify:
            self.events.tell_closed(conn)
        if conn.flow is not None:
            self._track(self._remove_then_reset(conn, resets_after_removal or []))

    async def _remove_then_reset(self, conn: Connection, resets: list[int]) -> None:
        """Remove the flow, then send an abort's RSTs once more: the fast path's frames in
        flight have left by then (an RST ahead of them missed the peer's exact sequence),
        and the peer's challenge ACK to a missed RST reaches the slow path, not the flow."""
        await self.installer.remove(conn)
        self.sender.resets(conn, resets)
