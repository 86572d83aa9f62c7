"""PTF: everything the fast path does not handle reaches the CPU port with its reason (and
bumps that reason's counter), or is dropped and counted; none of it reaches the host port."""

from __future__ import annotations

import ptf.testutils as tu
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.packet import Packet, Raw

from lib.base_test import WIRE_PORT, FastPathTest, next_flow_id, next_generation, on_dpdk
from lib.packets import (LOCAL_IP, LOCAL_MAC, PEER_IP, PEER_MAC, ExpectedAck, data_segment,
                         flow_spec, rx_data_frame)
from nic_contract.constants import ETHERTYPE_NIC_HOST, HOST_PORT, DropReason, PacketInReason
from nic_contract.nic_host_header import NicHostMessage, Opcode

EXCEPTIONS = "exception_counter"
DROPS = "drop_counter"


class ExceptionTest(FastPathTest):
    """Sends a packet that must be punted with a reason, and checks PacketIn and counter."""

    def setUp(self) -> None:
        super().setUp()
        # A known connection, so that only the property under test makes the packet special.
        self.spec = self.install_flow(flow_spec(next_flow_id(), next_generation()))

    def segment(self, **kwargs) -> Packet:
        return data_segment(self.spec, self.spec.rx_start_seq, b"payload", **kwargs)

    def assert_punted(self, pkt: bytes | Packet, reason: PacketInReason,
                      port: int = WIRE_PORT) -> None:
        before = self.counter(EXCEPTIONS, reason)
        tu.send_packet(self, port, pkt)
        payload, metadata = self.expect_packet_in()
        self.assertEqual(metadata["reason"], reason,
                         f"expected reason {reason.name}, got {metadata['reason']}")
        self.assertEqual(metadata["ingress_port"], port)
        self.assertEqual(payload, bytes(pkt), "PacketIn must carry the packet unchanged")
        tu.verify_no_other_packets(self)
        after = self.counter(EXCEPTIONS, reason)
        self.assertEqual(after[0] - before[0], 1, f"{reason.name} counter packets")
        self.assertEqual(after[1] - before[1], len(bytes(pkt)), f"{reason.name} counter bytes")

    def assert_processed(self, pkt: bytes | Packet, host_frame: bytes) -> None:
        """dpdk: `pkt`, a flawed copy of the 7-byte segment self.segment(), is processed as
        that segment: `host_frame` reaches the host port and the segment is ACKed, with no
        PacketIn and no BAD_TCP_CHECKSUM or BAD_LENGTH counted."""
        before = [self.counter(EXCEPTIONS, r)[0]
                  for r in (PacketInReason.BAD_TCP_CHECKSUM, PacketInReason.BAD_LENGTH)]
        tu.send_packet(self, WIRE_PORT, pkt)
        self.verify_frame(HOST_PORT, host_frame)
        self.verify_ack(self.spec, ExpectedAck(seq=self.spec.tx_start_seq,
                                               ack=self.spec.rx_start_seq + 7,
                                               window=self.spec.rx_ring_size - 7, tsecr=777))
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()
        after = [self.counter(EXCEPTIONS, r)[0]
                 for r in (PacketInReason.BAD_TCP_CHECKSUM, PacketInReason.BAD_LENGTH)]
        self.assertEqual(after, before, "no exception counted")

    def assert_dropped(self, pkt: bytes | Packet, reason: DropReason,
                       port: int = WIRE_PORT) -> None:
        before = self.counter(DROPS, reason)
        tu.send_packet(self, port, pkt)
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()
        self.assertEqual(self.counter(DROPS, reason)[0] - before[0], 1, f"{reason.name} drops")


class Arp(ExceptionTest):
    def runTest(self) -> None:
        arp = Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
            op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=LOCAL_IP)
        self.assert_punted(arp, PacketInReason.ARP)


class UnknownFlow(ExceptionTest):
    """Data for a connection with no entry goes to the CPU, never to the host port."""

    def runTest(self) -> None:
        other = flow_spec(next_flow_id(), next_generation(), peer_port=40001)
        self.assert_punted(data_segment(other, 1000, b"who am i"), PacketInReason.UNKNOWN_FLOW)


class Syn(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="S"), PacketInReason.SYN)


