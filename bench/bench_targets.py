"""Packets per second of p4tas's pipeline on each target, same traffic, same run: bmv2
(simple_switch_grpc running p4src/), softnic (the software fast path) and dpdk (the PNA program
on DPDK's SWX pipeline).

The traffic is one flow's common case: in-order data segments from the wire (each makes an
RX_DATA frame to the host port and an ACK to the wire) alternating with TX_DATA messages from
the host port (each makes a data segment on the wire). The sender keeps at most --window
inputs outstanding (closed loop, so neither target drops for want of queue room); the rate is
inputs over the time from the first input to the last output. That loop is itself Python, so
it also measures a burst (the target's ceiling): the target's packet process is stopped
(SIGSTOP), --burst inputs are queued in its sockets, and once it is continued the rate is
inputs over the time until the kernel has counted every output on the peers' sockets
(PACKET_STATISTICS: nothing has to read them). `--profile` also runs softnic's pipeline in this
process on the same frames under cProfile (its hot spots).
The last line is one JSON object."""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import select
import signal
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bmv2_env import env, targets  # noqa: E402
from bmv2_env.portmap import PortMap  # noqa: E402
from benchlib import describe_bmv2  # noqa: E402
from dpdk_target import toolchain  # noqa: E402
from nic_contract.constants import HOST_PORT, ack_clone_sessions  # noqa: E402
from nic_contract.host_port import HostPort  # noqa: E402
from nic_contract.flow_entries import FlowSpec, FlowTuple, flow_entries  # noqa: E402
from nic_contract.nic_host_header import ChannelFlags, tx_data  # noqa: E402
from nic_contract.p4rt.client import P4RuntimeClient  # noqa: E402
from scapy.layers.inet import IP, TCP  # noqa: E402
from scapy.layers.l2 import Ether  # noqa: E402

ETH_P_ALL = 3
SOL_PACKET, PACKET_STATISTICS = 263, 6
OUTPUTS = {"data": 2, "tx": 1}   # frames each kind of input makes
SPEC = FlowSpec(flow_id=7, generation=3, tuple=FlowTuple("10.8.0.1", 5000, "10.8.0.2", 40000),
                local_mac="02:00:00:00:00:01", peer_mac="02:00:00:00:00:02",
                rx_ring_size=1 << 24, rx_start_seq=1000, tx_start_seq=9000, wire_port=1,
                rx_window_shift=9, timestamps=True, peer_window=65535)


def traffic(count: int, payload: int) -> list[tuple[int, bytes, int]]:
    """(ingress port, frame, outputs expected) alternating wire data and host TX_DATA."""
    rng, t, items = random.Random(1), SPEC.tuple, []
    data = rng.randbytes(payload)
    for i in range(count):
        if i % 2 == 0:
            seq = SPEC.rx_start_seq + (i // 2) * payload
            frame = (Ether(src=SPEC.peer_mac, dst=SPEC.local_mac)
                     / IP(src=t.peer_ip, dst=t.local_ip, flags="DF")
                     / TCP(sport=t.peer_port, dport=t.local_port, seq=seq,
                           ack=SPEC.tx_start_seq, flags="A", window=65535,
                           options=[("NOP", None), ("NOP", None), ("Timestamp", (i, 0))])
                     / data)
            items.append((SPEC.wire_port, bytes(frame), OUTPUTS["data"]))
        else:
            pos = (i // 2) * payload
            msg = tx_data(SPEC.flow_id, SPEC.generation, ChannelFlags.PSH, pos, pos, data)
            items.append((HOST_PORT, msg.encode(), OUTPUTS["tx"]))
    return items


def measure(target: str, prefix: str, items: list, window: int, burst: int,
            extra: Callable[[P4RuntimeClient, dict[int, HostPort]], dict] | None = None) -> dict:
    """Closed-loop and burst rates of `items` on `target`; `extra` measures more on the same
    switch afterwards (its figures are added)."""
    result = env.up(env.EnvOptions(ports=1, prefix=prefix, target=target))
    ports: dict[int, HostPort] = {}
    try:
        with P4RuntimeClient(result.record.grpc_addr) as client:
            client.fetch_p4info()
            client.write_clone_sessions(ack_clone_sessions([1]))
            client.insert(flow_entries(client.p4info, SPEC))
            ports = {link.port: HostPort(link.peer_iface, ethertype=ETH_P_ALL)
                     for link in PortMap(1, prefix).links()}
            measured = run_closed_loop(ports, items[:len(items) - burst], window)
            if burst:   # the same flow's next segments and TX_DATA
                measured["burst"] = run_burst(packet_process(target, result.pid), ports,
                                              items[len(items) - burst:])
            if extra is not None:
                measured |= extra(client, ports)
            return measured
    finally:
        for sock in ports.values():
            sock.close()
        env.down(prefix)


def packet_process(target: str, pid: int) -> int:
    """The process that runs the packets: the switch itself, or on dpdk its runner."""
    if target != "dpdk":
        return pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0])


