"""TCP keepalive (runtime.keepalive) in its timers and in the DMA bridge: probes one byte below
snd_una after the idle time, every interval while unanswered, anything from the peer resets it,
and the flow is given up after the configured count."""

from __future__ import annotations

import asyncio
import errno
from dataclasses import dataclass

import pytest

from host_lib import control_protocol as cp
from nic_contract.constants import PacketInReason
from nic_contract.nic_host_header import ChannelFlags
from runtime.keepalive import KeepaliveParams, KeepaliveState, KeepaliveTimers, Verdict
from runtime.nic_interface import DropCause
from runtime.tcp_segments import TcpFlags, TcpOptions
from tests.unit import test_dma_bridge
from tests.unit.test_dma_bridge import (FLOW, TX_START, Shm, recovering_bridge, rx_data,
                                        sent_data, tx_acked)

from tests.unit.test_nic_parts import PORT, Rig

shm = test_dma_bridge.shm  # the fixture: a real shared-memory segment

PARAMS = KeepaliveParams(idle_s=10, interval_s=2, count=3)


@dataclass(eq=False)
class Flow:
    """What the timers need of a flow."""

    keepalive: KeepaliveState | None = None


def configured() -> tuple[KeepaliveTimers[Flow], Flow]:
    """Timers with one flow whose keepalive (PARAMS) started at 0."""
    timers: KeepaliveTimers[Flow] = KeepaliveTimers(0.0)
    flow = Flow()
    timers.configure(flow, PARAMS, 0.0)
    return timers, flow


def run_until(timers: KeepaliveTimers, flow: Flow, start: float, end: float,
              busy: bool = False) -> list[tuple[float, Verdict]]:
    """Advance in 0.1 s steps; the verdicts that were not WAIT, with their times."""
    out = []
    steps = round((end - start) / 0.1)
    for step in range(1, steps + 1):
        now = start + step * 0.1
        for due in timers.due(now):
            verdict = timers.verdict(due, now, busy)
            if verdict is not Verdict.WAIT:
                out.append((round(now, 1), verdict))
    return out


def test_an_idle_silent_peer_is_probed_every_interval_then_given_up() -> None:
    timers, flow = configured()
    got = run_until(timers, flow, 0.0, 20.0)
    assert [v for _, v in got] == [Verdict.PROBE] * 3 + [Verdict.GIVE_UP]
    times = [t for t, _ in got]
    assert times[0] == pytest.approx(10.0, abs=0.15)
    assert [b - a for a, b in zip(times, times[1:])] == pytest.approx([2, 2, 2], abs=0.15)


def test_an_answered_probe_restarts_the_idle_time() -> None:
    timers, flow = configured()
    assert run_until(timers, flow, 0.0, 10.1) == [(pytest.approx(10.0, abs=0.15), Verdict.PROBE)]
    flow.keepalive.heard(10.2)          # the peer's ACK
    assert flow.keepalive.probes_out == 0
    got = run_until(timers, flow, 10.1, 25.0)
    assert got[0] == (pytest.approx(20.2, abs=0.15), Verdict.PROBE)


def test_traffic_defers_the_first_probe_without_rescheduling_per_segment() -> None:
    timers, flow = configured()
    for t in range(1, 16):
        flow.keepalive.heard(float(t))  # a segment a second, no timer work
    got = run_until(timers, flow, 0.0, 30.0)
    assert got[0] == (pytest.approx(25.0, abs=0.15), Verdict.PROBE)


def test_no_probe_while_data_is_in_flight() -> None:
    timers, flow = configured()
    assert run_until(timers, flow, 0.0, 50.0, busy=True) == []


def test_flows_without_keepalive_cost_nothing_and_off_stops_it() -> None:
    timers: KeepaliveTimers[Flow] = KeepaliveTimers(0.0)
    quiet, probed = Flow(), Flow()
    assert len(timers) == 0
    timers.configure(probed, PARAMS, 0.0)
    assert len(timers) == 1 and quiet.keepalive is None
    timers.configure(probed, None, 1.0)
    assert len(timers) == 0 and probed.keepalive is None
    assert run_until(timers, probed, 1.0, 30.0) == []


