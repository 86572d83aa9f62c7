"""PTF: the transmit fast path (TX_DATA -> segments on the wire, sequence from the host's
stream position, per-flow rate meter) and ACK processing (new ACKs reported to the host with
bytes, window and an RTT sample; duplicate ACKs counted; the third starts a fast retransmit)."""

from __future__ import annotations

import ptf.testutils as tu

from lib.base_test import WIRE_PORT, FastPathTest, next_flow_id, next_generation, on_dpdk
from lib.packets import (PEER_WINDOW, TS_OPTION_OFFSET, ExpectedAck, data_segment, flow_spec, retransmit_frame,
                         rx_data_frame, tx_acked_frame, tx_data_frame)
from nic_contract.constants import HOST_PORT, DropReason, PacketInReason
from nic_contract.nic_host_header import ChannelFlags

RING = 1 << 12


class TransmitTest(FastPathTest):
    """A fresh connection; helpers to send from the host and to ACK as the peer."""

    timestamps = True

    def setUp(self) -> None:
        super().setUp()
        self.spec = self.install_flow(flow_spec(next_flow_id(), next_generation(),
                                                rx_ring_size=RING, timestamps=self.timestamps))
        self.snd = self.spec.tx_start_seq   # our next sequence
        self.rcv = self.spec.rx_start_seq   # what we expect from the peer
        self.tx_offset = 0

    def send_from_host(self, payload: bytes, psh: bool = True) -> int:
        """TX_DATA; check the segment on the wire exactly; return its TSval."""
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, self.tx_offset, payload, psh=psh))
        expected = ExpectedAck(seq=self.snd, ack=self.rcv, window=RING, payload=payload, psh=psh,
                               tsecr=self.ts_recent if self.timestamps else None)
        tsval = self.verify_ack(self.spec, expected)
        self.snd += len(payload)
        self.tx_offset += len(payload)
        return tsval

    ts_recent = 0

    def peer_ack(self, ack: int, *, tsecr: int = 0, flags: str = "A", window: int | None = None,
                 payload: bytes = b"") -> None:
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, payload, flags=flags,
                                                     ack=ack, tsval=900, tsecr=tsecr,
                                                     window=window))
        self.ts_recent = 900


class TxDataBecomesSegment(TransmitTest):
    """TX_DATA leaves as a full segment: addresses, seq, ack, window, PSH, timestamps echoing
    the peer's latest TSval, both checksums (compared byte for byte)."""

    def runTest(self) -> None:
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"hi", tsval=4242))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"hi"))
        self.rcv += 2
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING - 2,
                                               tsecr=4242))
        self.ts_recent = 4242
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"hello, peer"))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING - 2,
                                               tsecr=4242, payload=b"hello, peer", psh=True))
        tu.verify_no_other_packets(self)


class ConsecutiveTxDataAdvanceSeq(TransmitTest):
    def runTest(self) -> None:
        ts1 = self.send_from_host(b"a" * 1000, psh=False)
        ts2 = self.send_from_host(b"b" * 448)
        self.assertGreaterEqual(ts2, ts1)
        tu.verify_no_other_packets(self)


class TxDataWithoutTimestamps(TransmitTest):
    timestamps = False

    def runTest(self) -> None:
        self.send_from_host(b"no options here")
        tu.verify_no_other_packets(self)


class StaleTxDataIsDropped(TransmitTest):
    """TX_DATA for another generation of the flow id never reaches the wire."""

    def runTest(self) -> None:
        before = self.counter("drop_counter", DropReason.STALE_HOST_MESSAGE)
        stale = self.spec.generation % 0xFFFF + 1
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"x" * 10, generation=stale))
        tu.verify_no_other_packets(self)
        after = self.counter("drop_counter", DropReason.STALE_HOST_MESSAGE)
        self.assertEqual(after[0] - before[0], 1)
        self.send_from_host(b"the real one")  # the sequence did not move


