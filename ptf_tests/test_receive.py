"""PTF: the receive fast path (in-order delivery, ACKs, window, out-of-order and old data)."""

from __future__ import annotations

import time

import ptf.testutils as tu

from lib.base_test import WIRE_PORT, FastPathTest, next_flow_id, next_generation
from lib.packets import (ECN_CE, ExpectedAck, data_segment, flow_spec, rx_consumed_frame,
                         rx_data_frame, tx_acked_frame)
from nic_contract.constants import HOST_PORT, DropReason
from nic_contract.nic_host_header import ChannelFlags

DROPS = "drop_counter"
CROSS_PORT_SETTLE_S = 0.3
OOO = ChannelFlags.PSH | ChannelFlags.OOO


class ReceiveTest(FastPathTest):
    """A fresh connection per test; helpers for its segments."""

    ring_size = 1 << 16
    window_shift = 0

    def setUp(self) -> None:
        super().setUp()
        self.spec = self.install_flow(flow_spec(
            next_flow_id(), next_generation(), rx_ring_size=self.ring_size,
            rx_window_shift=self.window_shift))
        self.rcv_nxt = self.spec.rx_start_seq
        self.snd_nxt = self.spec.tx_start_seq

    def send_data(self, seq: int, payload: bytes, **kwargs) -> None:
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, seq, payload, **kwargs))

    def ack(self, ack: int, window: int, **kwargs) -> ExpectedAck:
        return ExpectedAck(seq=self.snd_nxt, ack=ack, window=window, **kwargs)


class InOrderDelivery(ReceiveTest):
    """In-order data: RX_DATA frame on the host port with offset/length/payload, and an ACK."""

    def runTest(self) -> None:
        payload = b"hello, p4tas!" * 10
        self.send_data(self.rcv_nxt, payload, tsval=4242)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, payload))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + len(payload),
                                            self.ring_size - len(payload), tsecr=4242))
        tu.verify_no_other_packets(self)


class InOrderWithoutTimestamps(ReceiveTest):
    """A segment with no options gets an ACK with no options (54 bytes, exact checksums)."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        payload = bytes(range(100))
        self.send_data(self.rcv_nxt, payload, tsval=None, flags="A")
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, payload, flags=ChannelFlags.NONE))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 100, self.ring_size - 100))
        tu.verify_no_other_packets(self)


class ConsecutiveSegmentsAdvanceOffsets(ReceiveTest):
    """Two segments: offsets advance by the first length; ACK numbers and TSval advance."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        first, second = b"a" * 300, b"b" * 500
        self.send_data(self.rcv_nxt, first, tsval=10)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, first))
        ts1 = self.verify_ack(self.spec, self.ack(self.rcv_nxt + 300, self.ring_size - 300, tsecr=10))
        self.send_data(self.rcv_nxt + 300, second, tsval=11)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 300, second))
        ts2 = self.verify_ack(self.spec, self.ack(self.rcv_nxt + 800, self.ring_size - 800, tsecr=11))
        self.assertGreaterEqual(ts2, ts1, "our TSval must not go backwards")
        tu.verify_no_other_packets(self)


