"""PTF: PacketOut from the controller leaves, unchanged, on the port it names."""

from __future__ import annotations

import ptf.testutils as tu
from scapy.layers.l2 import ARP, Ether

from lib.base_test import (OTHER_WIRE_PORT, WIRE_PORT, FastPathTest, next_flow_id,
                           next_generation)
from lib.packets import (LOCAL_IP, LOCAL_MAC, PEER_IP, PEER_MAC, data_segment, flow_spec,
                         rx_data_frame)
from nic_contract.constants import HOST_PORT, PacketInReason


class PacketOutToEachPort(FastPathTest):
    def runTest(self) -> None:
        for port in (WIRE_PORT, OTHER_WIRE_PORT):
            reply = bytes(Ether(src=LOCAL_MAC, dst=PEER_MAC) / ARP(
                op=2, hwsrc=LOCAL_MAC, psrc=LOCAL_IP, hwdst=PEER_MAC, pdst=PEER_IP))
            self.client.packet_out(reply, egress_port=port, _pad=0)
            self.verify_frame(port, reply)
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()


class ReinjectedSegmentIsHandledAsArrived(FastPathTest):
    """A PacketOut flagged reinject is a wire segment handed back to the fast path (it raced
    its flow's installation): delivered to the host as if it had arrived on the port it
    names; the slow path sends its ACK, so none leaves here."""

    def runTest(self) -> None:
        spec = self.install_flow(flow_spec(next_flow_id(), next_generation()))
        segment = bytes(data_segment(spec, spec.rx_start_seq, b"raced the install"))
        self.client.packet_out(segment, egress_port=WIRE_PORT, reinject=1)
        self.verify_frame(HOST_PORT, rx_data_frame(spec, 0, b"raced the install"))
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()


class ReinjectedSegmentOfNoFlowIsPuntedFromItsPort(FastPathTest):
    """A reinjected segment the fast path cannot take goes back to the CPU with the wire port
    it names, like any segment of that port (never with the CPU port)."""

    def runTest(self) -> None:
        spec = flow_spec(next_flow_id(), next_generation())   # not installed
        segment = bytes(data_segment(spec, spec.rx_start_seq, b"nobody"))
        self.client.packet_out(segment, egress_port=OTHER_WIRE_PORT, reinject=1)
        payload, meta = self.expect_packet_in()
        self.assertEqual(meta["reason"], PacketInReason.UNKNOWN_FLOW)
        self.assertEqual(meta["ingress_port"], OTHER_WIRE_PORT)
        self.assertEqual(payload, segment)
        tu.verify_no_other_packets(self)
