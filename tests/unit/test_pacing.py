"""runtime.pacing: the token bucket and the Carousel wheel of waiting flows."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from runtime.pacing import FRAME_OVERHEAD, TICK_SECONDS, WHEEL_SLOTS, Pacer, TokenBucket

MSS = 1000


@dataclass(eq=False)
class Flow:
    name: str
    pacer_slot: int | None = None


def ticks(n: float) -> float:
    return n * TICK_SECONDS


def test_a_flow_comes_up_at_the_first_tick_its_wait_has_ended() -> None:
    pacer: Pacer[Flow] = Pacer(now=0.0)
    a, b = Flow("a"), Flow("b")
    pacer.defer(a, ticks(2.5))
    pacer.defer(b, ticks(1))
    assert len(pacer) == 2
    assert pacer.due(ticks(0.9)) == []
    assert pacer.due(ticks(1)) == [b]
    assert pacer.due(ticks(2.9)) == []
    assert pacer.due(ticks(3)) == [a]
    assert len(pacer) == 0 and a.pacer_slot is None


def test_deferring_again_voids_the_earlier_wait() -> None:
    pacer: Pacer[Flow] = Pacer(now=0.0)
    a = Flow("a")
    pacer.defer(a, ticks(2))
    pacer.defer(a, ticks(5))
    pacer.defer(a, ticks(5))   # the same slot twice: still one turn
    assert len(pacer) == 1
    assert pacer.due(ticks(4)) == []
    assert pacer.due(ticks(5)) == [a]
    assert pacer.due(ticks(20)) == [] and len(pacer) == 0


def test_a_forgotten_flow_never_comes_up() -> None:
    pacer: Pacer[Flow] = Pacer(now=0.0)
    a, b = Flow("a"), Flow("b")
    pacer.defer(a, ticks(1))
    pacer.defer(b, ticks(1))
    pacer.forget(a)
    pacer.forget(a)
    assert len(pacer) == 1
    assert pacer.due(ticks(3)) == [b]


def test_a_wait_beyond_the_wheel_ends_at_its_last_slot_early() -> None:
    """The flow's bucket then says how much longer (the bridge defers it again)."""
    pacer: Pacer[Flow] = Pacer(now=0.0)
    a = Flow("a")
    pacer.defer(a, ticks(3 * WHEEL_SLOTS))
    assert pacer.due(ticks(WHEEL_SLOTS - 2)) == []
    assert pacer.due(ticks(WHEEL_SLOTS - 1)) == [a]


def test_a_late_turn_returns_every_flow_whose_wait_ended() -> None:
    pacer: Pacer[Flow] = Pacer(now=ticks(10))
    flows = [Flow(str(i)) for i in range(50)]
    for i, flow in enumerate(flows):
        pacer.defer(flow, ticks(11 + i * 100))
    assert pacer.due(ticks(10 + 2 * WHEEL_SLOTS)) == flows


def test_a_bucket_sends_its_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket.for_rate(8_000_000, MSS, now=0.0)   # 1 MB/s, burst two frames
    frame = MSS + FRAME_OVERHEAD
    assert bucket.burst == 2 * frame
    assert bucket.take(MSS, 0.0) == 0.0 and bucket.take(MSS, 0.0) == 0.0
    assert bucket.take(MSS, 0.0) == pytest.approx(frame / 1e6)
    assert bucket.take(MSS, frame / 1e6) == 0.0
    bucket.retune(16_000_000, MSS, frame / 1e6)
    assert bucket.take(MSS, frame / 1e6) == pytest.approx(frame / 2e6)
