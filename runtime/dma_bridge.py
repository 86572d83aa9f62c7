"""The bmv2 DMA bridge: plays the NIC's DMA engine on the host port (ARCHITECTURE.md 2).

On bmv2 nothing can write host memory, so this trusted bridge owns the host side of the host-port
veth (`<prefix>hp`, bmv2 port HOST_PORT on the other end) through a raw AF_PACKET socket and moves
payload between channel frames (nic_contract.nic_host_header) and the per-flow rings in shared memory
(host_lib.rings):

  NIC -> host  RX_DATA    payload into the flow's RX ring at the NIC's offset, an RX_DATA event
               TX_ACKED   freed TX ring bytes, peer window, a TX_ACKED event, then more TX_DATA
               RETRANSMIT third duplicate ACK: go back to the acknowledged position (go-back-N)
  host -> NIC  TX_DATA    MSS-sized chunks of the TX ring, never beyond the peer's window,
                          each with its TX stream position (the NIC derives the sequence)
               RX_CONSUMED how many RX ring bytes the application freed

Loss recovery: the NIC detects the third duplicate ACK (RETRANSMIT); every other loss, and a
lost window update, is caught by the retransmission timer (runtime.retransmission), which
goes back the same way or sends a window probe, and gives a silent peer up.

Everything target-specific stays in this module behind `DmaEngine` (what the runtime calls) and
`FrameLink` (how frames move): a SmartNIC whose DMA engine writes the rings itself replaces both
without touching host_lib, which only ever sees rings and event queues.

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
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from host_lib.rings import ByteRing, Event, EventQueue, RingCorruptedError
from host_lib.shm_layout import EventType
from nic_contract.constants import TS_TICK_SHIFT
from nic_contract.host_port import RECV_BATCH, FrameLink
from runtime import pacing
from runtime.pacing import Pacer, TokenBucket
from runtime.retransmission import TICK_SECONDS, RetransmissionTimers, RtoConfig
from nic_contract.nic_host_header import (
    ChannelFlags,
    FrameError,
    NicHostMessage,
    Opcode,
    decode,
)

log = logging.getLogger(__name__)

DEFAULT_MSS = 1448             # payload bytes per segment with the timestamps option (MTU 1500)
DEFAULT_PEER_WINDOW = 65535    # bytes until the first TX_ACKED tells the real window
MAX_WINDOW_SCALE = 14          # RFC 7323
EVENT_RETRY_SECONDS = 0.001    # while some context queue is full
U32_MAX = 0xFFFFFFFF


class DropCause(Enum):
    """Why the bridge dropped (part of) a frame or could not act on it."""

    MALFORMED = "malformed"                  # FrameError from decode
    UNEXPECTED_OPCODE = "unexpected_opcode"  # a host->NIC opcode arrived from the NIC
    UNKNOWN_FLOW = "unknown_flow"
    STALE_GENERATION = "stale_generation"
    BAD_OFFSET = "bad_offset"                # RX_DATA not at the RX ring's write offset (a bug)
    RX_OVERFLOW = "rx_overflow"              # RX_DATA larger than the RX ring's free space (a bug)
    ACK_BEYOND_SENT = "ack_beyond_sent"      # TX_ACKED count > bytes in flight (clamped; a bug)
    RING_CORRUPTED = "ring_corrupted"        # the application scribbled on its rings or queue
    TIMEOUT = "timeout"                      # no progress for RtoConfig.give_up_s: peer gone


@dataclass
class BridgeStats:
    """Per-bridge counters for tests and logs."""

    frames_in: Counter[Opcode] = field(default_factory=Counter)
    frames_out: Counter[Opcode] = field(default_factory=Counter)
    drops: Counter[DropCause] = field(default_factory=Counter)
    events_posted: int = 0
    events_deferred: int = 0  # pushes refused by a full queue (covered later)
    send_retries: int = 0     # frames the link could not take at once (sent again later)
    recovery: Counter[str] = field(default_factory=Counter)  # fast_retransmits, rto_timeouts,
                                                             # window_probes, retransmitted_bytes


@dataclass
class FlowCounters:
    """Per-flow counters; acked/ECE bytes and RTT samples are congestion-control feedback."""

    rx_bytes: int = 0
    rx_frames: int = 0
    tx_bytes: int = 0
    tx_frames: int = 0
    acked_bytes: int = 0
    ece_acked_bytes: int = 0
    rtt_samples: int = 0
    rtt_sum_ticks: int = 0
    last_rtt_ticks: int = 0
    rx_consumed_bytes: int = 0
    rx_ooo_frames: int = 0
    retransmitted_bytes: int = 0
    fast_retransmits: int = 0
    timeouts: int = 0
    window_probes: int = 0


@dataclass(eq=False)
class FlowChannel:
    """One connection as the bridge sees it: its rings, its context's event queue, TX state.

    `tx_sent`, `tx_high` and `tx_acked` are positions in the TX ring's stream: the next byte to
    send, one past the highest byte ever sent (tx_sent falls behind it after a go-back-N), and
    the ring's tail. `peer_window` is in bytes (raw window << wscale). `event_pending` is set
    while some bytes were received or acknowledged without an event (the context queue was full).
    """

    flow_id: int
    generation: int
    slot: int
    rx_ring: ByteRing
    tx_ring: ByteRing
    events: EventQueue
    mss: int = DEFAULT_MSS
    wscale: int = 0
    peer_window: int = DEFAULT_PEER_WINDOW
    opaque: int = 0
    tx_start_seq: int = 0  # our sequence number of stream position 0 (TX_ACKED is absolute)
    counters: FlowCounters = field(default_factory=FlowCounters)
    tx_base: int = field(init=False, default=0)  # ring position of the connection's first byte
    tx_sent: int = field(init=False, default=0)
    tx_high: int = field(init=False, default=0)
    tx_acked: int = field(init=False, default=0)
    rto_flag_pending: bool = field(init=False, default=False)  # next TX_DATA carries RTO
    ooo_end: int = field(init=False, default=0)  # RX position past the bytes placed out of order
    bucket: TokenBucket | None = field(init=False, default=None)  # None: not rate-limited
    pacer_slot: int | None = field(init=False, default=None)  # the pacer's mark while waiting
    rx_announced: int = field(init=False, default=0)  # RX position up to which events were posted
    rx_flags_pending: int = field(init=False, default=0)
    ack_announced: int = field(init=False, default=0)  # TX position up to which events were posted
    ack_flags_pending: int = field(init=False, default=0)
    ack_rtt_pending: int = field(init=False, default=0)
    rx_consumed_unsent: int = field(init=False, default=0)
    event_pending: bool = field(init=False, default=False)
    orphan: bool = field(init=False, default=False)  # its application is gone: no events
    fin_sent: bool = field(init=False, default=False)   # our FIN went out after tx_high
    cwr_pending: bool = field(init=False, default=False)  # ECE seen: next new data sets CWR
    fin_acked: bool = field(init=False, default=False)  # ... and the peer acknowledged it

    def __post_init__(self) -> None:
        if self.mss <= 0 or not 0 <= self.wscale <= MAX_WINDOW_SCALE or self.peer_window < 0:
            raise ValueError(f"flow {self.flow_id}: bad mss {self.mss}, wscale {self.wscale} or "
                             f"peer window {self.peer_window}")
        self.tx_base = self.tx_sent = self.tx_high = self.tx_acked = self.tx_ring.tail
        self.ack_announced = self.tx_ring.tail
        self.rx_announced = self.rx_ring.head

    @property
    def in_flight(self) -> int:
        """Bytes handed to the NIC and not yet acknowledged."""
        return self.tx_high - self.tx_acked

    def stream_position(self, ring_position: int) -> int:
        """The connection's own byte count (what TX_DATA carries, mod 2^32) of a TX ring
        position; a reused ring slot does not start at 0."""
        return (ring_position - self.tx_base) & U32_MAX

    @property
    def unsent(self) -> int:
        """Bytes queued in the TX ring from tx_sent on."""
        return self.tx_ring.readable() - (self.tx_sent - self.tx_acked)


class DmaEngine(Protocol):
    """What the runtime asks of a NIC's DMA engine (this bridge on bmv2, hardware elsewhere)."""

    def register(self, channel: FlowChannel) -> None:
        """Start moving data for a connection."""

    def unregister(self, flow_id: int) -> FlowChannel | None:
        """Stop moving data for a connection; returns its channel."""

    def kick(self, flow_id: int) -> int:
        """The application queued TX bytes: send what the window allows; returns bytes sent."""

    def send_rx_consumed(self, flow_id: int, count: int) -> None:
        """The application freed `count` RX ring bytes: tell the NIC."""

    def send_fin(self, flow_id: int) -> bool:
        """Send our FIN after every queued byte (again, if it was lost); False if unknown."""


