"""The NIC interface: what connection control and congestion control ask of a NIC's DMA engine
for a flow (TAS's tas/slow/nicif.c). The bmv2/soft host-port bridge (runtime.dma_bridge) is one
implementation; a SmartNIC that writes the rings itself is another (ARCHITECTURE.md 2)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Protocol, runtime_checkable

from nic_contract.nic_host_header import Opcode
from runtime.flow_channel import FlowChannel
from runtime.keepalive import KeepaliveParams


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
    KEEPALIVE = "keepalive_timeout"          # keepalive probes went unanswered: peer gone


@dataclass
class NicStats:
    """Per-NIC counters for tests, logs and metrics."""

    frames_in: Counter[Opcode] = field(default_factory=Counter)
    frames_out: Counter[Opcode] = field(default_factory=Counter)
    drops: Counter[DropCause] = field(default_factory=Counter)
    events_posted: int = 0
    events_deferred: int = 0  # pushes refused by a full queue (covered later)
    send_retries: int = 0     # frames the link could not take at once (sent again later)
    recovery: Counter[str] = field(default_factory=Counter)  # fast_retransmits, rto_timeouts,
                                                             # window_probes, retransmitted_bytes,
                                                             # keepalive_probes


@runtime_checkable
class NicInterface(Protocol):
    """What the runtime asks of the NIC for its flows."""

    stats: NicStats
    clock: Callable[[], float]

    def register(self, channel: FlowChannel) -> None:
        """Start moving data for a connection; ValueError if its flow id is taken."""

    def unregister(self, flow_id: int) -> FlowChannel | None:
        """Stop moving data for a connection; returns its channel."""

    def channel(self, flow_id: int) -> FlowChannel | None:
        """The registered channel of a flow id, if any."""

    def deliver(self, flow_id: int, payload: bytes) -> None:
        """Put payload the slow path received into the flow's RX ring, as the NIC would."""

    def kick(self, flow_id: int) -> int:
        """The application queued TX bytes: send what the window allows; returns bytes sent."""

    def send_rx_consumed(self, flow_id: int, count: int) -> None:
        """The application freed `count` RX ring bytes: tell the NIC."""

    def send_fin(self, flow_id: int) -> bool:
        """Send our FIN after every queued byte (again, if it was lost); False if unknown."""

    def poll(self) -> None:
        """Act on everything the NIC has already sent (before deciding on a later segment)."""

    def set_rate(self, flow_id: int, rate_bps: float | None) -> None:
        """Pace a flow to `rate_bps` (None: unlimited)."""

    def take_active(self) -> list[FlowChannel]:
        """Flows that sent or had data acknowledged since the last call."""

    def set_keepalive(self, flow_id: int, params: KeepaliveParams | None) -> None:
        """Probe the peer of an idle flow (RFC 1122 4.2.3.6), or stop (None)."""
