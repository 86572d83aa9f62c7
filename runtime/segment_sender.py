"""The segments the slow path sends itself (as PacketOuts): SYN, SYN-ACK, ACK, RST, and what
goes into them (our window, the timestamps option, ECN setup flags)."""

from __future__ import annotations

import time
from collections.abc import Callable

from host_lib.rings import RingCorruptedError
from nic_contract.flow_entries import FlowTuple
from runtime import congestion
from runtime.config import Interface, RuntimeConfig
from runtime.connections import Connection
from runtime.datapath import Datapath
from runtime.tcp_segments import TcpFlags, TcpOptions, TcpSegment, build_segment
from runtime.tcp_seq import MAX_UNSCALED_WINDOW, seq_add

ECN_CE = 0x03   # the IPv4 TOS byte's ECN bits: Congestion Experienced


class ChallengeAckLimit:
    """RFC 5961 7: at most `pps` challenge ACKs per second from the slow path (a token bucket
    with a second's worth of burst), as the fast path's challenge_ack_rate meter does."""

    def __init__(self, pps: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.pps, self._clock = pps, clock
        self._tokens, self._last = float(pps), clock()

    def allow(self) -> bool:
        if self.pps <= 0:
            return True   # 0: unlimited
        now = self._clock()
        self._tokens = min(float(self.pps), self._tokens + (now - self._last) * self.pps)
        self._last = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


class SegmentSender:
    """Builds and sends the slow path's own segments of a connection."""

    def __init__(self, config: RuntimeConfig, datapath: Datapath) -> None:
        self.config = config
        self.datapath = datapath
        self.challenges = ChallengeAckLimit(config.challenge_ack_pps)

    def challenge_ack(self, conn: Connection) -> bool:
        """A challenge ACK (RFC 5961 3.2, 4.2), unless over the rate; whether it went."""
        if not self.challenges.allow():
            return False
        self.ack(conn)
        return True

    def syn(self, conn: Connection) -> None:
        """Our SYN (active open) or SYN-ACK (passive), with the options we offer or echo."""
        flags = TcpFlags.SYN | (TcpFlags.ACK if not conn.active else TcpFlags(0))
        if conn.active and self.offers_ecn(conn):
            flags |= TcpFlags.ECE | TcpFlags.CWR   # ECN-setup SYN
        elif not conn.active and conn.ecn:
            flags |= TcpFlags.ECE                  # ECN-setup SYN-ACK
        peer = conn.peer_options
        offer_all = conn.active  # an active open offers; a passive one only echoes
        options = TcpOptions(
            mss=self.config.tcp.mss,
            window_scale=conn.window_shift if offer_all or peer.window_scale is not None else None,
            timestamps=((self.datapath.clock.now(), peer.timestamps[0] if peer.timestamps else 0)
                        if offer_all or conn.timestamps else None),
            sack_permitted=self.config.sack and (offer_all or conn.sack))
        ack = conn.rcv_nxt if flags & TcpFlags.ACK else 0
        window = min(self.config.tcp.rx_ring_size, MAX_UNSCALED_WINDOW)
        self.send(conn.interface, conn.peer_mac, conn.tuple, conn.iss, ack, flags, window,
                   options)

    def offers_ecn(self, conn: Connection) -> bool:
        """ECN only where enabled and the congestion control reacts to ECE (RFC 3168 6.1.2:
        a flow whose sender ignores marks must not be ECN-capable)."""
        return self.config.ecn and congestion.reacts_to_ecn(
            conn.congestion or self.config.congestion)

    def ack(self, conn: Connection, ece: bool = False) -> None:
        """A pure ACK of everything received; ECE if asked or while the NIC's ACKs carry it
        (RFC 3168 6.1.3: from a CE mark to the peer's CWR), if the connection does ECN."""
        ece = ece or (conn.channel is not None and conn.channel.ece_echo)
        flags = TcpFlags.ACK | (TcpFlags.ECE if ece and conn.ecn else TcpFlags(0))
        self.send(conn.interface, conn.peer_mac, conn.tuple, conn.snd_nxt, conn.rcv_nxt,
                   flags, self.window(conn), self.ts_option(conn))

    @staticmethod
    def note_ecn(conn: Connection, seg: TcpSegment) -> None:
        """A segment the fast path punted (a FIN) moves the ECE echo as the NIC would:
        CWR ends it, CE starts it (ecn_echo.p4)."""
        if conn.channel is None:
            return
        if seg.flags & TcpFlags.CWR:
            conn.channel.ece_echo = False
        if seg.tos & ECN_CE == ECN_CE:
            conn.channel.ece_echo = True

    def window(self, conn: Connection) -> int:
        """Our window: the RX ring's free space (all of it before the data path exists)."""
        free = self.config.tcp.rx_ring_size
        if conn.channel is not None:
            try:
                free = min(max(conn.channel.rx_ring.free_space(), 0), free)
            except RingCorruptedError:
                free = 0
        return min(free >> conn.window_shift, MAX_UNSCALED_WINDOW)

    def ts_option(self, conn: Connection) -> TcpOptions | None:
        """The timestamps option of our next segment (None: not negotiated)."""
        if not conn.timestamps:
            return None
        echo = conn.peer_options.timestamps[0] if conn.peer_options.timestamps else 0
        return TcpOptions(timestamps=(self.datapath.clock.now(), echo))

    def rst_for(self, seg: TcpSegment, iface: Interface) -> None:
        """RFC 793 reset for a segment of no connection (ours or a closed port)."""
        key = FlowTuple(seg.dst_ip, seg.dst_port, seg.src_ip, seg.src_port)
        if seg.flags & TcpFlags.ACK:
            self.send(iface, seg.src_mac, key, seg.ack, 0, TcpFlags.RST)
        else:
            length = len(seg.payload) + bool(seg.flags & TcpFlags.SYN) + bool(seg.flags & TcpFlags.FIN)
            self.send(iface, seg.src_mac, key, 0, seq_add(seg.seq, length),
                       TcpFlags.RST | TcpFlags.ACK)

    def send(self, iface: Interface, peer_mac: str, key: FlowTuple, seq: int, ack: int,
              flags: TcpFlags, window: int = 0, options: TcpOptions | None = None) -> None:
        """Build one segment and send it out of `iface` as a PacketOut."""
        frame = build_segment(iface.mac, peer_mac, key.local_ip, key.peer_ip, key.local_port,
                              key.peer_port, seq, ack, flags, window, options)
        self.datapath.send(frame, iface.port)

    def resets(self, conn: Connection, sequences: list[int]) -> None:
        """One RST (with ACK) at each of `sequences`."""
        for seq in sequences:
            self.send(conn.interface, conn.peer_mac, conn.tuple, seq, conn.rcv_nxt,
                       TcpFlags.RST | TcpFlags.ACK)

    @staticmethod
    def rst_sequences(conn: Connection) -> list[int]:
        """Where the peer's next expected sequence can be: RFC 5961 peers take an RST only
        at exactly that point. With data in flight it lies between what the peer has
        acknowledged and what we sent; one RST at each end (the peer answers a wrong one with
        a challenge ACK, which changes nothing)."""
        channel, spec = conn.channel, conn.flow_spec
        if channel is None or spec is None or conn.fin_seq is not None \
                or channel.tx_acked == channel.tx_high:
            return [conn.snd_nxt]
        return [seq_add(spec.tx_start_seq, channel.tx_acked - channel.tx_base), conn.snd_nxt]
