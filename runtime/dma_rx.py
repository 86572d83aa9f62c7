"""NIC -> host on the bridge: RX_DATA into the RX ring (in order, trimmed of what the ring
holds already, or placed out of order),
TX_ACKED and RETRANSMIT (acknowledged TX bytes, window, RTT samples, ECE), and the events each
posts to the flow's context queue (never lost: a full queue defers them)."""

from __future__ import annotations

from host_lib.rings import Event, RingCorruptedError
from host_lib.shm_layout import EventType
from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode
from runtime.dma_base import log
from runtime.dma_sack import SackRecovery
from runtime.flow_channel import U32_MAX, FlowChannel
from runtime.nic_interface import DropCause

EVENT_RETRY_SECONDS = 0.001    # while some context queue is full
# The flags as plain ints: IntFlag's operators run Python code, ~1 us each, several per frame.
_ECE_ECHO, _FIN, _OOO, _TRIM, _MERGED, _ECE = (int(flag) for flag in (
    ChannelFlags.ECE_ECHO, ChannelFlags.FIN, ChannelFlags.OOO, ChannelFlags.TRIM,
    ChannelFlags.MERGED, ChannelFlags.ECE))
_RX_EVENT_FLAGS = int(ChannelFlags.PSH | ChannelFlags.CE)


