"""bench-scale's fast-path figures, softnic in this process: the committed pipeline's state built
as softnic's P4Runtime server commits it, N flows installed through its Write path (the entries
nic_contract.flow_entries makes for a connection, as the runtime writes them), and the same
data segments pushed through P4tasPipeline.process at each N.

Measured, not computed: bytes per flow from tracemalloc (Python allocations of the tables'
entries, and of the registers' cells once each flow has carried a segment) and the process's
RSS; per-packet time over the same segments with N installed flows. The flow count cannot
exceed MAX_FLOWS (nic_contract.constants, the P4 program's table and register size), read at
run time so the figures follow the sizing.
"""

from __future__ import annotations

import gc
import random
import time
import tracemalloc
from dataclasses import dataclass

from google.protobuf import text_format

from nic_contract.constants import MAX_FLOWS, ack_clone_sessions
from nic_contract.flow_entries import FlowSpec, FlowTuple, flow_entries
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2
from nic_contract.pipeline import BMV2_JSON, P4INFO
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment
from softnic.p4runtime.pipeline_config import LoadedPipeline
from softnic.p4runtime.program import Program
from softnic.p4runtime.writes import Writer
from softnic.pipeline.p4tas import P4tasPipeline

from scale_stats import rss_bytes

LOCAL_IP, LOCAL_MAC, PEER_MAC = "10.8.0.1", "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_PORT = 5000
WIRE_PORT = 1
RX_START, TX_START = 1000, 9000
PAYLOAD = 64
REPEAT = 3


def flow_tuple(index: int) -> FlowTuple:
    """Flow `index`'s 4-tuple: peers 10.9.x.y, ports 1024.. (60,000 per peer address)."""
    host, port = divmod(index, 60_000)
    return FlowTuple(LOCAL_IP, LOCAL_PORT, f"10.9.{host >> 8 & 255}.{host & 255}", 1024 + port)


def flow_spec(index: int) -> FlowSpec:
    return FlowSpec(flow_id=index, generation=1, tuple=flow_tuple(index), local_mac=LOCAL_MAC,
                    peer_mac=PEER_MAC, rx_ring_size=1 << 16, rx_start_seq=RX_START,
                    tx_start_seq=TX_START, wire_port=WIRE_PORT, rx_window_shift=0,
                    timestamps=True, peer_window=65535)


@dataclass
class SoftFastPath:
    """softnic's committed pipeline in this process and its Write path."""

    program: Program
    loaded: LoadedPipeline
    writer: Writer
    pipeline: P4tasPipeline
    p4info: P4Info

    @classmethod
    def create(cls) -> "SoftFastPath":
        p4info_msg = text_format.Parse(P4INFO.read_text(), p4info_pb2.P4Info())
        program = Program(p4info_msg)
        defaults = program.default_actions(BMV2_JSON.read_bytes())
        state = program.new_state(defaults)
        state.clone_sessions.update(ack_clone_sessions([WIRE_PORT]))
        loaded = LoadedPipeline(p4runtime_pb2.ForwardingPipelineConfig(), state, defaults,
                                {t: {} for t in program.tables})
        return cls(program, loaded, Writer(program, loaded), P4tasPipeline(state),
                   P4Info(p4info_msg))

    def updates(self, first: int, count: int) -> list[p4runtime_pb2.Update]:
        """The Write updates that install flows first..first+count-1 (what the runtime sends)."""
        out = []
        for index in range(first, first + count):
            for entry in flow_entries(self.p4info, flow_spec(index)):
                update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT)
                update.entity.table_entry.CopyFrom(entry)
                out.append(update)
        return out

    def apply(self, updates: list[p4runtime_pb2.Update]) -> None:
        for update in updates:
            failure = self.writer.apply(update)
            if failure is not None:
                raise RuntimeError(f"install: {failure}")


@dataclass
class Install:
    """Seconds spent building the updates and applying them, and the bytes the applied
    entries of a traced sample took (tracemalloc), for `flows` flows."""

    flows: int = 0
    build_s: float = 0.0
    apply_s: float = 0.0
    sample_flows: int = 0
    sample_bytes: int = 0

    def figures(self) -> dict:
        return {"build_flows_per_s": round(self.flows / self.build_s) if self.build_s else None,
                "apply_flows_per_s": round(self.flows / self.apply_s) if self.apply_s else None,
                "entries_bytes_per_flow": round(self.sample_bytes / self.sample_flows, 1)
                if self.sample_flows else None}


CHUNK = 4096
SAMPLE = 2048   # flows per count whose entries are traced (tracemalloc slows them ~5x)


def install(soft: SoftFastPath, first: int, count: int) -> Install:
    """Flows first..first+count-1 in chunks: a traced sample first, then the rest timed."""
    result = Install()
    sample = min(SAMPLE, count)
    updates = soft.updates(first, sample)
    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    soft.apply(updates)
    del updates
    gc.collect()
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    result.sample_flows, result.sample_bytes = sample, after - before
    for at in range(first + sample, first + count, CHUNK):
        size = min(CHUNK, first + count - at)
        t0 = time.perf_counter()
        updates = soft.updates(at, size)
        t1 = time.perf_counter()
        soft.apply(updates)
        result.build_s += t1 - t0
        result.apply_s += time.perf_counter() - t1
        result.flows += size
    return result