class SynAckHasAReasonOfItsOwn(ExceptionTest):
    """A SYN-ACK answers our own open: metered apart from SYNs, so a SYN flood cannot starve
    our connects."""

    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="SA"), PacketInReason.SYN_ACK)


class Fin(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="FA"), PacketInReason.FIN)


class Rst(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="R"), PacketInReason.RST)


class Ipv4Options(ExceptionTest):
    def runTest(self) -> None:
        pkt = self.segment()
        pkt[IP].options = [b"\x94\x04\x00\x00"]  # Router Alert
        self.assert_punted(Ether(bytes(pkt)), PacketInReason.IPV4_OPTIONS)


class Ipv4Fragment(ExceptionTest):
    def runTest(self) -> None:
        pkt = self.segment()
        pkt[IP].flags = "MF"
        self.assert_punted(Ether(bytes(pkt)), PacketInReason.IPV4_FRAGMENT)


class UnusualTcpOptions(ExceptionTest):
    """Options other than NOP,NOP,Timestamps (here MSS on a data segment) are exceptions."""

    def runTest(self) -> None:
        self.assert_punted(self.segment(options=[("MSS", 1460)]), PacketInReason.TCP_OPTIONS)


class TimestampsInAnotherLayout(ExceptionTest):
    """Timestamps not preceded by two NOPs are not Linux's layout: exception."""

    def runTest(self) -> None:
        opts = [("Timestamp", (1, 0)), ("NOP", None), ("NOP", None)]
        self.assert_punted(self.segment(options=opts), PacketInReason.TCP_OPTIONS)


class UnusualTcpFlags(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="PAU"), PacketInReason.TCP_FLAGS)


class DataWithoutAck(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(flags="P"), PacketInReason.TCP_FLAGS)


class BadIpv4Checksum(ExceptionTest):
    def runTest(self) -> None:
        pkt = Ether(bytes(self.segment()))
        pkt[IP].chksum ^= 0x00FF
        self.assert_punted(pkt, PacketInReason.BAD_IPV4_CHECKSUM)


class BadTcpChecksum(ExceptionTest):
    """A corrupted segment of a known flow is not delivered (and not ACKed).
    dpdk: delivered and ACKed. PNA's InternetChecksum on DPDK sums header fields only, never
    payload, so the TCP checksum cannot be verified; the port's RX checksum check is trusted,
    as a NIC's RX checksum offload is (docs/ARCHITECTURE.md, "PNA / DPDK target")."""

    def runTest(self) -> None:
        pkt = Ether(bytes(self.segment()))
        pkt[TCP].chksum ^= 0x0F0F
        if on_dpdk():
            self.assert_processed(pkt, rx_data_frame(self.spec, 0, b"payload"))
            return
        self.assert_punted(pkt, PacketInReason.BAD_TCP_CHECKSUM)


class BadTcpChecksumInPayload(ExceptionTest):
    """A flipped payload byte (headers intact) is caught by the TCP checksum too.
    dpdk: the corrupted payload is delivered and ACKed (no TCP checksum verification, as in
    BadTcpChecksum)."""

    def runTest(self) -> None:
        raw = bytearray(bytes(self.segment()))
        raw[-1] ^= 0x01
        if on_dpdk():
            self.assert_processed(bytes(raw), rx_data_frame(self.spec, 0, b"payloae"))
            return
        self.assert_punted(bytes(raw), PacketInReason.BAD_TCP_CHECKSUM)


class IpLengthBeyondFrame(ExceptionTest):
    """IPv4 total length larger than the frame (a truncated packet).
    dpdk: processed as the IPv4 length says. PNA on DPDK has no packet length (no
    BAD_LENGTH check is possible): the RX_DATA header says 7 bytes, the 4 the frame has follow
    it, and the 7 bytes are ACKed."""

    def runTest(self) -> None:
        raw = bytes(self.segment())
        if on_dpdk():
            self.assert_processed(raw[:-3], rx_data_frame(self.spec, 0, b"payload")[:-3])
            return
        self.assert_punted(raw[:-3], PacketInReason.BAD_LENGTH)


