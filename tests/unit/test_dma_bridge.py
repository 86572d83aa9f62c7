"""The bmv2 DMA bridge (runtime.dma_bridge) over a real veth pair and a real shared-memory segment.

The bridge owns one end (`<prefix>hp`, as on the host port); the test plays the NIC on the other
end with its own AF_PACKET socket, and plays the application through its own views of the rings.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from host_lib.rings import ByteRing, Event, EventQueue, connection_ring, context_queue
from host_lib.shm_layout import HEAD_OFFSET, Direction, EventType, Layout, Segment
from nic_contract.constants import ETHERTYPE_NIC_HOST
from runtime import pacing
from runtime.dma_bridge import DmaBridge
from runtime.flow_channel import DEFAULT_MSS, FlowChannel
from runtime.nic_interface import DropCause
from nic_contract.host_port import HostPort
from tests.support.fakes import FakeLink
from runtime.retransmission import RtoConfig
from nic_contract.nic_host_header import ETH_HEADER, ChannelFlags, NicHostMessage, Opcode, decode

PREFIX = f"tb{os.getpid() % 1000}"
NIC_IF = PREFIX + "h"      # the switch's end of the host port (bmv2 port 254)
BRIDGE_IF = PREFIX + "hp"  # the bridge's end
RX_RING = 4096
TX_RING = 8192
QUEUE_DEPTH = 4
WAIT_S = 3.0
SILENCE_S = 0.1
POLL_S = 0.001
TEST_TIMEOUT_S = 20.0
FLOW, GEN, SLOT, CONTEXT, OPAQUE = 7, 3, 1, 0, 0xC0FFEE
TX_START = 0x1000  # the flow's first sequence number (TX_ACKED carries absolute sequences)
SEED = 20240611
# Tests about other things must not see retransmission timeouts.
NO_TIMEOUTS = RtoConfig(min_rto_s=60, max_rto_s=60, initial_rto_s=60, give_up_s=120)


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def veth() -> Iterator[None]:
    """A veth pair NIC_IF <-> BRIDGE_IF: MTU 1500, IPv6 and offloads off; removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root: creates a veth pair and opens AF_PACKET sockets")
    from bmv2_env.topology import create_pair, delete_link

    try:
        create_pair(NIC_IF, BRIDGE_IF)
        yield
    finally:
        delete_link(NIC_IF)


@dataclass
class Flow:
    """A registered flow: the bridge's channel and the application's views of the same memory."""

    channel: FlowChannel
    app_rx: ByteRing
    app_tx: ByteRing
    app_events: EventQueue


@dataclass
class Shm:
    """A real /dev/shm segment and every ring view made of it (released before unmapping)."""

    segment: Segment
    views: list[ByteRing | EventQueue] = field(default_factory=list)

    def _keep(self, view):
        self.views.append(view)
        return view

    def flow(self, flow_id: int = FLOW, gen: int = GEN, slot: int = SLOT, **kwargs) -> Flow:
        """A channel over slot `slot` and context CONTEXT, plus the application's side."""
        buf, layout = self.segment.buf, self.segment.layout
        ring = lambda d: self._keep(connection_ring(buf, layout, slot, d))  # noqa: E731
        queue = lambda: self._keep(context_queue(buf, layout, CONTEXT, Direction.RX))  # noqa: E731
        kwargs.setdefault("tx_start_seq", TX_START)
        channel = FlowChannel(flow_id, gen, slot, ring(Direction.RX), ring(Direction.TX), queue(),
                              opaque=OPAQUE, **kwargs)
        return Flow(channel, ring(Direction.RX), ring(Direction.TX), queue())


@pytest.fixture
def shm() -> Iterator[Shm]:
    layout = Layout(rx_ring_size=RX_RING, tx_ring_size=TX_RING, max_connections=4,
                    max_contexts=2, queue_depth=QUEUE_DEPTH)
    segment = Segment.create(f"p4tas-test-dma-{os.getpid()}-{uuid.uuid4().hex[:8]}", layout)
    holder = Shm(segment)
    try:
        yield holder
    finally:
        for view in holder.views:
            view.release()
        segment.close()
        segment.unlink()


