"""Segments handed back to the fast path (reinjected PacketOuts): data that raced its flow's
installation, and segments the fast path could not parse as they were (runtime.normalize);
a FIN held until the data before it has landed in the RX ring."""

from __future__ import annotations

import asyncio
import time

from nic_contract.flow_entries import FlowTuple
from runtime.config import Interface
from runtime.connection_base import ConnectionControlBase
from runtime.connections import Connection
from runtime.normalize import normalizable, normalized_frame, split_to_mss
from runtime.tcp_segments import TcpSegment
from runtime.tcp_seq import SEQ_MOD, seq_add, seq_in_window

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


class Reinjection(ConnectionControlBase):
    """Connection control's held and reinjected segments (mixed into ConnectionControl)."""

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

    def _reassemble(self, frame: bytes) -> bytes | None:
        """An IPv4 fragment the fast path punted: the whole datagram's frame once complete
        (runtime.ip_reassembly); the datagrams left incomplete expire on a timer."""
        self.stats.bump("ip_fragments")
        whole = self.reassembly.add(frame, time.monotonic())
        self._arm_reassembly_timer()
        return whole

    def _arm_reassembly_timer(self) -> None:
        deadline = self.reassembly.next_deadline()
        if deadline is None or self._reassembly_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return   # no loop (a test feeding packets): expiry comes with the next fragment
        delay = max(0.0, deadline - time.monotonic()) + 0.01
        self._reassembly_timer = loop.call_later(delay, self._on_reassembly_timer)

    def _on_reassembly_timer(self) -> None:
        self._reassembly_timer = None
        self.reassembly.expire(time.monotonic())
        self._arm_reassembly_timer()

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
        conn.reinjected_ce |= seg.tos & ECN_FIELD == ECN_CE
        # A reassembled datagram may carry more than the fast path delivers at once.
        pieces = split_to_mss(seg, self.tcp.mss)
        self.stats.bump("segments_reinjected", len(pieces))
        for piece in pieces:
            self.datapath.reinject(normalized_frame(piece), conn.interface.port)
        if seg.payload:
            if conn.reinjected_until is None:  # one fallback ACK for a burst, not one each
                asyncio.get_running_loop().call_later(REINJECT_ACK_S, self._ack_reinjected,
                                                      conn, True)
            conn.reinjected_until = seq_add(seg.seq, len(seg.payload))

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
