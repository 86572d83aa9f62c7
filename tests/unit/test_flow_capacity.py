"""The flow capacity is a compile-time option (p4src/shared/constants.p4's MAX_FLOWS): the
default build and the committed 1M build differ only in sizes, and whoever needs the capacity
reads it from the build's P4Info (the runtime's flow ids, softnic's state)."""

from __future__ import annotations

import tracemalloc

import pytest

from nic_contract.constants import MAX_FLOWS
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import PipelineError, PipelineFiles, flow_capacity
from runtime.flow_batch import install_flows
from runtime.flow_install import FlowInstaller
from softnic.p4runtime.p4info_check import p4info_differences
from softnic.p4runtime.program import Program
from softnic.p4runtime.server import load_p4info
from softnic.state import Register
from tests.support.footprint import flow_specs
from tests.unit.softnic_p4runtime.helpers import FLOW_STATE, FakeDataplane
from tests.unit.softnic_p4runtime.conftest import (  # noqa: F401 (fixtures)
    address, client, dataplane, loaded, server)

SCALE = PipelineFiles.scale()
MILLION = 1 << 20


def test_the_builds_capacities() -> None:
    assert flow_capacity(P4Info.from_file(PipelineFiles().p4info)) == MAX_FLOWS
    assert flow_capacity(P4Info.from_file(SCALE.p4info)) == MILLION


def test_the_1m_build_differs_only_in_per_flow_sizes() -> None:
    default, scale = load_p4info(PipelineFiles().p4info), load_p4info(SCALE.p4info)
    assert p4info_differences(default, scale, ignore_sizes=True) == []
    differences = p4info_differences(default, scale)
    assert differences and all(" size differ (expected 65536, got 1048576)" in d
                               for d in differences)
    per_flow = [o for kind in ("tables", "counters", "meters", "registers")
                for o in getattr(scale, kind) if o.size == MILLION]
    assert len(per_flow) == len(differences) >= 10


def test_the_runtime_leases_as_many_flow_ids_as_the_build_holds() -> None:
    installer = FlowInstaller(None, None, P4Info.from_file(SCALE.p4info),  # type: ignore[arg-type]
                              None, None, None)  # type: ignore[arg-type]
    assert installer.flow_ids.capacity == MILLION


def test_softnic_state_of_the_1m_build_is_compact() -> None:
    program = Program(load_p4info(SCALE.p4info))
    defaults = program.default_actions(SCALE.device_config.read_bytes())
    tracemalloc.start()
    try:
        state = program.new_state(defaults)
        used = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert state.tables["flow_state"].size == MILLION
    assert len(state.registers["flow_rx_state"].cells) == MILLION
    assert used / MILLION <= 128   # registers and counters, 8 bytes per 64 bits; no objects


def test_wide_register_cells() -> None:
    reg = Register("r", 3, 128)
    reg.cells[2] = (1 << 128) - 2
    reg.cells[1] = 5 << 64
    assert [reg.cells[i] for i in range(3)] == [0, 5 << 64, (1 << 128) - 2]


def test_softnic_takes_the_1m_build(client: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    client.set_pipeline(SCALE.p4info, SCALE.device_config)
    state = dataplane.state
    assert state.tables[FLOW_STATE].size == MILLION
    install_flows(client, client.p4info, flow_specs(2, first_id=MILLION - 2))
    assert len(state.tables[FLOW_STATE].entries) == 2
    client.set_pipeline(PipelineFiles().p4info, PipelineFiles().device_config)
    assert dataplane.state.tables[FLOW_STATE].size == MAX_FLOWS


def test_the_build_a_target_runs(monkeypatch) -> None:
    monkeypatch.delenv("P4TAS_FLOWS", raising=False)
    assert PipelineFiles.for_target("soft") == PipelineFiles()
    assert PipelineFiles.for_target("bmv2", "1m") == SCALE
    monkeypatch.setenv("P4TAS_FLOWS", "1m")
    assert PipelineFiles.for_target("soft") == SCALE
    assert SCALE.target_args == ["--p4info", str(SCALE.p4info),
                                 "--device-config", str(SCALE.device_config)]
    with pytest.raises(PipelineError, match="64K-flow spec only"):
        PipelineFiles.for_target("dpdk")
    with pytest.raises(PipelineError, match="the builds are 64k, 1m"):
        PipelineFiles.for_target("soft", "2m")