class TxDataWithWrongLength(TransmitTest):
    """A payload that is not exactly `length` bytes would get a wrong checksum: exception.
    dpdk: PNA on DPDK has no packet length to compare `length` with, so the segment is sent
    as `length` says (its IPv4 length, checksum and sequence cover the 10 bytes) and the extra
    bytes follow it on the wire, beyond its IPv4 length; no PacketIn."""

    def runTest(self) -> None:
        frame = tx_data_frame(self.spec, 0, b"x" * 10) + b"junk"
        tu.send_packet(self, HOST_PORT, frame)
        if on_dpdk():
            got = self.receive(WIRE_PORT)
            self.assertEqual(got[-4:], b"junk", "the extra bytes follow the segment")
            tsval = int.from_bytes(got[TS_OPTION_OFFSET + 4:TS_OPTION_OFFSET + 8], "big")
            want = bytes(ExpectedAck(seq=self.snd, ack=self.rcv, window=RING, payload=b"x" * 10,
                                     psh=True, tsecr=0).packet(self.spec, tsval))
            self.assertEqual(got[:-4].hex(), want.hex(), "the segment `length` describes")
            tu.verify_no_other_packets(self)
            self.expect_no_packet_in()
            return
        payload, meta = self.expect_packet_in()
        self.assertEqual(meta["reason"], PacketInReason.BAD_HOST_MESSAGE)
        tu.verify_no_other_packets(self)


class NewAckIsReportedWithRtt(TransmitTest):
    """A pure ACK for new data becomes TX_ACKED: cumulative ack, bytes, window, RTT sample."""

    def runTest(self) -> None:
        tsval = self.send_from_host(b"q" * 300)
        self.peer_ack(self.snd, tsecr=tsval)
        rtt = self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd, 300, rtt=rtt))
        self.assertTrue(0 < rtt < 1_000_000, "an RTT sample of under a second (microseconds)")
        tu.verify_no_other_packets(self)


class DuplicateAcksAreCounted(TransmitTest):
    """ACKs that acknowledge nothing new while data is outstanding: counted, not reported
    (below the fast-retransmit threshold)."""

    def runTest(self) -> None:
        self.send_from_host(b"1" * 100)
        self.send_from_host(b"2" * 100)
        first_end = self.spec.tx_start_seq + 100
        self.peer_ack(first_end)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, first_end, 100, rtt=rtt))
        before = self.counter("dupack_counter", self.spec.flow_id)
        for _ in range(2):
            self.peer_ack(first_end)
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter("dupack_counter", self.spec.flow_id)[0] - before[0], 2)


class EceAckIsFlagged(TransmitTest):
    def runTest(self) -> None:
        self.send_from_host(b"e" * 64)
        before = self.counter("ece_ack_counter", self.spec.flow_id)
        self.peer_ack(self.snd, flags="AE")
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd, 64, rtt=rtt, ece=True))
        self.assertEqual(self.counter("ece_ack_counter", self.spec.flow_id)[0] - before[0], 1)
        tu.verify_no_other_packets(self)


class DataCarryingANewAck(TransmitTest):
    """Delivered data that also acknowledges ours: one RX_DATA frame carries both."""

    def runTest(self) -> None:
        tsval = self.send_from_host(b"request")
        self.peer_ack(self.snd, tsecr=tsval, flags="PA", payload=b"response")
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: rx_data_frame(
            self.spec, 0, b"response", acked=len(b"request"), rtt=rtt))
        self.rcv += len(b"response")
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv,
                                               window=RING - len(b"response"), tsecr=900))
        tu.verify_no_other_packets(self)


class WindowUpdateIsReported(TransmitTest):
    """A pure ACK that only changes the window (e.g. reopens it) reaches the host; with data
    in flight the same window again is a duplicate ACK, counted and not reported."""

    def runTest(self) -> None:
        self.peer_ack(self.snd, window=PEER_WINDOW + 5000)
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd, 0,
                                                    window=PEER_WINDOW + 5000))
        una = self.snd
        self.send_from_host(b"w" * 10)
        self.peer_ack(una, window=PEER_WINDOW + 5000)  # same window, data out: a dupack
        tu.verify_no_other_packets(self)


class IdleAckIsReported(TransmitTest):
    """With nothing in flight, a pure ACK that changes nothing (the answer to a keepalive
    probe, RFC 1122 4.2.3.6) still reaches the host: only the host knows it probed."""

    def runTest(self) -> None:
        for _ in range(2):
            self.peer_ack(self.snd)
            self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd, 0))
        tu.verify_no_other_packets(self)


