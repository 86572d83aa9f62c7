"""Selective recovery on the DMA bridge (runtime.dma_sack): SACK frames from the NIC, resending
only the holes after a fast retransmit, partial ACKs and timeouts (RFC 2018, 6675, 6582)."""

from __future__ import annotations

import random

from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode
from runtime.dma_bridge import DmaBridge
from runtime.sack_scoreboard import SackScoreboard
from tests.support.fakes import FakeLink
from tests.unit.test_dma_bridge import (FLOW, GEN, RTO, SEED, TX_START, Clock, Shm, sent_data,
                                        shm, tx_acked)

__all__ = ["shm"]   # the fixture, used by name
MSS = 1000


def sack_frame(left: int, right: int, acked: int = 0, window: int = 20_000,
               fast_retransmit: bool = False) -> NicHostMessage:
    """What the NIC sends for a duplicate ACK of `acked` with first SACK block [left, right)."""
    flags = ChannelFlags.FAST_RETRANSMIT if fast_retransmit else ChannelFlags.NONE
    return NicHostMessage(Opcode.SACK, FLOW, GEN, flags, TX_START + acked, left, aux=right,
                          window=window)


def sack_bridge(shm: Shm, size: int = 8000):
    """A SACK flow with `size` bytes sent (segments of MSS), nothing acknowledged yet."""
    flow = shm.flow(mss=MSS, peer_window=20_000, sack=SackScoreboard())
    link = FakeLink(failures=0, delay=None)
    clock = Clock()
    bridge = DmaBridge(link, rto=RTO, clock=clock)
    bridge.register(flow.channel)
    data = random.Random(SEED).randbytes(size)
    flow.app_tx.write(data)
    assert bridge.kick(FLOW) == size
    sent_data(link)
    return flow, link, clock, bridge, data


def resent(link: FakeLink) -> list[tuple[int, int]]:
    """(stream position, length) of every TX_DATA since the last look."""
    return [(aux, length) for _, aux, length, _ in sent_data(link)]


def test_fast_retransmit_resends_only_the_holes(shm: Shm) -> None:
    """Segments 0 and 3 lost: the peer SACKs 1-2 and 4-7; only 0 and 3 go out again."""
    flow, link, _, bridge, _ = sack_bridge(shm)
    bridge.handle_frame(sack_frame(1000, 2000).encode())
    bridge.handle_frame(sack_frame(1000, 3000).encode())
    assert resent(link) == []                       # duplicate ACKs, no recovery yet
    bridge.handle_frame(sack_frame(4000, 5000, fast_retransmit=True).encode())
    assert resent(link) == [(0, 1000)]              # the first hole at once
    for end in range(6000, 8001, 1000):
        bridge.handle_frame(sack_frame(4000, end).encode())
    assert resent(link) == [(3000, 1000)]           # lost once 3 segments SACKed above it
    channel = flow.channel
    assert channel.counters.fast_retransmits == 1
    assert channel.counters.retransmitted_bytes == 2000    # go-back-N: 8,000
    assert channel.counters.sack_blocks == 6
    bridge.handle_frame(tx_acked(TX_START + 8000, 8000, 20_000).encode())
    assert not channel.sack.in_recovery and channel.tx_acked == 8000
    link.close()


def test_a_partial_ack_resends_the_next_hole(shm: Shm) -> None:
    """Segments 0 and 2 lost, 1 SACKed: after 0 is resent the ACK stops at 2000."""
    flow, link, _, bridge, _ = sack_bridge(shm, size=3000)
    bridge.handle_frame(sack_frame(1000, 2000, fast_retransmit=True).encode())
    assert resent(link) == [(0, 1000)]
    bridge.handle_frame(tx_acked(TX_START + 2000, 2000, 20_000).encode())
    assert resent(link) == [(2000, 1000)]           # RFC 6582: the next hole
    link.close()


def test_the_resent_payload_is_the_hole_s_bytes(shm: Shm) -> None:
    flow, link, _, bridge, data = sack_bridge(shm, size=5000)
    bridge.handle_frame(sack_frame(1000, 5000, fast_retransmit=True).encode())
    (message,) = [m for m in link.sent if m.opcode == Opcode.TX_DATA]
    assert (message.aux, message.payload) == (0, data[:1000])
    assert not message.flags & ChannelFlags.RTO
    link.close()