class NicToHost(SackRecovery):
    """The bridge's receive side (mixed into DmaBridge)."""

    def _rx_data(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Payload into the RX ring, an event; piggy-backed ACK info as TX_ACKED."""
        channel.ece_echo = bool(int(message.flags) & _ECE_ECHO)
        if message.payload:
            self._deliver(channel, message)
        if message.count or int(message.flags) & _FIN:
            # A bad payload does not make the ACK wrong, and skipping it would leak TX space;
            # an ACK of our FIN alone counts no byte but still moves the close on.
            self._tx_acked(channel, message)

    def _deliver(self, channel: FlowChannel, message: NicHostMessage) -> None:
        ring = channel.rx_ring
        flags = int(message.flags)
        if flags & _OOO:
            self._place_out_of_order(channel, message)
            return
        head = ring.head
        expected = head & (ring.size - 1)
        payload = message.payload
        if flags & _TRIM:
            payload = self._trimmed(channel, message, expected)
            if payload is None:
                return
        elif message.offset != expected:
            drops = self.link.kernel_drops()
            self._flow_error(channel, DropCause.BAD_OFFSET,
                             f"RX_DATA at offset {message.offset}, ring writes at {expected} "
                             f"(host port: {drops} frames dropped by the kernel since the last "
                             "check)")
            return
        try:
            ring.write_at(expected, payload)
        except ValueError as exc:
            self._flow_error(channel, DropCause.RX_OVERFLOW, str(exc))
            return
        merged = message.aux if flags & _MERGED else 0
        if merged and not self._merge_is_placed(channel, head + len(payload), merged):
            self._flow_error(channel, DropCause.BAD_OFFSET,
                             f"RX_DATA makes {merged} bytes readable that were never placed")
            return
        ring.publish(len(payload) + merged)
        channel.ooo_end = 0 if merged else channel.ooo_end
        channel.counters.rx_bytes += len(payload) + merged
        channel.counters.rx_frames += 1
        channel.rx_flags_pending |= flags & _RX_EVENT_FLAGS
        self._announce(channel)

    def _trimmed(self, channel: FlowChannel, message: NicHostMessage,
                 expected: int) -> bytes | None:
        """A TRIM segment's bytes from the RX write position on: the part before it is in the
        ring already (readable, perhaps read), so it is skipped, never written again."""
        skip = (expected - message.offset) & (channel.rx_ring.size - 1)
        if not 0 < skip < len(message.payload):
            self._flow_error(channel, DropCause.BAD_OFFSET,
                             f"RX_DATA (TRIM) at offset {message.offset} of "
                             f"{len(message.payload)} bytes does not reach the ring's write "
                             f"position {expected}")
            return None
        channel.counters.rx_trimmed_bytes += skip
        return message.payload[skip:]

    def _place_out_of_order(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Payload of the NIC's out-of-order interval: into the ring, not readable yet."""
        ring = channel.rx_ring
        head = ring.head
        position = head + ((message.offset - head) & (ring.size - 1))
        try:
            ring.write_at(message.offset, message.payload)
        except ValueError as exc:
            self._flow_error(channel, DropCause.RX_OVERFLOW, str(exc))
            return
        channel.ooo_end = max(channel.ooo_end, position + len(message.payload))
        channel.counters.rx_ooo_frames += 1

    @staticmethod
    def _merge_is_placed(channel: FlowChannel, start: int, length: int) -> bool:
        """Whether the ring holds placed bytes up to start + length (a bug check)."""
        return start + length <= channel.ooo_end

    def _tx_acked(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Free acknowledged TX bytes, take the window and RTT, post an event, send more."""
        count = message.count
        if int(message.flags) & _FIN and channel.fin_sent:
            channel.fin_acked = True  # the runtime hears of it in on_activity
        if message.opcode == Opcode.TX_ACKED:
            # Absolute (sequence `offset`): a TX_ACKED that bmv2 dropped is made up for here.
            # Once our FIN is acknowledged, offset (snd_una) counts its sequence number too,
            # whether or not this frame is the one that said so (a later window update).
            past_fin = 1 if channel.fin_acked else 0
            position = (message.offset - channel.tx_start_seq - past_fin) & U32_MAX
            count = (position - channel.stream_position(channel.tx_acked)) & U32_MAX
            if count >= 1 << 31:
                count = 0  # older than what we know (reordered behind a later one)
        if count > channel.in_flight:
            self._flow_error(channel, DropCause.ACK_BEYOND_SENT,
                             f"{count} bytes acked, {channel.in_flight} in flight; clamped")
            count = channel.in_flight
        if count:
            self._advance_acked(channel, count)
            self._count_ack(channel, message, count)
            self._active[channel] = None
        channel.peer_window = message.window << channel.wscale
        self._announce(channel)
        if self._batching:
            self._to_kick[channel] = None   # once, after every ACK of the batch
        else:
            self.kick(channel.flow_id)
        if count:
            self.timers.progress(channel, self.clock(), self._waits_on_peer(channel))
            self._arm_rto_tick()
        elif message.window == 0 and channel.unsent > 0:
            self.timers.peer_alive(channel, self.clock())  # it answers our probes

    @staticmethod
    def _advance_acked(channel: FlowChannel, count: int) -> None:
        channel.tx_ring.consume(count)
        channel.tx_acked += count
        # After a go-back-N the peer may acknowledge beyond what was resent: skip ahead.
        channel.tx_sent = max(channel.tx_sent, channel.tx_acked)
        if channel.sack is not None:
            channel.sack.on_ack(channel.tx_acked, channel.mss)

    def _fast_retransmit(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """RETRANSMIT: the NIC saw the third duplicate ACK; resend from snd_una."""
        # Every TX_ACKED before it came first (one FIFO), so `aux` is normally tx_acked; ahead
        # of it only if a TX_ACKED frame was lost, and that many bytes are acknowledged.
        ahead = (message.aux - channel.stream_position(channel.tx_acked)) & U32_MAX
        if 0 < ahead <= channel.in_flight:
            self._advance_acked(channel, ahead)
            self._announce(channel)
        channel.peer_window = message.window << channel.wscale
        if channel.sack is not None:
            self._start_sack_recovery(channel)   # a SACK flow's dup ACK without blocks
            return
        self._fast_retransmit_started(channel)
        self.go_back_n(channel.flow_id)

    def _count_ack(self, channel: FlowChannel, message: NicHostMessage, count: int) -> None:
        counters = channel.counters
        counters.acked_bytes += count
        ece = int(message.flags) & _ECE
        if ece:
            counters.ece_acked_bytes += count
            channel.ack_flags_pending |= _ECE
            channel.cwr_pending = True
        if message.aux and not int(message.flags) & _MERGED:
            counters.rtt_samples += 1
            counters.rtt_sum_us += message.aux   # the NIC's samples are in microseconds
            counters.last_rtt_us = message.aux
            channel.ack_rtt_pending = message.aux
            channel.timer.rtt.sample(message.aux / 1_000_000)

    def _announce(self, channel: FlowChannel) -> None:
        """Post the events a channel owes its context, at the end of the batch of frames being
        handled (one event of each kind per flow and batch); remember the channel if the queue
        is full."""
        if self._batching:
            self._to_announce[channel] = None
            return
        if self._post_rx_event(channel) and self._post_ack_event(channel):
            channel.event_pending = False
            self._pending_events.pop(channel, None)
            if self._on_activity is not None:
                self._on_activity(channel)
            return
        self.stats.events_deferred += 1
        if not channel.event_pending:
            log.debug("flow %d: context queue full, event deferred", channel.flow_id)
        channel.event_pending = True
        self._pending_events[channel] = None
        self._arm_event_timer()

    def _post_rx_event(self, channel: FlowChannel) -> bool:
        """RX_DATA event for every byte published and not yet announced; False if queue full."""
        head = channel.rx_ring.head
        length = head - channel.rx_announced
        if not length or channel.orphan:
            channel.rx_announced = head
            return True
        event = Event(EventType.RX_DATA, channel.slot, channel.rx_announced, length,
                      channel.rx_flags_pending, 0, channel.opaque)
        if not channel.events.push(event):
            return False
        channel.rx_announced = head
        channel.rx_flags_pending = 0
        self.stats.events_posted += 1
        return True

    def _post_ack_event(self, channel: FlowChannel) -> bool:
        """TX_ACKED event for every byte acknowledged and not yet announced; False if queue full."""
        length = channel.tx_acked - channel.ack_announced
        if not length or channel.orphan:
            channel.ack_announced = channel.tx_acked
            return True
        event = Event(EventType.TX_ACKED, channel.slot, channel.ack_announced, length,
                      channel.ack_flags_pending, channel.ack_rtt_pending, channel.opaque)
        if not channel.events.push(event):
            return False
        channel.ack_announced = channel.tx_acked
        channel.ack_flags_pending = channel.ack_rtt_pending = 0
        self.stats.events_posted += 1
        return True

    def _end_batch(self) -> None:
        """After a batch of frames: send what its ACKs let go (one pass per flow, not one
        per ACK), then post the events it owes."""
        kicks, self._to_kick = self._to_kick, {}
        for channel in kicks:
            self._kick_channel(channel)
        self._announce_batch()

    def _announce_batch(self) -> None:
        """The events the batch of frames just handled owes, one flow after the other."""
        channels, self._to_announce = self._to_announce, {}
        for channel in channels:
            try:
                self._announce(channel)
            except (RingCorruptedError, ValueError) as exc:
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))

    def flush_events(self) -> int:
        """Retry the deferred events (e.g. after the application polled); returns flows left."""
        for channel in list(self._pending_events):
            try:
                if self._post_rx_event(channel) and self._post_ack_event(channel):
                    channel.event_pending = False
                    self._pending_events.pop(channel, None)
                    if self._on_activity is not None:
                        self._on_activity(channel)
            except (RingCorruptedError, ValueError) as exc:
                self._pending_events.pop(channel, None)
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))
        return len(self._pending_events)

    def _arm_event_timer(self) -> None:
        if self._loop is None or self._event_timer is not None:
            return
        self._event_timer = self._loop.call_later(EVENT_RETRY_SECONDS, self._on_event_timer)

    def _on_event_timer(self) -> None:
        self._event_timer = None
        if self.flush_events():
            self._arm_event_timer()