class Nic:
    """The test's side of the host port: raw frames in and out of NIC_IF."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        self.sock.bind((NIC_IF, ETHERTYPE_NIC_HOST))
        self.sock.setblocking(False)

    def send(self, message: NicHostMessage) -> None:
        self.sock.send(message.encode())

    def send_raw(self, frame: bytes) -> None:
        self.sock.send(frame)

    async def receive(self, count: int) -> list[NicHostMessage]:
        """Exactly `count` messages from the bridge (fails on timeout)."""
        messages: list[NicHostMessage] = []
        deadline = time.monotonic() + WAIT_S
        while len(messages) < count:
            try:
                messages.append(decode(self.sock.recv(65536)))
            except BlockingIOError:
                assert time.monotonic() < deadline, f"got {len(messages)} of {count} frames"
                await asyncio.sleep(POLL_S)
        return messages

    async def expect_silence(self) -> None:
        """Nothing from the bridge for SILENCE_S."""
        await asyncio.sleep(SILENCE_S)
        with pytest.raises(BlockingIOError):
            frame = self.sock.recv(65536)
            pytest.fail(f"unexpected frame {decode(frame)}")


@pytest.fixture
def nic(veth) -> Iterator[Nic]:
    nic = Nic()
    try:
        yield nic
    finally:
        nic.sock.close()


@pytest.fixture
def port(veth) -> Iterator[HostPort]:
    host_port = HostPort(BRIDGE_IF)
    try:
        yield host_port
    finally:
        host_port.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    """Run one scenario in a fresh asyncio loop, with a time limit."""
    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(POLL_S)


def frames_seen(bridge: DmaBridge) -> int:
    """Frames the bridge has taken off the host port (decoded or not)."""
    return sum(bridge.stats.frames_in.values()) + bridge.stats.drops[DropCause.MALFORMED]


def drain(queue: EventQueue) -> list[Event]:
    events = []
    while (event := queue.pop()) is not None:
        events.append(event)
    return events


def assert_rx_events_cover(events: list[Event], frames: list[tuple[int, int, int]]) -> None:
    """RX_DATA events of whole frames (offset, length, flags), in order and contiguous: frames
    handled in one batch share one event, whose flags are theirs or-ed."""
    frames = list(frames)
    for event in events:
        assert event.kind == EventType.RX_DATA and event.offset == frames[0][0], (event, frames)
        covered, flags = 0, 0
        while covered < event.length:
            _, length, frame_flags = frames.pop(0)
            covered, flags = covered + length, flags | frame_flags
        assert (covered, flags) == (event.length, event.flags), (event, frames)
    assert not frames, f"frames without an event: {frames}"


def rx_data(offset: int, payload: bytes, flow_id: int = FLOW, gen: int = GEN,
            flags: ChannelFlags = ChannelFlags.NONE, **kwargs) -> NicHostMessage:
    return NicHostMessage(Opcode.RX_DATA, flow_id, gen, flags, offset, payload=payload, **kwargs)


def tx_acked(ack_seq: int, count: int, window: int, rtt: int = 0,
             flags: ChannelFlags = ChannelFlags.NONE) -> NicHostMessage:
    return NicHostMessage(Opcode.TX_ACKED, FLOW, GEN, flags, ack_seq, count, aux=rtt,
                          window=window)


# -- tests ---------------------------------------------------------------------------------------


def test_host_port_reports_payload_limit_and_kernel_drops(port: HostPort) -> None:
    assert port.max_payload == 1500 - 24
    assert port.kernel_drops() == 0


def test_rx_data_lands_at_ring_offsets_across_a_wrap(shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow()
    rng = random.Random(SEED)
    chunks = [rng.randbytes(1000) for _ in range(6)]

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            # Four frames fill 4000 of 4096 bytes; the application reads them; the next two wrap.
            for i, chunk in enumerate(chunks[:4]):
                nic.send(rx_data(i * 1000, chunk, flags=ChannelFlags.PSH if i == 3 else 0))
            await wait_until(lambda: flow.app_rx.readable() == 4000, "4000 bytes in the RX ring")
            assert flow.app_rx.read(4000) == b"".join(chunks[:4])
            events = drain(flow.app_events)  # the queue holds QUEUE_DEPTH (4) events
            nic.send(rx_data(4000, chunks[4], flags=ChannelFlags.CE))  # 96 at the end, 904 at 0
            nic.send(rx_data(904, chunks[5]))
            await wait_until(lambda: flow.app_rx.readable() == 2000, "the wrapped bytes")
            pieces = flow.app_rx.peek(2000)
            assert [len(p) for p in pieces] == [96, 1904]  # it really wrapped
            del pieces
            assert flow.app_rx.read(2000) == chunks[4] + chunks[5]
            await wait_until(lambda: flow.channel.rx_announced == 6000, "events of 6000 bytes")
        finally:
            bridge.stop()
        events += drain(flow.app_events)
        flags = [0, 0, 0, ChannelFlags.PSH, ChannelFlags.CE, 0]
        assert_rx_events_cover(events, [(i * 1000, 1000, flags[i]) for i in range(6)])
        assert {(e.slot, e.aux, e.opaque) for e in events} == {(SLOT, 0, OPAQUE)}
        assert bridge.stats.frames_in[Opcode.RX_DATA] == 6
        assert not bridge.stats.drops
        assert flow.channel.counters.rx_bytes == 6000

    run(scenario)


def test_bad_frames_are_dropped_and_counted_without_touching_the_ring(
        shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow()
    errors: list[tuple[int, DropCause]] = []
    good, later = b"g" * 500, b"h" * 1400
    bad = b"X" * 300

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS, on_flow_error=lambda fid, cause: errors.append((fid, cause)))
        bridge.register(flow.channel)
        bridge.start()
        try:
            nic.send(rx_data(0, good))
            nic.send(rx_data(500, bad, flow_id=FLOW + 1))           # unknown flow
            nic.send(rx_data(500, bad, gen=GEN + 1))                # stale generation
            nic.send(rx_data(700, bad))                             # not the write offset
            nic.send(rx_data(300, bad))                             # behind the write offset
            nic.send_raw(rx_data(500, bad).encode()[:30])           # truncated header
            unknown = bytearray(rx_data(500, bad).encode())
            unknown[ETH_HEADER.size] = 0x7F                         # unknown opcode
            nic.send_raw(bytes(unknown))
            nic.send(NicHostMessage(Opcode.RX_CONSUMED, FLOW, GEN, count=5))  # host -> NIC only
            nic.send(rx_data(500, later))                           # good again: 1900 bytes
            nic.send(rx_data(1900, later))                          # 3300 bytes
            nic.send(rx_data(3300, later))                          # 1400 > 796 free: overflow
            await wait_until(lambda: frames_seen(bridge) == 11, "eleven frames")
        finally:
            bridge.stop()
        drops = bridge.stats.drops
        assert drops == {DropCause.UNKNOWN_FLOW: 1, DropCause.STALE_GENERATION: 1,
                         DropCause.BAD_OFFSET: 2, DropCause.MALFORMED: 2,
                         DropCause.UNEXPECTED_OPCODE: 1, DropCause.RX_OVERFLOW: 1}
        assert errors == [(FLOW, DropCause.BAD_OFFSET)] * 2 + [(FLOW, DropCause.RX_OVERFLOW)]
        assert flow.app_rx.readable() == 3300
        assert flow.app_rx.read(3300) == good + later + later  # the frame at 300 wrote nothing
        assert_rx_events_cover(drain(flow.app_events), [(0, 500, 0), (500, 1400, 0),
                                                         (1900, 1400, 0)])

    run(scenario)


def test_unregistered_flow_is_unknown(shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow()

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        with pytest.raises(ValueError, match="already registered"):
            bridge.register(flow.channel)
        assert bridge.unregister(FLOW) is flow.channel
        bridge.start()
        try:
            nic.send(rx_data(0, b"late"))
            await wait_until(lambda: frames_seen(bridge) == 1, "one frame")
        finally:
            bridge.stop()
        assert bridge.stats.drops == {DropCause.UNKNOWN_FLOW: 1}
        assert flow.app_rx.readable() == 0 and flow.app_events.pending() == 0

    run(scenario)


def test_tx_chunks_by_mss_respects_peer_window_and_acks_free_space(
        shm: Shm, nic: Nic, port: HostPort) -> None:
    wscale = 2
    flow = shm.flow(mss=1000, wscale=wscale, peer_window=3000)
    data = random.Random(SEED).randbytes(9000)

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            assert flow.app_tx.write(data[:5000]) == 5000
            assert bridge.kick(FLOW) == 3000  # the window holds the rest back
            first = await nic.receive(3)
            await nic.expect_silence()
            assert [(m.opcode, m.flow_id, m.gen, m.offset, m.flags) for m in first] == [
                (Opcode.TX_DATA, FLOW, GEN, off, ChannelFlags.NONE) for off in (0, 1000, 2000)]
            assert b"".join(m.payload for m in first) == data[:3000]
            assert flow.app_tx.free_space() == TX_RING - 5000

            # 2000 bytes acked, window 1000 << 2 = 4000: 1000 in flight, room for the last 2000.
            nic.send(tx_acked(0x1000 + 2000, 2000, 1000, rtt=5, flags=ChannelFlags.ECE))
            second = await nic.receive(2)
            # The ACK echoed congestion (ECE): the first new segment after it sets CWR.
            assert [(m.offset, len(m.payload), m.flags) for m in second] == [
                (3000, 1000, ChannelFlags.CWR), (4000, 1000, ChannelFlags.PSH)]
            assert b"".join(m.payload for m in second) == data[3000:5000]
            assert flow.app_tx.free_space() == TX_RING - 3000
            assert drain(flow.app_events) == [
                Event(EventType.TX_ACKED, SLOT, 0, 2000, ChannelFlags.ECE, 5,
                      OPAQUE)]

            # Everything acked; 4000 more bytes cross the end of the 8192-byte TX ring.
            nic.send(tx_acked(0x1000 + 5000, 3000, 4000))
            await wait_until(lambda: flow.channel.tx_acked == 5000, "all acked")
            assert flow.app_tx.write(data[5000:]) == 4000
            assert bridge.kick(FLOW) == 4000
            third = await nic.receive(4)
            assert [(m.offset, len(m.payload)) for m in third] == [
                (5000, 1000), (6000, 1000), (7000, 1000), (8000, 1000)]  # the last wraps
            assert [m.flags for m in third] == [ChannelFlags.NONE] * 3 + [ChannelFlags.PSH]
            assert b"".join(m.payload for m in third) == data[5000:]
            await nic.expect_silence()
        finally:
            bridge.stop()
        assert drain(flow.app_events) == [Event(EventType.TX_ACKED, SLOT, 2000, 3000, 0, 0, OPAQUE)]
        counters = flow.channel.counters
        assert (counters.acked_bytes, counters.ece_acked_bytes, counters.rtt_samples) == (5000,
                                                                                        2000, 1)
        assert bridge.stats.frames_out[Opcode.TX_DATA] == 9
        assert bridge.stats.frames_in[Opcode.TX_ACKED] == 2
        assert not bridge.stats.drops

    run(scenario)


def test_tx_offsets_wrap_with_the_ring(shm: Shm, nic: Nic, port: HostPort) -> None:
    """A chunk that straddles the ring's end is sent whole, at its masked offset."""
    flow = shm.flow(mss=1000, peer_window=1 << 20)
    data = random.Random(SEED + 1).randbytes(TX_RING + 1500)

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            assert flow.app_tx.write(data[:7700]) == 7700
            assert bridge.kick(FLOW) == 7700
            await nic.receive(8)
            nic.send(tx_acked(TX_START + 7700, 7700, 0xFFFF))
            await wait_until(lambda: flow.app_tx.free_space() == TX_RING, "all acked")
            assert flow.app_tx.write(data[7700:]) == len(data) - 7700
            assert bridge.kick(FLOW) == len(data) - 7700  # the ACK's kick found nothing queued
            sent = await nic.receive(2)
        finally:
            bridge.stop()
        assert [(m.offset, len(m.payload)) for m in sent] == [(7700, 1000), (8700 - TX_RING, 992)]
        assert sent[0].payload == data[7700:8700]  # 492 bytes at the end, 508 from the start
        assert sent[1].payload == data[8700:]

    run(scenario)


