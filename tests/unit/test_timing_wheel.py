"""runtime.timing_wheel and the RTT/RTO arithmetic of runtime.retransmission."""

from __future__ import annotations

import random

import pytest

from runtime.retransmission import RtoConfig, RttEstimator
from runtime.timing_wheel import TimingWheel


def test_keys_fire_once_their_deadline_passed_in_order() -> None:
    wheel: TimingWheel[str] = TimingWheel(0.01, 16, now=0.0)
    wheel.schedule("b", 0.035)
    wheel.schedule("a", 0.012)
    wheel.schedule("c", 0.035)
    assert wheel.advance(0.011) == []
    assert wheel.advance(0.02) == ["a"]
    assert wheel.advance(0.034) == []
    assert sorted(wheel.advance(0.05)) == ["b", "c"]
    assert len(wheel) == 0


def test_deadlines_beyond_the_wheel_wait_for_their_round() -> None:
    wheel: TimingWheel[int] = TimingWheel(0.01, 8, now=0.0)  # spans 80 ms
    wheel.schedule(1, 0.5)
    for step in range(1, 50):
        assert wheel.advance(step * 0.01) == [], step
    assert wheel.advance(0.5) == [1]


def test_reschedule_and_cancel() -> None:
    wheel: TimingWheel[int] = TimingWheel(0.01, 16, now=0.0)
    wheel.schedule(1, 0.02)
    wheel.schedule(1, 0.05)  # replaces
    wheel.schedule(2, 0.03)
    wheel.cancel(2)
    assert 1 in wheel and 2 not in wheel
    assert wheel.advance(0.04) == []
    assert wheel.advance(0.06) == [1]


def test_a_long_pause_fires_everything_due_and_nothing_else() -> None:
    wheel: TimingWheel[int] = TimingWheel(0.001, 64, now=0.0)
    rng = random.Random(5)
    deadlines = {key: rng.uniform(0.0, 1.0) for key in range(500)}
    for key, deadline in deadlines.items():
        wheel.schedule(key, deadline)
    fired = set(wheel.advance(0.5))
    assert fired == {k for k, d in deadlines.items() if d <= 0.5}
    assert set(wheel.advance(1.0)) == {k for k, d in deadlines.items() if d > 0.5}


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        TimingWheel(0.0, 8, now=0.0)


def test_rtt_estimator_follows_rfc_6298() -> None:
    config = RtoConfig(min_rto_s=0.001, max_rto_s=10.0, initial_rto_s=1.0)
    rtt = RttEstimator()
    assert rtt.rto(config) == 1.0
    rtt.sample(0.1)
    assert rtt.srtt_s == pytest.approx(0.1) and rtt.rttvar_s == pytest.approx(0.05)
    assert rtt.rto(config) == pytest.approx(0.1 + 4 * 0.05)
    rtt.sample(0.2)
    # rttvar = 3/4 * 0.05 + 1/4 * |0.1 - 0.2|; srtt = 7/8 * 0.1 + 1/8 * 0.2
    assert rtt.rttvar_s == pytest.approx(0.0625) and rtt.srtt_s == pytest.approx(0.1125)
    assert RttEstimator(0.0001, 0.0).rto(RtoConfig(min_rto_s=0.05)) == 0.05
