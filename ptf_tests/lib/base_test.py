"""Base class of the PTF suite: one P4Runtime session per test, pipeline pushed once per run,
every entry a test writes removed after it, so tests do not depend on each other."""

from __future__ import annotations

import itertools
import os
import random
from pathlib import Path
from typing import Callable, Iterable

import ptf
import ptf.testutils as tu
from ptf.base_tests import BaseTest

from nic_contract.pipeline import PipelineFiles, install
from nic_contract.flow_entries import FlowSpec, flow_entries
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.proto import p4runtime_pb2

from lib.packets import RTT_OFFSET, TS_OPTION_OFFSET, ExpectedAck

# Wire ports the suite drives; bmv2_env brings up at least two.
WIRE_PORT = 1
OTHER_WIRE_PORT = 2

# Every test gets a flow id and generation no earlier test used, so its flow re-initializes
# its registers. Random starts keep a second run against the same switch process apart too.
_generations = itertools.count(random.randrange(1, 0xFFFF))
_flow_ids = itertools.count(random.randrange(0, 60000))


def next_generation() -> int:
    """A generation not used by an earlier test of this run (1..65535)."""
    return next(_generations) % 0xFFFF + 1


def next_flow_id() -> int:
    """A flow id not used by an earlier test of this run."""
    return next(_flow_ids) % 65536


def target() -> str:
    """The target under test: the `target` test parameter bmv2_env passes (bmv2, soft, dpdk),
    else $TARGET; empty when neither says (a v1model target is assumed)."""
    return str(tu.test_param_get("target", "") or os.environ.get("TARGET", "")).strip()


def on_dpdk() -> bool:
    """The PNA program on the dpdk target: a few tests pin what its architecture makes differ
    from v1model (docs/ARCHITECTURE.md, "PNA / DPDK target")."""
    return target() == "dpdk"


class P4RuntimeTest(BaseTest):
    """Connects to the switch, ensures the pipeline and ACK clone sessions, tracks entries."""

    def setUp(self) -> None:
        BaseTest.setUp(self)
        self.dataplane = ptf.dataplane_instance
        self.dataplane.flush()
        self.client = P4RuntimeClient(tu.test_param_get("grpc_addr", "127.0.0.1:9559"))
        self.client.connect()
        ports = [int(p) for p in str(tu.test_param_get("wire_ports", "1,2")).split(",")]
        files = PipelineFiles(Path(tu.test_param_get("p4info")), Path(tu.test_param_get("device_config")))
        install(self.client, ports, files)
        self.p4info = self.client.p4info
        self.client.drain_packet_ins()
        self._written: list[p4runtime_pb2.TableEntry] = []

    def tearDown(self) -> None:
        try:
            if self._written:
                self.client.delete(list(reversed(self._written)))
        finally:
            self.client.close()
            BaseTest.tearDown(self)

    def insert(self, entries: Iterable[p4runtime_pb2.TableEntry]) -> None:
        """Insert table entries in one batch and remember them for cleanup."""
        entries = list(entries)
        self.client.insert(entries)
        self._written.extend(entries)

    def install_flow(self, spec: FlowSpec) -> FlowSpec:
        """Install a connection's flow_state and flow_lookup entries."""
        self.insert(flow_entries(self.p4info, spec))
        return spec

    def counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) of one counter cell."""
        return self.client.read_counter(name, index)

    def expect_packet_in(self, timeout: float = 2.0) -> tuple[bytes, dict[str, int]]:
        """The next PacketIn, or fail the test."""
        got = self.client.packet_in(timeout)
        self.assertIsNotNone(got, "expected a PacketIn on the CPU port, got none")
        return got

    def expect_no_packet_in(self, timeout: float = 0.5) -> None:
        """Fail if a PacketIn arrives within `timeout`."""
        got = self.client.packet_in(timeout)
        self.assertIsNone(got, f"unexpected PacketIn: {got}")


class FastPathTest(P4RuntimeTest):
    """Adds exact checks of the frames the fast path emits."""

    def receive(self, port: int, timeout: float = 2.0) -> bytes:
        """The next frame on `port`, or fail the test."""
        result = tu.dp_poll(self, port_number=port, timeout=timeout)
        if isinstance(result, self.dataplane.PollFailure):
            self.fail(f"expected a frame on port {port}, got none\n{result.format()}")
        return bytes(result.packet)

    def verify_frame(self, port: int, expected: bytes) -> None:
        """The next frame on `port` must be exactly `expected`, byte for byte."""
        got = self.receive(port)
        self.assertEqual(got.hex(), bytes(expected).hex(),
                         f"frame on port {port} differs from the expected one")

    def verify_ack(self, spec: FlowSpec, expected: ExpectedAck, port: int = WIRE_PORT) -> int:
        """The next frame on `port` must be this ACK, checksums included; returns its TSval.

        Only our TSval comes from the switch clock, so it is taken from the frame, the expected
        ACK rebuilt with it (scapy computes both checksums) and the two compared exactly."""
        got = self.receive(port)
        tsval = 0
        if expected.tsecr is not None:
            tsval = int.from_bytes(got[TS_OPTION_OFFSET + 4:TS_OPTION_OFFSET + 8], "big")
            self.assertNotEqual(tsval, 0, "the ACK's TSval should come from the switch clock")
        want = bytes(expected.packet(spec, tsval))
        self.assertEqual(got.hex(), want.hex(), "ACK differs from the expected one")
        return tsval

    def verify_frame_with_rtt(self, port: int, expected: Callable[[int], bytes]) -> int:
        """The next frame on `port` must be expected(rtt), with the RTT sample (switch clock)
        taken from the frame; returns that sample."""
        got = self.receive(port)
        rtt = int.from_bytes(got[RTT_OFFSET:RTT_OFFSET + 4], "big")
        self.assertEqual(got.hex(), bytes(expected(rtt)).hex(),
                         f"frame on port {port} differs from the expected one")
        return rtt