def test_default_mss_and_piggybacked_ack(shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow(peer_window=1 << 20)

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            flow.app_tx.write(b"a" * 3000)
            bridge.kick(FLOW)
            sent = await nic.receive(3)
            assert [len(m.payload) for m in sent] == [DEFAULT_MSS, DEFAULT_MSS, 3000 - 2 * 1448]
            # Data from the peer that also acknowledges 2896 bytes (window 500, no scaling).
            nic.send(rx_data(0, b"reply", flags=ChannelFlags.PSH, count=2896, window=500))
            await wait_until(lambda: flow.app_events.pending() == 2, "two events")
        finally:
            bridge.stop()
        assert drain(flow.app_events) == [
            Event(EventType.RX_DATA, SLOT, 0, 5, ChannelFlags.PSH, 0, OPAQUE),
            Event(EventType.TX_ACKED, SLOT, 0, 2896, 0, 0, OPAQUE)]
        assert flow.app_rx.read(100) == b"reply"
        assert flow.channel.peer_window == 500 and flow.app_tx.readable() == 3000 - 2896

    run(scenario)


def test_rx_consumed_is_sent_with_the_count(shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow()

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            bridge.send_rx_consumed(FLOW, 1234)
            bridge.send_rx_consumed(FLOW, 70000)
            messages = await nic.receive(2)
        finally:
            bridge.stop()
        assert messages == [NicHostMessage(Opcode.RX_CONSUMED, FLOW, GEN, count=1234),
                            NicHostMessage(Opcode.RX_CONSUMED, FLOW, GEN, count=70000)]
        assert bridge.stats.frames_out[Opcode.RX_CONSUMED] == 2
        assert flow.channel.counters.rx_consumed_bytes == 71234

    run(scenario)


def test_full_event_queue_loses_no_data(shm: Shm, nic: Nic, port: HostPort) -> None:
    flow = shm.flow()
    chunks = [bytes([i]) * 700 for i in range(3)]

    async def scenario() -> None:
        bridge = DmaBridge(port, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        for _ in range(QUEUE_DEPTH):  # an application that does not poll its queue
            assert flow.channel.events.push(Event(EventType.TX_ACKED, 3))
        bridge.start()
        try:
            for i, chunk in enumerate(chunks):
                nic.send(rx_data(i * 700, chunk, flags=ChannelFlags.PSH if i == 2 else 0))
            await wait_until(lambda: frames_seen(bridge) == 3, "three frames")
            assert flow.app_rx.readable() == 2100  # the bytes are there regardless
            assert flow.channel.event_pending and bridge.stats.events_deferred >= 1
            await asyncio.sleep(SILENCE_S)
            assert flow.app_events.pending() == QUEUE_DEPTH  # nothing was overwritten
            assert drain(flow.app_events) == [Event(EventType.TX_ACKED, 3)] * QUEUE_DEPTH
            # The retry timer covers every unannounced byte with one event.
            await wait_until(lambda: flow.app_events.pending() == 1, "the deferred event")
        finally:
            bridge.stop()
        assert drain(flow.app_events) == [
            Event(EventType.RX_DATA, SLOT, 0, 2100, ChannelFlags.PSH, 0, OPAQUE)]
        assert not flow.channel.event_pending
        assert flow.app_rx.read(2100) == b"".join(chunks)

    run(scenario)


# -- without the veth: a fake link --------------------------------------------------------------


class BatchLink(FakeLink):
    """A FakeLink that has `frames` to receive, all in one batch."""

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__(failures=0, delay=None)
        self.frames = frames

    def recv_batch(self, limit: int) -> list[bytes]:
        frames, self.frames = self.frames[:limit], self.frames[limit:]
        return frames


def test_a_batch_of_frames_posts_one_event_per_flow_and_kind(shm: Shm) -> None:
    """Four RX_DATA and two TX_ACKED frames of one flow in one batch: one RX_DATA event for the
    4000 bytes (flags or-ed), one TX_ACKED event for the 700 bytes, one wake-up."""
    flow = shm.flow()
    flow.app_tx.write(b"t" * 700)
    frames = [rx_data(i * 1000, bytes(1000), flags=ChannelFlags.CE if i == 1 else 0).encode()
              for i in range(4)]
    frames += [tx_acked(TX_START + 300, 300, 1000).encode(),
               tx_acked(TX_START + 700, 400, 1000, rtt=50).encode()]
    link = BatchLink(frames)
    woken: list[int] = []
    bridge = DmaBridge(link, on_activity=lambda ch: woken.append(ch.flow_id), rto=NO_TIMEOUTS)
    bridge.register(flow.channel)
    bridge.kick(FLOW)  # the 700 bytes go out, so that they can be acknowledged
    try:
        bridge.poll()
        assert drain(flow.app_events) == [
            Event(EventType.RX_DATA, SLOT, 0, 4000, ChannelFlags.CE, 0, OPAQUE),
            Event(EventType.TX_ACKED, SLOT, 0, 700, 0, 50, OPAQUE)]
        assert woken == [FLOW]
    finally:
        link.close()


def test_the_acks_of_a_batch_let_data_go_once_after_it(shm: Shm) -> None:
    """Two TX_ACKED in one batch (500 bytes, window 1000; then 1000, window 2000): one send
    pass after the batch, full segments (per ACK: a 500-byte segment, then 1000 and 500)."""
    flow = shm.flow(mss=1000, peer_window=1000)
    flow.app_tx.write(b"t" * 3000)
    link = BatchLink([tx_acked(TX_START + 500, 500, 1000).encode(),
                      tx_acked(TX_START + 1000, 500, 2000).encode()])
    bridge = DmaBridge(link, rto=NO_TIMEOUTS)
    bridge.register(flow.channel)
    try:
        bridge.kick(FLOW)
        bridge.poll()
        sizes = [len(m.payload) for m in link.sent if m.opcode == Opcode.TX_DATA]
        assert sizes == [1000, 1000, 1000]
    finally:
        link.close()


@pytest.mark.parametrize("delay", [None, 0.0], ids=["wait-writable", "timer"])
def test_sends_the_link_refuses_are_retried_not_lost(shm: Shm, delay: float | None) -> None:
    flow = shm.flow(mss=1000)
    link = FakeLink(failures=3, delay=delay)

    async def scenario() -> None:
        bridge = DmaBridge(link, rto=NO_TIMEOUTS)
        bridge.register(flow.channel)
        bridge.start()
        try:
            bridge.send_rx_consumed(FLOW, 100)
            bridge.send_rx_consumed(FLOW, 200)
            flow.app_tx.write(b"t" * 2500)
            assert bridge.kick(FLOW) == 0
            await wait_until(lambda: len(link.sent) == 4, "four frames after the retry")
        finally:
            bridge.stop()
            link.close()
        assert link.sent[0] == NicHostMessage(Opcode.RX_CONSUMED, FLOW, GEN, count=300)
        assert [(m.opcode, m.offset, len(m.payload)) for m in link.sent[1:]] == [
            (Opcode.TX_DATA, 0, 1000), (Opcode.TX_DATA, 1000, 1000), (Opcode.TX_DATA, 2000, 500)]
        assert bridge.stats.send_retries == 3 and flow.channel.tx_sent == 2500

    run(scenario)


def test_scribbled_ring_positions_are_counted_not_raised(shm: Shm) -> None:
    flow = shm.flow(mss=1000)
    link = FakeLink(failures=0, delay=None)
    errors: list[tuple[int, DropCause]] = []
    bridge = DmaBridge(link, on_flow_error=lambda fid, cause: errors.append((fid, cause)))
    bridge.register(flow.channel)
    flow.app_tx.write(b"t" * 3000)
    assert bridge.kick(FLOW) == 3000
    head = shm.segment.layout.ring_control_offset(SLOT, Direction.TX) + HEAD_OFFSET
    struct.pack_into("<Q", shm.segment.buf, head, 1000)  # the application moves its head back
    assert bridge.kick(FLOW) == 0
    bridge.handle_frame(tx_acked(TX_START + 2000, 2000, 100).encode())  # consume(2000) of 1000 readable
    struct.pack_into("<Q", shm.segment.buf, head, 1 << 40)  # head - tail > ring size
    bridge.handle_frame(tx_acked(TX_START + 3000, 1000, 100).encode())
    rx_head = shm.segment.layout.ring_control_offset(SLOT, Direction.RX) + HEAD_OFFSET
    struct.pack_into("<Q", shm.segment.buf, rx_head, 1 << 40)
    bridge.handle_frame(rx_data(0, b"data").encode())
    link.close()
    assert errors == [(FLOW, DropCause.RING_CORRUPTED)] * 4
    assert bridge.stats.drops == {DropCause.RING_CORRUPTED: 4}


# -- loss recovery -------------------------------------------------------------------------------


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


RTO = RtoConfig(min_rto_s=0.05, max_rto_s=1.0, initial_rto_s=0.2, give_up_s=2.0)


def retransmit_frame(position: int, window: int) -> NicHostMessage:
    return NicHostMessage(Opcode.RETRANSMIT, FLOW, GEN, offset=0x1000 + position, aux=position,
                          window=window)


def sent_data(link: FakeLink) -> list[tuple[int, int, int, ChannelFlags]]:
    """(offset, aux, length, flags) of each TX_DATA sent so far; forgets them."""
    out = [(m.offset, m.aux, len(m.payload), m.flags) for m in link.sent
           if m.opcode == Opcode.TX_DATA]
    link.sent.clear()
    return out


def recovering_bridge(shm: Shm, errors: list | None = None):
    flow = shm.flow(mss=1000, peer_window=10_000)
    link = FakeLink(failures=0, delay=None)
    clock = Clock()
    bridge = DmaBridge(link, rto=RTO, clock=clock,
                       on_flow_error=(lambda fid, cause: errors.append((fid, cause)))
                       if errors is not None else None)
    bridge.register(flow.channel)
    return flow, link, clock, bridge


def test_tx_data_carries_its_stream_position_for_the_nic_sequence(shm: Shm) -> None:
    flow, link, _, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"a" * 2500)
    assert bridge.kick(FLOW) == 2500
    assert sent_data(link) == [(0, 0, 1000, ChannelFlags.NONE), (1000, 1000, 1000,
                               ChannelFlags.NONE), (2000, 2000, 500, ChannelFlags.PSH)]
    link.close()


def test_fast_retransmit_goes_back_to_the_acknowledged_position(shm: Shm) -> None:
    flow, link, _, bridge = recovering_bridge(shm)
    data = random.Random(SEED).randbytes(5000)
    flow.app_tx.write(data)
    bridge.kick(FLOW)
    sent_data(link)
    bridge.handle_frame(tx_acked(0x1000 + 1000, 1000, 10_000).encode())
    assert sent_data(link) == []  # nothing new to send
    bridge.handle_frame(retransmit_frame(1000, 10_000).encode())
    resent = [m for m in link.sent if m.opcode == Opcode.TX_DATA]
    assert [(m.offset, m.aux, len(m.payload)) for m in resent] == [
        (1000, 1000, 1000), (2000, 2000, 1000), (3000, 3000, 1000), (4000, 4000, 1000)]
    assert b"".join(m.payload for m in resent) == data[1000:]
    assert all(not m.flags & ChannelFlags.RTO for m in resent)
    channel = flow.channel
    assert (channel.tx_sent, channel.tx_high, channel.in_flight) == (5000, 5000, 4000)
    assert channel.counters.fast_retransmits == 1
    assert channel.counters.retransmitted_bytes == 4000
    link.close()


def test_an_ack_beyond_the_resend_skips_ahead(shm: Shm) -> None:
    """After going back the peer may acknowledge what it had all along: no duplicate resends."""
    flow, link, _, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"b" * 8000)
    flow.channel.peer_window = 8000
    bridge.kick(FLOW)
    sent_data(link)
    flow.channel.peer_window = 1000  # so the resend stops after one segment
    bridge.handle_frame(retransmit_frame(0, 1000 >> flow.channel.wscale).encode())
    assert [a for _, a, _, _ in sent_data(link)] == [0]
    bridge.handle_frame(tx_acked(0x1000 + 8000, 8000, 8000).encode())  # it had the rest
    assert flow.channel.tx_sent == flow.channel.tx_high == flow.channel.tx_acked == 8000
    assert sent_data(link) == []
    link.close()


def test_a_lost_tx_acked_is_recovered_from_the_retransmit_position(shm: Shm) -> None:
    flow, link, _, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"c" * 3000)
    bridge.kick(FLOW)
    sent_data(link)
    bridge.handle_frame(retransmit_frame(2000, 10_000).encode())  # 2000 acked, unannounced
    assert flow.channel.tx_acked == 2000 and flow.app_tx.free_space() == TX_RING - 1000
    assert [a for _, a, _, _ in sent_data(link)] == [2000]
    link.close()


