"""Retransmission timeouts for the data path (slow path; TAS 3.2, RFC 6298).

The NIC recovers a single loss by itself (fast retransmit on the third duplicate ACK). This
module covers the rest: a flow with data in flight whose acknowledged position has not moved
for one RTO goes back to it (go-back-N, `DmaBridge.go_back_n`), with exponential backoff; a
flow that makes no progress for `give_up_s` is given up (the runtime resets it and tells the
application ETIMEDOUT). A flow held back by a zero window with nothing in flight gets a
window probe on the same timer, since the peer's window update may have been lost.

Deadlines live in a timing wheel: arming and disarming are O(1) per ACK, and a tick costs the
flows that are due, not the flows that exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from runtime.timing_wheel import TimingWheel

TICK_SECONDS = 0.005
WHEEL_SLOTS = 4096      # 20 s at 5 ms: longer timeouts take extra rounds
RTT_ALPHA = 1 / 8       # RFC 6298 gains
RTT_BETA = 1 / 4
RTT_K = 4


@dataclass(frozen=True)
class RtoConfig:
    """Timeout policy; the defaults suit a datacenter (TAS uses a fixed minimum too)."""

    min_rto_s: float = 0.05
    max_rto_s: float = 5.0
    initial_rto_s: float = 0.2     # before the first RTT sample
    give_up_s: float = 30.0        # no progress this long: the connection is reset


@dataclass(slots=True)
class RttEstimator:
    """Smoothed RTT and variation (RFC 6298) from the NIC's per-ACK samples."""

    srtt_s: float | None = None
    rttvar_s: float = 0.0

    def sample(self, rtt_s: float) -> None:
        """Take one RTT measurement."""
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = rtt_s, rtt_s / 2
            return
        self.rttvar_s = (1 - RTT_BETA) * self.rttvar_s + RTT_BETA * abs(self.srtt_s - rtt_s)
        self.srtt_s = (1 - RTT_ALPHA) * self.srtt_s + RTT_ALPHA * rtt_s

    def rto(self, config: RtoConfig) -> float:
        """The base retransmission timeout, clamped to the configured range."""
        if self.srtt_s is None:
            return config.initial_rto_s
        return min(max(self.srtt_s + RTT_K * self.rttvar_s, config.min_rto_s), config.max_rto_s)


@dataclass(slots=True)
class FlowTimer:
    """One flow's timeout state: backoff and when it last made progress."""

    rtt: RttEstimator = field(default_factory=RttEstimator)
    backoff: int = 0
    last_progress: float = 0.0
    armed: bool = False


class Timed(Protocol):
    """What the timers schedule: a flow that carries its own FlowTimer (a FlowChannel)."""

    timer: FlowTimer


T = TypeVar("T", bound=Timed)


class RetransmissionTimers(Generic[T]):
    """Per-flow RTO deadlines in one timing wheel; each flow's state is its own `timer`."""

    def __init__(self, config: RtoConfig, now: float) -> None:
        self.config = config
        self._wheel: TimingWheel[T] = TimingWheel(TICK_SECONDS, WHEEL_SLOTS, now)

    def __len__(self) -> int:
        """Flows with a deadline."""
        return len(self._wheel)

    def arm(self, flow: T, now: float) -> None:
        """Data went out (or waits on a zero window): start the timer unless it runs."""
        state = flow.timer
        if state.armed:
            return  # RFC 6298 5.1: a running timer is not restarted by more sends
        state.last_progress = now
        state.armed = True
        self._schedule(flow, now)

    def progress(self, flow: T, now: float, still_waiting: bool) -> None:
        """The peer acknowledged more: backoff resets; re-arm while data is still in flight."""
        state = flow.timer
        state.backoff = 0
        state.last_progress = now
        if still_waiting:
            state.armed = True
            self._schedule(flow, now)
        else:
            self.disarm(flow)

    @staticmethod
    def peer_alive(flow: T, now: float) -> None:
        """The peer answered a window probe: not progress (the backoff stays), but a peer
        that keeps answering is never given up on (RFC 1122 4.2.2.17)."""
        flow.timer.last_progress = now

    def disarm(self, flow: T) -> None:
        """Nothing is waiting on the peer any more (or the flow is gone)."""
        flow.timer.armed = False
        self._wheel.cancel(flow)

    def expired(self, now: float) -> list[T]:
        """Flows whose deadline passed; each is disarmed (the caller acts and re-arms)."""
        due = self._wheel.advance(now)
        for flow in due:
            flow.timer.armed = False
        return due

    def backed_off(self, flow: T, now: float) -> bool:
        """After a timeout: double the RTO and re-arm; False once the flow should give up."""
        state = flow.timer
        if now - state.last_progress >= self.config.give_up_s:
            return False
        state.backoff += 1
        state.armed = True
        self._schedule(flow, now)
        return True

    def _schedule(self, flow: T, now: float) -> None:
        state = flow.timer
        rto = min(state.rtt.rto(self.config) * (2 ** state.backoff), self.config.max_rto_s)
        # Never past the give-up time, so a silent peer is given up on time.
        self._wheel.schedule(flow, min(now + rto, state.last_progress + self.config.give_up_s))
