"""TCP keepalive (RFC 1122 4.2.3.6) with Linux's semantics, for the flows whose application
asked for it (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT).

A flow that has heard nothing from its peer for `idle_s` while it has nothing in flight and
nothing queued gets a probe (one byte just below snd_una: the peer discards it as old and
answers with an ACK), then one every `interval_s` while unanswered; anything from the peer
resets both the idle time and the probe count, and after `count` unanswered probes the
connection is reset (the application gets ETIMEDOUT). With data in flight the retransmission
timer watches the peer instead, as in Linux.

Deadlines are lazy, as in Linux: hearing from the peer only records the time (O(1), no
rescheduling per segment), and a deadline that finds the flow heard from since is moved to
`last_heard + idle_s`. Flows without keepalive are not in the wheel and cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Generic, Protocol, TypeVar

from runtime.timing_wheel import TimingWheel

TICK_SECONDS = 0.1
WHEEL_SLOTS = 4096          # 409.6 s at 100 ms: longer idle times take extra rounds
MAX_IDLE_S = 32767          # Linux's MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL
MAX_PROBES = 127            # Linux's MAX_TCP_KEEPCNT


@dataclass(frozen=True)
class KeepaliveParams:
    """When to probe and when to give up (Linux's defaults: 7200 s, 75 s, 9 probes)."""

    idle_s: float = 7200.0
    interval_s: float = 75.0
    count: int = 9

    def __post_init__(self) -> None:
        if not (0 < self.idle_s <= MAX_IDLE_S and 0 < self.interval_s <= MAX_IDLE_S
                and 1 <= self.count <= MAX_PROBES):
            raise ValueError(f"bad keepalive parameters {self}")


@dataclass
class KeepaliveState:
    """One flow's keepalive: its parameters, when the peer was last heard, probes unanswered."""

    params: KeepaliveParams
    last_heard: float
    probes_out: int = 0

    def heard(self, now: float) -> None:
        """Anything from the peer: the connection is alive."""
        self.last_heard = now
        self.probes_out = 0


class Keepalive(Protocol):
    """What the timers schedule: a flow that carries its own KeepaliveState (a FlowChannel)."""

    keepalive: KeepaliveState | None


class Verdict(Enum):
    """What a due flow needs."""

    WAIT = "wait"        # heard from lately or busy: rescheduled
    PROBE = "probe"      # send a probe (rescheduled after interval_s)
    GIVE_UP = "give_up"  # `count` probes went unanswered: reset the connection


T = TypeVar("T", bound=Keepalive)


class KeepaliveTimers(Generic[T]):
    """Keepalive deadlines of the flows that use it, in one timing wheel."""

    def __init__(self, now: float) -> None:
        self._wheel: TimingWheel[T] = TimingWheel(TICK_SECONDS, WHEEL_SLOTS, now)

    def __len__(self) -> int:
        """Flows with keepalive on."""
        return len(self._wheel)

    def configure(self, flow: T, params: KeepaliveParams | None, now: float) -> None:
        """Turn keepalive on with `params` (idle time from now), or off with None."""
        if params is None:
            flow.keepalive = None
            self._wheel.cancel(flow)
            return
        flow.keepalive = KeepaliveState(params, now)
        self._wheel.schedule(flow, now + params.idle_s)

    def forget(self, flow: T) -> None:
        """The flow is gone."""
        self._wheel.cancel(flow)

    def due(self, now: float) -> list[T]:
        """Flows whose deadline passed (each must be given to `verdict`)."""
        return [flow for flow in self._wheel.advance(now) if flow.keepalive is not None]

    def verdict(self, flow: T, now: float, busy: bool) -> Verdict:
        """Decide for a due flow and schedule its next deadline (none after GIVE_UP).
        `busy`: data in flight or queued, which the retransmission timer watches."""
        state = flow.keepalive
        assert state is not None
        params = state.params
        if busy:
            self._wheel.schedule(flow, now + params.idle_s)
            return Verdict.WAIT
        if now - state.last_heard < params.idle_s:
            self._wheel.schedule(flow, state.last_heard + params.idle_s)
            return Verdict.WAIT
        if state.probes_out >= params.count:
            return Verdict.GIVE_UP
        state.probes_out += 1
        self._wheel.schedule(flow, now + params.interval_s)
        return Verdict.PROBE