def test_timeout_goes_back_with_the_rto_flag_and_backs_off(shm: Shm) -> None:
    flow, link, clock, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"d" * 2000)
    bridge.kick(FLOW)
    sent_data(link)
    clock.now += 0.19
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == []  # initial RTO 0.2 s not yet over
    clock.now += 0.02
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == [(0, 0, 1000, ChannelFlags.RTO), (1000, 1000, 1000,
                                                                 ChannelFlags.PSH)]
    clock.now += 0.3
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == []  # backed off to 0.4 s
    clock.now += 0.15
    bridge.check_timeouts(clock.now)
    assert len(sent_data(link)) == 2
    assert flow.channel.counters.timeouts == 2
    # Progress resets the backoff; the RTT sample (10 ms) sets the RTO to its 50 ms minimum.
    bridge.handle_frame(tx_acked(0x1000 + 1000, 1000, 10_000, rtt=10_000)
                        .encode())
    clock.now += 0.06
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == [(1000, 1000, 1000, ChannelFlags.RTO | ChannelFlags.PSH)]
    link.close()


def test_no_timeout_once_everything_is_acknowledged(shm: Shm) -> None:
    flow, link, clock, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"e" * 1000)
    bridge.kick(FLOW)
    bridge.handle_frame(tx_acked(0x1000 + 1000, 1000, 10_000).encode())
    sent_data(link)
    assert len(bridge.timers) == 0
    clock.now += 10
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == []
    link.close()


