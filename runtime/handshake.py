"""Opening connections (RFC 9293 3.5): passive opens from a listener's SYN, active opens
after ARP, SYN/SYN-ACK retransmission, and installing the flow once the handshake completes."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import time

from nic_contract.flow_entries import FlowTuple
from runtime.arp import ArpTimeout, build_arp_request
from runtime.config import Interface
from runtime.connection_base import ConnectionControlBase
from runtime.connections import Connection, EventSink, Listener
from runtime.tcp_segments import TcpFlags, TcpOptions, TcpSegment
from runtime.flow_install import DEFAULT_PEER_MSS
from runtime.routing import NextHop
from runtime.tcp_seq import MAX_UNSCALED_WINDOW, seq_add, seq_in_window
from runtime.tcp_state import Event, State, TcpStateMachine

log = logging.getLogger(__name__)


# A peer's SYN options are clamped before anything is sized from them: RFC 7323 2.3 says a
# window scale above 14 is taken as 14; an MSS below the RFC 9293 default (536) would only
# serve to make us send tiny segments (a remote peer's cheap amplification), so it is raised.
MAX_PEER_WINDOW_SCALE = 14
MIN_PEER_MSS = 536


def sanitized(options: TcpOptions) -> TcpOptions:
    """The peer's SYN options with window scale and MSS within what we accept."""
    scale, mss = options.window_scale, options.mss
    return dataclasses.replace(
        options, window_scale=None if scale is None else min(scale, MAX_PEER_WINDOW_SCALE),
        mss=None if mss is None else max(mss, MIN_PEER_MSS))


