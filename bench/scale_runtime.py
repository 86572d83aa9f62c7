"""bench-scale's runtime figures in this process: N flows attached as runtime.flow_install does
(a ring slot of an application's memory, a FlowChannel registered with the DmaBridge through
the FlowRegistry, a DCTCP controller attached to the RateController), then
  - the bridge's cost per RX_DATA frame from the host port, the same frames for the same
    --active flows at every N (bridge._handle_batch in RECV_BATCH batches, as the host port
    delivers them);
  - the control loop's cost (RateController.run_once, the per-tick work of the daemon) per
    interval with every flow idle, and with the --active flows acknowledging data every
    interval: per active flow and per idle flow;
  - the bytes per flow these records take (tracemalloc over the attach of the flows).
N is bounded by MAX_FLOWS: the controller's meter entry is indexed by the flow id.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

from host_lib.shm_layout import Layout
from nic_contract.constants import MAX_FLOWS
from nic_contract.host_port import RECV_BATCH
from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime import congestion
from runtime.app_memory import AppMemory
from runtime.config import TcpParams
from runtime.congestion.controller import ControlConfig, RateController
from runtime.dma_bridge import DmaBridge
from runtime.flow_channel import FlowChannel
from runtime.flow_registry import FlowRegistry

from host_loopback import LOCAL_IP, LoopbackPeer

RING = 16384         # bytes per RX and TX ring: the frames of a run fit, nobody reads them
PAYLOAD = 64
QUEUE_DEPTH = 1 << 18
INTERVAL_S = ControlConfig().initial_interval_s   # every flow's interval (no RTT sample)
REPEAT = 3           # timed runs per figure; the fastest counts


class _Clock:
    """Simulated time for the bridge and the controller (ticks advance it, not the wall)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RuntimeFlows:
    """The runtime's per-flow records of N flows, without a target: the bridge on the
    loopback link (whose peer knows none of these flows and answers nothing)."""

    clock: _Clock = field(default_factory=_Clock)
    memory: AppMemory | None = None
    bridge: DmaBridge | None = None
    registry: FlowRegistry | None = None
    rates: RateController | None = None
    channels: list[FlowChannel] = field(default_factory=list)
    meter_writes: int = 0
    peer: LoopbackPeer = field(default_factory=LoopbackPeer)

    def open(self, capacity: int) -> None:
        layout = Layout(rx_ring_size=RING, tx_ring_size=RING, max_connections=capacity,
                        max_contexts=1, queue_depth=QUEUE_DEPTH)
        self.memory, fd = AppMemory.create(1, layout)
        os.close(fd)
        self.bridge = DmaBridge(self.peer.link, clock=self.clock)
        self.registry = FlowRegistry(self.bridge)
        self.rates = RateController(self.registry, P4Info.from_file(P4INFO), self._write,
                                    ControlConfig())

    def _write(self, entries: list) -> None:
        self.meter_writes += len(entries)
        return None

    def attach(self, count: int) -> None:
        """`count` more flows, as FlowInstaller.attach makes them."""
        events = self.memory.events(0)
        for _ in range(count):
            flow_id = len(self.channels)
            slot, rx, tx = self.memory.allocate_slot()
            channel = FlowChannel(flow_id, 1, slot, rx, tx, events, opaque=flow_id,
                                  tx_start_seq=1000)
            flow = self.registry.attach(None, channel)
            self.rates.attach(flow, congestion.make("dctcp"))
            self.channels.append(channel)

    def close(self) -> None:
        if self.memory is not None:
            for channel in self.channels:
                self.memory.free_slot(channel.slot)
            self.memory.close()
        self.peer.link.close()


def rx_frames(channels: list[FlowChannel], rounds: int) -> list[bytes]:
    """`rounds` in-order RX_DATA frames of PAYLOAD bytes per channel, round robin, at each
    ring's current head (what the NIC sends next)."""
    frames = []
    heads = {ch.flow_id: ch.rx_ring.head for ch in channels}
    payload = bytes(PAYLOAD)
    for _ in range(rounds):
        for ch in channels:
            offset = heads[ch.flow_id] & (RING - 1)
            frames.append(NicHostMessage(Opcode.RX_DATA, ch.flow_id, ch.generation,
                                         ChannelFlags.PSH, offset, payload=payload).encode())
            heads[ch.flow_id] += PAYLOAD
    return frames


def bridge_ns_per_frame(flows: RuntimeFlows, active: list[FlowChannel], rounds: int) -> float:
    frames = rx_frames(active, rounds)
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for at in range(0, len(frames), RECV_BATCH):
            flows.bridge._handle_batch(frames[at:at + RECV_BATCH])
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / len(frames) * 1e9


def control_loop(flows: RuntimeFlows, active: list[FlowChannel], intervals: int) -> dict:
    """RateController.run_once every tick for `intervals` control intervals: seconds per
    interval with no flow active, and with `active` acknowledging a segment per tick."""
    rates, tick = flows.rates, 0.001
    ticks = round(intervals * INTERVAL_S / tick)

    def run(busy: list[FlowChannel]) -> tuple[float, int]:
        updates0 = rates.updates
        spent = 0.0
        gc.collect()
        gc.disable()
        try:
            for _ in range(ticks):
                flows.clock.now += tick
                for ch in busy:   # what TX_ACKED frames would have counted
                    ch.counters.tx_bytes += 1448
                    ch.counters.acked_bytes += 1448
                    flows.bridge._active[ch] = None
                start = time.perf_counter()
                rates.run_once(flows.clock.now)
                spent += time.perf_counter() - start
        finally:
            gc.enable()
        return spent, rates.updates - updates0
    run(active)          # warm-up: the active flows enter the wheel
    # The fastest of REPEAT runs counts: other work on a shared machine only adds time.
    busy_s, updates = min(run(active) for _ in range(REPEAT))
    for _ in range(3):   # let the wheel empty: idle flows leave it after one interval
        run([])
    idle_s, _ = min(run([]) for _ in range(REPEAT))
    return {"intervals": intervals, "idle_us_per_interval": round(idle_s / intervals * 1e6, 1),
            "busy_us_per_interval": round(busy_s / intervals * 1e6, 1),
            "updates": updates,
            "us_per_active_flow_update": round((busy_s - idle_s) / updates * 1e6, 2)
            if updates else None}


