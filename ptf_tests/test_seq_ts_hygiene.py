"""PTF: the fast path's sequence and timestamp hygiene (issue 13 item 5): our TSval ticks in
~1 ms (RFC 7323 5.4) while RTT samples stay in microseconds (rtt_probe.p4), ACKs echo
TS.Recent and PAWS drops old segments (RFC 7323 4.3, 5.3), ECE is latched until the peer's
CWR (RFC 3168 6.1.3), and a segment overlapping rcv_nxt delivers its new part (TRIM)."""

from __future__ import annotations

import time

import ptf.testutils as tu

from lib.base_test import WIRE_PORT, FastPathTest, next_flow_id, next_generation
from lib.packets import (ECN_CE, ExpectedAck, data_segment, flow_spec, rx_data_frame,
                         tx_acked_frame, tx_data_frame)
from nic_contract.constants import HOST_PORT, DropReason
from nic_contract.nic_host_header import ChannelFlags

RING = 1 << 12
DROPS = "drop_counter"
TICK_US = 1 << 10          # our TSval tick
IDLE_S = 0.3
ECHO = ChannelFlags.PSH | ChannelFlags.ECE_ECHO


class HygieneTest(FastPathTest):
    """A fresh connection; its sequence positions on both sides."""

    ecn = False

    def setUp(self) -> None:
        super().setUp()
        self.spec = self.install_flow(flow_spec(next_flow_id(), next_generation(),
                                                rx_ring_size=RING, ecn=self.ecn))
        self.rcv = self.spec.rx_start_seq
        self.snd = self.spec.tx_start_seq

    def send(self, seq: int, payload: bytes, **kwargs) -> None:
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, seq, payload, **kwargs))

    def ack(self, ack: int, window: int, tsecr: int, ece: bool = False) -> ExpectedAck:
        return ExpectedAck(seq=self.snd, ack=ack, window=window, tsecr=tsecr, ece=ece)


class TsvalTicksInMilliseconds(HygieneTest):
    """Two ACKs IDLE_S apart: our TSval advanced by about IDLE_S in 1.024 ms ticks (16 us
    ticks advanced ~64 times as far, and wrapped for a Linux peer's PAWS within hours)."""

    def runTest(self) -> None:
        self.send(self.rcv, b"a" * 10, tsval=10)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 10))
        first = self.verify_ack(self.spec, self.ack(self.rcv + 10, RING - 10, 10))
        time.sleep(IDLE_S)
        self.send(self.rcv + 10, b"b" * 10, tsval=11)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 10, b"b" * 10))
        second = self.verify_ack(self.spec, self.ack(self.rcv + 20, RING - 20, 11))
        ticks = (second - first) & 0xFFFFFFFF
        expected = IDLE_S * 1e6 / TICK_US
        self.assertTrue(0.8 * expected <= ticks <= 3 * expected,
                        f"TSval advanced {ticks} ticks in {IDLE_S} s, expected ~{expected:.0f}")
        tu.verify_no_other_packets(self)


class RttSampleInMicroseconds(HygieneTest):
    """New data is timed by the NIC: the ACK covering it IDLE_S later reports about IDLE_S in
    microseconds, although the peer's TSecr echoes nothing (0)."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"q" * 300))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               tsecr=0, payload=b"q" * 300, psh=True))
        time.sleep(IDLE_S)
        self.send(self.rcv, b"", flags="A", ack=self.snd + 300, tsval=5, tsecr=0)
        rtt = self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd + 300, 300, rtt=rtt))
        self.assertTrue(IDLE_S * 1e6 <= rtt <= 3 * IDLE_S * 1e6, f"RTT sample {rtt} us")
        tu.verify_no_other_packets(self)


class NoRttSampleFromARetransmission(HygieneTest):
    """Karn's rule: data resent before its ACK gives no sample for that ACK."""

    def runTest(self) -> None:
        for _ in range(2):   # the original, then the resend at the same stream position
            tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"r" * 100))
            self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                                   tsecr=0, payload=b"r" * 100, psh=True))
        self.send(self.rcv, b"", flags="A", ack=self.snd + 100, tsval=5)
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd + 100, 100, rtt=0))
        tu.verify_no_other_packets(self)


class AcksEchoTsRecent(HygieneTest):
    """A segment beyond a hole does not update TS.Recent: its duplicate ACK echoes the TSval
    of the last in-order segment (RFC 7323 4.3), not its own."""

    def runTest(self) -> None:
        self.send(self.rcv, b"a" * 100, tsval=100)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 100))
        self.send(self.rcv + 200, b"c" * 50, tsval=200)
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 200, b"c" * 50, ChannelFlags.PSH | ChannelFlags.OOO))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 100))
        self.send(self.rcv + 100, b"b" * 100, tsval=201)   # fills the hole
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 100, b"b" * 100, ChannelFlags.PSH | ChannelFlags.MERGED, rtt=50))
        self.verify_ack(self.spec, self.ack(self.rcv + 250, RING - 250, 201))
        tu.verify_no_other_packets(self)