class OutOfOrderSegmentIsPlaced(ReceiveTest):
    """A segment ahead of the expected sequence starts the out-of-order interval: written to
    its ring offset (RX_DATA flagged OOO, not readable yet) and a duplicate ACK."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        before = self.counter(DROPS, DropReason.OUT_OF_ORDER)
        self.send_data(self.rcv_nxt + 100, b"x" * 50, tsval=5)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 100, b"x" * 50, OOO))
        # No in-order segment yet, so no TS.Recent to echo (RFC 7323 4.3: not this TSval).
        self.verify_ack(self.spec, self.ack(self.rcv_nxt, self.ring_size, tsecr=0))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.OUT_OF_ORDER), before)


class OutOfOrderIntervalMergesOnce(ReceiveTest):
    """The interval grows at its end and at its front; the in-order segment that reaches it
    is delivered with MERGED and aux = the 140 placed bytes: one notification for all, and
    the ACK jumps over the whole interval."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        pieces = [(100, b"a" * 50), (150, b"b" * 50), (60, b"c" * 40)]
        for offset, payload in pieces:
            self.send_data(self.rcv_nxt + offset, payload, tsval=7)
            self.verify_frame(HOST_PORT, rx_data_frame(self.spec, offset, payload, OOO))
            self.verify_ack(self.spec, self.ack(self.rcv_nxt, self.ring_size, tsecr=0))
        self.send_data(self.rcv_nxt, b"d" * 60, tsval=8)
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 0, b"d" * 60, ChannelFlags.PSH | ChannelFlags.MERGED, rtt=140))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 200, self.ring_size - 200, tsecr=8))
        tu.verify_no_other_packets(self)


class OutsideTheIntervalIsDropped(ReceiveTest):
    """Only one interval: a segment that neither starts nor extends it (disjoint, or inside
    it) is dropped with a duplicate ACK and counted."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt + 100, b"a" * 50, tsval=5)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 100, b"a" * 50, OOO))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt, self.ring_size, tsecr=0))
        before = self.counter(DROPS, DropReason.OUT_OF_ORDER)
        for offset in (300, 120):
            self.send_data(self.rcv_nxt + offset, b"z" * 10, tsval=6)
            self.verify_ack(self.spec, self.ack(self.rcv_nxt, self.ring_size, tsecr=0))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.OUT_OF_ORDER)[0] - before[0], 2)


class ZeroWindowProbeIsAnswered(ReceiveTest):
    """A zero-length segment one below rcv_nxt (Linux's window probe) gets an ACK with the
    current window; a pure ACK at rcv_nxt gets none (it reaches the host as a TX_ACKED
    notice: with nothing in flight it may answer a keepalive probe)."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt, b"p" * 100, tsval=20)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"p" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 100, self.ring_size - 100, tsecr=20))
        self.rcv_nxt += 100
        self.send_data(self.rcv_nxt - 1, b"", flags="A", tsval=21)
        # Outside the window: its TSval is not taken (RFC 7323 5.3 R2 before R3).
        self.verify_ack(self.spec, self.ack(self.rcv_nxt, self.ring_size - 100, tsecr=20))
        self.send_data(self.rcv_nxt, b"", flags="A", tsval=22)
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd_nxt, 0))
        tu.verify_no_other_packets(self)