FlowErrorCallback = Callable[[int, DropCause], None]


class DmaBridge:
    """Moves payload and events between the host port and the registered flows' rings."""

    def __init__(self, link: FrameLink, on_flow_error: FlowErrorCallback | None = None,
                 on_activity: Callable[[FlowChannel], None] | None = None,
                 rto: RtoConfig = RtoConfig(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`on_activity(channel)`: events were posted for the channel's context (wake the
        application) or its TX ring drained further (the runtime may now send a FIN)."""
        self.link = link
        self.clock = clock
        self.timers = RetransmissionTimers(rto, clock())
        self._rto_tick: asyncio.TimerHandle | None = None
        self.pacer: Pacer[FlowChannel] = Pacer(clock())
        self._pacing_tick: asyncio.TimerHandle | None = None
        self._active: dict[int, None] = {}  # flows that sent or were acked since take_active
        self.stats = BridgeStats()
        self._on_flow_error = on_flow_error
        self._on_activity = on_activity
        self._channels: dict[int, FlowChannel] = {}
        self._pending_events: dict[int, None] = {}  # ordered set of flow ids
        self._send_backlog: dict[int, None] = {}    # flows with TX/RX_CONSUMED waiting on the link
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event_timer: asyncio.TimerHandle | None = None
        self._send_retry_armed = False
        self._send_timer: asyncio.TimerHandle | None = None

    # -- lifecycle ---------------------------------------------------------------------------

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
        for timer in (self._event_timer, self._send_timer, self._rto_tick, self._pacing_tick):
            if timer is not None:
                timer.cancel()
        self._event_timer = self._send_timer = self._rto_tick = self._pacing_tick = None
        self._send_retry_armed = False
        self._loop = None

    # -- flows ---------------------------------------------------------------------------------

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
        self._pending_events.pop(flow_id, None)
        self._send_backlog.pop(flow_id, None)
        self.timers.forget(flow_id)
        self._active.pop(flow_id, None)
        channel = self._channels.pop(flow_id, None)
        if channel is not None:
            self.pacer.forget(channel)
        return channel

    def set_rate(self, flow_id: int, rate_bps: float | None) -> None:
        """Pace a flow to `rate_bps` (None: unlimited, the peer's window alone)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return
        now = self.clock()
        if rate_bps is None:
            channel.bucket = None
            self.pacer.forget(channel)
            self.kick(flow_id)
        elif channel.bucket is None:
            channel.bucket = TokenBucket.for_rate(rate_bps, channel.mss, now)
        else:
            channel.bucket.retune(rate_bps, channel.mss, now)

    def take_active(self) -> list[int]:
        """Flows that sent or had data acknowledged since the last call (congestion control
        looks at these only)."""
        active, self._active = list(self._active), {}
        return active

    def channel(self, flow_id: int) -> FlowChannel | None:
        """The registered channel of a flow id, if any."""
        return self._channels.get(flow_id)

    # -- NIC -> host ---------------------------------------------------------------------------

    def _on_readable(self) -> None:
        for frame in self.link.recv_batch(RECV_BATCH):
            self.handle_frame(frame)
        if self._pending_events:
            self.flush_events()

    def poll(self) -> None:
        """Act on every frame the host port holds now: the slow path calls it before deciding
        on a segment that the NIC sent it after data still waiting here (a FIN)."""
        while True:
            frames = self.link.recv_batch(RECV_BATCH)
            for frame in frames:
                self.handle_frame(frame)
            if len(frames) < RECV_BATCH:
                break
        if self._pending_events:
            self.flush_events()

    def handle_frame(self, frame: bytes) -> None:
        """Act on one frame from the NIC; never raises for a bad frame."""
        try:
            message = decode(frame)
        except FrameError as exc:
            self.stats.drops[DropCause.MALFORMED] += 1
            log.debug("malformed host-port frame: %s", exc)
            return
        self.stats.frames_in[message.opcode] += 1
        if message.opcode not in (Opcode.RX_DATA, Opcode.TX_ACKED, Opcode.RETRANSMIT):
            self._drop(DropCause.UNEXPECTED_OPCODE, message, "not an opcode the NIC sends")
            return
        channel = self._channel_for(message)
        if channel is None:
            return
        try:
            if message.opcode == Opcode.RX_DATA:
                self._rx_data(channel, message)
            elif message.opcode == Opcode.TX_ACKED:
                self._tx_acked(channel, message)
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

    def _drop(self, cause: DropCause, message: NicHostMessage, why: str) -> None:
        self.stats.drops[cause] += 1
        log.debug("dropped %s for flow %d gen %d: %s", message.opcode.name, message.flow_id,
                  message.gen, why)

    def _flow_error(self, channel: FlowChannel, cause: DropCause, why: str) -> None:
        """A bug or a scribbling application: count, log, tell the runtime."""
        self.stats.drops[cause] += 1
        log.warning("flow %d: %s: %s", channel.flow_id, cause.value, why)
        if self._on_flow_error is not None:
            self._on_flow_error(channel.flow_id, cause)

    def _rx_data(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Payload into the RX ring, an event; piggy-backed ACK info as TX_ACKED."""
        if message.payload:
            self._deliver(channel, message)
        if message.count or message.flags & ChannelFlags.FIN:
            # A bad payload does not make the ACK wrong, and skipping it would leak TX space;
            # an ACK of our FIN alone counts no byte but still moves the close on.
            self._tx_acked(channel, message)

    def _deliver(self, channel: FlowChannel, message: NicHostMessage) -> None:
        ring = channel.rx_ring
        if message.flags & ChannelFlags.OOO:
            self._place_out_of_order(channel, message)
            return
        head = ring.head
        expected = head & (ring.size - 1)
        if message.offset != expected:
            drops = self.link.kernel_drops()
            self._flow_error(channel, DropCause.BAD_OFFSET,
                             f"RX_DATA at offset {message.offset}, ring writes at {expected} "
                             f"(host port: {drops} frames dropped by the kernel since the last "
                             "check)")
            return
        try:
            ring.write_at(message.offset, message.payload)
        except ValueError as exc:
            self._flow_error(channel, DropCause.RX_OVERFLOW, str(exc))
            return
        merged = message.aux if message.flags & ChannelFlags.MERGED else 0
        if merged and not self._merge_is_placed(channel, head + len(message.payload), merged):
            self._flow_error(channel, DropCause.BAD_OFFSET,
                             f"RX_DATA makes {merged} bytes readable that were never placed")
            return
        ring.publish(len(message.payload) + merged)
        channel.ooo_end = 0 if merged else channel.ooo_end
        channel.counters.rx_bytes += len(message.payload) + merged
        channel.counters.rx_frames += 1
        channel.rx_flags_pending |= message.flags & (ChannelFlags.PSH | ChannelFlags.CE)
        self._announce(channel)

    def _place_out_of_order(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Payload of the NIC's out-of-order interval: into the ring, not readable yet."""
        ring = channel.rx_ring
        head = ring.head
        position = head + ((message.offset - head) & (ring.size - 1))
        try:
            ring.write_at(message.offset, message.payload)
        except ValueError as exc:
            self._flow_error(channel, DropCause.RX_OVERFLOW, str(exc))
            return
        channel.ooo_end = max(channel.ooo_end, position + len(message.payload))
        channel.counters.rx_ooo_frames += 1

    @staticmethod
    def _merge_is_placed(channel: FlowChannel, start: int, length: int) -> bool:
        """Whether the ring holds placed bytes up to start + length (a bug check)."""
        return start + length <= channel.ooo_end

    def _tx_acked(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """Free acknowledged TX bytes, take the window and RTT, post an event, send more."""
        count = message.count
        if message.flags & ChannelFlags.FIN and channel.fin_sent:
            channel.fin_acked = True  # the runtime hears of it in on_activity
        if message.opcode == Opcode.TX_ACKED:
            # Absolute (sequence `offset`): a TX_ACKED that bmv2 dropped is made up for here.
            # Once our FIN is acknowledged, offset (snd_una) counts its sequence number too,
            # whether or not this frame is the one that said so (a later window update).
            past_fin = 1 if channel.fin_acked else 0
            position = (message.offset - channel.tx_start_seq - past_fin) & U32_MAX
            count = (position - channel.stream_position(channel.tx_acked)) & U32_MAX
            if count >= 1 << 31:
                count = 0  # older than what we know (reordered behind a later one)
        if count > channel.in_flight:
            self._flow_error(channel, DropCause.ACK_BEYOND_SENT,
                             f"{count} bytes acked, {channel.in_flight} in flight; clamped")
            count = channel.in_flight
        if count:
            self._advance_acked(channel, count)
            self._count_ack(channel, message, count)
            self._active[channel.flow_id] = None
        channel.peer_window = message.window << channel.wscale
        self._announce(channel)
        self.kick(channel.flow_id)
        if count:
            self.timers.progress(channel.flow_id, self.clock(), self._waits_on_peer(channel))
            self._arm_rto_tick()
        elif message.window == 0 and channel.unsent > 0:
            self.timers.peer_alive(channel.flow_id, self.clock())  # it answers our probes

    @staticmethod
    def _advance_acked(channel: FlowChannel, count: int) -> None:
        channel.tx_ring.consume(count)
        channel.tx_acked += count
        # After a go-back-N the peer may acknowledge beyond what was resent: skip ahead.
        channel.tx_sent = max(channel.tx_sent, channel.tx_acked)

    def _fast_retransmit(self, channel: FlowChannel, message: NicHostMessage) -> None:
        """RETRANSMIT: the NIC saw the third duplicate ACK; resend from snd_una."""
        # Every TX_ACKED before it came first (one FIFO), so `aux` is normally tx_acked; ahead
        # of it only if a TX_ACKED frame was lost, and that many bytes are acknowledged.
        ahead = (message.aux - channel.stream_position(channel.tx_acked)) & U32_MAX
        if 0 < ahead <= channel.in_flight:
            self._advance_acked(channel, ahead)
            self._announce(channel)
        channel.peer_window = message.window << channel.wscale
        channel.counters.fast_retransmits += 1
        self.stats.recovery["fast_retransmits"] += 1
        self.go_back_n(channel.flow_id)

    def go_back_n(self, flow_id: int, timeout: bool = False) -> int:
        """Resend everything unacknowledged from the acknowledged position; returns bytes sent.
        After a timeout the first segment tells the NIC (NIC_HOST_FLAG_RTO)."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return 0
        channel.counters.retransmitted_bytes += channel.tx_sent - channel.tx_acked
        self.stats.recovery["retransmitted_bytes"] += channel.tx_sent - channel.tx_acked
        channel.tx_sent = channel.tx_acked
        channel.rto_flag_pending = timeout
        return self.kick(flow_id)

    @staticmethod
    def _waits_on_peer(channel: FlowChannel) -> bool:
        """Data in flight, or data held back by a window too small for any of it."""
        return channel.in_flight > 0 or (
            channel.unsent > 0 and channel.peer_window <= channel.tx_sent - channel.tx_acked)

    def _count_ack(self, channel: FlowChannel, message: NicHostMessage, count: int) -> None:
        counters = channel.counters
        counters.acked_bytes += count
        ece = message.flags & ChannelFlags.ECE
        if ece:
            counters.ece_acked_bytes += count
            channel.ack_flags_pending |= ChannelFlags.ECE
            channel.cwr_pending = True
        if message.aux and not message.flags & ChannelFlags.MERGED:
            counters.rtt_samples += 1
            counters.rtt_sum_ticks += message.aux
            counters.last_rtt_ticks = message.aux
            channel.ack_rtt_pending = min(message.aux << TS_TICK_SHIFT, U32_MAX)
            self.timers.timer(channel.flow_id).rtt.sample(
                (message.aux << TS_TICK_SHIFT) / 1_000_000)

    # -- events --------------------------------------------------------------------------------

    def _announce(self, channel: FlowChannel) -> None:
        """Post the events a channel owes its context; remember the channel if the queue is full."""
        if self._post_rx_event(channel) and self._post_ack_event(channel):
            channel.event_pending = False
            self._pending_events.pop(channel.flow_id, None)
            if self._on_activity is not None:
                self._on_activity(channel)
            return
        self.stats.events_deferred += 1
        if not channel.event_pending:
            log.debug("flow %d: context queue full, event deferred", channel.flow_id)
        channel.event_pending = True
        self._pending_events[channel.flow_id] = None
        self._arm_event_timer()

    def _post_rx_event(self, channel: FlowChannel) -> bool:
        """RX_DATA event for every byte published and not yet announced; False if queue full."""
        head = channel.rx_ring.head
        length = head - channel.rx_announced
        if not length or channel.orphan:
            channel.rx_announced = head
            return True
        event = Event(EventType.RX_DATA, channel.slot, channel.rx_announced, length,
                      channel.rx_flags_pending, 0, channel.opaque)
        if not channel.events.push(event):
            return False
        channel.rx_announced = head
        channel.rx_flags_pending = 0
        self.stats.events_posted += 1
        return True

    def _post_ack_event(self, channel: FlowChannel) -> bool:
        """TX_ACKED event for every byte acknowledged and not yet announced; False if queue full."""
        length = channel.tx_acked - channel.ack_announced
        if not length or channel.orphan:
            channel.ack_announced = channel.tx_acked
            return True
        event = Event(EventType.TX_ACKED, channel.slot, channel.ack_announced, length,
                      channel.ack_flags_pending, channel.ack_rtt_pending, channel.opaque)
        if not channel.events.push(event):
            return False
        channel.ack_announced = channel.tx_acked
        channel.ack_flags_pending = channel.ack_rtt_pending = 0
        self.stats.events_posted += 1
        return True

    def flush_events(self) -> int:
        """Retry the deferred events (e.g. after the application polled); returns flows left."""
        for flow_id in list(self._pending_events):
            channel = self._channels.get(flow_id)
            if channel is None:
                self._pending_events.pop(flow_id, None)
                continue
            try:
                if self._post_rx_event(channel) and self._post_ack_event(channel):
                    channel.event_pending = False
                    self._pending_events.pop(flow_id, None)
                    if self._on_activity is not None:
                        self._on_activity(channel)
            except (RingCorruptedError, ValueError) as exc:
                self._pending_events.pop(flow_id, None)
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))
        return len(self._pending_events)

    def _arm_event_timer(self) -> None:
        if self._loop is None or self._event_timer is not None:
            return
        self._event_timer = self._loop.call_later(EVENT_RETRY_SECONDS, self._on_event_timer)

    def _on_event_timer(self) -> None:
        self._event_timer = None
        if self.flush_events():
            self._arm_event_timer()

    # -- host -> NIC ---------------------------------------------------------------------------

    def kick(self, flow_id: int) -> int:
        """Send TX_DATA for queued TX bytes the peer window admits; returns bytes sent."""
        channel = self._channels.get(flow_id)
        if channel is None:
            self.stats.drops[DropCause.UNKNOWN_FLOW] += 1
            log.debug("kick for unknown flow %d", flow_id)
            return 0
        return self._kick_channel(channel)

    def _kick_channel(self, channel: FlowChannel) -> int:
        try:
            return self._send_tx(channel)
        except (RingCorruptedError, ValueError) as exc:
            self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))
            return 0

    def _send_tx(self, channel: FlowChannel) -> int:
        """TX_DATA from tx_sent on, within the peer's window (nothing new after our FIN)."""
        ring = channel.tx_ring
        if channel.fin_sent and channel.tx_sent >= channel.tx_high:
            return 0
        unsent = channel.unsent
        if unsent < 0:
            raise RingCorruptedError(f"TX ring holds {ring.readable()} bytes but "
                                     f"{channel.tx_sent - channel.tx_acked} were sent")
        room = channel.peer_window - (channel.tx_sent - channel.tx_acked)
        sent = 0
        mask = ring.size - 1
        now = self.clock() if channel.bucket is not None else 0.0
        while unsent > 0 and room > 0:
            size = min(channel.mss, unsent, room)
            if channel.bucket is not None:
                wait = channel.bucket.take(size, now)
                if wait:
                    self.pacer.defer(channel, now + wait)
                    self._arm_pacing_tick()
                    break
            pieces = ring.peek(size, skip=channel.tx_sent - channel.tx_acked)
            payload = b"".join(pieces)
            for piece in pieces:
                piece.release()
            flags = ChannelFlags.PSH if size == unsent else ChannelFlags.NONE
            if channel.rto_flag_pending:
                flags |= ChannelFlags.RTO
            if channel.cwr_pending and channel.tx_sent >= channel.tx_high:
                flags |= ChannelFlags.CWR   # RFC 3168 6.1.2: on new data, not a resend
                channel.cwr_pending = False
            message = NicHostMessage(Opcode.TX_DATA, channel.flow_id, channel.generation, flags,
                                     channel.tx_sent & mask, payload=payload,
                                     aux=channel.stream_position(channel.tx_sent))
            if not self._send(message, channel.flow_id):
                break
            channel.rto_flag_pending = False
            channel.tx_sent += size
            channel.tx_high = max(channel.tx_high, channel.tx_sent)
            channel.counters.tx_bytes += size
            channel.counters.tx_frames += 1
            unsent -= size
            room -= size
            sent += size
        if sent:
            self._active[channel.flow_id] = None
        if self._waits_on_peer(channel):
            self.timers.arm(channel.flow_id, self.clock())
            self._arm_rto_tick()
        return sent

    def _arm_pacing_tick(self) -> None:
        if self._loop is None or self._pacing_tick is not None or not len(self.pacer):
            return
        self._pacing_tick = self._loop.call_later(pacing.TICK_SECONDS, self._on_pacing_tick)

    def _on_pacing_tick(self) -> None:
        self._pacing_tick = None
        self.release_paced(self.clock())
        self._arm_pacing_tick()

    def release_paced(self, now: float) -> None:
        """Send for every flow whose pacing wait is over."""
        for channel in self.pacer.due(now):
            self._kick_channel(channel)

    def send_fin(self, flow_id: int) -> bool:
        """Our FIN after everything queued: an empty TX_DATA flagged FIN at the stream's end
        (the NIC builds the segment and counts the FIN's sequence number; a resend is the
        same message). The runtime sends it once the TX ring is drained."""
        channel = self._channels.get(flow_id)
        if channel is None:
            return False
        channel.fin_sent = True
        position = channel.tx_high
        message = NicHostMessage(Opcode.TX_DATA, channel.flow_id, channel.generation,
                                 ChannelFlags.FIN, position & (channel.tx_ring.size - 1),
                                 aux=channel.stream_position(position))
        self._send(message, channel.flow_id)
        return True

    def _send_window_probe(self, channel: FlowChannel) -> None:
        """Ask a peer with a closed window for its current one: one byte just below snd_una
        (RFC 9293 3.8.6.1, as Linux probes). The peer discards it as old and answers with an
        ACK; a byte beyond its window would instead move our snd_nxt past what the peer
        accepts, and it would drop every later segment of ours as out of window."""
        position = channel.tx_acked - 1
        message = NicHostMessage(Opcode.TX_DATA, channel.flow_id, channel.generation,
                                 ChannelFlags.PROBE, position & (channel.tx_ring.size - 1),
                                 payload=b"\0", aux=channel.stream_position(position))
        self._send(message, channel.flow_id)
        self.timers.arm(channel.flow_id, self.clock())
        self._arm_rto_tick()

    # -- retransmission timeouts ---------------------------------------------------------------

    def _arm_rto_tick(self) -> None:
        if self._loop is None or self._rto_tick is not None or not len(self.timers):
            return
        self._rto_tick = self._loop.call_later(TICK_SECONDS, self._on_rto_tick)

    def _on_rto_tick(self) -> None:
        self._rto_tick = None
        self.check_timeouts(self.clock())
        self._arm_rto_tick()

    def check_timeouts(self, now: float) -> None:
        """Act on every flow whose retransmission timer expired by `now`."""
        for flow_id in self.timers.expired(now):
            channel = self._channels.get(flow_id)
            if channel is None or not self._waits_on_peer(channel):
                continue
            if not self.timers.backed_off(flow_id, now):
                self._flow_error(channel, DropCause.TIMEOUT,
                                 f"no progress for {self.timers.config.give_up_s} s")
                continue
            try:
                if channel.in_flight:
                    channel.counters.timeouts += 1
                    self.stats.recovery["rto_timeouts"] += 1
                    self.go_back_n(flow_id, timeout=True)
                else:
                    channel.counters.window_probes += 1
                    self.stats.recovery["window_probes"] += 1
                    self._send_window_probe(channel)
            except (RingCorruptedError, ValueError) as exc:
                self._flow_error(channel, DropCause.RING_CORRUPTED, str(exc))

    def send_rx_consumed(self, flow_id: int, count: int) -> None:
        """Tell the NIC that the application freed `count` RX ring bytes (kept until sent)."""
        if count < 0:
            raise ValueError(f"RX_CONSUMED count {count} is negative")
        channel = self._channels.get(flow_id)
        if channel is None:
            self.stats.drops[DropCause.UNKNOWN_FLOW] += 1
            log.debug("RX_CONSUMED for unknown flow %d", flow_id)
            return
        channel.rx_consumed_unsent += count
        self._flush_rx_consumed(channel)

    def _flush_rx_consumed(self, channel: FlowChannel) -> None:
        while channel.rx_consumed_unsent:
            count = min(channel.rx_consumed_unsent, U32_MAX)
            message = NicHostMessage(Opcode.RX_CONSUMED, channel.flow_id, channel.generation,
                                     count=count)
            if not self._send(message, channel.flow_id):
                return
            channel.rx_consumed_unsent -= count
            channel.counters.rx_consumed_bytes += count

    def _send(self, message: NicHostMessage, flow_id: int) -> bool:
        """Send one message; on failure park the flow until the link can take more."""
        if self.link.send(message.encode()):
            self.stats.frames_out[message.opcode] += 1
            return True
        self.stats.send_retries += 1
        self._send_backlog[flow_id] = None
        self._arm_send_retry(self.link.retry_delay())
        return False

    def _arm_send_retry(self, delay: float | None) -> None:
        if self._loop is None or self._send_retry_armed:
            return
        self._send_retry_armed = True
        if delay is None:
            self._loop.add_writer(self.link.fileno(), self._retry_sends)
        else:
            self._send_timer = self._loop.call_later(delay, self._retry_sends)

    def _retry_sends(self) -> None:
        """The link may take frames again: resend RX_CONSUMED and TX_DATA of parked flows."""
        if self._loop is not None:
            self._loop.remove_writer(self.link.fileno())
        self._send_timer = None
        self._send_retry_armed = False
        backlog, self._send_backlog = self._send_backlog, {}
        for flow_id in backlog:
            channel = self._channels.get(flow_id)
            if channel is not None:
                self._flush_rx_consumed(channel)
                self.kick(flow_id)