@pytest.mark.parametrize("bad", [dict(idle_s=0), dict(interval_s=40000), dict(count=0),
                                 dict(count=128)])
def test_parameters_are_bounded_as_linux_bounds_them(bad: dict) -> None:
    with pytest.raises(ValueError):
        KeepaliveParams(**bad)


def keepalive_bridge(shm: Shm, errors: list):
    flow, link, clock, bridge = recovering_bridge(shm, errors)
    bridge.set_keepalive(FLOW, KeepaliveParams(idle_s=1, interval_s=1, count=2))
    return flow, link, clock, bridge


def tick(bridge, clock, seconds: float) -> None:
    for _ in range(round(seconds / 0.05)):
        clock.now += 0.05
        bridge.check_keepalives(clock.now)


def test_bridge_probes_one_byte_below_snd_una_and_gives_up(shm: Shm) -> None:
    errors: list = []
    flow, link, clock, bridge = keepalive_bridge(shm, errors)
    flow.app_tx.write(b"k" * 100)
    bridge.kick(FLOW)
    bridge.handle_frame(tx_acked(TX_START + 100, 100, 10_000).encode())
    sent_data(link)
    tick(bridge, clock, 1.1)
    assert sent_data(link) == [(99, 99, 1, ChannelFlags.PROBE)]
    tick(bridge, clock, 1.1)
    assert sent_data(link) == [(99, 99, 1, ChannelFlags.PROBE)]
    assert errors == []
    tick(bridge, clock, 1.1)
    assert errors == [(FLOW, DropCause.KEEPALIVE)]
    assert flow.channel.counters.keepalive_probes == 2
    assert bridge.stats.recovery["keepalive_probes"] == 2
    link.close()


def test_bridge_answers_and_data_keep_the_connection(shm: Shm) -> None:
    errors: list = []
    flow, link, clock, bridge = keepalive_bridge(shm, errors)
    for _ in range(5):
        tick(bridge, clock, 1.1)
        # The peer's answer: an ACK of nothing new (the fast path reports it, window unchanged).
        bridge.handle_frame(tx_acked(TX_START, 0, 10_000).encode())
    assert len(sent_data(link)) == 5 and errors == []
    bridge.handle_frame(rx_data(0, b"still here").encode())
    tick(bridge, clock, 0.9)
    assert sent_data(link) == [] and errors == []
    link.close()


def test_bridge_forgets_keepalive_with_the_flow(shm: Shm) -> None:
    errors: list = []
    flow, link, clock, bridge = keepalive_bridge(shm, errors)
    assert len(bridge.keepalives) == 1
    bridge.unregister(FLOW)
    assert len(bridge.keepalives) == 0
    tick(bridge, clock, 5)
    assert sent_data(link) == [] and errors == []
    link.close()


# ------------------------------------------------------------------ connection control


def test_keepalive_set_during_the_handshake_applies_once_the_flow_is_in() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        r.segment(40000, 1000, 0, TcpFlags.SYN, reason=PacketInReason.SYN,
                  options=TcpOptions(mss=1460, window_scale=7))
        conn = next(iter(r.control.table.by_id.values()))
        r.control.set_keepalive(conn, PARAMS)
        assert r.nic.called("keepalive") == []  # no flow yet
        r.segment(40000, 1001, r.datapath.sent[-1].seq + 1, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        assert r.nic.called("keepalive") == [("keepalive", conn.channel.flow_id, PARAMS)]
        r.control.set_keepalive(conn, None)
        assert r.nic.called("keepalive")[-1] == ("keepalive", conn.channel.flow_id, None)
        r.close()
    asyncio.run(scenario())


def test_unanswered_keepalives_reset_the_connection_with_etimedout() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        r.control.on_flow_error(conn.channel.flow_id, DropCause.KEEPALIVE.value)
        errors = [e for e in r.app.events if isinstance(e, cp.ConnectionErrorEvent)]
        assert [e.errno for e in errors] == [errno.ETIMEDOUT]
        assert any(seg.flags & TcpFlags.RST for seg in r.datapath.sent)
        assert r.control.stats.counts["keepalive_timeouts"] == 1
        r.close()
    asyncio.run(scenario())