class OldDataIsReAcked(ReceiveTest):
    """Data already received: re-ACK with the current expected sequence, no second delivery."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        payload = b"y" * 200
        self.send_data(self.rcv_nxt, payload, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, payload))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 200, self.ring_size - 200, tsecr=1))
        before = self.counter(DROPS, DropReason.OLD_DATA)
        self.send_data(self.rcv_nxt, payload, tsval=2)  # a retransmission
        # Wholly old, so outside the window: TS.Recent stays (RFC 7323 5.3 R2 before R3).
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 200, self.ring_size - 200, tsecr=1))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.OLD_DATA)[0] - before[0], 1)


class SegmentLargerThanFreeSpace(ReceiveTest):
    """No room in the RX ring: dropped, and the ACK carries the current (small) window."""

    ring_size = 1024

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt, b"a" * 1000, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 1000))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1000, 24, tsecr=1))
        before = self.counter(DROPS, DropReason.NO_RX_SPACE)
        self.send_data(self.rcv_nxt + 1000, b"b" * 100, tsval=2)
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1000, 24, tsecr=2))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.NO_RX_SPACE)[0] - before[0], 1)


class RxConsumedReopensWindow(ReceiveTest):
    """RX_CONSUMED from the host returns ring space: the closed window is announced open at
    once (a window update), the refused segment now fits, the ring offset wraps, and the
    window in the ACK follows the free space."""

    ring_size = 1024

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt, b"a" * 1000, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"a" * 1000))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1000, 24, tsecr=1))

        # A message for another generation of this flow id must not open the window.
        stale = self.spec.generation % 0xFFFF + 1
        tu.send_packet(self, HOST_PORT, rx_consumed_frame(self.spec, 1000, generation=stale))
        time.sleep(CROSS_PORT_SETTLE_S)
        self.send_data(self.rcv_nxt + 1000, b"b" * 100, tsval=2)
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1000, 24, tsecr=2))

        tu.send_packet(self, HOST_PORT, rx_consumed_frame(self.spec, 1000))
        # The window had closed (24 bytes) and reopens past half the ring: a window update.
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1000, 1024, tsecr=2))
        # bmv2 does not order packets across ports: let the host message go through first.
        time.sleep(CROSS_PORT_SETTLE_S)
        self.send_data(self.rcv_nxt + 1000, b"b" * 100, tsval=3)
        # 1000 + 100 bytes into a 1024-byte ring: the second segment starts at offset 1000
        # and wraps; the host copies it in two pieces.
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 1000, b"b" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1100, 1024 - 100, tsecr=3))
        self.send_data(self.rcv_nxt + 1100, b"c" * 10, tsval=4)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 1100 - 1024, b"c" * 10))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 1110, 1024 - 110, tsecr=4))
        tu.verify_no_other_packets(self)


class ScaledWindow(ReceiveTest):
    """The advertised window is the free space shifted by our window scale."""

    ring_size = 1 << 20
    window_shift = 7

    def runTest(self) -> None:
        mss = 1448  # a full 1500-byte packet with the timestamp option
        self.send_data(self.rcv_nxt, b"z" * mss, tsval=9)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"z" * mss))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + mss, ((1 << 20) - mss) >> 7, tsecr=9))
        tu.verify_no_other_packets(self)


class CeMarkedDataGetsEce(ReceiveTest):
    """CE-marked data: delivered with the CE flag, and its ACK carries ECE."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt, b"e" * 64, tsval=3, ecn=ECN_CE)
        self.verify_frame(HOST_PORT,
                          rx_data_frame(self.spec, 0, b"e" * 64, flags=ChannelFlags.PSH | ChannelFlags.CE
                                        | ChannelFlags.ECE_ECHO))
        self.verify_ack(self.spec,
                        self.ack(self.rcv_nxt + 64, self.ring_size - 64, ece=True, tsecr=3))
        tu.verify_no_other_packets(self)


class NewGenerationReinitializes(ReceiveTest):
    """Reusing a flow id with a new generation starts from the new connection's sequence
    numbers and an empty ring, whatever the previous connection left in the registers."""

    ring_size = 1 << 12

    def runTest(self) -> None:
        self.send_data(self.rcv_nxt, b"o" * 100, tsval=1)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"o" * 100))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 100, self.ring_size - 100, tsecr=1))

        self.client.delete(list(reversed(self._written)))
        self._written.clear()
        self.spec = self.install_flow(flow_spec(
            self.spec.flow_id, next_generation(), rx_ring_size=self.ring_size,
            rx_start_seq=900000, tx_start_seq=7000))
        self.rcv_nxt, self.snd_nxt = 900000, 7000
        self.send_data(self.rcv_nxt, b"n" * 10, tsval=2)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"n" * 10))
        self.verify_ack(self.spec, self.ack(self.rcv_nxt + 10, self.ring_size - 10, tsecr=2))
        tu.verify_no_other_packets(self)


class PureAckIsNotDelivered(ReceiveTest):
    """A segment without payload is neither delivered nor ACKed (the host hears of its ACK
    field alone, a TX_ACKED notice: nothing is in flight, it may answer a keepalive probe)."""

    def runTest(self) -> None:
        before = self.counter(DROPS, DropReason.PURE_ACK)
        self.send_data(self.rcv_nxt, b"", flags="A", tsval=1)
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd_nxt, 0))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter(DROPS, DropReason.PURE_ACK)[0] - before[0], 1)