def data_segment(index: int, seq_offset: int) -> bytes:
    """Flow `index`'s peer sending PAYLOAD bytes in order at `seq_offset`."""
    t = flow_tuple(index)
    return build_segment(PEER_MAC, LOCAL_MAC, t.peer_ip, LOCAL_IP, t.peer_port, LOCAL_PORT,
                         RX_START + seq_offset, TX_START, TcpFlags.ACK | TcpFlags.PSH, 65535,
                         TcpOptions(timestamps=(1, 0)), payload=bytes(PAYLOAD))


def flow_counts(wanted: list[int]) -> tuple[list[int], list[int]]:
    """The counts that fit MAX_FLOWS (a count beyond it becomes MAX_FLOWS), and those that
    did not fit."""
    fits = sorted({min(n, MAX_FLOWS) for n in wanted})
    return fits, [n for n in wanted if n > MAX_FLOWS]


def _run(pipeline: P4tasPipeline, frames: list[bytes]) -> tuple[float, int]:
    outputs = 0
    start = time.perf_counter()
    for frame in frames:
        outputs += len(pipeline.process(WIRE_PORT, frame, 0))
    return time.perf_counter() - start, outputs


def measure(counts: list[int], active: int, packets: int, seed: int = 1) -> dict:
    """Bytes per flow and ns per packet at each of `counts` installed flows (each <=
    MAX_FLOWS, ascending); `active` flows drawn among the first count's carry `packets`
    in-order data segments at every count (the same flows: only the number installed
    changes), once to warm up and once timed."""
    gc.collect()
    rss0 = rss_bytes()
    tracemalloc.start()
    base0, _ = tracemalloc.get_traced_memory()
    soft = SoftFastPath.create()
    gc.collect()
    base1, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    chosen = random.Random(seed).sample(range(counts[0]), min(active, counts[0]))
    offsets = {index: 0 for index in chosen}
    out: dict = {"max_flows": MAX_FLOWS, "empty_state_bytes": base1 - base0,
                 "empty_state_bytes_per_flow_slot": round((base1 - base0) / MAX_FLOWS, 1),
                 "per_count": {}}
    installed = 0
    for count in counts:
        rss_before = rss_bytes()
        added = install(soft, installed, count - installed)
        # Every new flow carries one segment: what its registers hold once it is used.
        gc.collect()
        tracemalloc.start()
        used0, _ = tracemalloc.get_traced_memory()
        for index in range(installed, count):
            soft.pipeline.process(WIRE_PORT, data_segment(index, offsets.get(index, 0)), 0)
        gc.collect()
        used1, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = rss_bytes()
        new = count - installed
        for index in offsets:
            if installed <= index < count:
                offsets[index] = PAYLOAD
        installed = count
        timings = []
        for _ in range(1 + REPEAT):   # warm-up, then timed REPEAT times: the fastest counts
            # (other work on a shared machine only ever adds time)
            frames = []
            for _ in range(max(1, packets // max(1, len(chosen)))):
                for index in chosen:
                    frames.append(data_segment(index, offsets[index]))
                    offsets[index] += PAYLOAD
            gc.collect()
            gc.disable()
            try:
                timings.append((*_run(soft.pipeline, frames), len(frames)))
            finally:
                gc.enable()
        elapsed, outputs, sent = min(timings[1:])
        out["per_count"][count] = {
            **added.figures(),
            "registers_bytes_per_used_flow": round((used1 - used0) / new, 1) if new else None,
            "rss_delta_bytes_per_flow": round((rss_after - rss_before) / new, 1)
            if new else None,
            "ns_per_packet": round(elapsed / sent * 1e9), "packets": sent,
            "outputs_per_packet": round(outputs / sent, 2)}
    out["rss_total_bytes"] = rss_bytes() - rss0
    return out


def table_and_register_cells() -> dict:
    """What one flow holds in the P4 program: its table entries' key and action bits, and its
    cells of every register, counter and meter sized by MAX_FLOWS (from p4info)."""
    p4info = text_format.Parse(P4INFO.read_text(), p4info_pb2.P4Info())
    bits = 0
    for table in p4info.tables:
        if table.size == MAX_FLOWS:
            bits += sum(m.bitwidth for m in table.match_fields)
            actions = {a.preamble.id: a for a in p4info.actions}
            bits += max((sum(p.bitwidth for p in actions[ref.id].params)
                         for ref in table.action_refs if ref.id in actions), default=0)
    for register in getattr(p4info, "registers", []):
        if register.size == MAX_FLOWS:
            bits += register.type_spec.bitstring.bit.bitwidth
    return {"p4_bits_per_flow": bits, "p4_bytes_per_flow": (bits + 7) // 8}

