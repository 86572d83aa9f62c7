"""Selective loss recovery on the bridge (RFC 2018, RFC 6675) for flows that negotiated SACK:
SACK frames from the NIC fill the flow's scoreboard (runtime.sack_scoreboard); a fast
retransmit or a timeout starts a recovery, and the transmit side resends the lost holes
before any new data, each once, paced like the rest. Flows without SACK go back N
(runtime.dma_tx)."""

from __future__ import annotations

from nic_contract.nic_host_header import ChannelFlags, NicHostMessage
from runtime.dma_base import BridgeBase
from runtime.flow_channel import U32_MAX, FlowChannel
from runtime.sack_scoreboard import SackScoreboard

HALF_SEQ = 1 << 31


class SackRecovery(BridgeBase):
    """The bridge's SACK recovery (mixed into DmaBridge, which provides kick and sending)."""

    def _on_sack(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """SACK: a duplicate ACK's first block into the scoreboard; maybe start a recovery."""
        self._catch_up_acked(channel, message)
        channel.peer_window = message.window << channel.wscale
        if message.window == 0:
            # With SACK a duplicate ACK comes here whatever its window, so this is where a
            # peer with a closed window shows it is alive (RFC 1122 4.2.2.17: never give up).
            self.timers.peer_alive(channel, self.clock())
        self.stats.recovery["sack_frames"] += 1
        sack = channel.sack
        if sack is None:   # cannot happen unless the NIC and runtime disagree: use the ACK
            if message.flags & ChannelFlags.FAST_RETRANSMIT:
                self._fast_retransmit_started(channel)
                self.go_back_n(channel.flow_id)
            return
        left = self._ring_position(channel, message.count)
        right = self._ring_position(channel, message.aux)
        if sack.add(left, right, channel.tx_acked, channel.tx_high):
            channel.counters.sack_blocks += 1
        # RFC 6675 5 (4): recovery starts on the third duplicate ACK (the NIC's flag) or as
        # soon as the scoreboard says the segment at snd_una is lost, whichever is first; the
        # NIC counts duplicate ACKs once per window, and a loss in data sent during the last
        # recovery would otherwise wait for the timer.
        if (message.flags & ChannelFlags.FAST_RETRANSMIT
                or sack.first_hole_lost(channel.tx_acked, channel.mss)):
            self._start_sack_recovery(channel)
        sack.update_lost(channel.mss)
        sack.find_lost_resends(channel.mss)
        self.kick(channel.flow_id)

    def _start_sack_recovery(self, channel: FlowChannel) -> None:
        """Third duplicate ACK on a SACK flow: resend the first hole, then what IsLost says."""
        sack = channel.sack
        assert sack is not None
        if sack.enter_fast_recovery(channel.tx_acked, channel.tx_high, channel.mss):
            self._fast_retransmit_started(channel)   # once per recovery episode
        self.kick(channel.flow_id)

    def _fast_retransmit_started(self, channel: FlowChannel) -> None:
        """Count it: congestion control reacts to fast retransmits (runtime.congestion)."""
        channel.counters.fast_retransmits += 1
        self.stats.recovery["fast_retransmits"] += 1

    def _catch_up_acked(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """A SACK frame's `offset` is snd_una: ahead of tx_acked only if a TX_ACKED was lost."""
        position = (message.offset - channel.tx_start_seq) & U32_MAX
        ahead = (position - channel.stream_position(channel.tx_acked)) & U32_MAX
        if 0 < ahead <= channel.in_flight:
            self._advance_acked(channel, ahead)
            self._announce(channel)

    @staticmethod
    def _ring_position(channel: FlowChannel, stream_position: int) -> int:
        """The TX ring position of a stream position (mod 2^32) near tx_acked."""
        delta = (stream_position - channel.stream_position(channel.tx_acked)) & U32_MAX
        if delta >= HALF_SEQ:
            delta -= 1 << 32   # below snd_una (a D-SACK block, RFC 2883)
        return channel.tx_acked + delta

    def _sack_timeout(self, channel: FlowChannel, sack: SackScoreboard) -> int:
        """Retransmission timeout: resend from snd_una, skipping what the peer holds."""
        sack.on_timeout(channel.tx_acked, channel.tx_high)
        channel.rto_flag_pending = True
        return self.kick(channel.flow_id)

    def _send_holes(self, channel: FlowChannel, now: float) -> tuple[int, bool]:
        """Resend lost holes, at most an MSS each; returns (bytes sent, blocked): blocked if
        pacing or the link stopped it before every lost hole went out."""
        sack = channel.sack
        sent = 0
        while sack is not None:
            hole = sack.next_hole(channel.tx_acked, channel.mss)
            if hole is None:
                break
            start, end = hole[0], min(hole[1], channel.tx_high)   # never past what was sent
            if start >= end:
                break
            if self._paced_out(channel, end - start, now):
                return sent, True
            flags = ChannelFlags.RTO if channel.rto_flag_pending else ChannelFlags.NONE
            if not self._send_segment(channel, start, end - start, flags):
                return sent, True
            channel.rto_flag_pending = False
            sack.resent(start, end, channel.tx_high)
            channel.counters.retransmitted_bytes += end - start
            channel.counters.tx_bytes += end - start   # sent bytes, resends included
            self.stats.recovery["retransmitted_bytes"] += end - start
            sent += end - start
        return sent, False
