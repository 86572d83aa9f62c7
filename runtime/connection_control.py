"""Connection control (TAS 3.2): handshakes, teardown and resets over PacketIn/PacketOut, and
installing/removing each connection's fast-path entries. The fast path never sees these."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time

from host_lib import control_protocol as cp
from host_lib.rings import RingCorruptedError
from runtime import congestion
from runtime.arp import ArpCache, ArpResponder, ArpTimeout, build_arp_request
from runtime.congestion.controller import RateController
from runtime.config import Interface, RuntimeConfig
from runtime.connections import Connection, ConnectionTable, EventSink, Listener
from runtime.datapath import Datapath, PacketIn
from runtime.dma_bridge import DmaBridge, FlowChannel
from nic_contract.nic_host_header import NicHostMessage, Opcode
from nic_contract.constants import PacketInReason
from nic_contract.flow_entries import MAX_GENERATION, FlowSpec, FlowTuple, flow_entries
from runtime.flow_ids import FlowIdAllocator
from runtime.local_ports import LocalPortAllocator
from runtime.normalize import NORMALIZABLE, normalizable, normalized_frame
from runtime.orphans import Orphans
from nic_contract.p4rt.p4info import P4Info
from runtime.slow_path_stats import Stats
from runtime.tcp_segments import (SegmentError, TcpFlags, TcpOptions, TcpSegment, build_segment,
                                  checksums_ok, parse_segment)
from runtime.tcp_state import Event, IllegalTransition, State, TcpStateMachine

log = logging.getLogger(__name__)

MAX_UNSCALED_WINDOW = 0xFFFF
DEFAULT_PEER_MSS = 536  # RFC 1122, when the peer's SYN has no MSS option
TS_OPTION_BYTES = 12
# How long a FIN that arrived ahead of RX data still on its way to the ring is held: the NIC
# sent that data before the FIN, through the host port instead of the CPU port.
FIN_HOLD_S = 0.05
# Data segments that arrive while their flow is being installed are held (at most a ring's
# worth) and handed back to the fast path once it is in; their ACK follows the data's landing
# in the RX ring, or this long at the most.
REINJECT_ACK_S = 0.1
# Unknown-flow data of an installed flow raced its installation only this soon after it, and
# only so many segments (a ring's worth of full segments).
RACE_WINDOW_S = 0.5
MAX_RACE_REINJECTS = 256
ECN_FIELD, ECN_CE = 0x03, 0x03  # the IPv4 TOS byte's ECN bits, and Congestion Experienced
MAX_WINDOW_SHIFT = 14
SEQ_MOD = 1 << 32
TCP_REASONS = {PacketInReason.SYN, PacketInReason.FIN, PacketInReason.RST,
               PacketInReason.UNKNOWN_FLOW}


def window_shift_for(ring_size: int) -> int:
    """Smallest window scale that lets the whole RX ring be advertised."""
    shift = 0
    while (ring_size >> shift) > MAX_UNSCALED_WINDOW and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MOD


def seq_in_window(seq: int, start: int, size: int) -> bool:
    """start <= seq < start + size in sequence space."""
    return (seq - start) % SEQ_MOD < size


class ConnectionControl:
    """The slow path's TCP: owns connections, listeners, flow ids and local ports."""

    def __init__(self, config: RuntimeConfig, datapath: Datapath, p4info: P4Info,
                 bridge: DmaBridge | None = None, rates: RateController | None = None) -> None:
        """`bridge`: the data path (payload between the NIC and the applications' rings);
        without it connections carry no data (control only). `rates`: congestion control."""
        self.config = config
        self.bridge = bridge
        self.rates = rates
        self._by_flow: dict[int, Connection] = {}
        self._wake_pending: dict[int, EventSink] = {}  # id(context) -> context, coalesced
        self.tcp = config.tcp
        self.datapath = datapath
        self.p4info = p4info
        self.table = ConnectionTable()
        self.flow_ids = FlowIdAllocator(first_generation=random.randrange(1, MAX_GENERATION + 1))
        self.ports = LocalPortAllocator()
        self.arp = ArpCache()
        self.arp_responder = ArpResponder({i.ip: i.mac for i in config.interfaces}, self.arp)
        self.stats = Stats()
        self.orphans = Orphans(self.tcp, self._reset_orphan)
        self.window_shift = window_shift_for(self.tcp.rx_ring_size)
        self._switch_tasks: set[asyncio.Task] = set()

    # ---------------------------------------------------------------- packets from the switch

    def on_packet_in(self, pin: PacketIn) -> None:
        """Dispatch one PacketIn by its reason; bad packets are counted, never raised."""
        self.stats.bump(f"packet_in.{pin.reason_name}")
        if pin.reason == PacketInReason.ARP:
            reply = self.arp_responder.handle(pin.frame)
            if reply is not None:
                self.datapath.send(reply, pin.ingress_port)
            return
        if pin.reason not in TCP_REASONS and pin.reason not in NORMALIZABLE:
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
        if pin.reason in NORMALIZABLE:
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

    def _reinject_normalized(self, seg: TcpSegment, iface: Interface) -> bool:
        """A segment of a flow in the fast path that only its IPv4 options, URG or unusual
        TCP options kept out: hand it back rebuilt (runtime.normalize). False: not such a
        segment (the slow path handles it like any other)."""
        key = FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        conn = self.table.by_tuple.get(key)
        if conn is None or conn.flow_spec is None or conn.installing or not normalizable(seg):
            return False
        self.stats.bump("segments_normalized")
        self._reinject_now(conn, seg)
        return True

    def _raced_the_install(self, conn: Connection) -> bool:
        """Whether an unknown-flow segment of an installed flow can only have raced the
        installation: shortly after it, and not too many (a switch that lost the entries
        would otherwise have every segment handed back and punted again)."""
        if time.monotonic() > conn.installed_at + RACE_WINDOW_S or \
                conn.race_reinjects >= MAX_RACE_REINJECTS:
            self.stats.bump("unknown_flow_data_dropped")
            return False
        conn.race_reinjects += 1
        return True

    def _reinject_now(self, conn: Connection, seg: TcpSegment) -> None:
        """Hand one segment to the fast path, which has its flow; its data is ACKed as it
        lands, or (old or out of order) after a moment."""
        self.stats.bump("segments_reinjected")
        conn.reinjected_ce |= seg.tos & ECN_FIELD == ECN_CE
        self.datapath.reinject(normalized_frame(seg), conn.interface.port)
        if seg.payload:
            if conn.reinjected_until is None:  # one fallback ACK for a burst, not one each
                asyncio.get_running_loop().call_later(REINJECT_ACK_S, self._ack_reinjected,
                                                      conn, True)
            conn.reinjected_until = seq_add(seg.seq, len(seg.payload))

    def on_segment(self, seg: TcpSegment, iface: Interface) -> None:
        key = FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        conn = self.table.by_tuple.get(key)
        flags = seg.flags
        if flags & TcpFlags.RST:
            self._on_rst(conn, seg)
        elif conn is None:
            if flags & TcpFlags.SYN and not flags & TcpFlags.ACK:
                self._on_syn(key, seg, iface)
            else:
                self._reset_stray(seg, iface)
        elif flags & TcpFlags.SYN:
            self._sync_sequences(conn)
            self._on_syn_for(conn, seg)
        else:
            self._sync_sequences(conn)
            self._on_segment_for(conn, seg)

    # ---------------------------------------------------------------- passive open

    def _on_syn(self, key: FlowTuple, seg: TcpSegment, iface: Interface) -> None:
        listener = self.table.find_listener(key.local_ip, key.local_port)
        if listener is None:
            self.stats.bump("syn_to_closed_port")
            self._send_rst_for(seg, iface)
            return
        if listener.queue_full():
            self.stats.bump("syn_backlog_drops")
            return
        self.arp.learn(seg.src_ip, seg.src_mac)
        conn = Connection(
            conn_id=self.table.next_id(), tuple=key, interface=iface, peer_mac=seg.src_mac,
            sm=TcpStateMachine.incoming(), iss=random.getrandbits(32), owner=listener.owner,
            listener=listener, congestion=listener.congestion, opened_at=time.monotonic())
        conn.snd_nxt = seq_add(conn.iss, 1)
        self._take_peer_syn(conn, seg)
        listener.handshaking += 1
        self.table.add(conn)
        self._send_syn(conn)
        self._arm_syn_timer(conn)

    def _take_peer_syn(self, conn: Connection, seg: TcpSegment) -> None:
        """Record the peer's ISN and options; scale/timestamps only if both sides do them."""
        conn.irs = seg.seq
        conn.rcv_nxt = seq_add(seg.seq, 1)
        conn.peer_window = seg.window
        conn.peer_window_bytes = seg.window  # a SYN's window is never scaled (RFC 7323)
        conn.peer_options = seg.options
        conn.window_shift = self.window_shift if seg.options.window_scale is not None else 0
        conn.timestamps = seg.options.timestamps is not None
        # RFC 3168 6.1.1: an ECN-setup SYN has ECE and CWR, an ECN-setup SYN-ACK ECE only.
        ece_cwr = seg.flags & (TcpFlags.ECE | TcpFlags.CWR)
        conn.ecn = self._offers_ecn(conn) and ece_cwr == (
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
            self._send_syn(conn)  # the peer did not get our SYN-ACK
        else:
            self.stats.bump("challenge_acks")  # RFC 5961 4.2: SYN on a synchronized connection
            self._send_ack(conn)

    def _establish(self, conn: Connection, event: Event) -> None:
        conn.sm.fire(event)
        conn.cancel_timer()
        conn.retries = 0
        if conn.listener is not None:
            conn.listener.handshaking -= 1
        conn.installing = True  # from now on, data waits for the flow (_hold_segment)
        self._track(self._install(conn))

    async def _install(self, conn: Connection) -> None:
        """Install the flow, then tell the application (the fast path is ready by then)."""
        try:
            lease = self.flow_ids.allocate()
        except OSError as exc:
            conn.installing = False
            self._fail(conn, exc.errno or errno.ENOBUFS, str(exc))
            return
        conn.flow = lease
        conn.flow_spec = FlowSpec(
            flow_id=lease.flow_id, generation=lease.generation, tuple=conn.tuple,
            local_mac=conn.interface.mac, peer_mac=conn.peer_mac,
            # A FIN that came with the handshake's last ACK is in rcv_nxt already; the ring
            # maps data only (_sync_sequences adds the FIN back).
            rx_ring_size=self.tcp.rx_ring_size,
            rx_start_seq=(conn.rcv_nxt - conn.fin_received) % SEQ_MOD,
            tx_start_seq=conn.snd_nxt, wire_port=conn.interface.port,
            rx_window_shift=conn.window_shift, timestamps=conn.timestamps,
            peer_window=conn.peer_window, ecn=conn.ecn)
        # The bridge must know the flow before the switch does: the peer's data may follow
        # the handshake at once, and RX_DATA for an unknown flow would be lost.
        try:
            slot = self._attach_data_path(conn) if conn.owner is not None else None
        except (OSError, ValueError) as exc:
            conn.installing = False
            conn.flow = conn.flow_spec = None
            self.flow_ids.free(lease.flow_id)
            self._fail(conn, exc.errno or errno.ENOBUFS, str(exc))
            return
        try:
            await self.datapath.insert(flow_entries(self.p4info, conn.flow_spec))
        except Exception as exc:  # noqa: BLE001 - any switch failure fails this connection
            conn.installing = False
            conn.held_segments.clear()
            log.error("installing %s failed: %s", conn.describe(), exc)
            self._detach_data_path(conn)
            conn.flow = conn.flow_spec = None
            self.flow_ids.free(lease.flow_id)
            self._fail(conn, errno.EIO, f"the switch refused the flow: {exc}")
            return
        self.stats.bump("flows_installed")
        conn.installing = False
        conn.installed_at = time.monotonic()
        if conn.state is State.CLOSED:
            await self._remove_flow(conn)
            return
        self._reinject_held(conn)
        if conn.active:
            self._send_ack(conn)  # completes the handshake (see _on_syn_ack)
        self._notify_established(conn, slot)

    def _notify_established(self, conn: Connection, slot: int | None) -> None:
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
            self._tell(conn, cp.PeerClosed(ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id))

    # ---------------------------------------------------------------- data path

    def _attach_data_path(self, conn: Connection) -> int | None:
        """Give an established connection ring slots and register it with the bridge."""
        memory = getattr(conn.owner, "memory", None)
        if self.bridge is None or memory is None or conn.flow is None:
            return None
        slot, rx, tx = memory.allocate_slot()
        peer = conn.peer_options
        wscale = peer.window_scale or 0
        mss = (peer.mss or DEFAULT_PEER_MSS) - (TS_OPTION_BYTES if conn.timestamps else 0)
        channel = FlowChannel(conn.flow.flow_id, conn.flow.generation, slot, rx, tx,
                              memory.events(conn.owner.ctx_id), mss=mss, wscale=wscale,
                              peer_window=conn.peer_window_bytes, opaque=conn.conn_id,
                              tx_start_seq=conn.flow_spec.tx_start_seq)
        self.bridge.register(channel)
        if self.rates is not None:
            self.rates.attach(channel, congestion.make(conn.congestion or self.config.congestion))
        conn.channel, conn.memory = channel, memory
        conn.channel_registered = True
        self._by_flow[channel.flow_id] = conn
        return slot

    def _detach_data_path(self, conn: Connection) -> None:
        if conn.channel is None:
            return
        self._unregister_channel(conn)
        conn.memory.free_slot(conn.channel.slot)
        conn.channel = None

    def _unregister_channel(self, conn: Connection) -> None:
        """The bridge and rate control stop serving the channel (its rings stay): before the
        flow id can go to another connection."""
        if not conn.channel_registered:
            return
        conn.channel_registered = False
        flow_id = conn.channel.flow_id
        if self.rates is not None:
            self.rates.detach(flow_id)
        self.bridge.unregister(flow_id)
        if self._by_flow.get(flow_id) is conn:
            del self._by_flow[flow_id]

    def _deliver_from_slow_path(self, conn: Connection, payload: bytes) -> None:
        """Put payload into the RX ring as the NIC would (through the bridge's own checks)."""
        channel = conn.channel
        offset = channel.rx_ring.head & (channel.rx_ring.size - 1)
        self.bridge.handle_frame(NicHostMessage(Opcode.RX_DATA, channel.flow_id,
                                                channel.generation, offset=offset,
                                                payload=payload).encode())

    def _sync_sequences(self, conn: Connection) -> None:
        """Our and the peer's next sequence numbers, from where the data path has got to."""
        channel, spec = conn.channel, conn.flow_spec
        if channel is None or spec is None:
            return
        data_end = seq_add(spec.tx_start_seq, channel.tx_high - channel.tx_base)
        conn.snd_nxt = data_end if conn.fin_seq is None else seq_add(conn.fin_seq, 1)
        conn.rcv_nxt = seq_add(spec.rx_start_seq, channel.rx_ring.head + conn.fin_received)

    def on_flow_error(self, flow_id: int, cause: str) -> None:
        """Bridge hook: a flow's data path broke (lost frame, scribbled ring) or its peer went
        silent (cause "timeout"): reset it and tell the application why."""
        conn = self._by_flow.get(flow_id)
        if conn is None:
            return
        if cause == "timeout":
            self.stats.bump("data_timeouts")
            code, message = errno.ETIMEDOUT, "connection timed out: the peer acknowledged nothing"
        else:
            self.stats.bump("data_path_errors")
            code, message = errno.EIO, f"data path error: {cause}"
        self._tell(conn, cp.ConnectionErrorEvent(ctx_id=self._ctx(conn), conn_id=conn.conn_id,
                                                 errno=code, message=message))
        self._abort(conn, send_rst=True)

    def kick(self, conn: Connection) -> None:
        """The application queued TX bytes and/or consumed RX bytes of this connection."""
        channel = conn.channel
        if channel is None or not conn.channel_registered:
            return
        self.bridge.kick(channel.flow_id)
        if conn.channel is not channel:
            return  # the kick found the rings broken and the connection was reset
        tail = channel.rx_ring.tail
        if tail != conn.rx_consumed_seen:
            self.bridge.send_rx_consumed(channel.flow_id, tail - conn.rx_consumed_seen)
            conn.rx_consumed_seen = tail

    def on_data_activity(self, channel: FlowChannel) -> None:
        """Bridge hook: wake the owning context; a pending close may now send its FIN."""
        conn = self._by_flow.get(channel.flow_id)
        if conn is None:
            return
        if conn.owner is not None and id(conn.owner) not in self._wake_pending:
            if not self._wake_pending:
                asyncio.get_running_loop().call_soon(self._send_wakes)
            self._wake_pending[id(conn.owner)] = conn.owner
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
            self._sync_sequences(conn)
            self._send_fin(conn)

    def _send_wakes(self) -> None:
        pending, self._wake_pending = self._wake_pending, {}
        for owner in pending.values():
            owner.deliver(cp.Wake(ctx_id=owner.ctx_id))

    @staticmethod
    def _unread(conn: Connection) -> bool:
        """Received bytes wait in the RX ring (a ring the application broke counts too)."""
        if conn.channel is None:
            return False
        try:
            return conn.channel.rx_ring.readable() > 0
        except RingCorruptedError:
            return True

    @staticmethod
    def _tx_drained(conn: Connection) -> bool:
        channel = conn.channel
        return channel is None or channel.tx_acked == channel.tx_ring.head

    # ---------------------------------------------------------------- active open

    async def connect(self, owner: EventSink, peer_ip: str, peer_port: int,
                      local_ip: str | None, local_port: int | None, timeout_s: float,
                      congestion: str | None = None) -> int:
        """Start an active open; the outcome arrives as Connected or ConnectFailed."""
        iface = self.config.interface_for_ip(local_ip) if local_ip else self.config.route(peer_ip)
        if iface is None:
            raise OSError(errno.ENETUNREACH, f"no interface reaches {peer_ip}"
                          + (f" from {local_ip}" if local_ip else ""))
        port = local_port or self.ports.allocate(iface.ip)
        if local_port:
            self.ports.reserve(iface.ip, local_port)
        key = FlowTuple(iface.ip, port, peer_ip, peer_port)
        conn = Connection(conn_id=self.table.next_id(), tuple=key, interface=iface, peer_mac="",
                          sm=TcpStateMachine(), iss=random.getrandbits(32), owner=owner,
                          active=True, congestion=congestion, opened_at=time.monotonic())
        conn.snd_nxt = seq_add(conn.iss, 1)
        conn.window_shift = self.window_shift
        conn.timestamps = True
        self.table.add(conn)
        asyncio.get_running_loop().create_task(self._resolve_and_syn(conn, timeout_s))
        return conn.conn_id

    async def _resolve_and_syn(self, conn: Connection, timeout_s: float) -> None:
        iface = conn.interface
        request = build_arp_request(iface.mac, iface.ip, conn.tuple.peer_ip)
        try:
            conn.peer_mac = await self.arp.resolve(
                conn.tuple.peer_ip, lambda: self.datapath.send(request, iface.port),
                timeout_s=min(timeout_s, self.tcp.arp_timeout_s))
        except ArpTimeout as exc:
            self._fail(conn, errno.EHOSTUNREACH, str(exc))
            return
        if conn.conn_id not in self.table.by_id:
            return  # closed while resolving
        conn.sm.fire(Event.APP_CONNECT)
        self._send_syn(conn)
        self._arm_syn_timer(conn)

    def _on_syn_ack(self, conn: Connection, seg: TcpSegment) -> None:
        if seg.ack != conn.snd_nxt:
            self.stats.bump("bad_syn_acks")
            self._send(conn.interface, conn.peer_mac, conn.tuple, seg.ack, 0, TcpFlags.RST)
            return
        self._take_peer_syn(conn, seg)
        # The handshake's last ACK goes once the flow is installed (_install): a server that
        # speaks as soon as it accepts would otherwise race the installation, and its data
        # would reach no flow.
        self._establish(conn, Event.RCV_SYN_ACK)

    # ---------------------------------------------------------------- established and closing

    def _on_segment_for(self, conn: Connection, seg: TcpSegment) -> None:
        """A non-SYN, non-RST segment of a connection whose flow is not (or no longer) in
        the fast path: the handshake's last ACK, or segments while closing."""
        if (conn.state is State.SYN_RECEIVED and seg.flags & TcpFlags.ACK
                and seg.ack == conn.snd_nxt):
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
        if seg.payload and conn.state in (State.FIN_WAIT_1, State.FIN_WAIT_2, State.CLOSING,
                                          State.LAST_ACK, State.TIME_WAIT):
            self._on_data_after_close(conn, seg)

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
        if conn.fin_received:
            self._send_ack(conn)  # a retransmitted FIN: our ACK was lost
            if conn.state is State.TIME_WAIT:
                self._arm_time_wait(conn)
            return
        if conn.channel is not None and seg.seq != conn.rcv_nxt:
            self.bridge.poll()  # RX_DATA sent before the FIN may still wait on the host port
            self._sync_sequences(conn)
        if seg.payload and seg.seq == conn.rcv_nxt and conn.channel is not None:
            # The fast path hands FIN segments to us whole: their data goes in here.
            self._deliver_from_slow_path(conn, seg.payload)
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
            self._tell(conn, cp.PeerClosed(ctx_id=self._ctx(conn), conn_id=conn.conn_id))
        if conn.state is State.TIME_WAIT:
            self._enter_time_wait(conn)

    def _hold_segment(self, conn: Connection, seg: TcpSegment) -> None:
        """Data that raced the flow's installation (a client that sends right behind its
        handshake ACK): keep it for the fast path (_reinject_held), up to a ring's worth."""
        if conn.held_bytes + len(seg.payload) > self.tcp.rx_ring_size:
            self.stats.bump("held_segments_dropped")  # the peer retransmits it
            return
        self.stats.bump("segments_held")
        conn.held_segments.append(seg)
        conn.held_bytes += len(seg.payload)

    def _reinject_held(self, conn: Connection) -> None:
        """The flow is in the fast path: hand it the held data as if it arrived now; ACK it
        as it lands in the RX ring (on_data_activity), so only delivered data is ACKed."""
        held, conn.held_segments, conn.held_bytes = conn.held_segments, [], 0
        if not held or conn.channel is None:
            return
        expected = conn.rcv_nxt
        for seg in held:
            # Rebuilt as the fast path parses it, whatever options it arrived with.
            self.datapath.reinject(normalized_frame(seg), conn.interface.port)
            conn.reinjected_ce |= seg.tos & ECN_FIELD == ECN_CE
            if seg.seq == expected:
                expected = seq_add(expected, len(seg.payload))
        self.stats.bump("segments_reinjected", len(held))
        conn.reinjected_until = expected
        asyncio.get_running_loop().call_later(REINJECT_ACK_S, self._ack_reinjected, conn, True)

    def _ack_reinjected(self, conn: Connection, last: bool = False) -> None:
        """ACK what of the reinjected data has reached the RX ring (the fast path does not)."""
        if conn.reinjected_until is None or conn.conn_id not in self.table.by_id:
            return
        self._sync_sequences(conn)
        # The fast path echoes CE with ECE on the ACKs it sends; for reinjected data we do.
        self._send_ack(conn, ece=conn.reinjected_ce)
        conn.reinjected_ce = False
        if last or not seq_in_window(conn.reinjected_until, seq_add(conn.rcv_nxt, 1),
                                     SEQ_MOD // 2):
            conn.reinjected_until = None

    def _hold_fin(self, conn: Connection, seg: TcpSegment) -> None:
        """Keep a FIN that is ahead of the RX ring until the data before it arrives
        (on_data_activity) or FIN_HOLD_S passes (then it counts as out of order)."""
        self.stats.bump("fins_held")
        conn.held_fin = seg
        conn.held_fin_timer = asyncio.get_running_loop().call_later(
            FIN_HOLD_S, self._release_held_fin, conn)

    def _release_held_fin(self, conn: Connection) -> None:
        """Decide on a held FIN now: the data before it arrived, or the hold is over."""
        if conn.held_fin_timer is not None:
            conn.held_fin_timer.cancel()
            conn.held_fin_timer = None
        if conn.held_fin is not None and (conn.installing or conn.reinjected_until is not None):
            # Held data goes back to the fast path first: wait for it to land.
            conn.held_fin_timer = asyncio.get_running_loop().call_later(
                FIN_HOLD_S, self._release_held_fin, conn)
            return
        seg, conn.held_fin = conn.held_fin, None
        if seg is None or conn.conn_id not in self.table.by_id:
            return
        self._sync_sequences(conn)
        if seq_add(seg.seq, len(seg.payload)) == conn.rcv_nxt or seg.seq == conn.rcv_nxt:
            self._on_fin(conn, seg)
        else:
            self.stats.bump("fins_out_of_order")
            self._send_ack(conn)

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
            self._tell(conn, cp.ConnectionReset(ctx_id=self._ctx(conn), conn_id=conn.conn_id,
                                                message="connection reset by the peer"))
            self._finish(conn, notify=False)
        elif seq_in_window(seg.seq, conn.rcv_nxt, window):
            self.stats.bump("challenge_acks")  # RFC 5961 3.2
            self._send_ack(conn)
        else:
            self.stats.bump("blind_rsts_ignored")

    # ---------------------------------------------------------------- application requests

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
        return listener

    def accept(self, conn: Connection) -> None:
        """The application took the connection off its listener's accept queue."""
        if conn.listener is not None:
            conn.listener.unaccepted.discard(conn.conn_id)

    def close_listener(self, listener: Listener) -> None:
        self.table.remove_listener(listener)
        addresses = [listener.ip] if listener.ip else [i.ip for i in self.config.interfaces]
        for addr in addresses:
            self.ports.release(addr, listener.port)
        for conn in [c for c in self.table.by_id.values()
                     if c.listener is listener and c.state is State.SYN_RECEIVED]:
            self._abort(conn, send_rst=True)

    def close(self, conn: Connection, abort: bool = False) -> None:
        """Application close(): FIN after the data; the fast path stops delivering. An RST
        instead with `abort` (SO_LINGER 0) or with received data unread (RFC 2525 2.17)."""
        conn.app_closed = True
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
            self._tell_closed(conn)
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
            self._tell_closed(conn)
            return
        self.stats.bump("orphans")
        self.orphans.adopt(conn)

    async def _fin_after_removal(self, conn: Connection) -> None:
        """Take the flow out of the fast path first, so the peer's answers to our FIN come
        to the slow path instead of being absorbed as pure ACKs."""
        if await self._removed_without_new_data(conn):
            self._detach_data_path(conn)  # closed by the application: its slot is free again
            self._send_fin(conn)

    async def _removed_without_new_data(self, conn: Connection) -> bool:
        """Take a closed connection's flow out of the fast path. Data the NIC delivered
        meanwhile (it acknowledged it) nobody will read: RST (RFC 1122 4.2.2.13), False."""
        self._sync_sequences(conn)
        channel = conn.channel
        head = channel.rx_ring.head if channel is not None else 0
        await self._remove_flow(conn)
        if conn.conn_id not in self.table.by_id or conn.channel is not channel:
            return False
        if channel is not None:
            self.bridge.poll()
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
            self._detach_data_path(conn)

    def shutdown_write(self, conn: Connection) -> None:
        """shutdown(SHUT_WR): FIN after the queued data, but keep receiving through the fast
        path (the flow stays installed; the peer's FIN acknowledges ours)."""
        if conn.state in (State.ESTABLISHED, State.CLOSE_WAIT):
            conn.sm.fire(Event.APP_CLOSE)
            self.kick(conn)
            if self._tx_drained(conn):
                self._sync_sequences(conn)
                self._send_fin(conn)
            else:
                conn.shutdown_pending = True  # on_data_activity sends the FIN once acked

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
        self._tell_closed(conn)  # an application that closed it waits for this

    async def shutdown_all(self) -> None:
        """Daemon stop: reset every connection and remove every flow it installed."""
        for conn in list(self.table.by_id.values()):
            if conn.state is not State.CLOSED:
                self._tell(conn, cp.ConnectionReset(ctx_id=self._ctx(conn), conn_id=conn.conn_id,
                                                    message="the p4tas runtime is stopping"))
            self._abort(conn, send_rst=conn.state not in (State.SYN_SENT, State.TIME_WAIT,
                                                          State.CLOSED))
        await self.flush_switch_writes()

    async def flush_switch_writes(self) -> None:
        """Wait until every flow installation and removal under way has reached the switch."""
        while self._switch_tasks:
            await asyncio.gather(*self._switch_tasks, return_exceptions=True)

    def snapshot(self) -> dict[str, int]:
        """Event counters plus what is in use now (for GetStats and leak checks)."""
        counters = dict(self.stats.counts)
        counters.update(
            connections=len(self.table.by_id), listeners=len(self.table.listeners),
            flows_in_use=self.flow_ids.in_use, orphans_live=len(self.orphans),
            local_ports_in_use=sum(self.ports.in_use(i.ip) for i in self.config.interfaces),
            local_ports_quarantined=self.ports.quarantined)
        if self.bridge is not None:
            counters.update(self.bridge.stats.recovery)
        if self.rates is not None:
            counters.update(cc_updates=self.rates.updates, meter_writes=self.rates.meter_writes)
        return counters

    # ---------------------------------------------------------------- timers

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
        self._send_syn(conn)
        self._arm_syn_timer(conn)

    def _enter_time_wait(self, conn: Connection) -> None:
        """TIME_WAIT; an application that has not closed yet keeps its rings (it may still be
        reading) until it closes or TIME_WAIT ends."""
        conn.cancel_timer()
        self.orphans.forget(conn)  # TIME_WAIT ends on its own
        if conn.app_closed or conn.channel is None:
            self._tell_closed(conn)
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
        self._unregister_channel(conn)  # before the flow id can serve another connection
        self._track(self._remove_flow(conn))

    # ---------------------------------------------------------------- endings

    def _fail(self, conn: Connection, code: int, message: str) -> None:
        """The connection could not be opened (or installed): tell the app, clean up."""
        if conn.owner is not None and conn.active and not conn.announced:
            conn.owner.deliver(cp.ConnectFailed(ctx_id=conn.owner.ctx_id, conn_id=conn.conn_id,
                                                errno=code, message=message))
        else:
            self._tell(conn, cp.ConnectionErrorEvent(ctx_id=self._ctx(conn), conn_id=conn.conn_id,
                                                     errno=code, message=message))
        conn.owner = None
        self._abort(conn, send_rst=False)

    def _abort(self, conn: Connection, send_rst: bool) -> None:
        self._sync_sequences(conn)  # the RST must carry the sequence the data path reached
        resets = self._rst_sequences(conn) if send_rst and conn.peer_mac else []
        self._send_resets(conn, resets)
        if not conn.sm.is_closed:
            conn.sm.fire(Event.APP_ABORT)
        self._finish(conn, notify=False, resets_after_removal=resets)

    def _send_resets(self, conn: Connection, sequences: list[int]) -> None:
        for seq in sequences:
            self._send(conn.interface, conn.peer_mac, conn.tuple, seq, conn.rcv_nxt,
                       TcpFlags.RST | TcpFlags.ACK)

    @staticmethod
    def _rst_sequences(conn: Connection) -> list[int]:
        """Where the peer's next expected sequence can be: RFC 5961 peers take an RST only
        at exactly that point. With data in flight it lies between what the peer has
        acknowledged and what we sent; one RST at each end (the peer answers a wrong one with
        a challenge ACK, which changes nothing)."""
        channel, spec = conn.channel, conn.flow_spec
        if channel is None or spec is None or conn.fin_seq is not None \
                or channel.tx_acked == channel.tx_high:
            return [conn.snd_nxt]
        return [seq_add(spec.tx_start_seq, channel.tx_acked - channel.tx_base), conn.snd_nxt]

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
        self._detach_data_path(conn)
        if notify:
            self._tell_closed(conn)
        if conn.flow is not None:
            self._track(self._remove_then_reset(conn, resets_after_removal or []))

    async def _remove_then_reset(self, conn: Connection, resets: list[int]) -> None:
        """Remove the flow, then send an abort's RSTs once more: the fast path's frames in
        flight have left by then (an RST ahead of them missed the peer's exact sequence),
        and the peer's challenge ACK to a missed RST reaches the slow path, not the flow."""
        await self._remove_flow(conn)
        self._send_resets(conn, resets)

    def _track(self, coro) -> None:
        """Run a coroutine that writes to the switch; shutdown waits for all of them."""
        task = asyncio.get_running_loop().create_task(coro)
        self._switch_tasks.add(task)
        task.add_done_callback(self._switch_tasks.discard)

    async def _remove_flow(self, conn: Connection) -> None:
        spec, lease = conn.flow_spec, conn.flow
        if spec is None or lease is None:
            return
        conn.flow_spec = None
        try:
            await self.datapath.delete(list(reversed(flow_entries(self.p4info, spec))))
        except Exception as exc:  # noqa: BLE001 - keep the id out of use if removal failed
            log.error("removing the flow of %s failed: %s", conn.describe(), exc)
            return
        conn.flow = None
        self.flow_ids.free(lease.flow_id)
        self.stats.bump("flows_removed")

    def _tell_closed(self, conn: Connection) -> None:
        """The Closed event, once: the conn_id is void for the application from then on."""
        if not conn.closed_told:
            conn.closed_told = True
            self._tell(conn, cp.Closed(ctx_id=self._ctx(conn), conn_id=conn.conn_id))

    def _tell(self, conn: Connection, event: cp.Message) -> None:
        """Deliver an event about a connection the application knows of."""
        if conn.owner is not None and conn.announced:
            conn.owner.deliver(event)

    @staticmethod
    def _ctx(conn: Connection) -> int:
        return conn.owner.ctx_id if conn.owner is not None else 0

    # ---------------------------------------------------------------- sending

    def _send_syn(self, conn: Connection) -> None:
        flags = TcpFlags.SYN | (TcpFlags.ACK if not conn.active else TcpFlags(0))
        if conn.active and self._offers_ecn(conn):
            flags |= TcpFlags.ECE | TcpFlags.CWR   # ECN-setup SYN
        elif not conn.active and conn.ecn:
            flags |= TcpFlags.ECE                  # ECN-setup SYN-ACK
        peer = conn.peer_options
        offer_all = conn.active  # an active open offers; a passive one only echoes
        options = TcpOptions(
            mss=self.tcp.mss,
            window_scale=conn.window_shift if offer_all or peer.window_scale is not None else None,
            timestamps=((self.datapath.clock.now(), peer.timestamps[0] if peer.timestamps else 0)
                        if offer_all or conn.timestamps else None))
        ack = conn.rcv_nxt if flags & TcpFlags.ACK else 0
        window = min(self.tcp.rx_ring_size, MAX_UNSCALED_WINDOW)
        self._send(conn.interface, conn.peer_mac, conn.tuple, conn.iss, ack, flags, window,
                   options)

    def _offers_ecn(self, conn: Connection) -> bool:
        """ECN only where enabled and the congestion control reacts to ECE (RFC 3168 6.1.2:
        a flow whose sender ignores marks must not be ECN-capable)."""
        return self.config.ecn and congestion.reacts_to_ecn(
            conn.congestion or self.config.congestion)

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
            self.bridge.send_fin(conn.channel.flow_id)
        else:
            self._send(conn.interface, conn.peer_mac, conn.tuple, conn.fin_seq, conn.rcv_nxt,
                       TcpFlags.FIN | TcpFlags.ACK, self._window(conn), self._ts_option(conn))
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

    def _send_ack(self, conn: Connection, ece: bool = False) -> None:
        flags = TcpFlags.ACK | (TcpFlags.ECE if ece and conn.ecn else TcpFlags(0))
        self._send(conn.interface, conn.peer_mac, conn.tuple, conn.snd_nxt, conn.rcv_nxt,
                   flags, self._window(conn), self._ts_option(conn))

    def _window(self, conn: Connection) -> int:
        """Our window: the RX ring's free space (all of it before the data path exists)."""
        free = self.tcp.rx_ring_size
        if conn.channel is not None:
            try:
                free = min(max(conn.channel.rx_ring.free_space(), 0), free)
            except RingCorruptedError:
                free = 0
        return min(free >> conn.window_shift, MAX_UNSCALED_WINDOW)

    def _ts_option(self, conn: Connection) -> TcpOptions | None:
        if not conn.timestamps:
            return None
        echo = conn.peer_options.timestamps[0] if conn.peer_options.timestamps else 0
        return TcpOptions(timestamps=(self.datapath.clock.now(), echo))

    def _send_rst_for(self, seg: TcpSegment, iface: Interface) -> None:
        """RFC 793 reset for a segment of no connection (ours or a closed port)."""
        key = FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        if seg.flags & TcpFlags.ACK:
            self._send(iface, seg.src_mac, key, seg.ack, 0, TcpFlags.RST)
        else:
            length = len(seg.payload) + bool(seg.flags & TcpFlags.SYN) + bool(seg.flags & TcpFlags.FIN)
            self._send(iface, seg.src_mac, key, 0, seq_add(seg.seq, length),
                       TcpFlags.RST | TcpFlags.ACK)

    def _reset_stray(self, seg: TcpSegment, iface: Interface) -> None:
        self.stats.bump("segments_for_no_connection")
        self._send_rst_for(seg, iface)

    def _send(self, iface: Interface, peer_mac: str, key: FlowTuple, seq: int, ack: int,
              flags: TcpFlags, window: int = 0, options: TcpOptions | None = None) -> None:
        frame = build_segment(iface.mac, peer_mac, key.local_ip, key.peer_ip, key.local_port,
                              key.peer_port, seq, ack, flags, window, options)
        self.datapath.send(frame, iface.port)


def _describe(seg: TcpSegment) -> str:
    return (f"{seg.src_ip}:{seg.src_port}->{seg.dst_ip}:{seg.dst_port} "
            f"flags={seg.flags!r} seq={seg.seq} ack={seg.ack}")