def _counted(sock: HostPort) -> int:
    """Frames the kernel queued or dropped on `sock` since the last call."""
    stats = sock._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)   # tp_packets, tp_drops
    return int.from_bytes(stats[:4], "little")


def run_burst(pid: int, ports: dict[int, HostPort], items: list) -> dict:
    """Inputs per second while the target drains `items` queued while it was stopped."""
    expected = sum(n for _, _, n in items)
    for sock in ports.values():
        _counted(sock)
    os.kill(pid, signal.SIGSTOP)
    try:
        for port, frame, _ in items:
            ports[port].send(frame)
        time.sleep(0.2)
        for sock in ports.values():
            _counted(sock)   # what the kernel looped back of our own sends
    finally:
        os.kill(pid, signal.SIGCONT)
    start = time.perf_counter()
    counted, last = 0, start
    while counted < expected and time.perf_counter() - last < 2.0:
        time.sleep(0.001)
        got = sum(_counted(sock) for sock in ports.values())
        if got:
            counted, last = counted + got, time.perf_counter()

    elapsed = last - start
    return {"inputs": len(items), "outputs": counted, "expected_outputs": expected,
            "seconds": round(elapsed, 4),
            "pps": round(len(items) / elapsed) if counted >= expected and elapsed else None}


def run_closed_loop(ports: dict[int, HostPort], items: list, window: int) -> dict:
    expected = sum(n for _, _, n in items)
    sent = received = 0
    owed: list[int] = []          # outputs still due per outstanding input, oldest first
    start = time.perf_counter()
    last_progress = start
    while received < expected:
        while sent < len(items) and len(owed) < window:
            port, frame, outputs = items[sent]
            if not ports[port].send(frame):
                break
            owed.append(outputs)
            sent += 1
        select.select(list(ports.values()), [], [], 0.05)
        got = sum(len(sock.recv_batch()) for sock in ports.values())
        if got:
            received += got
            last_progress = time.perf_counter()
            while owed and got >= owed[0]:
                got -= owed.pop(0)
            if owed and got:
                owed[0] -= got
        elif time.perf_counter() - last_progress > 2.0:
            break                  # lost frames: stop, report what came
    elapsed = last_progress - start
    inputs_done = sent - len(owed)
    return {"inputs": inputs_done, "outputs": received, "expected_outputs": expected,
            "seconds": round(elapsed, 3), "pps": round(inputs_done / elapsed) if elapsed else None}


def _ip(text: str) -> int:
    return int.from_bytes(bytes(map(int, text.split("."))), "big")


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