class Handshake(ConnectionControlBase):
    """Connection control's opening half (mixed into ConnectionControl)."""

    def _on_syn(self, key: FlowTuple, seg: TcpSegment, iface: Interface) -> None:
        listener = self.table.find_listener(key.local_ip, key.local_port)
        if listener is None:
            self.stats.bump("syn_to_closed_port")
            self.sender.rst_for(seg, iface)
            return
        if listener.queue_full():
            self.syn_budget.overflow()
            self._send_cookie(listener, key, seg, iface)
            return
        self._learn_mac(seg, iface)
        conn = Connection(
            conn_id=self.table.next_id(), tuple=key, interface=iface, peer_mac=seg.src_mac,
            sm=TcpStateMachine.incoming(), iss=self.isns.isn(key), owner=listener.owner,
            listener=listener, congestion=listener.congestion, opened_at=time.monotonic())
        conn.snd_nxt = seq_add(conn.iss, 1)
        self._take_peer_syn(conn, seg)
        listener.handshaking += 1
        self.table.add(conn)
        self.sender.syn(conn)
        self._arm_syn_timer(conn)

    def _send_cookie(self, listener: Listener, key: FlowTuple, seg: TcpSegment,
                     iface: Interface) -> None:
        """The backlog is full: answer with a SYN cookie and keep nothing (RFC 4987), unless
        the accept queue is full too (then the peer's retransmitted SYN may find room)."""
        if listener.accept_queue_full():
            self.stats.bump("syn_backlog_drops")
            return
        self.stats.bump("syncookies_sent")
        cookie = self.cookies.make(key, seg.seq, seg.options.mss or DEFAULT_PEER_MSS)
        self.sender.send(iface, seg.src_mac, key, cookie, seq_add(seg.seq, 1),
                         TcpFlags.SYN | TcpFlags.ACK,
                         min(self.tcp.rx_ring_size, MAX_UNSCALED_WINDOW),
                         TcpOptions(mss=self.tcp.mss))

    def _on_cookie_ack(self, key: FlowTuple, seg: TcpSegment, iface: Interface) -> bool:
        """An ACK of no connection may return a SYN cookie: then it opens the connection the
        cookie describes (and goes on as that connection's handshake ACK). False: it does not."""
        listener = self.table.find_listener(key.local_ip, key.local_port)
        if listener is None or seg.flags & (TcpFlags.SYN | TcpFlags.RST):
            return False
        peer_isn, iss = seq_add(seg.seq, -1), seq_add(seg.ack, -1)
        mss = self.cookies.check(key, peer_isn, iss)
        if mss is None:
            return False
        if listener.accept_queue_full():
            self.stats.bump("syn_backlog_drops")   # the peer retransmits; maybe room then
            return True
        self.stats.bump("syncookies_accepted")
        self._learn_mac(seg, iface)
        conn = Connection(
            conn_id=self.table.next_id(), tuple=key, interface=iface, peer_mac=seg.src_mac,
            sm=TcpStateMachine.incoming(), iss=iss, owner=listener.owner, listener=listener,
            congestion=listener.congestion, opened_at=time.monotonic())
        conn.snd_nxt = seg.ack
        conn.irs, conn.rcv_nxt = peer_isn, seg.seq
        conn.peer_window = conn.peer_window_bytes = seg.window
        conn.peer_options = TcpOptions(mss=mss)   # no scaling, timestamps or ECN: see there
        listener.handshaking += 1
        self.table.add(conn)
        self._on_segment_for(conn, seg)
        return True

    def _learn_mac(self, seg: TcpSegment, iface: Interface) -> None:
        """Remember an on-link peer's MAC (a routed peer's frames carry its gateway's)."""
        if self.config.routing.on_link(seg.src_ip, iface):
            self.arp.learn(seg.src_ip, seg.src_mac)

    def _take_peer_syn(self, conn: Connection, seg: TcpSegment) -> None:
        """Record the peer's ISN and options; scale/timestamps only if both sides do them."""
        conn.irs = seg.seq
        conn.rcv_nxt = seq_add(seg.seq, 1)
        conn.peer_window = seg.window
        conn.peer_window_bytes = seg.window  # a SYN's window is never scaled (RFC 7323)
        conn.peer_options = sanitized(seg.options)
        if conn.peer_options != seg.options:
            self.stats.bump("syn_options_clamped")
        conn.window_shift = self.window_shift if seg.options.window_scale is not None else 0
        conn.timestamps = seg.options.timestamps is not None
        # RFC 2018 2: SACK only if both SYNs carry SACK-permitted. The fast path parses SACK
        # blocks after timestamps (Linux's layout), so without timestamps we do not offer it.
        conn.sack = (self.config.sack and conn.timestamps
                     and seg.options.sack_permitted)
        # RFC 3168 6.1.1: an ECN-setup SYN has ECE and CWR, an ECN-setup SYN-ACK ECE only.
        ece_cwr = seg.flags & (TcpFlags.ECE | TcpFlags.CWR)
        conn.ecn = self.sender.offers_ecn(conn) and ece_cwr == (
            TcpFlags.ECE if conn.active else TcpFlags.ECE | TcpFlags.CWR)

    def _on_syn_for(self, conn: Connection, seg: TcpSegment) -> None:
        if (conn.state is State.TIME_WAIT and not seg.flags & TcpFlags.ACK
                and seq_in_window(seg.seq, conn.rcv_nxt, 1 << 31)):
            # RFC 1122 4.2.2.13: a new SYN beyond the old connection reopens the 4-tuple.
            self.stats.bump("time_wait_reopens")
            conn.sm.fire(Event.TIME_WAIT_EXPIRED)
            self._finish(conn, notify=False)
            self._on_syn(conn.tuple, seg, conn.interface)
        elif conn.state is State.SYN_SENT and seg.flags & TcpFlags.ACK:
            self._on_syn_ack(conn, seg)
        elif conn.state is State.SYN_RECEIVED and not seg.flags & TcpFlags.ACK:
            self.sender.syn(conn)  # the peer did not get our SYN-ACK
        else:
            # RFC 5961 4.2: SYN on a synchronized connection
            sent = self.sender.challenge_ack(conn)
            self.stats.bump("challenge_acks" if sent else "challenge_acks_limited")

    def _on_syn_ack(self, conn: Connection, seg: TcpSegment) -> None:
        if seg.ack != conn.snd_nxt:
            self.stats.bump("bad_syn_acks")
            self.sender.send(conn.interface, conn.peer_mac, conn.tuple, seg.ack, 0, TcpFlags.RST)
            return
        self._take_peer_syn(conn, seg)
        # The handshake's last ACK goes once the flow is installed (_install): a server that
        # speaks as soon as it accepts would otherwise race the installation, and its data
        # would reach no flow.
        self._establish(conn, Event.RCV_SYN_ACK)

    def _establish(self, conn: Connection, event: Event) -> None:
        conn.sm.fire(event)
        conn.cancel_timer()
        conn.retries = 0
        if conn.listener is not None:
            conn.listener.handshaking -= 1
            conn.listener.establishing += 1   # until _install announces (or fails) it
        conn.installing = True  # from now on, data waits for the flow (_hold_segment)
        self._track(self._install(conn))

    async def _install(self, conn: Connection) -> None:
        """Install the flow, then tell the application (the fast path is ready by then)."""
        try:
            await self._install_flow(conn)
        finally:
            if conn.listener is not None:
                conn.listener.establishing -= 1

    async def _install_flow(self, conn: Connection) -> None:
        try:
            self.installer.lease(conn)
        except OSError as exc:
            conn.installing = False
            self._fail(conn, exc.errno or errno.ENOBUFS, str(exc))
            return
        # The NIC must know the flow before the switch does: the peer's data may follow
        # the handshake at once, and RX_DATA for an unknown flow would be lost.
        try:
            slot = self.installer.attach(conn) if conn.owner is not None else None
        except (OSError, ValueError) as exc:  # no ring slot, or a flow the NIC refused
            conn.installing = False
            self.installer.unlease(conn)
            self._fail(conn, getattr(exc, "errno", None) or errno.ENOBUFS, str(exc))
            return
        try:
            await self.installer.insert(conn)
        except Exception as exc:  # noqa: BLE001 - any switch failure fails this connection
            conn.installing = False
            conn.held_segments.clear()
            log.error("installing %s failed: %s", conn.describe(), exc)
            self.installer.detach(conn)
            self.installer.unlease(conn)
            self._fail(conn, errno.EIO, f"the switch refused the flow: {exc}")
            return
        self.stats.bump("flows_installed")
        conn.installing = False
        conn.installed_at = time.monotonic()
        if conn.state is State.CLOSED:
            await self.installer.remove(conn)
            return
        self._reinject_held(conn)
        if conn.active:
            self._send_ack(conn)  # completes the handshake (see _on_syn_ack)
        self.events.established(conn, slot)

    async def connect(self, owner: EventSink, peer_ip: str, peer_port: int,
                      local_ip: str | None, local_port: int | None, timeout_s: float,
                      congestion: str | None = None) -> int:
        """Start an active open; the outcome arrives as Connected or ConnectFailed."""
        hop = self._next_hop(peer_ip, local_ip)
        iface = hop.interface
        port = local_port or self.ports.allocate(iface.ip)
        if local_port:
            self.ports.reserve(iface.ip, local_port)
        key = FlowTuple(iface.ip, port, peer_ip, peer_port)
        conn = Connection(conn_id=self.table.next_id(), tuple=key, interface=iface, peer_mac="",
                          sm=TcpStateMachine(), iss=self.isns.isn(key), owner=owner,
                          active=True, congestion=congestion, opened_at=time.monotonic())
        conn.snd_nxt = seq_add(conn.iss, 1)
        conn.window_shift = self.window_shift
        conn.timestamps = True
        self.table.add(conn)
        asyncio.get_running_loop().create_task(self._resolve_and_syn(conn, hop, timeout_s))
        return conn.conn_id

    def _next_hop(self, peer_ip: str, local_ip: str | None) -> NextHop:
        """The route to `peer_ip` (from our address `local_ip` if bound); ENETUNREACH: none."""
        routing = self.config.routing
        if local_ip:
            iface = self.config.interface_for_ip(local_ip)
            hop = routing.lookup(peer_ip, iface) if iface is not None else None
        else:
            hop = routing.lookup(peer_ip)
        if hop is None:
            raise OSError(errno.ENETUNREACH, f"no route to {peer_ip}"
                          + (f" from {local_ip}" if local_ip else ""))
        return hop

    async def _resolve_and_syn(self, conn: Connection, hop: NextHop, timeout_s: float) -> None:
        """ARP for the next hop (the gateway of a routed peer), then send the SYN."""
        iface = conn.interface
        request = build_arp_request(iface.mac, iface.ip, hop.ip)
        try:
            conn.peer_mac = await self.arp.resolve(
                hop.ip, lambda: self.datapath.send(request, iface.port),
                timeout_s=min(timeout_s, self.tcp.arp_timeout_s))
        except ArpTimeout as exc:
            via = f"{conn.tuple.peer_ip} via gateway: " if hop.gateway else ""
            self._fail(conn, errno.EHOSTUNREACH, via + str(exc))
            return
        if conn.conn_id not in self.table.by_id:
            return  # closed while resolving
        conn.sm.fire(Event.APP_CONNECT)
        self.sender.syn(conn)
        self._arm_syn_timer(conn)

    def listen(self, owner: EventSink, ip: str | None, port: int, backlog: int,
               congestion: str | None = None) -> Listener:
        addresses = [ip] if ip else [i.ip for i in self.config.interfaces]
        if ip and self.config.interface_for_ip(ip) is None:
            raise OSError(errno.EADDRNOTAVAIL, f"{ip} is not one of our addresses")
        reserved = []
        try:
            for addr in addresses:
                self.ports.reserve(addr, port)
                reserved.append(addr)
        except OSError:
            for addr in reserved:
                self.ports.release(addr, port)
            raise
        listener = Listener(self.table.next_id(), ip, port, backlog, owner,
                            congestion=congestion)
        self.table.add_listener(listener)
        self.cookie_listeners.add(addresses, port)
        return listener

    def accept(self, conn: Connection) -> None:
        """The application took the connection off its listener's accept queue."""
        if conn.listener is not None:
            conn.listener.unaccepted.discard(conn.conn_id)

    def close_listener(self, listener: Listener) -> None:
        self.table.remove_listener(listener)
        addresses = [listener.ip] if listener.ip else [i.ip for i in self.config.interfaces]
        self.cookie_listeners.remove(addresses, listener.port)
        for addr in addresses:
            self.ports.release(addr, listener.port)
        for conn in [c for c in self.table.by_id.values()
                     if c.listener is listener and c.state is State.SYN_RECEIVED]:
            self._abort(conn, send_rst=True)

    def _arm_syn_timer(self, conn: Connection) -> None:
        delay = self.tcp.syn_rto_s * (2 ** conn.retries)
        conn.timer = asyncio.get_running_loop().call_later(delay, self._syn_timeout, conn)

    def _syn_timeout(self, conn: Connection) -> None:
        conn.timer = None
        if conn.state not in (State.SYN_SENT, State.SYN_RECEIVED):
            return
        if conn.retries >= self.tcp.syn_retries:
            self.stats.bump("handshake_timeouts")
            conn.sm.fire(Event.TIMEOUT)
            if conn.active:
                self._fail(conn, errno.ETIMEDOUT, "connection timed out: no SYN-ACK "
                           f"after {conn.retries + 1} SYNs")
            else:
                self._finish(conn)
            return
        conn.retries += 1
        self.stats.bump("syn_retransmits")
        self.sender.syn(conn)
        self._arm_syn_timer(conn)