def test_a_silent_peer_is_given_up(shm: Shm) -> None:
    errors: list[tuple[int, DropCause]] = []
    flow, link, clock, bridge = recovering_bridge(shm, errors)
    flow.app_tx.write(b"f" * 1000)
    bridge.kick(FLOW)
    for _ in range(1000):
        clock.now += 0.01
        bridge.check_timeouts(clock.now)
        if errors:
            break
    assert errors == [(FLOW, DropCause.TIMEOUT)]
    assert 2.0 <= clock.now - 100.0 < 2.0 + 0.02
    link.close()


def test_a_zero_window_is_probed_when_its_update_may_be_lost(shm: Shm) -> None:
    flow, link, clock, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"g" * 3000)
    bridge.kick(FLOW)
    bridge.handle_frame(tx_acked(0x1000 + 3000, 3000, 0).encode())  # all acked, window 0
    flow.app_tx.write(b"h" * 500)
    sent_data(link)
    assert bridge.kick(FLOW) == 0
    clock.now += 0.25
    bridge.check_timeouts(clock.now)
    # One byte just below snd_una: the peer drops it as old and answers with its window.
    assert sent_data(link) == [(2999, 2999, 1, ChannelFlags.PROBE)]
    assert flow.channel.counters.window_probes == 1 and flow.channel.tx_sent == 3000
    bridge.handle_frame(tx_acked(0x1000 + 3000, 0, 1000).encode())  # the window reopened
    assert sent_data(link) == [(3000, 3000, 500, ChannelFlags.PSH)]
    link.close()