class PawsDropsOlderTsval(HygieneTest):
    """RFC 7323 5.3: a segment whose TSval is older than TS.Recent (in wrapping 32-bit
    space) is dropped, counted, and answered with an ACK echoing TS.Recent."""

    def runTest(self) -> None:
        recent = 0xFFFFFFF0   # TS.Recent near the wrap: 5 is newer, 0xFFFFFF00 older
        self.send(self.rcv, b"a" * 100, tsval=recent)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, recent))
        before = self.counter(DROPS, DropReason.PAWS)
        self.send(self.rcv + 100, b"x" * 100, tsval=0xFFFFFF00)
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, recent))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.PAWS)[0] - before[0], 1)
        self.send(self.rcv + 100, b"b" * 100, tsval=5)   # newer across the wrap
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 100, b"b" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv + 200, RING - 200, 5))
        tu.verify_no_other_packets(self)


class EceLatchedUntilCwr(HygieneTest):
    """RFC 3168 6.1.3: after a CE mark every ACK (and our data) carries ECE until the peer's
    CWR; RX_DATA says so to the host (ECE_ECHO) for the slow path's own ACKs."""

    ecn = True

    def runTest(self) -> None:
        self.send(self.rcv, b"a" * 10, tsval=1, ecn=ECN_CE)
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 0, b"a" * 10, ECHO | ChannelFlags.CE))
        self.verify_ack(self.spec, self.ack(self.rcv + 10, RING - 10, 1, ece=True))
        self.send(self.rcv + 10, b"b" * 10, tsval=2)   # no mark: ECE still
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 10, b"b" * 10, ECHO))
        self.verify_ack(self.spec, self.ack(self.rcv + 20, RING - 20, 2, ece=True))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"data"))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv + 20, window=RING - 20,
                                               tsecr=2, payload=b"data", psh=True, ece=True,
                                               ect=True))
        self.snd += 4
        self.send(self.rcv + 20, b"c" * 10, tsval=3, flags="PAC", ack=self.snd)   # CWR
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: rx_data_frame(
            self.spec, 20, b"c" * 10, acked=4, rtt=rtt))
        self.verify_ack(self.spec, self.ack(self.rcv + 30, RING - 30, 3))
        self.send(self.rcv + 30, b"d" * 10, tsval=4, ack=self.snd)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 30, b"d" * 10))
        self.verify_ack(self.spec, self.ack(self.rcv + 40, RING - 40, 4))
        tu.verify_no_other_packets(self)


class OverlappingSegmentIsTrimmed(HygieneTest):
    """A resend with other segmentation (starting 50 bytes below rcv_nxt, ending 50 beyond)
    is delivered flagged TRIM at the ring offset of its first byte, whole: the host skips the
    50 bytes it holds. The ACK covers the new part."""

    def runTest(self) -> None:
        self.send(self.rcv, b"a" * 100, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 1))
        before = self.counter(DROPS, DropReason.OLD_DATA)
        payload = b"a" * 50 + b"b" * 50
        self.send(self.rcv + 50, payload, tsval=2)
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 50, payload, ChannelFlags.PSH | ChannelFlags.TRIM))
        self.verify_ack(self.spec, self.ack(self.rcv + 150, RING - 150, 2))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.OLD_DATA), before)


class OverlapReachingTheIntervalIsDropped(HygieneTest):
    """An overlapping segment that would reach into the out-of-order interval stays dropped
    as old data (and ACKed): the host never writes over placed bytes."""

    def runTest(self) -> None:
        self.send(self.rcv, b"a" * 100, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 1))
        self.send(self.rcv + 150, b"c" * 50, tsval=2)
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 150, b"c" * 50, ChannelFlags.PSH | ChannelFlags.OOO))
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 1))
        before = self.counter(DROPS, DropReason.OLD_DATA)
        self.send(self.rcv + 50, b"x" * 120, tsval=3)
        self.verify_ack(self.spec, self.ack(self.rcv + 100, RING - 100, 3))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.OLD_DATA)[0] - before[0], 1)


class ReinjectedOlderSegmentIsExemptFromPaws(HygieneTest):
    """Data the slow path held while the flow was installed comes back reinjected after a
    later segment (here a pure ACK) set TS.Recent: older, but not an old duplicate, so it is
    delivered, and TS.Recent keeps the newer TSval."""

    def runTest(self) -> None:
        self.send(self.rcv, b"", flags="A", tsval=500)   # arrived live, after the held data
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd, 0))   # nothing in flight
        held = bytes(data_segment(self.spec, self.rcv, b"held", tsval=400))
        self.client.packet_out(held, egress_port=WIRE_PORT, reinject=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"held"))
        self.send(self.rcv + 4, b"next", tsval=499)   # still older than TS.Recent: PAWS
        self.verify_ack(self.spec, self.ack(self.rcv + 4, RING - 4, 500))
        tu.verify_no_other_packets(self)
