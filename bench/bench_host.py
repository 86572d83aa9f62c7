"""The host side alone (issue 16): the runtime's DMA bridge, connection control and control
server in this process, a host_lib application (bench/transfer_peer.py) in its own, and in
place of the target and the network an in-process loopback (bench/host_loopback.py) that turns
every TX_DATA into its TX_ACKED at once and feeds RX_DATA as fast as the RX window allows.

(a) bulk receive: the loopback delivers --bytes of MSS-sized RX_DATA to a host_lib sink, then
    the peer's FIN; first frame .. the sink's answer (its byte count, sent at end of stream).
(b) bulk send: a host_lib application sends --bytes; first TX_DATA .. the last byte's.
(c) RPC: 64-byte requests as RX_DATA, one outstanding per connection, echoed by a host_lib
    echo server; requests/s and p50/p99 latency for 1 and 16 connections.

Each figure comes with the CPU seconds of the runtime's process (loopback included) and of the
application, and as Gbit/s (requests/s) per CPU second: what one core does. The baseline is the
issue's goal (2 Gbit/s of MSS payload, 100k RPC/s on one core) and the same applications on
Linux loopback TCP (127.0.0.1), measured in the same run. No target, no root needed; the last
line of the output is one JSON object.

--profile DIR: one more run of each workload with py-spy on the runtime's process and on the
application; the raw stacks go to DIR and the hot spots are printed and put in the JSON.

    .venv/bin/python bench/bench_host.py [--bytes N] [--profile DIR]   # or: make bench-host
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from benchlib import REPO, _int_range, cpu_seconds, guarded, stop_tracked  # noqa: E402
from host_loopback import LOCAL_IP, LOCAL_MAC, LoopbackPeer, PeerFlow  # noqa: E402
from transfer_procs import finish, median, spawn, start_server, stop_server  # noqa: E402
from transfer_profile import (  # noqa: E402
    find_py_spy, hot_spots, start_py_spy, stop_py_spy)

from nic_contract.p4rt.p4info import P4Info  # noqa: E402
from nic_contract.pipeline import P4INFO  # noqa: E402
from runtime.config import Interface, RuntimeConfig, TcpParams  # noqa: E402
from runtime.connection_control import ConnectionControl  # noqa: E402
from runtime.control_server import ControlServer  # noqa: E402
from runtime.daemon import app_layout  # noqa: E402
from runtime.dma_bridge import DmaBridge  # noqa: E402
from runtime.flow_registry import FlowRegistry  # noqa: E402

APP_PORT = 7000
LINUX_PORT = 5105
GOAL_GBPS, GOAL_RPS = 2.0, 100_000


@dataclass
class Run:
    """One measured stretch: wall seconds and the CPU seconds of each process."""

    seconds: float
    runtime_cpu: float
    app_cpu: float
    units: float    # bytes (bulk) or requests (RPC)
    latency_us: dict[float, float | None] | None = None   # RPC: p50 and p99

    @property
    def rate(self) -> float:
        """Units per wall second."""
        return self.units / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_core(self) -> float:
        """Units per CPU second of both processes together."""
        cpu = self.runtime_cpu + self.app_cpu
        return self.units / cpu if cpu > 0 else 0.0

    def figures(self, scale: float) -> dict:
        return {"rate": round(self.rate * scale, 3), "per_core": round(self.per_core * scale, 3),
                "seconds": round(self.seconds, 4), "runtime_cpu_s": round(self.runtime_cpu, 4),
                "app_cpu_s": round(self.app_cpu, 4)}


@dataclass
class HostSide:
    """The runtime's host side in this process, on the loopback."""

    directory: Path
    peer: LoopbackPeer = field(default_factory=LoopbackPeer)
    control: ConnectionControl | None = None
    bridge: DmaBridge | None = None
    server: ControlServer | None = None
    tcp: TcpParams = field(default_factory=TcpParams)   # bench-scale: more, smaller slots

    @property
    def socket(self) -> Path:
        return self.directory / "control.sock"

    async def start(self) -> None:
        config = RuntimeConfig(interfaces=(Interface(1, LOCAL_IP, LOCAL_MAC),),
                               control_socket=self.socket, tcp=self.tcp)
        self.bridge = DmaBridge(
            self.peer.link, on_activity=lambda ch: self.control.on_data_activity(ch),
            on_flow_error=lambda flow_id, cause: self.control.on_flow_error(flow_id, cause.value))
        self.control = ConnectionControl(config, self.peer, P4Info.from_file(P4INFO),
                                         FlowRegistry(self.bridge))
        self.peer.control = self.control
        self.server = ControlServer(self.socket, self.control, app_layout(config))
        await self.server.start()
        self.bridge.start()

    async def stop(self) -> None:
        if self.control is not None:
            await self.control.shutdown_all()
        if self.server is not None:
            await self.server.close()
        if self.bridge is not None:
            self.bridge.stop()
        self.peer.link.close()


