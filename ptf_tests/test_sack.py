"""PTF: SACK (RFC 2018) on the fast path. ACKs with SACK blocks after the timestamps (Linux's
layout, one to three blocks) are parsed, not punted; on a flow that negotiated SACK every
duplicate ACK with blocks becomes a SACK frame to the host (its first block), the third
flagged FAST_RETRANSMIT; the ACKs the fast path generates report the out-of-order interval
as one SACK block."""

from __future__ import annotations

import ptf.testutils as tu

from lib.base_test import WIRE_PORT, FastPathTest, next_flow_id, next_generation
from lib.packets import (ExpectedAck, data_segment, flow_spec, rx_data_frame, retransmit_frame,
                         sack_frame, sack_option, tx_acked_frame, tx_data_frame)
from nic_contract.constants import HOST_PORT, PacketInReason
from nic_contract.nic_host_header import ChannelFlags

RING = 1 << 12
OOO = ChannelFlags.PSH | ChannelFlags.OOO


class SackTest(FastPathTest):
    """A fresh flow with 500 bytes out in five segments of 100; none acknowledged yet."""

    sack = True

    def setUp(self) -> None:
        super().setUp()
        self.spec = self.install_flow(flow_spec(next_flow_id(), next_generation(),
                                                rx_ring_size=RING, sack=self.sack))
        self.snd = self.spec.tx_start_seq
        self.rcv = self.spec.rx_start_seq
        for i in range(5):
            tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, i * 100, bytes([i]) * 100))
            self.verify_ack(self.spec, ExpectedAck(seq=self.snd + i * 100, ack=self.rcv,
                                                   window=RING, payload=bytes([i]) * 100,
                                                   psh=True, tsecr=0))
        self.una = self.snd

    def sack_ack(self, ack: int, blocks: list[tuple[int, int]], payload: bytes = b"") -> None:
        """The peer's segment acknowledging `ack` with SACK blocks (sequence numbers)."""
        tu.send_packet(self, WIRE_PORT, data_segment(
            self.spec, self.rcv, payload, flags="A", ack=ack,
            options=sack_option(900, 0, blocks)))

    def block(self, start: int, end: int) -> tuple[int, int]:
        """Stream positions start..end as sequence numbers."""
        return self.snd + start, self.snd + end


class DuplicateAcksWithSackBecomeSackFrames(SackTest):
    """Three duplicate ACKs with one, two and three blocks (data offsets 11, 13, 15): three
    SACK frames with each ACK's first block, the third flagged FAST_RETRANSMIT; no PacketIn."""

    def runTest(self) -> None:
        blocks = [self.block(100, 200), self.block(300, 400), self.block(400, 500)]
        for count in (1, 2, 3):
            first = blocks[count - 1]
            self.sack_ack(self.una, [first] + [b for b in blocks if b != first][:count - 1])
            self.verify_frame(HOST_PORT, sack_frame(self.spec, self.una, *first,
                                                    fast_retransmit=count == 3))
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()
        self.assertEqual(self.counter("fast_retransmit_counter", self.spec.flow_id)[0], 1)


class SackAckIsADuplicateWhateverItsWindow(SackTest):
    """RFC 6675 2: with SACK, an ACK carrying blocks is a duplicate ACK even if its window
    moved (a Linux receiver's does as its application reads); the frame has the new window."""

    def runTest(self) -> None:
        for count, window in ((1, 900), (2, 800), (3, 700)):
            tu.send_packet(self, WIRE_PORT, data_segment(
                self.spec, self.rcv, b"", flags="A", ack=self.una, window=window,
                options=sack_option(900, 0, [self.block(100, 100 * (count + 1))])))
            self.verify_frame(HOST_PORT, sack_frame(self.spec, self.una,
                                                    *self.block(100, 100 * (count + 1)),
                                                    fast_retransmit=count == 3, window=window))
        tu.verify_no_other_packets(self)


class NewAckWithSackIsReported(SackTest):
    """A cumulative ACK with a SACK block (a partial ACK) is a TX_ACKED like any new ACK."""

    def runTest(self) -> None:
        self.sack_ack(self.snd + 200, [self.block(300, 500)])
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd + 200, 200, rtt=rtt))
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()


