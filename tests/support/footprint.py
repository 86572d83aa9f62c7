"""Bytes per flow in the runtime and in softnic, measured with tracemalloc on records built the
way the runtime and softnic build them (issue 18, item 2). `python -m tests.support.footprint`
prints one JSON line; bench-scale and tests/unit/test_flow_footprint.py use the functions."""

from __future__ import annotations

import gc
import json
import sys
import tracemalloc
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
    conn = Connection(table.next_id(), t, INTERFACE, "02:00:00:00:00:02", sm, iss=i * 7919,
                      irs=i * 104729, snd_nxt=i * 7919 + 1, rcv_nxt=i * 104729 + 1,
                      peer_options=TcpOptions(1460, 7, True, (i, 0)), peer_window=65535,
                      peer_window_bytes=65535 << 7, window_shift=7, timestamps=True, sack=True)
    table.add(conn)
    conn.flow = ids.allocate()
    conn.flow_spec = FlowSpec(conn.flow.flow_id, conn.flow.generation, t, INTERFACE.mac,
                              conn.peer_mac, 1 << 16, conn.rcv_nxt, conn.snd_nxt, 1,
                              rx_window_shift=7, peer_window=65535, sack=True,
                              peer_window_shift=7)
    rx = ByteRing(_RING_BUF, 0, 64, 1024, own=RingSide.PRODUCER)
    tx = ByteRing(_RING_BUF, 16, 64, 1024, own=RingSide.CONSUMER)
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
    print(json.dumps({"flows": n, "runtime_bytes_per_flow": round(runtime_bytes_per_flow(n))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