@dataclass
class Workload:
    """One workload: its application and one measured run."""

    name: str
    app_argv: list
    run: Callable[["Bench", subprocess.Popen], Awaitable[Run]]
    scale: float     # units -> the figure's unit (bits -> Gbit, requests)
    unit: str


class Bench:
    """The workloads on one HostSide."""

    def __init__(self, args: argparse.Namespace, host: HostSide) -> None:
        self.args = args
        self.host = host

    async def _open(self) -> PeerFlow:
        return await self.host.peer.open(APP_PORT, self.args.timeout)

    async def _wait(self, flows: list[PeerFlow]) -> None:
        await asyncio.wait_for(asyncio.gather(*(f.done.wait() for f in flows)),
                               self.args.deadline)

    async def bulk_recv(self, app: subprocess.Popen) -> Run:
        flow = await self._open()
        c0, a0 = time.process_time(), cpu_seconds(app.pid)
        self.host.peer.receive(flow, self.args.bytes)
        await self._wait([flow])
        run = Run(flow.done_at - flow.first_at, time.process_time() - c0,
                  cpu_seconds(app.pid) - a0, self.args.bytes)
        self.host.peer.close(flow)
        return run

    async def bulk_send(self, app: subprocess.Popen) -> Run:
        c0, a0 = time.process_time(), cpu_seconds(app.pid)
        flow = await self._open()
        self.host.peer.expect(flow, self.args.bytes)
        await self._wait([flow])
        return Run(flow.done_at - flow.first_at, time.process_time() - c0,
                   cpu_seconds(app.pid) - a0, self.args.bytes)

    async def rpc(self, app: subprocess.Popen, conns: int) -> Run:
        flows = [await self._open() for _ in range(conns)]
        now = time.monotonic()
        measure_from = now + self.args.rpc_warmup
        stop_at = measure_from + self.args.rpc_seconds
        for flow in flows:
            self.host.peer.rpc(flow, bytes(range(64)), measure_from, stop_at)
        await asyncio.sleep(self.args.rpc_warmup)
        c0, a0 = time.process_time(), cpu_seconds(app.pid)
        await self._wait(flows)
        latencies = sorted(x for f in flows for x in f.rpc.latencies)
        run = Run(self.args.rpc_seconds, time.process_time() - c0, cpu_seconds(app.pid) - a0,
                  len(latencies))
        run.latency_us = {q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))]
                                   * 1e6, 1) if latencies else None for q in (0.5, 0.99)}
        for flow in flows:
            self.host.peer.close(flow)
        return run

    def workloads(self) -> list[Workload]:
        args = self.args
        common = [LOCAL_IP, APP_PORT, "--timeout", args.timeout]
        out = [Workload("bulk_recv", ["sink", "p4tas", *common], Bench.bulk_recv, 8e-9,
                        "Gbit/s"),
               Workload("bulk_send", ["spout", "p4tas", *common, "--bytes", args.bytes],
                        Bench.bulk_send, 8e-9, "Gbit/s")]
        for conns in args.rpc_conns:
            out.append(Workload(f"rpc_{conns}", ["echo", "p4tas", *common],
                                lambda bench, app, c=conns: bench.rpc(app, c), 1.0, "req/s"))
        return [w for w in out if w.name.split("_")[0] in args.parts or w.name in args.parts]

    async def measure(self, work: Workload) -> dict:
        """--repeat runs (RPC: one) with the workload's application; the median by rate."""
        app = await asyncio.to_thread(start_server, work.app_argv, None, work.name,
                                      self.host.socket)
        self._pin(app.pid)
        try:
            repeat = 1 if work.name.startswith("rpc") else self.args.repeat
            runs = [await work.run(self, app) for _ in range(repeat)]
            profile = await self._profile(work, app) if self.args.profile else None
        finally:
            result = await asyncio.to_thread(stop_server, app, work.name)
        best = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
        entry = best.figures(work.scale) | {"unit": work.unit,
                                            "runs": [round(r.rate * work.scale, 3) for r in runs]}
        if best.latency_us is not None:
            entry["p50_us"], entry["p99_us"] = best.latency_us[0.5], best.latency_us[0.99]
        if "error" in result:
            entry["app_error"] = result["error"]
        if profile is not None:
            entry["profile"] = profile
        return entry

    async def _profile(self, work: Workload, app: subprocess.Popen) -> dict:
        py_spy = find_py_spy()
        if py_spy is None:
            return {"skipped": "py-spy not found (pip install py-spy into the venv)"}
        out = Path(self.args.profile)
        out.mkdir(parents=True, exist_ok=True)
        spies = {who: (start_py_spy(py_spy, pid, out / f"{work.name}.{who}.txt",
                                    self.args.profile_rate), out / f"{work.name}.{who}.txt")
                 for who, pid in (("runtime", os.getpid()), ("app", app.pid))}
        await asyncio.sleep(0.5)   # py-spy attaches
        await work.run(self, app)
        entry = {}
        for who, (proc, path) in spies.items():
            await asyncio.to_thread(stop_py_spy, proc)
            entry[who] = hot_spots(path, self.args.profile_top) | {"raw": str(path)}
        return entry

    def _pin(self, app_pid: int) -> None:
        if self.args.pin is not None:
            os.sched_setaffinity(0, {self.args.pin})
            os.sched_setaffinity(app_pid, {self.args.pin})


