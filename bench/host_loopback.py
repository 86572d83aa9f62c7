"""bench_host's stand-in for the target and the network, in the runtime's process: a host-port
link (a FrameLink) that turns every TX_DATA into its TX_ACKED at once and feeds RX_DATA as
fast as the RX window allows, and a datapath whose PacketOuts a peer answers (SYN-ACK -> ACK,
our FIN -> its FIN). The peer opens every connection (the application listens) and plays one
workload per connection: bulk receive (N bytes of RX_DATA, the peer's FIN, until the
application answers), bulk send (count TX_DATA until N bytes), or closed-loop RPC (one
request outstanding, the response's TX_DATA answered with its TX_ACKED and the next request).

Frames are built with struct and one concatenation each, and the flow's numbers (flow id,
generation, TX start sequence, RX ring) are read from the bridge's channel once the flow is
installed, as a NIC has them from the flow's table entries."""

from __future__ import annotations

import asyncio
import collections
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from nic_contract.constants import ETHERTYPE_NIC_HOST, PacketInReason
from nic_contract.flow_entries import FlowTuple
from nic_contract.nic_host_header import ETH_HEADER, NIC_HOST_HEADER, ChannelFlags, Opcode
from runtime.connection_control import ConnectionControl
from runtime.datapath import PacketIn, SwitchClock
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment, parse_segment

LOCAL_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_IP, PEER_IP = "10.0.0.1", "10.0.0.2"
MAX_PAYLOAD = 1500 - NIC_HOST_HEADER.size   # the host port's payload at MTU 1500
PEER_WINDOW, PEER_WSCALE = 65535, 7         # the peer's raw window and shift: 8 MiB
U32 = 0xFFFFFFFF
_ETH = ETH_HEADER.pack(b"\0" * 6, b"\0" * 6, ETHERTYPE_NIC_HOST)
_HEADER_AT = ETH_HEADER.size
_PSH = int(ChannelFlags.PSH)
_FIN = int(ChannelFlags.FIN)


def _frame(opcode: int, flags: int, gen: int, flow_id: int, offset: int, window: int = 0,
           count: int = 0, payload: bytes = b"") -> bytes:
    return _ETH + NIC_HOST_HEADER.pack(opcode, flags, gen, flow_id, offset, len(payload),
                                       window, count, 0) + payload


@dataclass(eq=False)
class PeerFlow:
    """One connection as the peer and the NIC see it."""

    port: int                  # the peer's port
    irs: int                   # the peer's initial sequence number
    app_port: int
    established: asyncio.Event = field(default_factory=asyncio.Event)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    flow_id: int = -1
    gen: int = 0
    mss: int = 0
    tx_start: int = 0          # sequence number of TX stream position 0
    rx_mask: int = 0
    rx_pos: int = 0            # the RX ring position the NIC writes next
    rx_window: int = 0         # RX ring bytes free as the NIC knows it
    rx_sent: int = 0           # payload bytes delivered
    rx_todo: int = 0           # bulk receive: bytes still to deliver
    rx_goal: int = 0           # bulk receive: bytes to deliver (done at the answer)
    tx_bytes: int = 0
    tx_acked_end: int = 0      # TX stream position acknowledged
    tx_goal: int = 0           # bulk send: done once this many arrived
    first_at: float | None = None
    done_at: float | None = None
    rpc: "RpcState | None" = None
    fin_sent: bool = False

    @property
    def tuple(self) -> FlowTuple:
        return FlowTuple(LOCAL_IP, self.app_port, PEER_IP, self.port)

    def segment(self, flags: TcpFlags, ack: int, options: TcpOptions | None = None) -> bytes:
        """A control segment of the peer at its current sequence number."""
        seq = (self.irs + 1 + self.rx_sent + (1 if self.fin_sent else 0)) & U32
        if flags & TcpFlags.SYN:
            seq = self.irs
        return build_segment(PEER_MAC, LOCAL_MAC, PEER_IP, LOCAL_IP, self.port, self.app_port,
                             seq, ack, flags, PEER_WINDOW, options)


@dataclass(eq=False)
class RpcState:
    """A closed-loop RPC connection: one request outstanding."""

    request: bytes
    sent_at: float = 0.0
    got: int = 0
    measure_from: float = 0.0
    stop_at: float = 0.0
    latencies: list[float] = field(default_factory=list)