def measure(counts: list[int], active: int, rounds: int, intervals: int) -> dict:
    """Bridge and control-loop costs at each of `counts` flows (ascending, <= MAX_FLOWS), the
    first `active` flows busy; bytes per flow of the records from tracemalloc."""
    counts = sorted({min(n, MAX_FLOWS) for n in counts})
    flows = RuntimeFlows()
    out: dict = {"max_flows": MAX_FLOWS, "per_count": {}}

    async def body() -> None:
        flows.open(counts[-1])
        for count in counts:
            new = count - len(flows.channels)
            gc.collect()
            tracemalloc.start()
            before, _ = tracemalloc.get_traced_memory()
            t0 = time.perf_counter()
            flows.attach(new)
            attach_s = time.perf_counter() - t0
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            busy = flows.channels[:min(active, count)]
            bridge_ns_per_frame(flows, busy, 1)   # warm-up
            out["per_count"][count] = {
                "record_bytes_per_flow": round((after - before) / new, 1) if new else None,
                "attach_flows_per_s_traced": round(new / attach_s) if attach_s else None,
                "bridge_ns_per_frame": round(min(bridge_ns_per_frame(flows, busy, rounds)
                                                 for _ in range(REPEAT))),
                "control": control_loop(flows, busy, intervals)}
    try:
        asyncio.run(body())
    finally:
        flows.close()
    return out


def idle_cost_per_flow(per_count: dict) -> float | None:
    """us per interval per idle flow: the slope of the idle cost between the smallest and
    largest flow counts (0 when the loop does not look at idle flows)."""
    keys = sorted(per_count)
    if len(keys) < 2:
        return None
    low, high = per_count[keys[0]]["control"], per_count[keys[-1]]["control"]
    return round((high["idle_us_per_interval"] - low["idle_us_per_interval"])
                 / (keys[-1] - keys[0]), 6)


# ---- connection records through the runtime's own handshake -----------------------------------
APP_PORT = 7000
OPEN_BATCH = 256
APP = Path(__file__).resolve().parent / "scale_app.py"


def _peer_part(count: int) -> int:
    """Bytes LoopbackPeer.open keeps per connection on the peer's side (its PeerFlow in two
    dicts), to subtract from the process's growth."""
    from host_loopback import PeerFlow
    flows: dict = {}
    by_id: dict = {}
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for index in range(count):
        flow = PeerFlow(20000 + index, irs=0x10000000, app_port=APP_PORT)
        flows[flow.tuple] = flow
        by_id[index] = flow
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return after - before


def connection_records(count: int, directory: Path, timeout: float = 60.0) -> dict:
    """`count` connections from the loopback peer to a host_lib application (scale_app.py
    hold, its own process) through the runtime's handshake, flow install, control server,
    DmaBridge and RateController in this process: bytes per connection the runtime keeps
    (tracemalloc growth minus the peer's own part), and what host_lib keeps per socket (the
    application's own tracemalloc)."""
    from bench_host import HostSide   # the runtime's host side on the loopback
    from benchlib import spawn_script
    count = min(count, MAX_FLOWS, 40_000)   # the loopback peer's ports: 20000..59999
    host = HostSide(directory, tcp=TcpParams(rx_ring_size=RING, tx_ring_size=RING,
                                             max_app_connections=count + 8))
    out: dict = {"connections": count}
    env = dict(os.environ, P4TAS_CONTROL_SOCKET=str(host.socket), PYTHONUNBUFFERED="1")

    async def line(app: subprocess.Popen) -> str:
        return (await asyncio.get_running_loop().run_in_executor(
            None, app.stdout.readline)).strip()

    async def body() -> None:
        await host.start()
        app = spawn_script(APP, ["hold", LOCAL_IP, APP_PORT, "--conns", count, "--timeout",
                                 timeout], None, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, env=env)
        try:
            said = await asyncio.wait_for(line(app), 20)
            if said != "listening":
                raise RuntimeError(f"scale_app hold said {said!r}: {app.stderr.read()[-500:]}")
            gc.collect()
            tracemalloc.start()
            before, _ = tracemalloc.get_traced_memory()
            start = time.perf_counter()
            for at in range(0, count, OPEN_BATCH):
                await asyncio.gather(*(host.peer.open(APP_PORT, timeout)
                                       for _ in range(min(OPEN_BATCH, count - at))))
            elapsed = time.perf_counter() - start
            out["app"] = json.loads(await asyncio.wait_for(line(app), timeout))
            await asyncio.sleep(0.05)
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            out["established"] = sum(1 for c in host.control.table.by_id.values()
                                     if c.channel is not None)
            out["process_growth_bytes"] = after - before
            out["connections_per_s_traced"] = round(count / elapsed)
        finally:
            if tracemalloc.is_tracing():
                tracemalloc.stop()
            app.stdin.close()
            try:
                app.wait(timeout=30)
            except subprocess.TimeoutExpired:
                app.kill()
            await host.stop()
    asyncio.run(body())
    peer = _peer_part(count)
    out["peer_part_bytes"] = peer
    out["bytes_per_connection"] = round((out["process_growth_bytes"] - peer) / count, 1)
    return out
