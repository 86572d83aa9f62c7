"""Bytes per flow in the runtime and in softnic, measured with tracemalloc on records built the
way the runtime and softnic build them (issue 18, item 2). `python -m tests.support.footprint`
prints one JSON line; bench-scale and tests/unit/test_flow_footprint.py use the functions."""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, Callable

from host_lib.rings import ByteRing, EventQueue, RingSide
from nic_contract.flow_entries import FlowSpec, FlowTuple
from runtime import congestion
from runtime.config import Interface
from runtime.congestion.controller import FlowControl, _snapshot
from runtime.connections import Connection, ConnectionTable
from runtime.flow_channel import FlowChannel
from runtime.flow_ids import FlowIdAllocator
from runtime.flow_registry import Flow
from runtime.tcp_segments import TcpOptions
from runtime.tcp_state import Event, TcpStateMachine

M32 = 0xFFFFFFFF
_RING_BUF = memoryview(bytearray(4096))   # every record's rings view the same bytes: the
EVENTS = EventQueue(_RING_BUF, 32, 2048, 32, own=RingSide.PRODUCER)  # one per context
INTERFACE = Interface(1, "10.0.0.1", "02:00:00:00:00:01")  # payload is shared memory, not state


def measure(build: Callable[[int], Any], n: int) -> float:
    """Bytes tracemalloc sees per item while `build(n)` holds n items."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = build(n)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del held
    return (after - before) / n


def established_flow(i: int, table: ConnectionTable, ids: FlowIdAllocator,
                     flows: dict[int, Flow]) -> Flow:
    """One established, attached, rate-controlled flow, built as handshake.py, flow_install.py
    and the rate controller build it (rings over a shared buffer)."""
    t = FlowTuple("10.0.0.1", 1024 + i % 60000, f"10.{1 + (i >> 16) % 250}.{(i >> 8) & 255}."
                  f"{i & 255}", 80)
    sm = TcpStateMachine.incoming()
    sm.fire(Event.RCV_ACK_OF_SYN)
    conn = Connection(table.next_id(), t, INTERFACE, "02:00:00:00:00:02", sm, iss=i * 7919 & M32,
                      irs=i * 104729 & M32, snd_nxt=(i * 7919 + 1) & M32,
                      rcv_nxt=(i * 104729 + 1) & M32,
                      peer_options=TcpOptions(1460, 7, True, (i, 0)), peer_window=65535,
                      peer_window_bytes=65535 << 7, window_shift=7, timestamps=True, sack=True)
    table.add(conn)
    conn.flow = ids.allocate()
    conn.flow_spec = FlowSpec(conn.flow.flow_id, conn.flow.generation, t, INTERFACE.mac,
                              conn.peer_mac, 1 << 16, conn.rcv_nxt, conn.snd_nxt, 1,
                              rx_window_shift=7, peer_window=65535, sack=True,
                              peer_window_shift=7)
    rx = ByteRing(_RING_BUF, 0, 64, 1024, own=RingSide.PRODUCER)
    tx = ByteRing(_RING_BUF, 128, 64, 1024, own=RingSide.CONSUMER)
    channel = FlowChannel(conn.flow.flow_id, conn.flow.generation, i, rx, tx, EVENTS,
                          mss=1448, wscale=7, peer_window=65535 << 7, opaque=conn.conn_id,
                          tx_start_seq=conn.snd_nxt)
    conn.channel = channel
    flow = flows[channel.flow_id] = Flow(conn, channel)
    flow.control = FlowControl(congestion.make("dctcp"), channel.mss,
                               _snapshot(channel.counters), 0.0)
    return flow


def runtime_bytes_per_flow(n: int = 100_000) -> float:
    """The runtime's bytes per established flow (connection, flow id, spec, channel, control,
    and the tables' entries), allocator preallocated for n ids outside the measurement."""
    ids = FlowIdAllocator(n)

    def build(count: int) -> Any:
        table, flows = ConnectionTable(), {}
        for i in range(count):
            established_flow(i, table, ids, flows)
        return table, flows
    return measure(build, n)


def main(argv: list[str]) -> int:
    """Print the measured bytes per flow as one JSON line."""
    n = int(argv[0]) if argv else 100_000
    print(json.dumps({"flows": n, "runtime_bytes_per_flow": round(runtime_bytes_per_flow(n)),
                      "host_lib_bytes_per_socket": round(host_lib_bytes_per_socket(n)),
                      "softnic": soft_state(n), "soft_install": soft_install(n, 1000)}))
    return 0



def flow_specs(n: int, first_id: int = 0) -> Iterator[FlowSpec]:
    """n distinct established flows' static state (flow ids from first_id, generation 1)."""
    for i in range(first_id, first_id + n):
        t = FlowTuple("10.0.0.1", 1024 + i % 60000,
                      f"10.{1 + (i // 60000) % 250}.{(i // 60000) >> 8 & 255}.2", 80)
        yield FlowSpec(i, 1, t, INTERFACE.mac, "02:00:00:00:00:02", 1 << 16, i * 7919 & M32,
                       i * 104729 & M32, 1, rx_window_shift=7, sack=True, peer_window_shift=7)