def test_a_lost_tx_acked_is_made_up_by_the_next_one(shm: Shm) -> None:
    """TX_ACKED carries the absolute sequence: the one after a lost one frees both ranges."""
    flow, link, _, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"i" * 3000)
    bridge.kick(FLOW)
    bridge.handle_frame(tx_acked(TX_START + 1000, 1000, 10_000).encode())
    # The TX_ACKED for 1000..2000 was dropped; the next says 3000 and "1000 more".
    bridge.handle_frame(tx_acked(TX_START + 3000, 1000, 10_000).encode())
    assert flow.channel.tx_acked == 3000 and flow.app_tx.free_space() == TX_RING
    assert drain(flow.app_events)[-1].length == 2000
    bridge.handle_frame(tx_acked(TX_START + 2000, 1000, 10_000).encode())  # stale: ignored
    assert flow.channel.tx_acked == 3000 and not bridge.stats.drops
    link.close()


# -- pacing --------------------------------------------------------------------------------------


def test_a_paced_flow_sends_its_burst_then_waits_for_tokens(shm: Shm) -> None:
    """8 Mbit/s = 1 MB/s: the bucket holds two 1038-byte frames; each further frame waits
    1.038 ms in the pacer's wheel; unlimited again sends the rest at once."""
    flow, link, clock, bridge = recovering_bridge(shm)
    bridge.set_rate(FLOW, 8_000_000)
    flow.app_tx.write(b"p" * 6000)
    assert bridge.kick(FLOW) == 2000
    assert len(bridge.pacer) == 1
    clock.now += 0.0010
    bridge.release_paced(clock.now)
    assert len(sent_data(link)) == 2  # the burst only: 1.0 ms is not yet 1.038 ms
    clock.now += 0.0006
    bridge.release_paced(clock.now)
    assert [a for _, a, _, _ in sent_data(link)] == [2000]
    clock.now += 0.0011
    bridge.release_paced(clock.now)
    assert [a for _, a, _, _ in sent_data(link)] == [3000]
    bridge.set_rate(FLOW, None)
    assert [a for _, a, _, _ in sent_data(link)] == [4000, 5000]
    assert len(bridge.pacer) == 0
    link.close()


