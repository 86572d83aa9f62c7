"""The congestion-control loop's cost per interval follows the active flows, not the attached
ones (issue 18, item 3): idle flows leave the timing wheel and cost nothing per interval."""

from __future__ import annotations

import time

from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import PipelineFiles
from runtime.congestion.algorithm import RateLimits
from runtime.congestion.controller import ControlConfig, RateController
from runtime.congestion.dctcp import RateDctcp
from runtime.flow_registry import FlowRegistry
from tests.unit.test_congestion import Bridge, Channel, attach

SCALE_P4INFO = P4Info.from_file(PipelineFiles.scale().p4info)   # meters for 1M flow ids

WIDE = RateLimits(min_bps=1e3, max_bps=1e12)
ACTIVE = 1000


def loop_with(flows: int) -> tuple[Bridge, RateController]:
    """A controller with `flows` attached flows, all idle after their first interval."""
    bridge = Bridge()
    controller = RateController(FlowRegistry(bridge), SCALE_P4INFO, lambda entries: None,
                                ControlConfig(initial_interval_s=0.01))
    for fid in range(flows):
        channel = bridge.channels[fid] = Channel(fid)
        attach(controller, channel, RateDctcp(WIDE))
    return bridge, controller


def intervals(bridge: Bridge, controller: RateController, count: int) -> float:
    """Seconds per interval of `count` intervals in which flows 0..ACTIVE-1 send."""
    start = time.perf_counter()
    for _ in range(count):
        for fid in range(ACTIVE):
            counters = bridge.channels[fid].counters
            counters.tx_bytes += 14480
            counters.acked_bytes += 14480
        bridge.active = list(range(ACTIVE))
        controller.run_once(bridge.now)
        bridge.now += 0.011   # one initial interval
    controller.run_once(bridge.now)
    return (time.perf_counter() - start) / count


def test_idle_flows_cost_nothing_per_interval() -> None:
    bridge, controller = loop_with(20_000)
    for _ in range(3):   # every flow's first interval ends; the idle ones leave the wheel
        controller.run_once(bridge.now)
        bridge.now += 0.011
    before = controller.updates
    controller.run_once(bridge.now)
    bridge.now += 0.011
    controller.run_once(bridge.now)
    assert controller.updates == before and len(controller._wheel) == 0


def test_interval_cost_is_flat_in_idle_flows() -> None:
    small, large = loop_with(ACTIVE), loop_with(100 * ACTIVE)
    intervals(*small, 3), intervals(*large, 3)   # warm up: every flow has had its interval
    updates = large[1].updates
    few = min(intervals(*small, 5) for _ in range(3))
    many = min(intervals(*large, 5) for _ in range(3))
    # the active ones only, about once per interval each (the wheel's ticks round deadlines)
    assert 10 * ACTIVE <= large[1].updates - updates <= 15 * ACTIVE
    assert many < 2.0 * few, f"{many * 1e3:.2f} ms per interval with 100x idle flows, " \
                             f"{few * 1e3:.2f} ms without"
