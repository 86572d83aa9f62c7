"""A seeded fuzzer for what faces the network and the applications, run in-process:

- softnic's pipeline (p4src/v1model in Python) with a few installed flows,
- the runtime's PacketIn handling (ConnectionControl over a fake NIC and switch),
- the runtime's control server (ControlServer on a real UNIX socket).

Inputs start from valid traffic (tests/support/differential_traffic.py) and are mutated: bytes
flipped, headers truncated or extended, random frames, hostile TCP options, odd IPv4 fields.
Nothing may raise, and every packet must be accounted for: softnic emits a frame or counts the
packet (drop or exception counter); the runtime counts every PacketIn by reason; the control
server answers or closes the session and keeps serving others.

    python -m tests.support.fuzzing --packets 1000000 [--seed N]   (make fuzz)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from host_lib import control_protocol as cp
from host_lib.shm_layout import Layout
from nic_contract.constants import (ETHERTYPE_NIC_HOST, HOST_PORT, PacketInReason,
                                    ack_clone_sessions)
from nic_contract.nic_host_header import HEADER_BYTES, Opcode
from nic_contract.flow_entries import flow_entries
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2
from nic_contract.pipeline import BMV2_JSON, P4INFO
from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.control_server import ControlServer
from runtime.datapath import PacketIn
from runtime.flow_registry import FlowRegistry
from softnic.p4runtime.pipeline_config import LoadedPipeline
from softnic.p4runtime.program import Program
from softnic.p4runtime.writes import Writer
from softnic.pipeline.p4tas import P4tasPipeline
from tests.support.differential_traffic import LOCAL_IP, LOCAL_MAC, Traffic, make_flows
from tests.support.fakes import FakeDatapath, FakeNic

SEED = 20261207
BASE_FRAMES = 2000       # valid inputs drawn once, then mutated
ETH, IPV4, TCP = 14, 20, 20
WIRE_PORTS = (1, 2)
HOSTILE_OPTIONS = [b"\x02\x04\x00\x00", b"\x03\x03\xff", b"\x08\x0a" + bytes(8), b"\x02\x00",
                   b"\x01" * 7 + b"\x00", b"\x05\x02", b"\x04\x02\x02\x01", b"\xfe\xff",
                   b"\x08\x01", b"\x03\x02"]
PUNT_REASONS = [r for r in PacketInReason]


@dataclass
class Report:
    """What one run did, for the JSON line and the assertions."""

    inputs: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    unaccounted: int = 0
    seconds: float = 0.0

    def count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Mutator:
    """Mutations of a frame, each one kind of damage a hostile peer can do."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.kinds = [self.flip, self.truncate, self.extend, self.random_frame,
                      self.hostile_options, self.ip_fields, self.tcp_fields, self.unchanged]

    def mutate(self, frame: bytes) -> bytes:
        return self.rng.choice(self.kinds)(bytearray(frame))

    def flip(self, frame: bytearray) -> bytes:
        for _ in range(self.rng.randrange(1, 9)):
            frame[self.rng.randrange(len(frame))] ^= 1 << self.rng.randrange(8)
        return bytes(frame)

    def truncate(self, frame: bytearray) -> bytes:
        return bytes(frame[:self.rng.randrange(len(frame) + 1)])

    def extend(self, frame: bytearray) -> bytes:
        return bytes(frame) + self.rng.randbytes(self.rng.randrange(1, 64))

    def random_frame(self, frame: bytearray) -> bytes:
        head = bytes(frame[:ETH]) if self.rng.random() < 0.5 else b""
        return head + self.rng.randbytes(self.rng.randrange(0, 120))

    def hostile_options(self, frame: bytearray) -> bytes:
        """Replace the TCP options with junk of a legal-looking length (data offset fixed)."""
        if len(frame) < ETH + IPV4 + TCP:
            return bytes(frame)
        options = b"".join(self.rng.choices(HOSTILE_OPTIONS, k=self.rng.randrange(1, 4)))
        options = (options + bytes(40))[:self.rng.choice([4, 8, 12, 20, 40])]
        tcp = ETH + IPV4
        old_offset = (frame[tcp + 12] >> 4) * 4
        payload = frame[tcp + old_offset:] if old_offset >= TCP else b""
        header = frame[tcp:tcp + TCP]
        header[12] = ((TCP + len(options)) // 4) << 4 | (header[12] & 0x0F)
        out = frame[:tcp] + header + options + payload
        struct.pack_into("!H", out, ETH + 2, len(out) - ETH)
        return bytes(out)

    def ip_fields(self, frame: bytearray) -> bytes:
        if len(frame) >= ETH + IPV4:
            field_at = self.rng.choice([ETH, ETH + 2, ETH + 6, ETH + 9, ETH + 10])
            frame[field_at] = self.rng.randrange(256)
        return bytes(frame)

    def tcp_fields(self, frame: bytearray) -> bytes:
        if len(frame) >= ETH + IPV4 + TCP:
            at = ETH + IPV4 + self.rng.choice([4, 8, 12, 13, 14, 18])   # seq, ack, off, flags...
            for i in range(self.rng.choice([1, 2, 4])):
                if at + i < len(frame):
                    frame[at + i] = self.rng.randrange(256)
        return bytes(frame)

    def unchanged(self, frame: bytearray) -> bytes:
        return bytes(frame)


def base_traffic(seed: int) -> tuple[list, list[tuple[int, bytes]]]:
    """A few flows and valid inputs of theirs (wire segments and host-port messages)."""
    rng = random.Random(seed)
    flows = make_flows(rng, 6, 1)
    traffic = Traffic(seed, flows)
    frames = []
    while len(frames) < BASE_FRAMES:
        item = traffic.next_packet()
        if item[0] != "packet_out":
            frames.append((item[0], item[1]))
    return flows, frames


# ---------------------------------------------------------------- softnic's pipeline

def softnic_pipeline(flows: list) -> P4tasPipeline:
    """softnic's pipeline with the flows' entries written as P4Runtime would write them."""
    program = Program(text_format.Parse(P4INFO.read_text(), p4info_pb2.P4Info()))
    defaults = program.default_actions(BMV2_JSON.read_bytes())
    state = program.new_state(defaults)
    loaded = LoadedPipeline(p4runtime_pb2.ForwardingPipelineConfig(), state, defaults,
                            {table_id: {} for table_id in program.tables})
    writer = Writer(program, loaded)
    p4info = P4Info.from_file(P4INFO)
    for flow in flows:
        for entry in flow_entries(p4info, flow.spec):
            update = p4runtime_pb2.Update(type=p4runtime_pb2.Update.INSERT,
                                          entity=p4runtime_pb2.Entity(table_entry=entry))
            failure = writer.apply(update)
            assert failure is None, failure
    state.clone_sessions.update(ack_clone_sessions(list(WIRE_PORTS)))
    return P4tasPipeline(state)


def _counted(pipeline: P4tasPipeline) -> int:
    v = pipeline.verdict
    return (sum(v.drop_counter.packets) + sum(v.exception_counter.packets)
            + sum(v.cookies_sent.packets))


def _is_rx_consumed(frame: bytes) -> bool:
    """A host-port channel frame with opcode RX_CONSUMED (nic_contract.nic_host_header)."""
    return (len(frame) >= HEADER_BYTES and frame[12:14] == ETHERTYPE_NIC_HOST.to_bytes(2, "big")
            and frame[ETH] == Opcode.RX_CONSUMED)


def fuzz_softnic(packets: int, seed: int = SEED) -> Report:
    """Mutated inputs through softnic's pipeline: each emits a frame or is counted."""
    rng = random.Random(seed)
    flows, frames = base_traffic(seed)
    pipeline = softnic_pipeline(flows)
    mutator, report, now_us = Mutator(rng), Report(), 0
    start = time.perf_counter()
    for _ in range(packets):
        port, frame = rng.choice(frames)
        port = port if rng.random() < 0.9 else rng.choice([*WIRE_PORTS, HOST_PORT, 7])
        now_us += rng.randrange(1, 2000)
        before = _counted(pipeline)
        mutated = mutator.mutate(frame)
        outputs = pipeline.process(port, mutated, now_us)
        report.inputs += 1
        if outputs:
            report.count("emitted")
        elif _counted(pipeline) > before:
            report.count("counted")
        elif port == HOST_PORT and _is_rx_consumed(mutated):
            report.count("rx_space_returned")   # RX_CONSUMED changes state and emits nothing
        else:
            report.count("silent")
            report.unaccounted += 1
    report.seconds = round(time.perf_counter() - start, 2)
    return report


# ---------------------------------------------------------------- the runtime's PacketIns

def _runtime(nic: FakeNic, datapath: FakeDatapath) -> ConnectionControl:
    config = RuntimeConfig(interfaces=(Interface(1, LOCAL_IP, LOCAL_MAC),
                                       Interface(2, "10.7.2.1", LOCAL_MAC)),
                           tcp=TcpParams(time_wait_s=0.05, max_app_connections=8))
    return ConnectionControl(config, datapath, P4Info.from_file(P4INFO), FlowRegistry(nic))


class _Listener:
    """An application context without shared memory (connections carry no data)."""

    ctx_id = 0

    def deliver(self, event: cp.Message) -> None:
        pass


def fuzz_runtime(packets: int, seed: int = SEED) -> Report:
    """Mutated wire frames as PacketIns of every reason: none may raise, each is counted."""
    async def run() -> Report:
        rng = random.Random(seed + 1)
        _, frames = base_traffic(seed)
        wire = [frame for port, frame in frames if port != HOST_PORT]
        control = _runtime(FakeNic(), FakeDatapath())
        for port in (5000, 5001, 5002):   # the flows' local ports: SYNs open connections
            control.listen(_Listener(), None, port, 64)
        mutator, report = Mutator(rng), Report()
        start = time.perf_counter()
        for i in range(packets):
            reason = rng.choice(PUNT_REASONS)
            before = sum(control.stats.counts.values())
            control.on_packet_in(PacketIn(mutator.mutate(rng.choice(wire)), rng.choice(WIRE_PORTS),
                                          int(reason), rng.randrange(1 << 32)))
            report.inputs += 1
            report.count(reason.name)
            if control.stats.counts[f"packet_in.{reason.name}"] == 0 or \
                    sum(control.stats.counts.values()) <= before:
                report.unaccounted += 1
            if i % 512 == 0:
                await asyncio.sleep(0)   # timers and installs run, as they would
        report.outcomes["internal_errors"] = control.stats.counts["internal_errors"]
        report.outcomes["connections"] = len(control.table.by_id)
        await control.shutdown_all()
        report.seconds = round(time.perf_counter() - start, 2)
        return report
    return asyncio.run(run())


# ---------------------------------------------------------------- the control server

def _hostile_frames(rng: random.Random) -> bytes:
    """One frame an application might send: a valid message with hostile values, a message
    of the wrong kind, or bytes that are no message at all."""
    roll = rng.random()
    if roll < 0.4:
        req = rng.randrange(-5, 1 << 64)
        obj = rng.choice([
            {"type": "Connect", "req_id": req, "ctx_id": rng.randrange(-2, 10),
             "peer_ip": rng.choice(["10.7.1.2", "0.0.0.0", "999.1.1.1", "x"]),
             "peer_port": rng.randrange(-1, 70000), "timeout_s": rng.choice([0, 1e9, -1, 0.01])},
            {"type": "Listen", "req_id": req, "ctx_id": rng.randrange(-2, 10),
             "port": rng.randrange(-1, 70000), "backlog": rng.randrange(-1, 1 << 40)},
            {"type": "Close", "req_id": req, "conn_id": rng.randrange(-1, 1 << 63)},
            {"type": "Kick", "conn_id": rng.randrange(-1, 1 << 63)},
            {"type": "Accept", "req_id": req, "conn_id": rng.randrange(-1, 1000)},
            {"type": "CreateContext", "req_id": req},
            {"type": "GetStats", "req_id": req},
            {"type": "ListFlows", "req_id": req, "after_conn_id": rng.randrange(-1, 100),
             "limit": rng.randrange(-1, 1000)},
            {"type": "HelloOk", "app_id": 1, "version": 3},
            {"type": rng.choice(["Nope", "", "Hello"]), "junk": [1, {"a": None}]},
        ])
        payload = json.dumps(obj).encode()
    elif roll < 0.7:
        payload = rng.randbytes(rng.randrange(0, 200))
    else:
        payload = json.dumps(rng.choice([[], 1, "s", None, {"type": 5}])).encode()
    length = len(payload) if rng.random() < 0.9 else rng.randrange(0, cp.MAX_FRAME_BYTES * 2)
    return cp.FRAME_HEADER.pack(length) + payload


def fuzz_control_server(messages: int, seed: int = SEED) -> Report:
    """Hostile applications on the control socket: the server answers or drops each one and
    still serves a well-behaved application afterwards."""
    async def run() -> Report:
        rng = random.Random(seed + 2)
        layout = Layout(rx_ring_size=1 << 12, tx_ring_size=1 << 12, max_connections=4,
                        max_contexts=2, queue_depth=16)
        control = _runtime(FakeNic(), FakeDatapath())
        with tempfile.TemporaryDirectory(prefix="p4tas-fuzz-") as directory:
            return await serve(control, Path(directory) / "control.sock", layout, rng)

    async def serve(control: ConnectionControl, path: Path, layout: Layout,
                    rng: random.Random) -> Report:
        server = ControlServer(path, control, layout)
        await server.start()
        report, start, sent = Report(), time.perf_counter(), 0
        try:
            while sent < messages:
                reader, writer = await asyncio.open_unix_connection(str(path))
                writer.write(cp.encode(cp.Hello(version=cp.PROTOCOL_VERSION, app_name="fuzz",
                                                pid=os.getpid())))
                for _ in range(rng.randrange(1, 40)):
                    writer.write(_hostile_frames(rng))
                    sent += 1
                try:
                    await writer.drain()
                    await asyncio.wait_for(reader.read(1 << 16), 0.05)
                except (ConnectionError, asyncio.TimeoutError):
                    pass
                writer.close()
                report.inputs = sent
            report.outcomes["sessions_left"] = len(server.sessions)
            report.outcomes["still_serving"] = int(await _well_behaved(path))
        finally:
            await server.close()
            await asyncio.sleep(0.05)   # the sessions see their end before the loop does
            await control.shutdown_all()
        report.seconds = round(time.perf_counter() - start, 2)
        return report
    return asyncio.run(run())


async def _well_behaved(path: Path) -> bool:
    """A normal application still gets Hello answered and its stats."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(cp.encode(cp.Hello(version=cp.PROTOCOL_VERSION, app_name="ok", pid=os.getpid(),
                                    monitor=True)))
    writer.write(cp.encode(cp.GetStats(req_id=1)))
    replies = [await asyncio.wait_for(cp.read_message(reader, expect=cp.ServerMessage), 5)
               for _ in range(2)]
    writer.close()
    return isinstance(replies[0], cp.HelloOk) and isinstance(replies[1], cp.Stats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    results = {}
    for name, run, count in (("softnic", fuzz_softnic, args.packets),
                             ("runtime", fuzz_runtime, args.packets),
                             ("control_server", fuzz_control_server, args.messages)):
        report = run(count, args.seed)
        results[name] = vars(report)
        print(f"{name}: {report.inputs} inputs in {report.seconds} s, {report.unaccounted} "
              f"unaccounted, {report.outcomes}", flush=True)
    print(json.dumps({"fuzz": results, "seed": args.seed}))
    clean = all(r["unaccounted"] == 0 for r in results.values()) and \
        results["runtime"]["outcomes"]["internal_errors"] == 0 and \
        results["control_server"]["outcomes"]["still_serving"] == 1
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