class LoopbackLink:
    """The host port (runtime.dma_bridge's FrameLink), answered at once by the peer."""

    max_payload = MAX_PAYLOAD

    def __init__(self, peer: "LoopbackPeer") -> None:
        self.peer = peer
        self.out: collections.deque[bytes] = collections.deque()
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._signalled = False

    def fileno(self) -> int:
        return self._fd

    def signal(self) -> None:
        """Frames may be received: make the descriptor readable."""
        if not self._signalled:
            self._signalled = True
            os.eventfd_write(self._fd, 1)

    def recv_batch(self, limit: int) -> list[bytes]:
        out = self.out
        frames = [out.popleft() for _ in range(min(limit, len(out)))]
        if len(frames) < limit:
            self.peer.feed(frames, limit)
        if not out and not self.peer.feeding:
            self._signalled = False
            try:
                os.eventfd_read(self._fd)
            except BlockingIOError:
                pass
        return frames

    def send(self, frame: bytes) -> bool:
        self.peer.on_frame(frame)
        return True

    def retry_delay(self) -> float | None:
        return None

    def kernel_drops(self) -> int:
        return 0

    def queue(self, frame: bytes) -> None:
        self.out.append(frame)
        self.signal()

    def close(self) -> None:
        os.close(self._fd)


class LoopbackPeer:
    """The network and the fast path: the datapath the slow path talks to (PacketOut,
    table writes) and, through `link`, the host port."""

    def __init__(self) -> None:
        self.link = LoopbackLink(self)
        self.clock = SwitchClock()
        self.control: ConnectionControl | None = None
        self.flows: dict[FlowTuple, PeerFlow] = {}
        self.by_id: dict[int, PeerFlow] = {}
        self.feeding: dict[PeerFlow, None] = {}   # bulk receive flows with window and bytes
        self._ports = iter(range(20000, 60000))
        self._payload = bytes((i * 7 + 3) % 251 for i in range(MAX_PAYLOAD))
        self.now: Callable[[], float] = time.monotonic

    # -- the datapath (runtime.datapath.Datapath) ----------------------------------------------

    async def insert(self, entries) -> None:
        return None

    async def delete(self, entries) -> None:
        return None

    async def modify(self, entities) -> None:
        return None

    def reinject(self, frame: bytes, port: int) -> None:
        return None

    def send(self, frame: bytes, port: int) -> None:
        """A PacketOut: the peer answers a SYN-ACK with its ACK and our FIN with its own."""
        seg = parse_segment(frame)
        flow = self.flows.get(FlowTuple(seg.src_ip, seg.src_port, seg.dst_ip, seg.dst_port))
        if flow is None or seg.flags & TcpFlags.RST:
            return
        loop = asyncio.get_running_loop()
        if seg.flags & TcpFlags.SYN:
            flow.tx_start = (seg.seq + 1) & U32
            loop.call_soon(self._packet_in, flow.segment(TcpFlags.ACK, flow.tx_start),
                           PacketInReason.UNKNOWN_FLOW)
        elif seg.flags & TcpFlags.FIN:
            ack = (seg.seq + len(seg.payload) + 1) & U32
            reason = PacketInReason.UNKNOWN_FLOW if flow.fin_sent else PacketInReason.FIN
            flags = TcpFlags.ACK if flow.fin_sent else TcpFlags.FIN | TcpFlags.ACK
            packet = flow.segment(flags, ack)
            flow.fin_sent = True
            loop.call_soon(self._packet_in, packet, reason)

    def _packet_in(self, frame: bytes, reason: PacketInReason) -> None:
        self.control.on_packet_in(PacketIn(frame, 1, int(reason), 0))

    # -- connections ---------------------------------------------------------------------------

    async def open(self, app_port: int, timeout: float) -> PeerFlow:
        """Open a connection to the application's listener; the flow once installed."""
        flow = PeerFlow(next(self._ports), irs=0x10000000, app_port=app_port)
        self.flows[flow.tuple] = flow
        self._packet_in(flow.segment(TcpFlags.SYN, 0, TcpOptions(mss=1460,
                                                                 window_scale=PEER_WSCALE)),
                        PacketInReason.SYN)
        deadline = time.monotonic() + timeout
        while True:
            conn = self.control.table.by_tuple.get(flow.tuple)
            if conn is not None and conn.channel is not None and not conn.installing:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"connection from port {flow.port} not installed")
            await asyncio.sleep(0.001)
        channel = conn.channel
        flow.flow_id, flow.gen, flow.mss = channel.flow_id, channel.generation, channel.mss
        flow.rx_mask = channel.rx_ring.size - 1
        flow.rx_pos = channel.rx_ring.head
        flow.rx_window = channel.rx_ring.free_space()
        self.by_id[flow.flow_id] = flow
        return flow

    def close(self, flow: PeerFlow) -> None:
        """The peer's FIN (once)."""
        if flow.fin_sent:
            return
        packet = flow.segment(TcpFlags.FIN | TcpFlags.ACK, (flow.tx_start + flow.tx_acked_end)
                              & U32)
        flow.fin_sent = True
        self._packet_in(packet, PacketInReason.FIN)

    def receive(self, flow: PeerFlow, nbytes: int) -> None:
        """Bulk receive: deliver `nbytes` as MSS-sized RX_DATA as the window allows, then the
        peer's FIN; done when the application answers (the sink's byte count)."""
        flow.rx_todo = flow.rx_goal = nbytes
        self._check_feeding(flow)

    def expect(self, flow: PeerFlow, nbytes: int) -> None:
        """Bulk send: done once `nbytes` arrived as TX_DATA."""
        flow.tx_goal = nbytes

    def rpc(self, flow: PeerFlow, request: bytes, measure_from: float, stop_at: float) -> None:
        """Closed-loop RPC from now until `stop_at`; latencies counted from `measure_from`."""
        flow.rpc = RpcState(request, measure_from=measure_from, stop_at=stop_at)
        self._request(flow)

    # -- the host port -------------------------------------------------------------------------

    def on_frame(self, frame: bytes) -> None:
        """TX_DATA: its TX_ACKED at once (and the workload's reaction); RX_CONSUMED: window."""
        opcode, flags, gen, flow_id, _, length, _, count, aux = \
            NIC_HOST_HEADER.unpack_from(frame, _HEADER_AT)
        flow = self.by_id.get(flow_id)
        if flow is None or flow.gen != gen:
            return
        if opcode == Opcode.RX_CONSUMED:
            self._rx_consumed(flow, count)
        elif opcode == Opcode.TX_DATA:
            self._tx_data(flow, flags, aux, length)

    def _tx_data(self, flow: PeerFlow, flags: int, position: int, length: int) -> None:
        end = position + length
        if (end - flow.tx_acked_end) & U32 < 1 << 31:
            flow.tx_acked_end = end & U32
        fin = flags & _FIN
        ack = (flow.tx_start + flow.tx_acked_end + (1 if fin else 0)) & U32
        self.link.queue(_frame(Opcode.TX_ACKED, fin, flow.gen, flow.flow_id, ack, PEER_WINDOW,
                               length))
        if not length:
            return
        now = self.now()
        if flow.first_at is None:
            flow.first_at = now
        flow.tx_bytes += length
        if flow.rpc is not None:
            self._rpc_response(flow, length, now)
        elif (flow.tx_goal and flow.tx_bytes >= flow.tx_goal or flow.rx_goal) \
                and flow.done_at is None:
            self._done(flow, now)

    def _rx_consumed(self, flow: PeerFlow, count: int) -> None:
        flow.rx_window += count
        self._check_feeding(flow)

    def _done(self, flow: PeerFlow, now: float) -> None:
        flow.done_at = now
        flow.done.set()

    def _check_feeding(self, flow: PeerFlow) -> None:
        if flow.rx_todo and flow.rx_window:
            self.feeding[flow] = None
            self.link.signal()

    def feed(self, frames: list[bytes], limit: int) -> None:
        """Bulk receive: RX_DATA frames up to `limit`, round robin over the feeding flows."""
        while self.feeding and len(frames) < limit:
            for flow in list(self.feeding):
                size = min(flow.mss, flow.rx_todo, flow.rx_window)
                frames.append(self._rx_data(flow, self._payload[:size]))
                flow.rx_todo -= size
                if not flow.rx_todo or not flow.rx_window:
                    del self.feeding[flow]
                if not flow.rx_todo:   # after the frames the bridge is taking now
                    asyncio.get_running_loop().call_soon(self.close, flow)
                if len(frames) >= limit:
                    return

    def _rx_data(self, flow: PeerFlow, payload: bytes) -> bytes:
        if flow.first_at is None:
            flow.first_at = self.now()
        frame = _frame(Opcode.RX_DATA, _PSH, flow.gen, flow.flow_id, flow.rx_pos & flow.rx_mask,
                       payload=payload)
        flow.rx_pos += len(payload)
        flow.rx_window -= len(payload)
        flow.rx_sent += len(payload)
        return frame

    def _request(self, flow: PeerFlow) -> None:
        rpc = flow.rpc
        rpc.sent_at = self.now()
        self.link.queue(self._rx_data(flow, rpc.request))

    def _rpc_response(self, flow: PeerFlow, length: int, now: float) -> None:
        rpc = flow.rpc
        rpc.got += length
        if rpc.got < len(rpc.request):
            return
        rpc.got -= len(rpc.request)
        if rpc.sent_at >= rpc.measure_from and now <= rpc.stop_at:
            rpc.latencies.append(now - rpc.sent_at)
        if now < rpc.stop_at:
            self._request(flow)
        else:
            self._done(flow, now)