class AckBeyondWhatWasSentIsIgnored(TransmitTest):
    """An ACK beyond snd_nxt changes nothing and draws a challenge ACK (RFC 5961 5.2)."""

    def runTest(self) -> None:
        self.send_from_host(b"z" * 10)
        self.peer_ack(self.snd + 1000)
        # A discarded segment's TSval is not taken (as Linux): no TS.Recent to echo yet.
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               tsecr=0))
        tu.verify_no_other_packets(self)
        self.peer_ack(self.snd)  # the real ACK still counts in full
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd, 10, rtt=rtt))


# ------------------------------------------------------------------------------- loss recovery


class LossRecoveryTest(TransmitTest):
    """Three 100-byte segments out, the first acknowledged: 200 bytes outstanding."""

    def setUp(self) -> None:
        super().setUp()
        for chunk in (b"1", b"2", b"3"):
            self.send_from_host(chunk * 100)
        self.una = self.spec.tx_start_seq + 100
        self.peer_ack(self.una)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.una, 100, rtt=rtt))

    def dupacks(self, count: int) -> None:
        for _ in range(count):
            self.peer_ack(self.una)

    def fast_retransmits(self) -> int:
        return self.counter("fast_retransmit_counter", self.spec.flow_id)[0]


class ThirdDuplicateAckStartsFastRetransmit(LossRecoveryTest):
    """The third duplicate ACK becomes a RETRANSMIT frame naming the position to resume from
    (100: snd_una); the fourth and fifth start nothing more."""

    def runTest(self) -> None:
        before = self.fast_retransmits()
        self.dupacks(2)
        tu.verify_no_other_packets(self)
        self.dupacks(1)
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, self.una))
        self.dupacks(2)
        tu.verify_no_other_packets(self)
        self.assertEqual(self.fast_retransmits() - before, 1)


class FastRetransmitStillWorksPastTwoGibibytes(TransmitTest):
    """recover follows snd_una outside recovery: after snd_una has moved more than 2^31 past
    where recovery last ended, wrapping comparison must not read the old recovery point as
    "ahead" (which kept fast retransmit off for the next 2 GiB)."""

    def send_at(self, position: int, size: int) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"f" * size,
                                                      position=position))
        self.verify_ack(self.spec, ExpectedAck(seq=(self.snd + position) & 0xFFFFFFFF,
                                               ack=self.rcv, window=RING,
                                               payload=b"f" * size, psh=True,
                                               tsecr=self.ts_recent))

    def ack_to(self, position: int, newly: int) -> int:
        una = (self.snd + position) & 0xFFFFFFFF
        self.peer_ack(una)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, una, newly, rtt=rtt))
        return una

    def runTest(self) -> None:
        # Two jumps of 1.5 GiB each (a TX_DATA must be less than 2^31 ahead of snd_una).
        self.send_at(0x60000000, 100)
        self.ack_to(0x60000000 + 100, 0x60000000 + 100)
        self.send_at(0xC0000000, 200)
        una = self.ack_to(0xC0000000 + 100, 0x60000000)
        for _ in range(3):
            self.peer_ack(una)
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, una))
        tu.verify_no_other_packets(self)


class ResendCarriesItsOwnSequence(LossRecoveryTest):
    """Going back: TX_DATA for stream position 100 leaves with seq tx_start + 100, and snd_nxt
    stays at the highest byte sent (the next ACK we send carries seq tx_start + 300)."""

    def runTest(self) -> None:
        self.dupacks(3)
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, self.una))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 100, b"2" * 100, position=100))
        self.verify_ack(self.spec, ExpectedAck(seq=self.una, ack=self.rcv, window=RING,
                                               payload=b"2" * 100, psh=True, tsecr=900))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"x", ack=self.una,
                                                     tsval=901))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"x"))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv + 1,
                                               window=RING - 1, tsecr=901))
        tu.verify_no_other_packets(self)


