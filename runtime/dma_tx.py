"""Host -> NIC on the bridge: TX_DATA from the TX ring within the peer's window and the flow's
pacing (lost holes first, runtime.dma_sack), our FIN, window probes, go-back-N after a third
duplicate ACK or a retransmission timeout (flows without SACK), RX_CONSUMED; frames the link
cannot take wait for it."""

from __future__ import annotations

from host_lib.rings import RingCorruptedError
from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode, tx_data
from runtime import keepalive, pacing
from runtime.dma_base import log
from runtime.dma_sack import SackRecovery
from runtime.flow_channel import U32_MAX, FlowChannel
from runtime.nic_interface import DropCause
from runtime.retransmission import TICK_SECONDS


class HostToNic(SackRecovery):
    """The bridge's transmit side (mixed into DmaBridge)."""

    def kick(self, flow_id: int) -> int:
        """Send TX_DATA for queued TX bytes the peer window admits; returns bytes sent."""
        channel = self._channels.get(flow_id)
        if channel is None:
            self.stats.drops[DropCause.UNKNOWN_FLOW] += 1
            log.debug("kick for unknown flow %d", flow_id)
            return 0
        return self._kick_channel(channel)

    def _kick_channel(self, channel: FlowChannel) -> int:
        try:
            return self._send_tx(channel)
        except (RingCorruptedError, ValueError) as exc:
            self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))
            return 0

    def _send_tx(self, channel: FlowChannel) -> int:
        """Lost holes first (SACK recovery), then TX_DATA from tx_sent on, within the peer's
        window (nothing new after our FIN)."""
        now = self.clock() if channel.bucket is not None else 0.0
        sent, blocked = self._send_holes(channel, now)
        if not blocked:
            sent += self._send_new(channel, now)
        if sent:
            self._active[channel] = None
        if self._waits_on_peer(channel):
            self.timers.arm(channel, self.clock())
            self._arm_rto_tick()
        return sent

    def _send_new(self, channel: FlowChannel, now: float) -> int:
        """TX_DATA from tx_sent on, within the peer's window and the flow's pacing."""
        ring = channel.tx_ring
        if channel.fin_sent and channel.tx_sent >= channel.tx_high:
            return 0
        unsent = channel.unsent
        if unsent < 0:
            raise RingCorruptedError(f"TX ring holds {ring.readable()} bytes but "
                                     f"{channel.tx_sent - channel.tx_acked} were sent")
        room = channel.peer_window - (channel.tx_sent - channel.tx_acked)
        sent = 0
        while unsent > 0 and room > 0:
            size = min(channel.mss, unsent, room)
            if self._paced_out(channel, size, now):
                break
            flags = ChannelFlags.PSH if size == unsent else ChannelFlags.NONE
            if channel.rto_flag_pending:
                flags |= ChannelFlags.RTO
            cwr = channel.cwr_pending and channel.tx_sent >= channel.tx_high
            if cwr:
                flags |= ChannelFlags.CWR   # RFC 3168 6.1.2: on new data, not a resend
            if not self._send_segment(channel, channel.tx_sent, size, flags):
                break
            channel.cwr_pending = channel.cwr_pending and not cwr
            channel.rto_flag_pending = False
            channel.tx_sent += size
            channel.tx_high = max(channel.tx_high, channel.tx_sent)
            channel.counters.tx_bytes += size
            unsent -= size
            room -= size
            sent += size
        return sent

    def _send_segment(self, channel: FlowChannel, position: int, size: int,
                      flags: ChannelFlags) -> bool:
        """TX_DATA of `size` ring bytes from TX position `position`; False if the link is full."""
        ring = channel.tx_ring
        pieces = ring.peek(size, skip=position - channel.tx_acked)
        payload = b"".join(pieces)
        for piece in pieces:
            piece.release()
        message = tx_data(channel.flow_id, channel.generation, flags,
                          position & (ring.size - 1), channel.stream_position(position), payload)
        if not self._send(message, channel):
            return False
        channel.counters.tx_frames += 1
        return True

    def _arm_pacing_tick(self) -> None:
        if self._loop is None or self._pacing_tick is not None or not len(self.pacer):
            return
        self._pacing_tick = self._loop.call_later(pacing.TICK_SECONDS, self._on_pacing_tick)

    def _on_pacing_tick(self) -> None:
        self._pacing_tick = None
        self.release_paced(self.clock())
        self._arm_pacing_tick()

    def release_paced(self, now: float) -> None:
        """Send for every flow whose pacing wait is over."""
        for channel in self.pacer.due(now):
            self._kick_channel(channel)

    def send_fin(self, flow_id: int) -> bool:
        """Our FIN after everything queued: an empty TX_DATA flagged FIN at the stream's end
        (the NIC builds the segment and counts the FIN's sequence number; a resend is the
        same message). The runtime sends it once the TX ring is drained."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return False
        channel.fin_sent = True
        position = channel.tx_high
        message = tx_data(channel.flow_id, channel.generation, ChannelFlags.FIN,
                          position & (channel.tx_ring.size - 1), channel.stream_position(position))
        self._send(message, channel)
        return True

    def _send_window_probe(self, channel: FlowChannel) -> None:
        """Ask a peer with a closed window for its current one: one byte just below snd_una
        (RFC 9293 3.8.6.1, as Linux probes). The peer discards it as old and answers with an
        ACK; a byte beyond its window would instead move our snd_nxt past what the peer
        accepts, and it would drop every later segment of ours as out of window."""
        self._send_probe(channel)
        self.timers.arm(channel, self.clock())
        self._arm_rto_tick()

    def _send_probe(self, channel: FlowChannel) -> None:
        """One garbage byte at snd_una - 1: old to the peer, which answers with an ACK."""
        position = channel.tx_acked - 1
        message = tx_data(channel.flow_id, channel.generation, ChannelFlags.PROBE,
                          position & (channel.tx_ring.size - 1), channel.stream_position(position),
                          b"\0")
        self._send(message, channel)

    def _arm_keepalive_tick(self) -> None:
        if self._loop is None or self._keepalive_tick is not None or not len(self.keepalives):
            return
        self._keepalive_tick = self._loop.call_later(keepalive.TICK_SECONDS,
                                                     self._on_keepalive_tick)

    def _on_keepalive_tick(self) -> None:
        self._keepalive_tick = None
        self.check_keepalives(self.clock())
        self._arm_keepalive_tick()

    def check_keepalives(self, now: float) -> None:
        """Probe every idle flow whose keepalive time came; reset those that never answered
        (RFC 1122 4.2.3.6, runtime.keepalive)."""
        for channel in self.keepalives.due(now):
            try:
                self._keepalive_due(channel, now)
            except (RingCorruptedError, ValueError) as exc:
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))

    def _keepalive_due(self, channel: FlowChannel, now: float) -> None:
        busy = channel.in_flight > 0 or channel.unsent > 0
        verdict = self.keepalives.verdict(channel, now, busy)
        if verdict is keepalive.Verdict.GIVE_UP:
            probes = channel.keepalive.params.count if channel.keepalive else 0
            self._flow_error(channel, DropCause.KEEPALIVE, f"{probes} keepalive probes unanswered")
        elif verdict is keepalive.Verdict.PROBE:
            channel.counters.keepalive_probes += 1
            self.stats.recovery["keepalive_probes"] += 1
            self._send_probe(channel)

    def _arm_rto_tick(self) -> None:
        if self._loop is None or self._rto_tick is not None or not len(self.timers):
            return
        self._rto_tick = self._loop.call_later(TICK_SECONDS, self._on_rto_tick)

    def _on_rto_tick(self) -> None:
        self._rto_tick = None
        self.check_timeouts(self.clock())
        self._arm_rto_tick()

    def check_timeouts(self, now: float) -> None:
        """Act on every flow whose retransmission timer expired by `now`."""
        for channel in self.timers.expired(now):
            if not self._waits_on_peer(channel):
                continue
            if not self.timers.backed_off(channel, now):
                self._flow_error(channel, DropCause.TIMEOUT,
                                 f"no progress for {self.timers.config.give_up_s} s")
                continue
            try:
                if channel.in_flight:
                    channel.counters.timeouts += 1
                    self.stats.recovery["rto_timeouts"] += 1
                    self.go_back_n(channel.flow_id, timeout=True)
                else:
                    channel.counters.window_probes += 1
                    self.stats.recovery["window_probes"] += 1
                    self._send_window_probe(channel)
            except (RingCorruptedError, ValueError) as exc:
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))

    def go_back_n(self, flow_id: int, timeout: bool = False) -> int:
        """Resend everything unacknowledged from the acknowledged position; returns bytes sent.
        After a timeout the first segment tells the NIC (NIC_HOST_FLAG_RTO). A flow with
        SACK skips what the peer holds (runtime.dma_sack)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return 0
        if channel.sack is not None:
            if timeout:
                return self._sack_timeout(channel, channel.sack)
            self._start_sack_recovery(channel)
            return 0
        channel.counters.retransmitted_bytes += channel.tx_sent - channel.tx_acked
        self.stats.recovery["retransmitted_bytes"] += channel.tx_sent - channel.tx_acked
        channel.tx_sent = channel.tx_acked
        channel.rto_flag_pending = timeout
        return self.kick(flow_id)

    @staticmethod
    def _waits_on_peer(channel: FlowChannel) -> bool:
        """Data in flight, or data held back by a window too small for any of it."""
        return channel.in_flight > 0 or (
            channel.unsent > 0 and channel.peer_window <= channel.tx_sent - channel.tx_acked)

    def send_rx_consumed(self, flow_id: int, count: int) -> None:
        """Tell the NIC that the application freed `count` RX ring bytes (kept until sent)."""
        if count < 0:
            raise ValueError(f"RX_CONSUMED count {count} is negative")
        channel = self._channels.get(flow_id)
        if channel is None:
            self.stats.drops[DropCause.UNKNOWN_FLOW] += 1
            log.debug("RX_CONSUMED for unknown flow %d", flow_id)
            return
        channel.rx_consumed_unsent += count
        self._flush_rx_consumed(channel)

    def _flush_rx_consumed(self, channel: FlowChannel) -> None:
        while channel.rx_consumed_unsent:
            count = min(channel.rx_consumed_unsent, U32_MAX)
            message = NicHostMessage(Opcode.RX_CONSUMED, channel.flow_id, channel.generation,
                                     count=count)
            if not self._send(message, channel):
                return
            channel.rx_consumed_unsent -= count
            channel.counters.rx_consumed_bytes += count

    def _send(self, message: NicHostMessage, channel: FlowChannel) -> bool:
        """Send one message; on failure park the flow until the link can take more."""
        if self.link.send(message.encode()):
            self.stats.frames_out[message.opcode] += 1
            return True
        self.stats.send_retries += 1
        self._send_backlog[channel] = None
        self._arm_send_retry(self.link.retry_delay())
        return False

    def _arm_send_retry(self, delay: float | None) -> None:
        if self._loop is None or self._send_retry_armed:
            return
        self._send_retry_armed = True
        if delay is None:
            self._loop.add_writer(self.link.fileno(), self._retry_sends)
        else:
            self._send_timer = self._loop.call_later(delay, self._retry_sends)

    def _retry_sends(self) -> None:
        """The link may take frames again: resend RX_CONSUMED and TX_DATA of parked flows."""
        if self._loop is not None:
            self._loop.remove_writer(self.link.fileno())
        self._send_timer = None
        self._send_retry_armed = False
        backlog, self._send_backlog = self._send_backlog, {}
        for channel in backlog:
            self._flush_rx_consumed(channel)
            self._kick_channel(channel)
