"""One connection's data path as the NIC sees it: its rings, event queue, TX positions,
counters and retransmission timer (what a SmartNIC's DMA engine keeps per flow)."""

from __future__ import annotations

from dataclasses import dataclass, field

from host_lib.rings import ByteRing, EventQueue
from runtime.keepalive import KeepaliveState
from runtime.pacing import TokenBucket
from runtime.retransmission import FlowTimer
from runtime.sack_scoreboard import SackScoreboard

DEFAULT_MSS = 1448             # payload bytes per segment with the timestamps option (MTU 1500)
DEFAULT_PEER_WINDOW = 65535    # bytes until the first TX_ACKED tells the real window
MAX_WINDOW_SCALE = 14          # RFC 7323
U32_MAX = 0xFFFFFFFF


@dataclass(slots=True)
class FlowCounters:
    """Per-flow counters; acked/ECE bytes and RTT samples are congestion-control feedback."""

    rx_bytes: int = 0
    rx_frames: int = 0
    tx_bytes: int = 0
    tx_frames: int = 0
    acked_bytes: int = 0
    ece_acked_bytes: int = 0
    rtt_samples: int = 0
    rtt_sum_us: int = 0
    last_rtt_us: int = 0
    rx_consumed_bytes: int = 0
    rx_ooo_frames: int = 0
    rx_trimmed_bytes: int = 0   # old prefixes of TRIM segments skipped (held already)
    retransmitted_bytes: int = 0
    fast_retransmits: int = 0
    timeouts: int = 0
    window_probes: int = 0
    keepalive_probes: int = 0
    sack_blocks: int = 0    # SACK blocks the scoreboard took (RFC 2018)
    pacing_waits: int = 0   # times the pacer held queued data back (the rate limited the flow)


@dataclass(eq=False, slots=True)
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
    timer: FlowTimer = field(default_factory=FlowTimer)  # RTT estimate and RTO state
    sack: SackScoreboard | None = None  # SACK negotiated: resend holes only (else go-back-N)
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
    ece_echo: bool = field(init=False, default=False)  # the NIC's ACKs carry ECE (RFC 3168 6.1.3)
    fin_acked: bool = field(init=False, default=False)  # ... and the peer acknowledged it
    keepalive: KeepaliveState | None = field(init=False, default=None)  # None: off

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
