"""PTF: PacketOut from the controller leaves, unchanged, on the port it names."""

from __future__ import annotations

import ptf.testutils as tu
from scapy.layers.l2 import ARP, Ether

from lib.base_test import OTHER_WIRE_PORT, WIRE_PORT, FastPathTest
from lib.packets import LOCAL_IP, LOCAL_MAC, PEER_IP, PEER_MAC


class PacketOutToEachPort(FastPathTest):
    def runTest(self) -> None:
        for port in (WIRE_PORT, OTHER_WIRE_PORT):
            reply = bytes(Ether(src=LOCAL_MAC, dst=PEER_MAC) / ARP(
                op=2, hwsrc=LOCAL_MAC, psrc=LOCAL_IP, hwdst=PEER_MAC, pdst=PEER_IP))
            self.client.packet_out(reply, egress_port=port, _pad=0)
            self.verify_frame(port, reply)
        tu.verify_no_other_packets(self)
        self.expect_no_packet_in()