class OneFastRetransmitPerWindow(LossRecoveryTest):
    """RFC 6582: after a fast retransmit, duplicate ACKs start another only once snd_una has
    passed everything sent before it (the duplicates of a go-back-N draw dup ACKs too)."""

    def runTest(self) -> None:
        before = self.fast_retransmits()
        self.dupacks(3)
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, self.una))
        self.una = self.snd  # the peer had the rest: everything sent so far is acknowledged
        self.peer_ack(self.una)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.una, 200, rtt=rtt))
        self.send_from_host(b"4" * 100)
        self.dupacks(3)  # duplicates of the resend: no new fast retransmit
        tu.verify_no_other_packets(self)
        self.send_from_host(b"5" * 100)
        self.una += 100  # new data acknowledged beyond the recovery point
        self.peer_ack(self.una)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.una, 100, rtt=rtt))
        self.dupacks(3)
        self.verify_frame(HOST_PORT, retransmit_frame(self.spec, self.una))
        self.assertEqual(self.fast_retransmits() - before, 2)


class TimeoutResendMovesTheRecoveryPoint(LossRecoveryTest):
    """A go-back-N after a timeout (flag RTO) tells the NIC that duplicate ACKs of what it
    resends are expected: three of them start no fast retransmit."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 100, b"2" * 100, position=100,
                                                      rto=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.una, ack=self.rcv, window=RING,
                                               payload=b"2" * 100, psh=True, tsecr=900))
        self.dupacks(3)
        tu.verify_no_other_packets(self)


class ResendOfAcknowledgedDataRemindsTheHost(LossRecoveryTest):
    """TX_DATA wholly below snd_una (the host missed a TX_ACKED that bmv2 dropped) does not
    leave: the NIC answers with a TX_ACKED naming snd_una, payload cut off."""

    def runTest(self) -> None:
        before = self.counter("drop_counter", DropReason.OLD_DATA)
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"1" * 100, position=0))
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.una, 0, reminder=True))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter("drop_counter", DropReason.OLD_DATA)[0] - before[0], 1)


class WindowProbeBelowSndUnaIsSent(LossRecoveryTest):
    """A window probe is one byte just below snd_una on purpose: it leaves as a segment, and
    snd_nxt does not move (the ACK that follows still carries the highest sequence sent)."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 99, b"1", position=99,
                                                      psh=False, probe=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.una - 1, ack=self.rcv, window=RING,
                                               payload=b"1", tsecr=900))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"y", ack=self.una,
                                                     tsval=902))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"y"))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv + 1,
                                               window=RING - 1, tsecr=902))
        tu.verify_no_other_packets(self)


# ------------------------------------------------------------------------------ half-close

class FinRidesOnTxData(TransmitTest):
    """TX_DATA flagged FIN: the segment carries FIN after its payload; the FIN takes the next
    sequence number, so every later ACK we generate carries seq past it (RFC 9293: what the
    peer expects after our FIN), and the peer's data keeps flowing in (half-close)."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"last words", fin=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               payload=b"last words", psh=True, fin=True,
                                               tsecr=0))
        fin_end = self.snd + len(b"last words") + 1
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"more", tsval=77))
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"more"))
        self.verify_ack(self.spec, ExpectedAck(seq=fin_end, ack=self.rcv + 4, window=RING - 4,
                                               tsecr=77))
        tu.verify_no_other_packets(self)


class EmptyFinAfterAcknowledgedData(TransmitTest):
    """A FIN alone (length 0) once the data is acknowledged is sent, not mistaken for a resend
    of acknowledged data; the peer's ACK of it reaches the host flagged FIN, counting no
    byte, with snd_una past the FIN."""

    def runTest(self) -> None:
        tsval = self.send_from_host(b"d" * 200)
        self.peer_ack(self.snd, tsecr=tsval)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd, 200, rtt=rtt))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 200, b"", psh=False, fin=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               fin=True, tsecr=900))
        self.peer_ack(self.snd + 1)
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd + 1, 0, fin=True))
        tu.verify_no_other_packets(self)


class DataAckingOurFinIsDeliveredAndSaysSo(TransmitTest):
    """The peer's data segment that also acknowledges our FIN: payload to the host as usual,
    its RX_DATA flagged FIN (our FIN is acknowledged), the data counted without the FIN."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"abc", fin=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               payload=b"abc", psh=True, fin=True, tsecr=0))
        tu.send_packet(self, WIRE_PORT, data_segment(self.spec, self.rcv, b"reply",
                                                     ack=self.snd + 4, tsval=5, tsecr=0))
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: rx_data_frame(
            self.spec, 0, b"reply", ChannelFlags.PSH | ChannelFlags.FIN, acked=3, rtt=rtt))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd + 4, ack=self.rcv + 5,
                                               window=RING - 5, tsecr=5))
        tu.verify_no_other_packets(self)


