"""runtime.cpu_interface on a real veth pair (root): PacketIns read in the event loop with their
packet_in header decoded, PacketOuts sent behind a packet_out header."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from bmv2_env import topology
from nic_contract.controller_header import ControllerHeader
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime.cpu_interface import CpuInterface

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="veths need root")
P4INFO_ = P4Info.from_file(P4INFO)
ETH_P_ALL = 3


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    ours, switch = f"ci{os.getpid() % 10000}r", f"ci{os.getpid() % 10000}s"
    topology.create_pair(switch, ours, mtu=topology.CPU_LINK_MTU)
    try:
        yield ours, switch
    finally:
        topology.delete_link(switch)


def _switch_socket(ifname: str) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((ifname, 0))
    sock.settimeout(2)
    return sock


def test_packet_ins_and_outs_cross_the_veth(veth: tuple[str, str]) -> None:
    ours, switch = veth
    pin = ControllerHeader.of(P4INFO_.lookup("controller_packet_metadata", "packet_in"))
    pout = ControllerHeader.of(P4INFO_.lookup("controller_packet_metadata", "packet_out"))
    frames = [bytes([i]) * 1514 for i in range(1, 4)]   # a full frame fits with its header
    cpu = CpuInterface(ours, P4INFO_)
    side = _switch_socket(switch)

    async def scenario() -> list:
        got: list = []
        for i, frame in enumerate(frames):
            side.send(pin.pack_named(ingress_port=1, reason=i, tsval=1000 + i) + frame)
        async for batch in cpu.batches():
            got += batch
            if len(got) == len(frames):
                break
        cpu.send(b"\x07" * 100, egress_port=2, reinject=1)
        return got

    got = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert [g.frame for g in got] == frames
    assert [(g.metadata["ingress_port"], g.metadata["reason"], g.metadata["tsval"])
            for g in got] == [(1, 0, 1000), (1, 1, 1001), (1, 2, 1002)]
    out, address = side.recvfrom(65536)
    while address[2] == socket.PACKET_OUTGOING:   # our own sends, looped back
        out, address = side.recvfrom(65536)
    assert out == pout.pack_named(egress_port=2, reinject=1) + b"\x07" * 100
    cpu.close()
    side.close()