def linux_baseline(args: argparse.Namespace) -> dict:
    """The same applications on Linux loopback TCP: bulk (sink <- source) and RPC."""
    common = ["127.0.0.1", LINUX_PORT, "--timeout", args.timeout]
    out: dict = {}
    if args.parts & {"bulk"}:
        sink = start_server(["sink", "linux", *common], None, "linux sink")
        rates = []
        for _ in range(args.repeat):
            run = finish(spawn(["source", "linux", *common, "--bytes", args.linux_bytes,
                                "--deadline", args.deadline], None),
                         args.deadline + 10, "linux source")
            if run.get("status") == "ok":
                rates.append(run["bytes"] * 8 / run["seconds"] / 1e9)
        stop_server(sink, "linux sink")
        rate = median(rates)
        out["bulk"] = {"rate": None if rate is None else round(rate, 3), "unit": "Gbit/s",
                       "runs": [round(r, 3) for r in rates]}
    if "rpc" in args.parts:
        echo = start_server(["echo", "linux", *common], None, "linux echo")
        for conns in args.rpc_conns:
            run = finish(spawn(["rpc", "127.0.0.1", LINUX_PORT, "--conns", conns, "--seconds",
                                args.rpc_seconds, "--timeout", args.timeout], None),
                         args.rpc_seconds + 2 * args.timeout + 10, "linux rpc")
            out[f"rpc_{conns}"] = {"rate": run.get("rate"), "unit": "req/s",
                                   "p50_us": run.get("p50_us"), "p99_us": run.get("p99_us"),
                                   "status": run.get("status")}
        stop_server(echo, "linux echo")
    return out


def describe_build() -> str:
    """The code measured: the git commit (and whether the tree has changes), Python."""
    def git(*cmd: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *cmd], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    rev = git("rev-parse", "--short", "HEAD") or "unknown commit"
    dirty = " + uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") \
        else ""
    return f"p4tas {rev}{dirty}, Python {platform.python_version()} ({sys.executable})"