class ResendAfterOurFinWasAckedRemindsWithFin(TransmitTest):
    """A resend of data below snd_una after the FIN was acknowledged: the reminder names
    snd_una (past the FIN) and is flagged FIN, so the host does not count the FIN as data."""

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"xy", fin=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               payload=b"xy", psh=True, fin=True, tsecr=0))
        self.peer_ack(self.snd + 3)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd + 3, 2, fin=True, rtt=rtt))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"xy", position=0))
        self.verify_frame(HOST_PORT, tx_acked_frame(self.spec, self.snd + 3, 0, reminder=True,
                                                    fin=True))
        tu.verify_no_other_packets(self)


# ------------------------------------------------------------------------------------- ECN

class EcnFlowSendsNewDataEctOnly(TransmitTest):
    """With ECN negotiated, new data leaves ECT(0); a resend, a FIN alone and the window probe
    do not (RFC 3168 6.1.4-6.1.6); TX_DATA flagged CWR sets CWR."""

    def setUp(self) -> None:
        FastPathTest.setUp(self)
        self.spec = self.install_flow(flow_spec(next_flow_id(), next_generation(),
                                                rx_ring_size=RING, ecn=True))
        self.snd, self.rcv, self.tx_offset = self.spec.tx_start_seq, self.spec.rx_start_seq, 0

    def runTest(self) -> None:
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"n" * 100, cwr=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               payload=b"n" * 100, psh=True, cwr=True,
                                               ect=True, tsecr=0))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 0, b"n" * 100, position=0))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               payload=b"n" * 100, psh=True, tsecr=0))
        tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, 100, b"", psh=False,
                                                      fin=True))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd + 100, ack=self.rcv, window=RING,
                                               fin=True, tsecr=0))
        tu.verify_no_other_packets(self)


# ------------------------------------------------------------------------------ rate limiting


class RateMeterDropsOutOfProfileSegments(TransmitTest):
    """The flow's tx_rate meter (set over P4Runtime like the slow path does) passes a burst,
    then drops what exceeds the rate, counted as RATE_LIMITED; a reset entry is unlimited
    again; other flows are unlimited."""

    BURST = 3000      # bytes: two 1000-byte segments fit (1038-byte host frames), not three
    RATE = 1000       # bytes per second: nothing refills within the test

    def runTest(self) -> None:
        p4info = self.client.p4info
        self.client.modify([p4info.meter_entry("tx_rate", self.spec.flow_id, self.RATE,
                                               self.BURST, self.RATE, self.BURST)])
        before = self.counter("drop_counter", DropReason.RATE_LIMITED)
        self.send_from_host(b"a" * 1000)
        self.send_from_host(b"b" * 1000)
        for _ in range(3):
            tu.send_packet(self, HOST_PORT, tx_data_frame(self.spec, self.tx_offset, b"c" * 1000))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter("drop_counter", DropReason.RATE_LIMITED)[0] - before[0], 3)
        # Back to the default (what the runtime writes for "unlimited"): everything passes.
        self.client.modify([p4info.meter_reset_entry("tx_rate", self.spec.flow_id)])
        for _ in range(3):
            self.send_from_host(b"e" * 1000)
        other = self.install_flow(flow_spec(next_flow_id(), next_generation(), local_port=5002,
                                            rx_ring_size=RING))
        for i in range(5):
            tu.send_packet(self, HOST_PORT, tx_data_frame(other, i * 1000, b"d" * 1000))
            self.receive(WIRE_PORT)
        tu.verify_no_other_packets(self)