def test_a_timeout_resends_from_snd_una_skipping_sacked_ranges(shm: Shm) -> None:
    flow, link, clock, bridge, _ = sack_bridge(shm, size=4000)
    bridge.handle_frame(sack_frame(1000, 2000).encode())
    clock.now += 0.21
    bridge.check_timeouts(clock.now)
    sent = sent_data(link)
    assert [(aux, length) for _, aux, length, _ in sent] == [(0, 1000), (2000, 1000),
                                                             (3000, 1000)]
    assert sent[0][3] & ChannelFlags.RTO and not sent[1][3] & ChannelFlags.RTO
    assert flow.channel.counters.timeouts == 1
    clock.now += 0.41                                # again: the peer may have reneged
    bridge.check_timeouts(clock.now)
    assert resent(link) == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000)]
    link.close()


def test_new_data_follows_the_holes(shm: Shm) -> None:
    flow, link, _, bridge, _ = sack_bridge(shm, size=3000)
    bridge.handle_frame(sack_frame(1000, 3000, fast_retransmit=True).encode())
    sent_data(link)
    flow.app_tx.write(b"n" * 1500)
    bridge.kick(FLOW)
    assert resent(link) == [(3000, 1000), (4000, 500)]
    link.close()


def test_a_flow_without_sack_still_goes_back_n_on_retransmit(shm: Shm) -> None:
    flow = shm.flow(mss=MSS, peer_window=20_000)
    link = FakeLink(failures=0, delay=None)
    bridge = DmaBridge(link, rto=RTO, clock=Clock())
    bridge.register(flow.channel)
    flow.app_tx.write(b"g" * 3000)
    bridge.kick(FLOW)
    sent_data(link)
    bridge.handle_frame(NicHostMessage(Opcode.RETRANSMIT, FLOW, GEN, offset=TX_START,
                                       window=20_000).encode())
    assert resent(link) == [(0, 1000), (1000, 1000), (2000, 1000)]
    link.close()


def test_a_sack_frame_with_a_closed_window_shows_the_peer_alive(shm: Shm) -> None:
    """The peer's window closed with data still out: its duplicate ACKs (SACK frames with
    window 0) keep the connection from being given up (RFC 1122 4.2.2.17)."""
    flow, link, clock, bridge, _ = sack_bridge(shm, size=3000)
    clock.now += 1.5
    bridge.handle_frame(sack_frame(1000, 2000, window=0).encode())
    assert flow.channel.peer_window == 0
    assert flow.channel.timer.last_progress == clock.now
    link.close()


def test_recovery_starts_when_the_scoreboard_says_snd_una_is_lost(shm: Shm) -> None:
    """RFC 6675 5 (4): no third duplicate ACK from the NIC (it counts once per window), but
    3 MSS SACKed above snd_una: the hole goes out at once, without waiting for the timer."""
    flow, link, _, bridge, _ = sack_bridge(shm)
    bridge.handle_frame(sack_frame(1000, 3000).encode())
    assert resent(link) == []
    bridge.handle_frame(sack_frame(1000, 4000).encode())
    assert resent(link) == [(0, 1000)]
    assert flow.channel.counters.fast_retransmits == 1
    bridge.handle_frame(sack_frame(1000, 5000, fast_retransmit=True).encode())
    assert flow.channel.counters.fast_retransmits == 1     # the same recovery
    link.close()


def test_a_hole_never_reaches_past_what_was_sent(shm: Shm) -> None:
    """A partial ACK that leaves less than an MSS out: the resend stops at tx_high (the ring
    holds nothing sent beyond it)."""
    flow, link, _, bridge, _ = sack_bridge(shm, size=2500)
    bridge.handle_frame(sack_frame(1000, 2000, fast_retransmit=True).encode())
    assert resent(link) == [(0, 1000)]
    flow.app_tx.write(b"n" * 2000)            # queued, not sent yet: not part of any hole
    bridge.handle_frame(tx_acked(TX_START + 2000, 2000, 20_000).encode())
    assert resent(link) == [(2000, 500), (2500, 1000), (3500, 1000)]
    link.close()