def test_a_paced_flows_application_may_queue_a_quarter_second_of_its_rate(
        shm: Shm, monkeypatch: pytest.MonkeyPatch) -> None:
    """Backpressure: the bridge sets the TX ring's limit from the rate (at least 64 KiB, less
    with many flows; the whole ring when that is more, or when the flow is unlimited), and the
    application's send stops there. (This test's rings are 8 KiB: the floor is 1 KiB here.)"""
    assert pacing.send_budget(80_000, 1 << 18) == 65_536        # 2,500 B in 0.25 s
    assert pacing.send_budget(2_560_000, 1 << 18) == 80_000
    assert pacing.send_budget(80_000_000, 1 << 18) == 0         # more than the ring
    assert pacing.send_budget(None, 1 << 18) == 0
    # Many flows share 32 MiB of floor (Linux's tcp_mem pressure), down to 4 KiB each.
    assert pacing.send_budget(80_000, 1 << 18, flows=1024) == 32_768
    assert pacing.send_budget(80_000, 1 << 18, flows=100_000) == 4096
    # ... and a fast flow among many no more than its share of 32 MiB (256 flows: 128 KiB).
    assert pacing.send_budget(20_000_000, 1 << 18, flows=256) == 131_072
    assert pacing.send_budget(20_000_000, 1 << 18, flows=16) == 0
    monkeypatch.setattr(pacing, "MAX_SEND_FLOOR", 1024)
    flow, link, _, bridge = recovering_bridge(shm)
    size = flow.app_tx.size
    bridge.set_rate(FLOW, 16_000)               # 500 B in 0.25 s: the floor
    assert flow.app_tx.capacity() == 1024
    bridge.set_rate(FLOW, 160_000)              # 5,000 B
    assert flow.app_tx.capacity() == 5000
    assert flow.app_tx.write(b"q" * size, flow.app_tx.room()) == 5000
    bridge.set_rate(FLOW, 8 * size * 8)
    assert flow.app_tx.capacity() == size
    bridge.set_rate(FLOW, None)
    assert flow.app_tx.capacity() == size
    link.close()


def test_the_resend_after_a_timeout_is_not_held_by_the_flows_pacing(shm: Shm) -> None:
    """At 8 kbit/s a segment waits 1 s for tokens; the resend after a timeout goes at once
    (TCP resends one segment whatever its window) and later sends repay it: held, it would
    meet the next, backed-off timeout before it left. A timeout while that debt is unpaid
    waits its turn (the NIC's meter holds only a few segments beyond the rate)."""
    flow, link, clock, bridge = recovering_bridge(shm)
    bridge.set_rate(FLOW, 8_000)
    flow.app_tx.write(b"s" * 3000)
    assert bridge.kick(FLOW) == 2000        # the bucket's two segments; the third waits
    sent_data(link)
    clock.now += 0.21
    bridge.check_timeouts(clock.now)
    assert sent_data(link) == [(0, 0, 1000, ChannelFlags.RTO)]
    clock.now += 0.6                         # the debt of the resend is not yet repaid
    bridge.release_paced(clock.now)
    assert sent_data(link) == []
    bridge.check_timeouts(clock.now)         # a second timeout while in debt: paced
    assert sent_data(link) == []
    link.close()


# -- out-of-order interval -----------------------------------------------------------------------


def test_out_of_order_bytes_become_readable_with_the_merging_segment(shm: Shm) -> None:
    flow, link, _, bridge = recovering_bridge(shm)
    data = random.Random(SEED + 7).randbytes(300)
    bridge.handle_frame(rx_data(100, data[100:200], flags=ChannelFlags.OOO).encode())
    bridge.handle_frame(rx_data(200, data[200:300], flags=ChannelFlags.OOO).encode())
    assert flow.app_rx.readable() == 0 and drain(flow.app_events) == []
    bridge.handle_frame(rx_data(0, data[:100], flags=ChannelFlags.MERGED, aux=200).encode())
    assert flow.app_rx.readable() == 300
    assert drain(flow.app_events) == [Event(EventType.RX_DATA, SLOT, 0, 300, 0, 0, OPAQUE)]
    assert bytes(b"".join(flow.app_rx.peek(300))) == data
    link.close()