class DataWithSackBlocksIsDelivered(SackTest):
    """A data segment that also carries SACK blocks: the options are not payload."""

    def runTest(self) -> None:
        self.sack_ack(self.una, [self.block(100, 200), self.block(300, 400)], b"payload")
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"payload",
                                                   ChannelFlags.NONE))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd + 500, ack=self.rcv + 7,
                                               window=RING - 7, tsecr=900))
        tu.verify_no_other_packets(self)


class FlowWithoutSackCountsThemAsDuplicateAcks(SackTest):
    """A flow that did not negotiate SACK: the blocks are parsed (no punt) and ignored; the
    third duplicate ACK is a RETRANSMIT as before."""

    sack = False

    def runTest(self) -> None:
        for _ in range(3):
            self.sack_ack(self.una, [self.block(100, 200)])
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, self.una))
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()


class OtherOptionsAfterTimestampsArePunted(SackTest):
    """Timestamps then something that is not SACK, at a SACK data offset: the slow path."""

    def runTest(self) -> None:
        options = [("NOP", None), ("NOP", None), ("Timestamp", (900, 0)),
                   ("NOP", None), ("NOP", None), ("NOP", None), ("NOP", None),
                   ("NOP", None), ("NOP", None), ("NOP", None), ("NOP", None),
                   ("NOP", None), ("NOP", None), ("NOP", None), ("NOP", None)]
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"", flags="A",
                                                     ack=self.una, options=options))
        _, meta = self.expect_packet_in()
        self.assertEqual(meta["reason"], PacketInReason.TCP_OPTIONS)
        tu.verify_no_other_packets(self)


class AcksReportTheOutOfOrderInterval(SackTest):
    """Receive side: while the out-of-order interval exists, our ACKs carry it as one SACK
    block (it grows with the interval); once the gap fills, no block. (Out-of-order segments
    do not update TS.Recent, RFC 7323 4.3: the ACKs echo the flow's, 0 here, until the
    in-order one.)"""

    def runTest(self) -> None:
        rcv, snd = self.rcv, self.snd + 500
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, rcv + 100, b"a" * 50, tsval=5,
                                                     ack=self.una))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 100, b"a" * 50, OOO))
        self.verify_ack(self.spec, ExpectedAck(seq=snd, ack=rcv, window=RING, tsecr=0,
                                               sack=(rcv + 100, rcv + 150)))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, rcv + 150, b"b" * 50, tsval=6,
                                                     ack=self.una))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 150, b"b" * 50, OOO))
        self.verify_ack(self.spec, ExpectedAck(seq=snd, ack=rcv, window=RING, tsecr=0,
                                               sack=(rcv + 100, rcv + 200)))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, rcv + 300, b"z" * 10, tsval=7,
                                                     ack=self.una))   # dropped, still reported
        self.verify_ack(self.spec, ExpectedAck(seq=snd, ack=rcv, window=RING, tsecr=0,
                                               sack=(rcv + 100, rcv + 200)))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, rcv, b"c" * 100, tsval=8,
                                                     ack=self.una))
        self.verify_frame(HOST_PORT, rx_data_frame(
            self.spec, 0, b"c" * 100, ChannelFlags.PSH | ChannelFlags.MERGED, rtt=100))
        self.verify_ack(self.spec, ExpectedAck(seq=snd, ack=rcv + 200, window=RING - 200,
                                               tsecr=8))
        tu.verify_no_other_packets(self)


class NoSackBlockWithoutSack(SackTest):
    """A flow that did not negotiate SACK gets no block in its ACKs (RFC 2018 2)."""

    sack = False

    def runTest(self) -> None:
        rcv = self.rcv
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, rcv + 100, b"a" * 50, tsval=5,
                                                     ack=self.una))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 100, b"a" * 50, OOO))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd + 500, ack=rcv, window=RING,
                                               tsecr=0))   # out of order: TS.Recent stays
        tu.verify_no_other_packets(self)