def soft_install(n: int, batch: int, scale: bool = True) -> dict[str, float]:
    """Install n flows on an in-process softnic P4Runtime server (real gRPC, the 1M build
    unless `scale` is False) with runtime.flow_batch; flows/s and the server's state bytes per
    installed flow (tables and P4Runtime's entry metadata, tracemalloc)."""
    from nic_contract.p4rt.client import P4RuntimeClient   # noqa: PLC0415 (grpc: only here)
    from nic_contract.pipeline import PipelineFiles   # noqa: PLC0415
    from runtime.flow_batch import install_flows   # noqa: PLC0415
    from softnic.p4runtime.server import P4RuntimeServer   # noqa: PLC0415
    from tests.unit.softnic_p4runtime.helpers import CPU_PORT, FakeDataplane   # noqa: PLC0415

    files = PipelineFiles.scale() if scale else PipelineFiles()
    server = P4RuntimeServer("127.0.0.1:0", 0, CPU_PORT, FakeDataplane(), files.p4info,
                             files.device_config)
    server.start()
    client = P4RuntimeClient(f"127.0.0.1:{server.port}", election_id=(0, 1), timeout=60.0)
    try:
        client.connect()
        client.set_pipeline(files.p4info, files.device_config)
        start = time.monotonic()
        install_flows(client, client.p4info, flow_specs(n), batch)
        seconds = time.monotonic() - start
    finally:
        client.close()
        server.stop(0.1)
    return {"flows": n, "batch": batch, "seconds": round(seconds, 2),
            "flows_per_s": round(n / seconds)}


def soft_state(n: int, scale: bool = True) -> dict[str, float]:
    """softnic's state for a build (per flow slot: registers, counters) and per installed flow
    (both tables' entries and P4Runtime's entry metadata), applied by its Writer in-process."""
    from nic_contract.p4rt.p4info import P4Info   # noqa: PLC0415
    from nic_contract.p4rt.proto import p4runtime_pb2   # noqa: PLC0415
    from nic_contract.pipeline import PipelineFiles, flow_capacity   # noqa: PLC0415
    from runtime.flow_batch import FlowEntryEncoder   # noqa: PLC0415
    from softnic.p4runtime.pipeline_config import LoadedPipeline   # noqa: PLC0415
    from softnic.p4runtime.program import Program   # noqa: PLC0415
    from softnic.p4runtime.server import load_p4info   # noqa: PLC0415
    from softnic.p4runtime.writes import Writer   # noqa: PLC0415

    files = PipelineFiles.scale() if scale else PipelineFiles()
    program = Program(load_p4info(files.p4info))
    defaults = program.default_actions(files.device_config.read_bytes())
    capacity = flow_capacity(P4Info.from_file(files.p4info))
    encoder = FlowEntryEncoder(P4Info.from_file(files.p4info))
    holder: list[Any] = []

    def commit(_: int) -> Any:
        state = program.new_state(defaults)
        holder.append(LoadedPipeline(p4runtime_pb2.ForwardingPipelineConfig(), state, defaults,
                                     {t: {} for t in program.tables}))
        return state
    slot_bytes = measure(commit, capacity)
    writer = Writer(program, holder[0])

    def install(count: int) -> None:
        for spec in flow_specs(count):
            request = p4runtime_pb2.WriteRequest()
            encoder.add(request, p4runtime_pb2.Update.INSERT, spec)
            for update in request.updates:
                failure = writer.apply(update)
                if failure is not None:
                    raise RuntimeError(str(failure))
    return {"capacity": capacity, "slot_bytes": round(slot_bytes, 1),
            "installed_flow_bytes": round(measure(install, n))}



def rss_mib(pid: int) -> float:
    """A process's resident memory, MiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def soft_process_install(n: int, batch: int = 1000) -> dict[str, float]:
    """Install n flows (1M build) on a real softnic process (`python -m softnic`, no ports) over
    gRPC: flows/s, and its RSS before the pipeline, after it, and after the installs."""
    import socket   # noqa: PLC0415
    import subprocess   # noqa: PLC0415
    from nic_contract.p4rt.client import P4RuntimeClient   # noqa: PLC0415
    from nic_contract.pipeline import PipelineFiles   # noqa: PLC0415
    from runtime.flow_batch import install_flows   # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "softnic", "--no-p4", "--",
                             "--grpc-server-addr", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = P4RuntimeClient(f"127.0.0.1:{port}", election_id=(0, 1), timeout=60.0)
    files = PipelineFiles.scale()
    try:
        client.connect()
        empty = rss_mib(proc.pid)
        client.set_pipeline(files.p4info, files.device_config)
        loaded = rss_mib(proc.pid)
        start = time.monotonic()
        install_flows(client, client.p4info, flow_specs(n), batch, timeout=120.0)
        seconds = time.monotonic() - start
        full = rss_mib(proc.pid)
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
    return {"flows": n, "batch": batch, "seconds": round(seconds, 1),
            "flows_per_s": round(n / seconds), "rss_mib": [round(empty), round(loaded),
                                                          round(full)],
            "installed_bytes_per_flow": round((full - loaded) * 2**20 / n)}


def host_lib_bytes_per_socket(n: int = 100_000) -> float:
    """host_lib's bytes per accepted, open socket (Socket, its Connection and rings, the
    session's table entry); the doorbell's two kernel sockets, made on first poll, excluded."""
    from host_lib.context import Connection as AppConnection   # noqa: PLC0415
    from host_lib.sockets import Socket   # noqa: PLC0415

    session = SimpleNamespace(deferred=[])   # where a dropped socket queues its close

    def build(count: int) -> Any:
        conns: dict[int, Any] = {}
        sockets = []
        for i in range(count):
            conn = conns[i] = AppConnection(session, None, i)   # type: ignore[arg-type]
            conn.state, conn.slot = "open", i
            conn.rx = ByteRing(_RING_BUF, 0, 64, 1024, own=RingSide.CONSUMER)
            conn.tx = ByteRing(_RING_BUF, 128, 64, 1024, own=RingSide.PRODUCER)
            conn.local, conn.peer = ("10.0.0.1", 80), (f"10.1.{i >> 8 & 255}.{i & 255}", 1024 + i)
            sockets.append(Socket._accepted(conn, None, {}))
        return conns, sockets
    return measure(build, n)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