def print_entry(name: str, entry: dict, linux: dict) -> None:
    """One workload's figures as a text line, with its baseline."""
    base = linux.get("bulk" if name.startswith("bulk") else name, {}).get("rate")
    goal = GOAL_GBPS if entry["unit"] == "Gbit/s" else GOAL_RPS
    latency = f", p50 {entry['p50_us']} us, p99 {entry['p99_us']} us" if "p50_us" in entry \
        else ""
    print(f"  {name:<10} {entry['rate']:>10.3f} {entry['unit']} wall (runs {entry['runs']}); "
          f"{entry['per_core']:.3f} {entry['unit']} per CPU second (runtime "
          f"{entry['runtime_cpu_s']:.2f} s + app {entry['app_cpu_s']:.2f} s over "
          f"{entry['seconds']:.2f} s){latency}; goal {goal:g} per core"
          f" ({entry['per_core'] / goal:.4f}), Linux loopback {base}", flush=True)
    for who, spots in (entry.get("profile") or {}).items():
        if not isinstance(spots, dict) or "self_pct" not in spots:
            print(f"    profile {who}: {spots}")
            continue
        print(f"    {who}: {spots['samples']} samples ({spots['raw']}); self time:")
        for frame, pct in spots["self_pct"]:
            print(f"      {pct:5.1f}%  {frame}")


async def run_all(args: argparse.Namespace, results: dict) -> None:
    with tempfile.TemporaryDirectory(prefix="p4tas-bench-host-") as directory:
        host = HostSide(Path(directory))
        await host.start()
        try:
            bench = Bench(args, host)
            for work in bench.workloads():
                results[work.name] = await bench.measure(work)
        finally:
            await host.stop()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench_host.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=_int_range(1, 1 << 32), default=32 << 20,
                        help="bytes per bulk run (default %(default)s)")
    parser.add_argument("--linux-bytes", type=_int_range(1, 1 << 34), default=1 << 30,
                        help="bytes per Linux loopback bulk run (default %(default)s)")
    parser.add_argument("--repeat", type=_int_range(1, 20), default=3,
                        help="bulk runs; the median is reported (default %(default)s)")
    parser.add_argument("--rpc-seconds", type=float, default=2.0,
                        help="measured seconds per RPC variant (default %(default)s)")
    parser.add_argument("--rpc-warmup", type=float, default=0.5,
                        help="RPC seconds before the measurement (default %(default)s)")
    parser.add_argument("--rpc-conns", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 16],
                        help="connection counts of the RPC variants (default 1,16)")
    parser.add_argument("--only", default="bulk,rpc,linux",
                        help="parts: bulk (or bulk_recv, bulk_send), rpc, linux "
                             "(default %(default)s)")
    parser.add_argument("--pin", type=int, metavar="CPU",
                        help="run this process and the application on one CPU")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="per socket operation in the applications (default %(default)s s)")
    parser.add_argument("--deadline", type=float, default=60.0,
                        help="per run (default %(default)s s)")
    parser.add_argument("--profile", metavar="DIR",
                        help="one more run of each workload under py-spy; raw stacks go to DIR")
    parser.add_argument("--profile-rate", type=int, default=250,
                        help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--profile-top", type=int, default=12,
                        help="hot spots listed per process (default %(default)s)")
    args = parser.parse_args(argv)
    args.parts = set(args.only.split(","))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    build = describe_build()
    print(f"bench-host: bulk {args.bytes} B x {args.repeat} each way, RPC 64 B {args.rpc_conns} "
          f"connections x {args.rpc_seconds:g} s; load {os.getloadavg()[0]:.2f} on "
          f"{os.cpu_count()} CPUs{'' if args.pin is None else f', pinned to CPU {args.pin}'}")
    print("target: none: the host side alone (runtime bridge, connection control and control "
          "server in this process, host_lib application in its own) on an in-process loopback "
          "NIC and peer (bench/host_loopback.py)")
    print(f"build: {build}", flush=True)
    results: dict = {}
    linux: dict = {}
    with guarded(stop_tracked) as outcome:
        asyncio.run(run_all(args, results))
        if "linux" in args.parts:
            linux = linux_baseline(args)
    head = {"bench": "host"}
    if outcome.failed("bench-host", head, build):
        return 1
    print("host side alone (rate on the wall clock; per CPU second = what one core does):")
    for name, entry in results.items():
        print_entry(name, entry, linux)
    print(f"Linux loopback TCP, same applications: {json.dumps(linux)}")
    print(json.dumps(head | {"build": build, "target": "loopback", "load": os.getloadavg()[0],
                             "goal": {"gbit_per_s_per_core": GOAL_GBPS,
                                      "rpc_per_s_per_core": GOAL_RPS},
                             "host": results, "linux_loopback": linux,
                             "seconds": round(time.monotonic() - started, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