def profile_softnic(items: list, top: int) -> str:
    """softnic's pipeline on the same frames in this process, under cProfile."""
    from google.protobuf import text_format  # noqa: PLC0415 - only for --profile
    from nic_contract.p4rt.proto import p4info_pb2  # noqa: PLC0415
    from nic_contract.pipeline import BMV2_JSON, P4INFO  # noqa: PLC0415
    from softnic.p4runtime.program import Program  # noqa: PLC0415
    from softnic.pipeline.flow_lookup import (FLOW_LOOKUP, FLOW_STATE, SET_FLOW_ID,  # noqa: PLC0415
                                              SET_FLOW_STATE)
    from softnic.pipeline.p4tas import P4tasPipeline  # noqa: PLC0415
    program = Program(text_format.Parse(P4INFO.read_text(), p4info_pb2.P4Info()))
    state = program.new_state(program.default_actions(BMV2_JSON.read_bytes()))
    state.clone_sessions.update(ack_clone_sessions([1]))
    t = SPEC.tuple
    state.tables[FLOW_LOOKUP].entries[(_ip(t.peer_ip), _ip(t.local_ip), t.peer_port,
                                       t.local_port)] = (SET_FLOW_ID, (SPEC.flow_id,))
    state.tables[FLOW_STATE].entries[(SPEC.flow_id,)] = (SET_FLOW_STATE, (
        SPEC.generation, _mac(SPEC.local_mac), _mac(SPEC.peer_mac), _ip(t.local_ip),
        _ip(t.peer_ip), t.local_port, t.peer_port, SPEC.wire_port, SPEC.rx_ring_size,
        SPEC.rx_start_seq, SPEC.tx_start_seq, SPEC.rx_window_shift, 1, SPEC.peer_window))
    pipeline = P4tasPipeline(state)
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    outputs = sum(len(pipeline.process(port, frame, 0)) for port, frame, _ in items)
    profiler.disable()
    elapsed = time.perf_counter() - start
    out = StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return (f"softnic pipeline in-process (profiled): {len(items)} inputs, {outputs} outputs, "
            f"{elapsed / len(items) * 1e6:.1f} us per input under cProfile\n{out.getvalue()}")


def _ratio(results: dict, top: str, bottom: str) -> float | None:
    if top in results and bottom in results and results[bottom]["pps"]:
        return round(results[top]["pps"] / results[bottom]["pps"], 2)
    return None


def _burst_ratio(results: dict, top: str, bottom: str) -> float | None:
    pps = [results.get(name, {}).get("burst", {}).get("pps") for name in (top, bottom)]
    return round(pps[0] / pps[1], 2) if all(pps) else None


def describe_dpdk() -> str:
    """DPDK's version, the runner and the pipeline library that ran (dpdk_target.toolchain)."""
    return (f"DPDK {toolchain.dpdk_version()} (Debian), runner {toolchain.runner().name}, "
            f"pipeline {toolchain.pipeline_library().name} (cc {' '.join(toolchain.CFLAGS)})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--payload", type=int, default=1000)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--burst", type=int, default=10000,
                        help="inputs queued while the target is stopped (0: no burst)")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    items = traffic(args.packets + args.burst, args.payload)
    results = {}
    for name, prefix in (("bmv2", "p4btb"), ("soft", "p4bts"), ("dpdk", "p4btd")):
        missing = targets.get(name).missing()
        if missing:
            print(f"{name}: skipped ({missing})", flush=True)
            continue
        results[name] = measure(name, prefix, items, args.window, args.burst)
        r = results[name]
        print(f"{name}: {r['pps']} packets/s ({r['inputs']} inputs, {r['outputs']}/"
              f"{r['expected_outputs']} outputs in {r['seconds']} s)", flush=True)
        if "burst" in r:
            b = r["burst"]
            print(f"{name} burst: {b['pps']} packets/s ({b['inputs']} queued inputs, "
                  f"{b['outputs']}/{b['expected_outputs']} outputs in {b['seconds']} s)",
                  flush=True)
    print(f"bmv2 build: {describe_bmv2() if 'bmv2' in results else 'not run'}", flush=True)
    print(f"dpdk build: {describe_dpdk() if 'dpdk' in results else 'not run'}", flush=True)
    ratio, dpdk_ratio = _ratio(results, "soft", "bmv2"), _ratio(results, "dpdk", "soft")
    burst_ratio = _burst_ratio(results, "dpdk", "soft")
    if burst_ratio is not None:
        print(f"dpdk / softnic (burst): {burst_ratio}", flush=True)
    if ratio is not None:
        print(f"softnic / bmv2: {ratio}", flush=True)
    if dpdk_ratio is not None:
        print(f"dpdk / softnic: {dpdk_ratio}", flush=True)
    if args.profile:
        print(profile_softnic(items, 15), flush=True)
    print(json.dumps({"bench": "targets", "packets": args.packets, "payload": args.payload,
                      "window": args.window, "results": results, "soft_over_bmv2": ratio,
                      "dpdk_over_soft": dpdk_ratio, "dpdk_over_soft_burst": burst_ratio}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
