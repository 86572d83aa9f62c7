"""PacketIn/PacketOut on the CPU port's network interface, for targets that expose the CPU port
as one (Tofino's CPU PCIe port and many SmartNICs' exception paths are netdevs; bmv2, softnic
and dpdk given `-i 255@IF`): each frame carries the packet_in or packet_out header in front,
as the deparser emits it and the parser reads it (nic_contract.controller_header). No gRPC
message, no thread: the socket is read in the event loop, a batch per wake-up.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import AsyncIterator
from dataclasses import dataclass

from nic_contract.controller_header import ControllerHeader
from nic_contract.host_port import HostPort
from nic_contract.p4rt.p4info import P4Info

log = logging.getLogger(__name__)

ETH_P_ALL = 3
SEND_WAIT_S = 0.01   # a full socket buffer: wait this long for room, then drop (counted)


@dataclass(frozen=True)
class CpuFrame:
    """One frame the fast path sent to the CPU port, its packet_in header decoded."""

    frame: bytes
    metadata: dict[str, int]


class CpuInterface:
    """The CPU port's interface: PacketIns as an async stream of batches, PacketOuts sent."""

    def __init__(self, ifname: str, p4info: P4Info) -> None:
        self.ifname = ifname
        self.packet_in = ControllerHeader.of(p4info.lookup("controller_packet_metadata",
                                                           "packet_in"))
        self.packet_out = ControllerHeader.of(p4info.lookup("controller_packet_metadata",
                                                            "packet_out"))
        self.link = HostPort(ifname, ethertype=ETH_P_ALL)
        self.malformed = self.send_drops = self.kernel_drops = 0
        self._fd = self.link.fileno()
        self._ready = asyncio.Event()
        self._reading: asyncio.AbstractEventLoop | None = None
        self._closing = False

    async def batches(self) -> AsyncIterator[list[CpuFrame]]:
        """The PacketIns waiting at each wake-up of the event loop, until close()."""
        self._reading = asyncio.get_running_loop()
        self._reading.add_reader(self._fd, self._ready.set)
        try:
            while not self._closing:
                frames = self.link.recv_batch()
                if not frames:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                batch = [f for f in map(self._decode, frames) if f is not None]
                if batch:
                    yield batch
        finally:
            self._stop_reading()

    def _stop_reading(self) -> None:
        if self._reading is not None and not self._reading.is_closed():
            self._reading.remove_reader(self._fd)
        self._reading = None

    def _decode(self, frame: bytes) -> CpuFrame | None:
        size = self.packet_in.nbytes
        if len(frame) <= size:
            self.malformed += 1
            return None
        return CpuFrame(frame[size:], self.packet_in.unpack_named(frame))

    def send(self, frame: bytes, **metadata: int) -> None:
        """A PacketOut: `frame` behind a packet_out header of `metadata` by field name."""
        out = self.packet_out.pack_named(**metadata) + frame
        if self.link.send(out):
            return
        select.select([], [self.link], [], SEND_WAIT_S)   # full buffer: brief wait for room
        if not self.link.send(out):
            self.send_drops += 1
            log.warning("PacketOut dropped: the CPU interface %s has no room", self.ifname)

    def counters(self) -> dict[str, int]:
        """What was lost or refused on the interface so far."""
        if not self._closing:
            self.kernel_drops += self.link.kernel_drops()   # PacketIns the socket had no room for
        return {"cpu_interface_kernel_drops": self.kernel_drops,
                "cpu_interface_send_drops": self.send_drops,
                "cpu_interface_malformed": self.malformed}

    def close(self) -> None:
        """Stop reading (batches() ends) and close the socket."""
        self._closing = True
        self._stop_reading()
        self._ready.set()
        self.link.close()
