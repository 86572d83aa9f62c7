"""Connection control (TAS 3.2): the slow path's TCP. Handshakes (runtime.handshake), closing
(runtime.teardown), resets and endings (runtime.endings) and reinjected segments
(runtime.reinjection) over PacketIn/PacketOut; each connection's flow is installed and removed
through runtime.flow_install. The fast path never sees these segments."""

from __future__ import annotations

import asyncio
import errno
import logging
from dataclasses import replace

from host_lib import control_protocol as cp
from nic_contract.constants import PacketInReason
from nic_contract.flow_entries import FlowTuple
from nic_contract.p4rt.p4info import P4Info
from runtime.app_events import AppEvents, ctx_of
from runtime.arp import ArpCache, ArpResponder
from runtime.config import Interface, RuntimeConfig
from runtime.congestion.controller import RateController
from runtime.connections import Connection, ConnectionTable
from runtime.datapath import Datapath, PacketIn
from runtime.endings import Endings
from runtime.flow_channel import FlowChannel
from runtime.flow_install import FlowInstaller
from runtime.flow_registry import FlowRegistry
from runtime.handshake import Handshake
from runtime.ip_reassembly import Reassembler, is_fragment
from runtime.isn import IsnGenerator
from runtime.keepalive import KeepaliveParams
from runtime.local_ports import LocalPortAllocator
from runtime.normalize import NORMALIZABLE
from runtime.orphans import Orphans
from runtime.reinjection import Reinjection
from runtime.segment_sender import SegmentSender
from runtime.cookie_listeners import CookieListeners
from runtime.punt_budget import SynBudget
from runtime.syn_cookies import SynCookies
from runtime.slow_path_stats import Stats
from runtime.tcp_segments import SegmentError, TcpFlags, TcpSegment, checksums_ok, parse_segment
from runtime.tcp_seq import MAX_UNSCALED_WINDOW, seq_add, window_shift_for
from runtime.teardown import Teardown
from runtime.tcp_state import Event, IllegalTransition, State

log = logging.getLogger(__name__)

TCP_REASONS = {PacketInReason.SYN, PacketInReason.SYN_ACK, PacketInReason.FIN,
               PacketInReason.RST, PacketInReason.UNKNOWN_FLOW}
# A fragment with IPv4 options is punted for its options (the fast path checks them first).
FRAGMENT_REASONS = {PacketInReason.IPV4_FRAGMENT, PacketInReason.IPV4_OPTIONS}