def test_a_merge_of_bytes_never_placed_is_a_flow_error(shm: Shm) -> None:
    errors: list[tuple[int, DropCause]] = []
    flow, link, _, bridge = recovering_bridge(shm, errors)
    bridge.handle_frame(rx_data(0, b"x" * 10, flags=ChannelFlags.MERGED, aux=50).encode())
    assert errors == [(FLOW, DropCause.BAD_OFFSET)] and flow.app_rx.readable() == 0
    link.close()


# -- segments overlapping rcv_nxt (TRIM) -----------------------------------------------------------


def test_a_trimmed_segment_skips_what_the_ring_holds(shm: Shm) -> None:
    """RX_DATA flagged TRIM starts at the ring offset of its first byte, 50 below the write
    position: the bridge writes only the last 50 bytes and never the first 50 (readable, here
    partly read already), whatever they hold."""
    flow, link, _, bridge = recovering_bridge(shm)
    bridge.handle_frame(rx_data(0, b"a" * 100).encode())
    assert flow.app_rx.read(60) == b"a" * 60
    drain(flow.app_events)
    bridge.handle_frame(rx_data(50, b"X" * 50 + b"b" * 50, flags=ChannelFlags.TRIM).encode())
    assert flow.app_rx.readable() == 90
    assert flow.app_rx.read(90) == b"a" * 40 + b"b" * 50
    assert drain(flow.app_events) == [Event(EventType.RX_DATA, SLOT, 100, 50, 0, 0, OPAQUE)]
    assert flow.channel.counters.rx_trimmed_bytes == 50
    link.close()


def test_a_trimmed_segment_can_merge_the_out_of_order_interval(shm: Shm) -> None:
    """TRIM and MERGED on one segment: its new part fills the gap before the interval."""
    flow, link, _, bridge = recovering_bridge(shm)
    bridge.handle_frame(rx_data(0, b"a" * 100).encode())
    bridge.handle_frame(rx_data(150, b"c" * 50, flags=ChannelFlags.OOO).encode())
    bridge.handle_frame(rx_data(80, b"X" * 20 + b"b" * 50,
                                flags=ChannelFlags.TRIM | ChannelFlags.MERGED, aux=50).encode())
    assert flow.app_rx.read(200) == b"a" * 100 + b"b" * 50 + b"c" * 50
    link.close()


@pytest.mark.parametrize("offset, length", [(100, 10), (50, 50), (50, 20)],
                         ids=["at-the-write-position", "ends-at-it", "ends-before-it"])
def test_a_trimmed_segment_not_reaching_past_the_write_position_is_a_flow_error(
        shm: Shm, offset: int, length: int) -> None:
    errors: list[tuple[int, DropCause]] = []
    flow, link, _, bridge = recovering_bridge(shm, errors)
    bridge.handle_frame(rx_data(0, b"a" * 100).encode())
    bridge.handle_frame(rx_data(offset, b"X" * length, flags=ChannelFlags.TRIM).encode())
    assert errors == [(FLOW, DropCause.BAD_OFFSET)]
    assert flow.app_rx.read(200) == b"a" * 100
    link.close()


def test_rx_data_says_whether_our_acks_carry_ece(shm: Shm) -> None:
    """ECE_ECHO on RX_DATA is the NIC's ECE echo state, which the slow path's ACKs follow."""
    flow, link, _, bridge = recovering_bridge(shm)
    bridge.handle_frame(rx_data(0, b"a", flags=ChannelFlags.CE | ChannelFlags.ECE_ECHO).encode())
    assert flow.channel.ece_echo
    bridge.handle_frame(rx_data(1, b"b").encode())
    assert not flow.channel.ece_echo
    link.close()


@pytest.mark.parametrize("via_rx_data", [False, True], ids=["tx_acked", "rx_data"])
def test_our_fin_goes_after_the_data_and_its_ack_is_seen(shm: Shm, via_rx_data: bool) -> None:
    """send_fin: an empty TX_DATA flagged FIN at the stream's end. The peer's ACK of it comes
    flagged FIN: on a TX_ACKED (offset one past the data: the FIN's sequence number) or on
    the RX_DATA of the peer's next data (count 0); either frees no TX byte it does not hold."""
    flow, link, _, bridge = recovering_bridge(shm)
    flow.app_tx.write(b"e" * 1500)
    bridge.kick(FLOW)
    bridge.handle_frame(tx_acked(0x1000 + 1500, 1500, 10_000).encode())
    sent_data(link)
    assert bridge.send_fin(FLOW)
    fin = [m for m in link.sent if m.opcode == Opcode.TX_DATA][-1]
    assert (fin.aux, fin.payload, fin.flags) == (1500, b"", ChannelFlags.FIN)
    assert not flow.channel.fin_acked
    if via_rx_data:
        bridge.handle_frame(rx_data(0, b"more", flags=ChannelFlags.FIN, count=0,
                                    window=10_000).encode())
    else:
        bridge.handle_frame(tx_acked(0x1000 + 1501, 0, 10_000,
                                     flags=ChannelFlags.FIN).encode())
    assert flow.channel.fin_acked
    channel = flow.channel
    assert channel.tx_acked - channel.tx_base == 1500   # the FIN is no ring byte
    # Later ACKs (a window update while the peer keeps sending) name snd_una past the
    # FIN without the flag: still nothing beyond what was sent.
    bridge.handle_frame(tx_acked(0x1000 + 1501, 0, 20_000).encode())
    assert channel.tx_acked - channel.tx_base == 1500
    # Nothing the application might still write goes out after our FIN.
    flow.app_tx.write(b"late")
    assert bridge.kick(FLOW) == 0
    assert not bridge.stats.drops, bridge.stats.drops
    bridge.unregister(FLOW)
    link.close()
