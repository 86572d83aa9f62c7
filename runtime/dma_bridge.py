"""The bmv2 DMA bridge: plays the NIC's DMA engine on the host port (ARCHITECTURE.md 2).

On bmv2 nothing can write host memory, so this trusted bridge owns the host side of the host-port
veth (`<prefix>hp`, bmv2 port HOST_PORT on the other end) through a raw AF_PACKET socket and moves
payload between channel frames (nic_contract.nic_host_header) and the per-flow rings in shared memory
(host_lib.rings):

  NIC -> host  RX_DATA    payload into the flow's RX ring at the NIC's offset, an RX_DATA event
               TX_ACKED   freed TX ring bytes, peer window, a TX_ACKED event, then more TX_DATA
               RETRANSMIT third duplicate ACK: go back to the acknowledged position (go-back-N)
               SACK       a duplicate ACK's first SACK block: the scoreboard; with flag
                          FAST_RETRANSMIT the third: resend only the holes (runtime.dma_sack)
  host -> NIC  TX_DATA    MSS-sized chunks of the TX ring, never beyond the peer's window,
                          each with its TX stream position (the NIC derives the sequence)
               RX_CONSUMED how many RX ring bytes the application freed

Loss recovery: the NIC detects the third duplicate ACK (RETRANSMIT); every other loss, and a
lost window update, is caught by the retransmission timer (runtime.retransmission), which
goes back the same way or sends a window probe, and gives a silent peer up.

The bridge implements `runtime.nic_interface.NicInterface` (what connection and congestion control
call) over a `FrameLink` (how frames move): a SmartNIC whose DMA engine writes the rings itself
replaces it without touching the runtime's other modules or host_lib, which only ever sees rings
and event queues. Its parts: this module (flows, frames in, dispatch), runtime.dma_rx (NIC ->
host: RX data, ACKs, events) and runtime.dma_tx (host -> NIC: TX data, pacing, timeouts).

Events are never lost: when a context's event queue is full the bytes stay published and the
channel remembers what it has not announced yet; the next event of that kind (or the retry timer)
covers the whole unannounced range. RX_DATA events give ring *positions* (shm_layout), TX_ACKED
events an RTT sample in microseconds in `aux`.

bmv2 caveat: the NIC acknowledges received data before the bridge has "DMAed" it, so a frame the
kernel drops on the host port is data lost for good; the socket gets a large receive buffer, the
kernel's drop count is in `HostPort.kernel_drops()`, and an offset mismatch is reported through
`on_flow_error` so that the runtime can reset the connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from nic_contract.host_port import RECV_BATCH, FrameLink
from nic_contract.nic_host_header import FrameError, NicHostMessage, Opcode, decode
from runtime.dma_base import FlowErrorCallback, log
from runtime.dma_rx import NicToHost
from runtime.dma_tx import HostToNic
from runtime.flow_channel import FlowChannel
from runtime.keepalive import KeepaliveParams, KeepaliveTimers
from runtime.nic_interface import DropCause, NicStats
from runtime.pacing import Pacer, TokenBucket, send_budget
from runtime.retransmission import RetransmissionTimers, RtoConfig
from host_lib.rings import RingCorruptedError


class DmaBridge(NicToHost, HostToNic):
    """Moves payload and events between the host port and the registered flows' rings."""

    def __init__(self, link: FrameLink, on_flow_error: FlowErrorCallback | None = None,
                 on_activity: Callable[[FlowChannel], None] | None = None,
                 rto: RtoConfig = RtoConfig(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`on_activity(channel)`: events were posted for the channel's context (wake the
        application) or its TX ring drained further (the runtime may now send a FIN)."""
        self.link = link
        self.clock = clock
        self.timers: RetransmissionTimers[FlowChannel] = RetransmissionTimers(rto, clock())
        self._rto_tick: asyncio.TimerHandle | None = None
        self.pacer: Pacer[FlowChannel] = Pacer(clock())
        self._pacing_tick: asyncio.TimerHandle | None = None
        self.keepalives: KeepaliveTimers[FlowChannel] = KeepaliveTimers(clock())
        self._keepalive_tick: asyncio.TimerHandle | None = None
        self._active: dict[FlowChannel, None] = {}  # sent or were acked since take_active
        self.stats = NicStats()
        self._on_flow_error = on_flow_error
        self._on_activity = on_activity
        self._channels: dict[int, FlowChannel] = {}
        # Ordered sets of channels: events owed (a full queue), frames waiting on the link.
        self._pending_events: dict[FlowChannel, None] = {}
        self._send_backlog: dict[FlowChannel, None] = {}
        self._to_announce: dict[FlowChannel, None] = {}
        self._to_kick: dict[FlowChannel, None] = {}
        self._batching = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event_timer: asyncio.TimerHandle | None = None
        self._send_retry_armed = False
        self._send_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Watch the host port from the running asyncio loop (one reader, no thread)."""
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.link.fileno(), self._on_readable)

    def stop(self) -> None:
        """Stop watching the host port and cancel the retry timers."""
        if self._loop is None:
            return
        self._loop.remove_reader(self.link.fileno())
        self._loop.remove_writer(self.link.fileno())
        for timer in (self._event_timer, self._send_timer, self._rto_tick, self._pacing_tick,
                      self._keepalive_tick):
            if timer is not None:
                timer.cancel()
        self._event_timer = self._send_timer = self._rto_tick = self._pacing_tick = None
        self._keepalive_tick = None
        self._send_retry_armed = False
        self._loop = None

    def register(self, channel: FlowChannel) -> None:
        """Start serving a flow id; ValueError if it is taken (unregister the old one first)."""
        if channel.flow_id in self._channels:
            raise ValueError(f"flow {channel.flow_id} is already registered")
        if channel.mss > self.link.max_payload:
            log.warning("flow %d: MSS %d exceeds the host port's %d-byte payload; using that",
                        channel.flow_id, channel.mss, self.link.max_payload)
            channel.mss = self.link.max_payload
        self._channels[channel.flow_id] = channel

    def unregister(self, flow_id: int) -> FlowChannel | None:
        """Stop serving a flow id; later frames for it are dropped as unknown."""
        channel = self._channels.pop(flow_id, None)
        if channel is not None:
            self._pending_events.pop(channel, None)
            self._send_backlog.pop(channel, None)
            self._to_announce.pop(channel, None)
            self._to_kick.pop(channel, None)
            self._active.pop(channel, None)
            self.timers.disarm(channel)
            self.keepalives.forget(channel)
            self.pacer.forget(channel)
        return channel

    def set_rate(self, flow_id: int, rate_bps: float | None) -> None:
        """Pace a flow to `rate_bps` (None: unlimited, the peer's window alone)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return
        now = self.clock()
        channel.tx_ring.set_limit(send_budget(rate_bps, channel.tx_ring.size,
                                              len(self._channels)))
        if rate_bps is None:
            channel.bucket = None
            self.pacer.forget(channel)
            self.kick(flow_id)
        elif channel.bucket is None:
            channel.bucket = TokenBucket.for_rate(rate_bps, channel.mss, now)
        else:
            channel.bucket.retune(rate_bps, channel.mss, now)

    def set_keepalive(self, flow_id: int, params: KeepaliveParams | None) -> None:
        """Probe the peer of an idle flow (runtime.keepalive), or stop (None)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return
        self.keepalives.configure(channel, params, self.clock())
        self._arm_keepalive_tick()

    def take_active(self) -> list[FlowChannel]:
        """Flows that sent or had data acknowledged since the last call (congestion control
        looks at these only)."""
        active, self._active = list(self._active), {}
        return active

    def channel(self, flow_id: int) -> FlowChannel | None:
        """The registered channel of a flow id, if any."""
        return self._channels.get(flow_id)

    def _on_readable(self) -> None:
        self._handle_batch(self.link.recv_batch(RECV_BATCH))
        if self._pending_events:
            self.flush_events()

    def poll(self) -> None:
        """Act on every frame the host port holds now: the slow path calls it before deciding
        on a segment that the NIC sent it after data still waiting here (a FIN)."""
        while True:
            frames = self.link.recv_batch(RECV_BATCH)
            self._handle_batch(frames)
            if len(frames) < RECV_BATCH:
                break
        if self._pending_events:
            self.flush_events()

    def _handle_batch(self, frames: list[bytes]) -> None:
        """Act on frames from the NIC; what their ACKs let go is sent and the events they owe
        are posted at the end, once per flow (an application drains one record per flow and
        batch, not one per frame)."""
        self._batching = True
        try:
            for frame in frames:
                self.handle_frame(frame)
        finally:
            self._batching = False
            self._end_batch()

    def handle_frame(self, frame: bytes) -> None:
        """Act on one frame from the NIC; never raises for a bad frame."""
        try:
            message = decode(frame)
        except FrameError as exc:
            self.stats.drops[DropCause.MALFORMED] += 1
            log.debug("malformed host-port frame: %s", exc)
            return
        self.stats.frames_in[message.opcode] += 1
        if message.opcode not in (Opcode.RX_DATA, Opcode.TX_ACKED, Opcode.RETRANSMIT,
                                  Opcode.SACK):
            self._drop(DropCause.UNEXPECTED_OPCODE, message, "not an opcode the NIC sends")
            return
        channel = self._channel_for(message)
        if channel is not None:
            self._on_message(channel, message)

    def deliver(self, flow_id: int, payload: bytes) -> None:
        """Payload the slow path received, into the RX ring at its head as the NIC's RX_DATA
        would put it (through the same checks and events)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return
        ring = channel.rx_ring
        self._on_message(channel, NicHostMessage(Opcode.RX_DATA, flow_id, channel.generation,
                                                 offset=ring.head & (ring.size - 1),
                                                 payload=payload))

    def _on_message(self, channel: FlowChannel, message: NicHostMessage) -> None:
        if channel.keepalive is not None:
            channel.keepalive.heard(self.clock())  # the peer sent something: it is alive
        try:
            if message.opcode == Opcode.RX_DATA:
                self._rx_data(channel, message)
            elif message.opcode == Opcode.TX_ACKED:
                self._tx_acked(channel, message)
            elif message.opcode == Opcode.SACK:
                self._on_sack(channel, message)
            else:
                self._fast_retransmit(channel, message)
        except (RingCorruptedError, ValueError) as exc:
            # Positions the application scribbled on (a ring moved backwards, a queue overfull).
            self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))

    def _channel_for(self, message: NicHostMessage) -> FlowChannel | None:
        channel = self._channels.get(message.flow_id)
        if channel is None:
            self._drop(DropCause.UNKNOWN_FLOW, message, "no such flow")
        elif channel.generation != message.gen:
            self._drop(DropCause.STALE_GENERATION, message,
                       f"generation {message.gen}, flow has {channel.generation}")
            return None
        return channel
