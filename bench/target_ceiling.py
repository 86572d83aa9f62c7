"""The target's ceiling for one unit of work, measured on the target itself in the same run:
its pipeline rate (bench_targets' burst: inputs per second while nothing else runs on it; bmv2
cannot queue a burst without dropping part of it, and then its closed-loop rate stands in)
divided by the pipeline passes the unit needs, and for a connection also the time of its
P4Runtime writes (one flow's entries inserted and deleted) on the same switch.

Passes per unit (a pass is one input with all it makes, e.g. a data segment in -> RX_DATA to
the host + the ACK to the wire):
  bulk in   1    a data segment in
  bulk out  1.5  a TX_DATA in, and the peer's ACK of every second segment
  RPC       3    the request in, the response's TX_DATA, the peer's ACK of the response
  conn      6    SYN, SYN-ACK (PacketOut), ACK, our FIN (PacketOut), the peer's FIN, our ACK
An RPC's latency path is two passes (request in, response out): its bound is twice their
latency, a pass's latency measured with one input outstanding (the sender's own Python loop
included)."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from bench_targets import SPEC, measure, run_closed_loop, traffic
from nic_contract.flow_entries import FlowSpec, FlowTuple, flow_entries
from nic_contract.host_port import HostPort
from nic_contract.p4rt.client import P4RuntimeClient

MSS_PAYLOAD = 1448      # a full segment's payload with the timestamps option (MTU 1500)
PASSES = {"bulk_in": 1.0, "bulk_out": 1.5, "rpc": 3.0, "conn": 6.0}
RPC_LATENCY_PASSES = 2
WRITE_FLOWS = 32         # flows installed and removed to time the writes
WRITE_BATCH = 16         # flows per Write when the runtime's Writes carry many (concurrent)


@dataclass(frozen=True)
class Ceiling:
    """What the target can do at most, from its measured rates."""

    target: str
    passes_per_s: float | None       # the burst rate (closed-loop rate if the burst lost some)
    pass_latency_us: float | None    # one input outstanding
    flow_write_ms: float | None      # one flow's insert + delete, one Write each
    flow_write_batched_ms: float | None   # the same, WRITE_BATCH flows per Write

    def bulk_mbps(self, direction: str) -> float | None:
        """Mbit/s of MSS payload, `direction` "bulk_in" or "bulk_out"."""
        units = self.per_s(direction)
        return round(units * MSS_PAYLOAD * 8 / 1e6, 1) if units else None

    def per_s(self, unit: str) -> float | None:
        """Units of work per second from the pipeline rate alone."""
        return round(self.passes_per_s / PASSES[unit], 1) if self.passes_per_s else None

    def conn_per_s(self, batched: bool) -> float | None:
        """Connections per second: their passes and their writes, one after the other."""
        write_ms = self.flow_write_batched_ms if batched else self.flow_write_ms
        if not self.passes_per_s or write_ms is None:
            return None
        return round(1 / (PASSES["conn"] / self.passes_per_s + write_ms / 1000), 1)

    def rpc_latency_bound_us(self) -> float | None:
        """Twice the latency of the passes on an RPC's path (the goal for p50)."""
        if self.pass_latency_us is None:
            return None
        return round(2 * RPC_LATENCY_PASSES * self.pass_latency_us, 1)

    def figures(self) -> dict:
        return {"target": self.target, "passes_per_s": self.passes_per_s,
                "pass_latency_us": self.pass_latency_us, "flow_write_ms": self.flow_write_ms,
                "flow_write_batched_ms": self.flow_write_batched_ms,
                "bulk_in_mbps": self.bulk_mbps("bulk_in"),
                "bulk_out_mbps": self.bulk_mbps("bulk_out"), "rpc_per_s": self.per_s("rpc"),
                "conn_per_s": self.conn_per_s(False),
                "conn_per_s_batched": self.conn_per_s(True),
                "rpc_p50_bound_us": self.rpc_latency_bound_us()}

    def line(self) -> str:
        f = self.figures()
        return (f"{self.target} ceiling: {self.passes_per_s} passes/s (pass latency "
                f"{self.pass_latency_us} us), one flow's writes {self.flow_write_ms} ms "
                f"({self.flow_write_batched_ms} ms in Writes of {WRITE_BATCH}) -> bulk in "
                f"{f['bulk_in_mbps']} / out {f['bulk_out_mbps']} Mbit/s, RPC {f['rpc_per_s']}/s "
                f"(p50 bound {f['rpc_p50_bound_us']} us), connections {f['conn_per_s']}/s "
                f"sequential, {f['conn_per_s_batched']}/s batched")


def _write_specs(count: int) -> list[FlowSpec]:
    """Flows unlike the measured one (other ids and ports)."""
    return [replace(SPEC, flow_id=100 + i,
                    tuple=FlowTuple(SPEC.tuple.local_ip, SPEC.tuple.local_port,
                                    SPEC.tuple.peer_ip, 20000 + i)) for i in range(count)]


def time_flow_writes(client: P4RuntimeClient, batch: int) -> float:
    """Milliseconds per flow to insert and delete WRITE_FLOWS flows, `batch` flows a Write."""
    entries = [flow_entries(client.p4info, spec) for spec in _write_specs(WRITE_FLOWS)]
    groups = [entries[i:i + batch] for i in range(0, len(entries), batch)]
    start = time.perf_counter()
    for group in groups:
        client.insert([e for flow in group for e in flow])
    for group in groups:
        client.delete([e for flow in group for e in reversed(flow)])
    return round((time.perf_counter() - start) / WRITE_FLOWS * 1000, 3)


def measure_ceiling(target: str, prefix: str, packets: int = 4000, burst: int = 6000,
                    latency_inputs: int = 2000) -> Ceiling:
    """Bring up `target` alone (prefix `prefix`), measure it, take it down."""
    items = traffic(packets + burst + latency_inputs, MSS_PAYLOAD)

    def writes_and_latency(client: P4RuntimeClient, ports: dict[int, HostPort]) -> dict:
        writes = {"flow_write_ms": time_flow_writes(client, 1),
                  "flow_write_batched_ms": time_flow_writes(client, WRITE_BATCH)}
        for sock in ports.values():   # the burst's outputs were counted, not read
            while sock.recv_batch():
                pass
        one = run_closed_loop(ports, items[packets + burst:], 1)
        complete = one["outputs"] == one["expected_outputs"] and one["inputs"]
        return writes | {"pass_latency_us": round(one["seconds"] / one["inputs"] * 1e6, 1)
                         if complete else None}

    got = measure(target, prefix, items[:packets + burst], 32, burst, writes_and_latency)
    pps = got.get("burst", {}).get("pps") or got.get("pps")
    return Ceiling(target, pps, got.get("pass_latency_us"), got.get("flow_write_ms"),
                   got.get("flow_write_batched_ms"))