class BlindAckOutsideTheWindowIsIgnored(TransmitTest):
    """RFC 9293 3.10.7.4 / RFC 5961 5: a segment whose sequence misses our receive window
    (a blind attacker's guess) does not get its ACK used, however plausible the ACK: the data
    in flight stays unacknowledged; the segment is answered with an ACK, and the real ACK
    later still counts."""

    def runTest(self) -> None:
        self.send_from_host(b"w" * 500)
        before = self.counter("new_ack_counter", self.spec.flow_id)
        forged = data_segment(self.spec, self.rcv + (1 << 20), b"evil", ack=self.snd, tsval=900)
        tu.send_packet(self, WIRE_PORT, forged)
        # Outside the window, its TSval is not taken: ACKs echo TS.Recent (none yet).
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               tsecr=0))
        tu.verify_no_other_packets(self)   # no TX_ACKED: snd_una did not move
        self.assertEqual(self.counter("new_ack_counter", self.spec.flow_id), before)
        self.peer_ack(self.snd)
        self.verify_frame_with_rtt(HOST_PORT, lambda rtt: tx_acked_frame(
            self.spec, self.snd, 500, rtt=rtt))


class AckOfDataNeverSentDiscardsTheSegment(TransmitTest):
    """RFC 5961 5.2: an ACK beyond snd_nxt discards the segment, its data too, and draws a
    challenge ACK; the drop is counted."""

    def runTest(self) -> None:
        self.send_from_host(b"s" * 100)
        before = self.counter("drop_counter", DropReason.BAD_ACK)
        bogus = data_segment(self.spec, self.rcv, b"payload", ack=self.snd + 1000, tsval=901)
        tu.send_packet(self, WIRE_PORT, bogus)
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               tsecr=0))   # a discarded TSval is not taken
        tu.verify_no_other_packets(self)   # no RX_DATA to the host
        self.assertEqual(self.counter("drop_counter", DropReason.BAD_ACK)[0], before[0] + 1)


class AckOlderThanTheMaxWindowDiscardsTheSegment(TransmitTest):
    """RFC 5961 5.2: an ACK older than snd_una - MAX.SND.WND (at most 65535 << the peer's
    window scale: 65535 here) discards the segment, its data too, with a challenge ACK; an
    old ACK within that range does not stop the segment's data."""

    def runTest(self) -> None:
        before = self.counter("drop_counter", DropReason.BAD_ACK)
        una = self.spec.tx_start_seq   # nothing acknowledged yet
        blind = data_segment(self.spec, self.rcv, b"blind", ack=(una - 70000) % 2**32, tsval=901)
        tu.send_packet(self, WIRE_PORT, blind)
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                               tsecr=0))
        tu.verify_no_other_packets(self)   # no RX_DATA to the host
        self.assertEqual(self.counter("drop_counter", DropReason.BAD_ACK)[0], before[0] + 1)
        late = data_segment(self.spec, self.rcv, b"late", ack=(una - 60000) % 2**32, tsval=902)
        tu.send_packet(self, WIRE_PORT, late)
        self.verify_frame(HOST_PORT, rx_data_frame(self.spec, 0, b"late"))
        self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv + 4, window=RING - 4,
                                               tsecr=902))
        tu.verify_no_other_packets(self)
        self.assertEqual(self.counter("drop_counter", DropReason.BAD_ACK)[0], before[0] + 1)


class ChallengeAcksAreRateLimited(TransmitTest):
    """RFC 5961 7: the challenge_ack_rate meter (--challenge-ack-rate) bounds challenge ACKs:
    with a burst of 2 at 1/s, three bad ACKs in a row draw two, and all three are counted."""

    def runTest(self) -> None:
        self.client.modify([self.p4info.meter_entry("challenge_ack_rate", 0, 1, 2, 1, 2)])
        try:
            self.send_from_host(b"c" * 10)
            before = self.counter("drop_counter", DropReason.BAD_ACK)
            for _ in range(3):
                self.peer_ack(self.snd + 1000)
            for _ in range(2):
                self.verify_ack(self.spec, ExpectedAck(seq=self.snd, ack=self.rcv, window=RING,
                                                       tsecr=0))
            tu.verify_no_other_packets(self)
            self.assertEqual(self.counter("drop_counter", DropReason.BAD_ACK)[0], before[0] + 3)
        finally:
            self.client.modify([self.p4info.meter_reset_entry("challenge_ack_rate", 0)])