class ConnectionControl(Handshake, Teardown, Endings, Reinjection):
    """The slow path's TCP: owns connections, listeners, flow ids and local ports."""

    def __init__(self, config: RuntimeConfig, datapath: Datapath, p4info: P4Info,
                 flows: FlowRegistry | None = None, rates: RateController | None = None) -> None:
        """`flows`: the data path (the NIC and the flows it serves); without it connections
        carry no data (control only). `rates`: congestion control."""
        self.config = config
        self.flows = flows
        self.nic = flows.nic if flows is not None else None
        self.rates = rates
        self.tcp = config.tcp
        self.datapath = datapath
        self.table = ConnectionTable()
        self.stats = Stats()
        self.sender = SegmentSender(config, datapath)
        self.events = AppEvents(self.stats)
        self.installer = FlowInstaller(config, datapath, p4info, flows, rates, self.stats)
        self.ports = LocalPortAllocator()
        self.arp = ArpCache()
        self.arp_responder = ArpResponder({i.ip: i.mac for i in config.interfaces}, self.arp)
        self.orphans = Orphans(self.tcp, self._reset_orphan)
        self.reassembly = Reassembler()
        self._reassembly_timer: asyncio.TimerHandle | None = None
        self.window_shift = window_shift_for(self.tcp.rx_ring_size)
        self.isns = IsnGenerator()
        self.cookies = SynCookies()
        self.cookie_listeners = CookieListeners(
            p4info, datapath, self.cookies, self.tcp.mss,
            min(self.tcp.rx_ring_size, MAX_UNSCALED_WINDOW), self.stats)
        self.syn_budget = SynBudget(p4info, datapath, config.syn_punt_rate_pps,
                                    config.syn_flood_punt_rate_pps, self.stats)
        self._switch_tasks: set[asyncio.Task] = set()

    # ---------------------------------------------------------------- fault containment
    # Every PacketIn and NIC callback is handled in isolation (ARCHITECTURE.md 6): a bug or a
    # state an application broke is logged and counted, the one connection concerned is reset,
    # and nothing else is disturbed (the packet task and the bridge's batch go on).

    def on_packet_in(self, pin: PacketIn) -> None:
        """Dispatch one PacketIn by its reason; bad packets are counted, never raised."""
        try:
            self._on_packet_in(pin)
        except Exception:  # noqa: BLE001 - contained: see above
            self._contain(f"a {pin.reason_name} PacketIn", self._connection_of(pin.frame))

    def on_data_activity(self, channel: FlowChannel) -> None:
        """NIC hook: the flow's rings moved (wake the application, maybe send a FIN)."""
        try:
            self._on_data_activity(channel)
        except Exception:  # noqa: BLE001
            self._contain("data-path activity", self.installer.connection(channel.flow_id))

    def on_flow_error(self, flow_id: int, cause: str) -> None:
        """NIC hook: a flow's data path broke or its peer went silent: reset it."""
        try:
            self._on_flow_error(flow_id, cause)
        except Exception:  # noqa: BLE001
            self._contain(f"data-path error {cause}", self.installer.connection(flow_id))

    def _contain(self, what: str, conn: Connection | None) -> None:
        """An exception escaped the handling of `what`: count it, log it, reset `conn`."""
        self.stats.bump("internal_errors")
        log.exception("handling %s of %s failed; %s", what,
                      conn.describe() if conn is not None else "no connection",
                      "resetting it" if conn is not None else "dropped")
        if conn is None:
            return
        try:
            self.events.tell(conn, cp.ConnectionErrorEvent(
                ctx_id=ctx_of(conn), conn_id=conn.conn_id, errno=errno.EIO,
                message=f"internal error while handling {what}: the connection was reset"))
            self._abort(conn, send_rst=True)
        except Exception:  # noqa: BLE001 - the reset itself failed: forget the connection
            log.exception("resetting %s failed; forgetting it", conn.describe())
            self._finish(conn, notify=False)

    def _connection_of(self, frame: bytes) -> Connection | None:
        """The connection a wire frame belongs to, if it parses and there is one."""
        try:
            seg = parse_segment(frame)
            return self.table.by_tuple.get(FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip,
                                                     seg.src_port))
        except ValueError:  # SegmentError, or addresses no connection can have
            return None

    # ---------------------------------------------------------------- packets

    def _on_packet_in(self, pin: PacketIn) -> None:
        self.stats.bump(f"packet_in.{pin.reason_name}")
        if pin.reason == PacketInReason.ARP:
            reply = self.arp_responder.handle(pin.frame)
            if reply is not None:
                self.datapath.send(reply, pin.ingress_port)
            return
        reassembled = pin.reason in FRAGMENT_REASONS and is_fragment(pin.frame)
        if reassembled:
            frame = self._reassemble(pin.frame)
            if frame is None:
                return   # more fragments to come (or dropped and counted)
            pin = replace(pin, frame=frame)
        elif pin.reason not in TCP_REASONS and pin.reason not in NORMALIZABLE:
            log.debug("ignoring %s packet from port %d", pin.reason_name, pin.ingress_port)
            return
        try:
            seg = parse_segment(pin.frame)
        except SegmentError as exc:
            self.stats.bump("malformed_segments")
            log.info("malformed segment from port %d: %s", pin.ingress_port, exc)
            return
        iface = self.config.interface_for_port(pin.ingress_port)
        if iface is None or seg.dst_ip != iface.ip:
            self.stats.bump("not_for_us")
            return
        if pin.reason in NORMALIZABLE or reassembled:
            if not checksums_ok(pin.frame):
                # The fast path punts these before it checks sums: nothing corrupt goes on.
                self.stats.bump("bad_checksums")
                return
            if self._reinject_normalized(seg, iface):
                return
            if not seg.flags & (TcpFlags.ACK | TcpFlags.SYN | TcpFlags.RST):
                # Without ACK a segment of a synchronized connection is dropped (RFC 9293
                # 3.10.7.4); never handed back as it is (it would only come back again).
                self.stats.bump("unusual_segments_dropped")
                return
        try:
            self.on_segment(seg, iface)
        except IllegalTransition as exc:
            self.stats.bump("illegal_transitions")
            log.warning("%s (segment %s)", exc, _describe(seg))

    def on_segment(self, seg: TcpSegment, iface: Interface) -> None:
        key = FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        conn = self.table.by_tuple.get(key)
        flags = seg.flags
        if flags & TcpFlags.RST:
            self._on_rst(conn, seg)
        elif conn is None:
            if flags & TcpFlags.SYN and not flags & TcpFlags.ACK:
                self._on_syn(key, seg, iface)
            elif not (flags & TcpFlags.ACK and self._on_cookie_ack(key, seg, iface)):
                self._reset_stray(seg, iface)
        elif flags & TcpFlags.SYN:
            self._sync_sequences(conn)
            self._on_syn_for(conn, seg)
        else:
            self._sync_sequences(conn)
            self._on_segment_for(conn, seg)

    def _on_segment_for(self, conn: Connection, seg: TcpSegment) -> None:
        """A non-SYN, non-RST segment of a connection whose flow is not (or no longer) in
        the fast path: the handshake's last ACK, or segments while closing."""
        if (conn.state is State.SYN_RECEIVED and seg.flags & TcpFlags.ACK
                and seg.ack == conn.snd_nxt):
            if conn.listener.accept_queue_full():
                # As Linux without tcp_abort_on_overflow: drop the ACK (and anything with it);
                # our SYN-ACK is retransmitted, and its ACK may find room then.
                self.stats.bump("syn_backlog_drops")
                return
            conn.peer_window = seg.window  # raw, as the fast path will see later ones
            conn.peer_window_bytes = seg.window << (conn.peer_options.window_scale or 0)
            self._establish(conn, Event.RCV_ACK_OF_SYN)
        if seg.payload and conn.installing and not seg.flags & TcpFlags.FIN:
            self._hold_segment(conn, seg)
        elif seg.payload and conn.flow_spec is not None and conn.channel is not None \
                and not seg.flags & TcpFlags.FIN and self._raced_the_install(conn):
            # Reached the switch just before the flow did, handled here just after.
            self._reinject_now(conn, seg)
        elif seg.flags & TcpFlags.FIN:
            self._on_fin(conn, seg)
        elif seg.flags & TcpFlags.ACK:
            self._on_ack(conn, seg)
        # Data once nobody reads (closed) or beyond the peer's FIN (a retransmission). After a
        # mere shutdown(SHUT_WR) the peer may still send (a FIN held ahead of its data too).
        if seg.payload and (conn.app_closed or conn.fin_received) and conn.state in (
                State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING, State.LAST_ACK,
                State.TIME_WAIT):
            self._on_data_after_close(conn, seg)

    def _reset_stray(self, seg: TcpSegment, iface: Interface) -> None:
        self.stats.bump("segments_for_no_connection")
        self.sender.rst_for(seg, iface)

    def kick(self, conn: Connection) -> None:
        """The application queued TX bytes and/or consumed RX bytes of this connection."""
        channel = conn.channel
        if channel is None or self.installer.flow_of(conn) is None:
            return
        self.nic.kick(channel.flow_id)
        if conn.channel is not channel:
            return  # the kick found the rings broken and the connection was reset
        self._report_consumed(conn)

    def set_keepalive(self, conn: Connection, params: KeepaliveParams | None) -> None:
        """SO_KEEPALIVE and its parameters (None: off); a flow not installed yet takes them
        when it is (runtime.flow_install)."""
        conn.keepalive = params
        if conn.channel is not None and self.installer.flow_of(conn) is not None:
            self.nic.set_keepalive(conn.channel.flow_id, params)

    def _on_data_activity(self, channel: FlowChannel) -> None:
        """Wake the owning context; a pending close may now send its FIN."""
        conn = self.installer.connection(channel.flow_id)
        if conn is None:
            return
        if conn.owner is not None:
            self.events.wake(conn.owner)
        if channel.fin_acked and conn.fin_seq is not None:
            self._our_fin_acked(conn)
        if conn.reinjected_until is not None:
            self._ack_reinjected(conn)
        if conn.held_fin is not None:
            held = conn.held_fin
            self._sync_sequences(conn)
            if seq_add(held.seq, len(held.payload)) == conn.rcv_nxt or held.seq == conn.rcv_nxt:
                self._release_held_fin(conn)
        if (conn.close_pending or conn in self.orphans) and self._unread(conn):
            self.stats.bump("data_after_close")  # RFC 1122 4.2.2.13: nobody will read it
            self._abort(conn, send_rst=True)
            return
        if conn.close_pending and self._tx_drained(conn):
            conn.close_pending = False
            self._track(self._fin_after_removal(conn))
        elif conn.shutdown_pending and self._tx_drained(conn):
            conn.shutdown_pending = False
            self._shutdown_fin(conn)

    def snapshot(self) -> dict[str, int]:
        """Event counters plus what is in use now (for GetStats and leak checks)."""
        counters = dict(self.stats.counts)
        counters.update(
            connections=len(self.table.by_id), listeners=len(self.table.listeners),
            flows_in_use=self.installer.flow_ids.in_use, orphans_live=len(self.orphans),
            local_ports_in_use=sum(self.ports.in_use(i.ip) for i in self.config.interfaces),
            local_ports_quarantined=self.ports.quarantined)
        counters.update({f"ipfrag_{name}": count
                         for name, count in self.reassembly.counters.items()},
                        ipfrag_in_progress=len(self.reassembly),
                        ipfrag_held_bytes=self.reassembly.held_bytes)
        if self.nic is not None:
            counters.update(self.nic.stats.recovery)
        if self.rates is not None:
            counters.update(cc_updates=self.rates.updates, meter_writes=self.rates.meter_writes)
        if self.datapath.cpu is not None:
            counters.update(self.datapath.cpu.counters())
        return counters


def _describe(seg: TcpSegment) -> str:
    return (f"{seg.src_ip}:{seg.src_port}->{seg.dst_ip}:{seg.dst_port} "
            f"flags={seg.flags!r} seq={seg.seq} ack={seg.ack}")