class TruncatedHeaders(ExceptionTest):
    """A frame that ends inside the TCP header.
    dpdk: DPDK's extract does not check the packet's length, so the parser reads the missing
    bytes; the runner zeroes what follows every frame (p4tas_swx.c, PARSE_REACH), so they read
    as 0: TCP flags 0 (no ACK) make it TCP_FLAGS, its bytes counted as its IPv4 length says."""

    def runTest(self) -> None:
        frame = bytes(self.segment())[:14 + 20 + 10]
        if on_dpdk():
            before = self.counter(EXCEPTIONS, PacketInReason.TCP_FLAGS)
            tu.send_packet(self, WIRE_PORT, frame)
            payload, metadata = self.expect_packet_in()
            self.assertEqual(metadata["reason"], PacketInReason.TCP_FLAGS)
            self.assertEqual(payload, frame, "PacketIn must carry the frame unchanged")
            tu.verify_no_other_packets(self)
            after = self.counter(EXCEPTIONS, PacketInReason.TCP_FLAGS)
            ip_len = int.from_bytes(frame[16:18], "big")
            self.assertEqual((after[0] - before[0], after[1] - before[1]), (1, 14 + ip_len))
            return
        self.assert_punted(frame, PacketInReason.BAD_LENGTH)


class BadHostMessage(ExceptionTest):
    """A host-port frame with an unknown opcode is reported, not acted on."""

    def runTest(self) -> None:
        frame = bytearray(NicHostMessage(Opcode.RX_CONSUMED, self.spec.flow_id,
                                         self.spec.generation, count=10).encode())
        frame[14] = 0x7F  # opcode
        self.assert_punted(bytes(frame), PacketInReason.BAD_HOST_MESSAGE, port=HOST_PORT)


class NonChannelFrameOnHostPort(ExceptionTest):
    def runTest(self) -> None:
        self.assert_punted(self.segment(), PacketInReason.BAD_HOST_MESSAGE, port=HOST_PORT)


class ChannelFrameFromWireIsNotTrusted(ExceptionTest):
    """The wire cannot forge host messages: the channel's EtherType from a wire port is
    dropped as non-IP, never parsed as RX_CONSUMED."""

    def runTest(self) -> None:
        frame = NicHostMessage(Opcode.RX_CONSUMED, self.spec.flow_id, self.spec.generation,
                               count=1 << 20).encode()
        self.assertEqual(int.from_bytes(frame[12:14], "big"), ETHERTYPE_NIC_HOST)
        self.assert_dropped(frame, DropReason.NOT_IP)


class Ipv6IsDropped(ExceptionTest):
    def runTest(self) -> None:
        pkt = Ether(src=PEER_MAC, dst=LOCAL_MAC) / IPv6() / UDP() / Raw(b"x")
        self.assert_dropped(pkt, DropReason.NOT_IP)


class UdpIsDropped(ExceptionTest):
    def runTest(self) -> None:
        pkt = Ether(src=PEER_MAC, dst=LOCAL_MAC) / IP(src=PEER_IP, dst=LOCAL_IP) / UDP() / Raw(b"x")
        self.assert_dropped(pkt, DropReason.NOT_TCP)


class PuntsBeyondTheirRateAreDropped(ExceptionTest):
    """The punt_rate meter (what the runtime configures with --punt-rate): punts of a reason
    beyond its rate are dropped in the fast path and counted as PUNT_LIMITED; other reasons
    are not affected. (bmv2's and softnic's meters: a burst of 2 packets, 1 per second.)"""

    def runTest(self) -> None:
        reason = PacketInReason.TCP_FLAGS
        self.client.modify([self.p4info.meter_entry("punt_rate", reason, 1, 2, 1, 2)])
        try:
            before = self.counter(DROPS, DropReason.PUNT_LIMITED)
            for _ in range(8):
                tu.send_packet(self, WIRE_PORT, self.segment(flags="AU"))   # URG: punted
            punted = 0
            while self.client.packet_in(0.5) is not None:
                punted += 1
            limited = self.counter(DROPS, DropReason.PUNT_LIMITED)[0] - before[0]
            self.assertLessEqual(punted, 3, "the meter lets its burst through, not the flood")
            self.assertEqual(punted + limited, 8, "every packet punted or counted")
            arp = Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op=1, hwsrc=PEER_MAC, psrc=PEER_IP, pdst=LOCAL_IP)
            self.assert_punted(arp, PacketInReason.ARP)   # another reason still passes
        finally:
            self.client.modify([self.p4info.meter_reset_entry("punt_rate", reason)])
