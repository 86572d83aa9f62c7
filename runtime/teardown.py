"""Closing connections (RFC 9293 3.6): the peer's FIN, the application's close() and
shutdown(SHUT_WR), our FIN and its retransmission, TIME_WAIT, and closed connections that
finish as orphans (runtime.orphans)."""

from __future__ import annotations

import asyncio

from runtime.app_events import ctx_of
from host_lib import control_protocol as cp
from runtime.connection_base import ConnectionControlBase
from runtime.connections import Connection
from runtime.tcp_segments import TcpFlags, TcpSegment
from runtime.tcp_seq import SEQ_MOD, seq_add, seq_in_window
from runtime.tcp_state import Event, State


class Teardown(ConnectionControlBase):
    """Connection control's closing half (mixed into ConnectionControl)."""

    def _on_data_after_close(self, conn: Connection, seg: TcpSegment) -> None:
        """RFC 1122 4.2.2.13: new data for an application that closed the connection resets
        it; a retransmission of data we already took (our ACK was lost) is only re-ACKed."""
        data_end = seq_add(seg.seq, len(seg.payload))
        if seq_in_window(data_end, seq_add(conn.rcv_nxt, 1), SEQ_MOD // 2):
            self.stats.bump("data_after_close")
            self._abort(conn, send_rst=True)
        elif not seg.flags & TcpFlags.FIN:  # _on_fin answered a retransmitted FIN already
            self.stats.bump("old_data_reacked")
            self._send_ack(conn)

    def _on_fin(self, conn: Connection, seg: TcpSegment) -> None:
        self.sender.note_ecn(conn, seg)
        if conn.fin_received:
            self._send_ack(conn)  # a retransmitted FIN: our ACK was lost
            if conn.state is State.TIME_WAIT:
                self._arm_time_wait(conn)
            return
        if conn.channel is not None and seg.seq != conn.rcv_nxt:
            self.nic.poll()  # RX_DATA sent before the FIN may still wait on the host port
            self._sync_sequences(conn)
        if seg.payload and seg.seq == conn.rcv_nxt and conn.channel is not None:
            # The fast path hands FIN segments to us whole: their data goes in here.
            self.installer.deliver(conn, seg.payload)
            self._sync_sequences(conn)
        if seq_add(seg.seq, len(seg.payload)) != conn.rcv_nxt:
            if conn.channel is not None and conn.held_fin is None and \
                    seq_in_window(seg.seq, conn.rcv_nxt, SEQ_MOD // 2):
                self._hold_fin(conn, seg)  # the data before it may be on its way
                return
            # Data before the FIN is still missing: the peer retransmits it, then the FIN.
            self.stats.bump("fins_out_of_order")
            self._send_ack(conn)
            return
        conn.rcv_nxt = seq_add(conn.rcv_nxt, 1)
        conn.fin_received = True
        ours_acked = (conn.fin_seq is not None and bool(seg.flags & TcpFlags.ACK)
                      and seg.ack == conn.snd_nxt)
        if conn.state is State.FIN_WAIT_1 and ours_acked:
            conn.sm.fire(Event.RCV_FIN_ACK_OF_FIN)
        else:
            conn.sm.fire(Event.RCV_FIN)
        self._send_ack(conn)
        # EOF for an application that still reads: after a SHUT_WR (channel still attached)
        # the peer's FIN may end FIN_WAIT_2 while its last data waits in the RX ring.
        if conn.state is State.CLOSE_WAIT or conn.channel is not None:
            self.events.tell(conn, cp.PeerClosed(ctx_id=ctx_of(conn), conn_id=conn.conn_id))
        if conn.state is State.TIME_WAIT:
            self._enter_time_wait(conn)

    def _on_ack(self, conn: Connection, seg: TcpSegment) -> None:
        # Only once our FIN is out: until then snd_nxt is the end of the data, and an ACK of
        # all of it (one that reaches us while the flow is being removed) is no ACK of a FIN.
        if conn.fin_seq is not None and seg.ack == conn.snd_nxt:
            self._on_ack_of_fin(conn)

    def _on_ack_of_fin(self, conn: Connection) -> None:
        if conn.state is State.FIN_WAIT_1:
            conn.sm.fire(Event.RCV_ACK_OF_FIN)
            conn.cancel_timer()
        elif conn.state is State.CLOSING:
            conn.sm.fire(Event.RCV_ACK_OF_FIN)
            self._enter_time_wait(conn)
        elif conn.state is State.LAST_ACK:
            conn.sm.fire(Event.RCV_ACK_OF_FIN)
            self._tcp_over(conn, notify=True)

    def _our_fin_acked(self, conn: Connection) -> None:
        """The NIC saw the peer acknowledge our FIN (a half-closed flow still in the fast
        path): FIN_WAIT_1 -> FIN_WAIT_2, CLOSING -> TIME_WAIT, LAST_ACK -> CLOSED."""
        if conn.state in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK):
            conn.cancel_timer()
            self._sync_sequences(conn)
            self._on_ack_of_fin(conn)

    def close(self, conn: Connection, abort: bool = False) -> None:
        """Application close(): FIN after the data; the fast path stops delivering. An RST
        instead with `abort` (SO_LINGER 0) or with received data unread (RFC 2525 2.17).
        The connection leaves its listener's accept queue (an application may close one it
        was told of without accepting it first)."""
        conn.app_closed = True
        if conn.listener is not None:
            conn.listener.unaccepted.discard(conn.conn_id)
        if conn.lingering:
            self._finish(conn)  # TCP was over already; the rings go now
        elif conn.state in (State.SYN_SENT, State.CLOSED):
            self._abort(conn, send_rst=False)
        elif conn.state is State.SYN_RECEIVED:
            self._abort(conn, send_rst=True)
        elif conn.state is not State.TIME_WAIT and (abort or self._unread(conn)):
            self.stats.bump("closes_aborted" if abort else "closed_with_unread_data")
            self._abort(conn, send_rst=True)
        elif conn.state is State.TIME_WAIT:
            # TCP finishes on its own; the application is done with the rings now.
            self._track(self._remove_after_fin(conn))
            self.events.tell_closed(conn)
        elif conn.shutdown_pending or (conn.channel is not None and conn.fin_seq is not None):
            self._close_after_shutdown(conn)
        elif conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.sm.fire(Event.APP_CLOSE)
            self.kick(conn)  # whatever the application queued last goes out first
            if self._tx_drained(conn):
                self._track(self._fin_after_removal(conn))
            else:
                conn.close_pending = True  # on_data_activity sends the FIN once acked
        # Closing states: already closing, nothing more to do.
        self._watch_closing(conn)

    def _watch_closing(self, conn: Connection) -> None:
        """A closed connection still finishing its close is an orphan (as the kernel's closed
        sockets are): reset after the orphan timeout without progress, or at once beyond
        --max-orphans."""
        if conn.conn_id not in self.table.by_id or conn.lingering or conn in self.orphans \
                or conn.state in (State.TIME_WAIT, State.CLOSED):
            return
        if self.orphans.full():
            self.stats.bump("orphans_over_limit")
            self._abort(conn, send_rst=True)
            self.events.tell_closed(conn)
            return
        self.stats.bump("orphans")
        self.orphans.adopt(conn)

    async def _fin_after_removal(self, conn: Connection, keep_rings: bool = False) -> None:
        """Take the flow out of the fast path first, so the peer's answers to our FIN come
        to the slow path instead of being absorbed as pure ACKs."""
        if await self._removed_without_new_data(conn):
            if not keep_rings:
                self.installer.detach(conn)  # closed by the application: its slot is free
            self._send_fin(conn)

    def _shutdown_fin(self, conn: Connection) -> None:
        """Our FIN after shutdown(SHUT_WR), its data acknowledged. Before the peer's FIN the
        NIC sends it (the flow stays, to receive). After it (CLOSE_WAIT, e.g. socketserver's
        shutdown_request) the NIC would not acknowledge the peer's FIN, which only the slow
        path saw, and the peer would resend it: the flow leaves the fast path and a PacketOut
        carries our FIN; the rings stay with the application until its close()."""
        if conn.fin_received:
            self._track(self._fin_after_removal(conn, keep_rings=True))
        else:
            self._sync_sequences(conn)
            self._send_fin(conn)

    async def _removed_without_new_data(self, conn: Connection) -> bool:
        """Take a closed connection's flow out of the fast path. Data the NIC delivered
        meanwhile (it acknowledged it) nobody will read: RST (RFC 1122 4.2.2.13), False."""
        self._sync_sequences(conn)
        channel = conn.channel
        head = channel.rx_ring.head if channel is not None else 0
        await self.installer.remove(conn)
        if conn.conn_id not in self.table.by_id or conn.channel is not channel:
            return False
        if channel is not None:
            self.nic.poll()
            if channel.rx_ring.head != head:
                self.stats.bump("data_after_close")
                self._abort(conn, send_rst=True)
                return False
        return True

    def _close_after_shutdown(self, conn: Connection) -> None:
        """close() after shutdown(SHUT_WR): from now on nobody reads, so the flow leaves the
        fast path like any closed one (a FIN still waiting for its data goes after it)."""
        if conn.shutdown_pending:
            conn.shutdown_pending, conn.close_pending = False, True
            return
        self._track(self._remove_after_fin(conn))

    async def _remove_after_fin(self, conn: Connection) -> None:
        if await self._removed_without_new_data(conn):
            self.installer.detach(conn)

    def shutdown_write(self, conn: Connection) -> None:
        """shutdown(SHUT_WR): FIN after the queued data, but keep receiving through the fast
        path (the flow stays installed; the peer's FIN acknowledges ours)."""
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.sm.fire(Event.APP_CLOSE)
            self.kick(conn)
            if self._tx_drained(conn):
                self._shutdown_fin(conn)
            else:
                conn.shutdown_pending = True  # on_data_activity sends the FIN once acked

    def _send_fin(self, conn: Connection) -> None:
        """Send our FIN (once) and keep retransmitting it until it is acknowledged. While the
        flow is in the fast path (shutdown(SHUT_WR): the peer may go on sending) the NIC
        sends it, so that its ACKs carry the sequence after it and the peer's ACK of it is
        seen (on_data_activity); otherwise a PacketOut does."""
        if conn.fin_seq is None:
            conn.fin_seq = conn.snd_nxt
            conn.snd_nxt = seq_add(conn.snd_nxt, 1)
            conn.retries = 0
        if conn.channel is not None and conn.flow_spec is not None:
            self.nic.send_fin(conn.channel.flow_id)
        else:
            self.sender.send(conn.interface, conn.peer_mac, conn.tuple, conn.fin_seq, conn.rcv_nxt,
                       TcpFlags.FIN | TcpFlags.ACK, self.sender.window(conn), self.sender.ts_option(conn))
        conn.cancel_timer()
        delay = self.tcp.syn_rto_s * (2 ** conn.retries)
        conn.timer = asyncio.get_running_loop().call_later(delay, self._fin_timeout, conn)

    def _fin_timeout(self, conn: Connection) -> None:
        conn.timer = None
        if conn.state not in (State.FIN_WAIT_1, State.CLOSING, State.LAST_ACK):
            return
        if conn.retries >= self.tcp.fin_retries:
            self.stats.bump("fin_timeouts")
            conn.sm.fire(Event.TIMEOUT)
            self._finish(conn)
            return
        conn.retries += 1
        self._send_fin(conn)

    def _enter_time_wait(self, conn: Connection) -> None:
        """TIME_WAIT; an application that has not closed yet keeps its rings (it may still be
        reading) until it closes or TIME_WAIT ends."""
        conn.cancel_timer()
        self.orphans.forget(conn)  # TIME_WAIT ends on its own
        if conn.app_closed or conn.channel is None:
            self.events.tell_closed(conn)
        self._arm_time_wait(conn)

    def _arm_time_wait(self, conn: Connection) -> None:
        conn.cancel_timer()
        conn.timer = asyncio.get_running_loop().call_later(self.tcp.time_wait_s,
                                                           self._time_wait_over, conn)

    def _time_wait_over(self, conn: Connection) -> None:
        conn.timer = None
        conn.sm.fire(Event.TIME_WAIT_EXPIRED)
        self._tcp_over(conn, notify=True)

    def _tcp_over(self, conn: Connection, notify: bool) -> None:
        """The TCP connection is over (CLOSED). An application that has not closed it yet may
        still be reading its RX ring: the record and the rings stay until it closes (close()
        finishes it), only the fast-path entries and the 4-tuple go now. Otherwise it ends
        (`notify`: with a Closed event)."""
        if conn.app_closed or conn.channel is None or conn.owner is None:
            self._finish(conn, notify=notify)
            return
        conn.cancel_timer()
        conn.lingering = True
        self._sync_sequences(conn)
        self.table.release_tuple(conn)
        self.installer.release(conn)  # before the flow id can serve another connection
        self._track(self.installer.remove(conn))
