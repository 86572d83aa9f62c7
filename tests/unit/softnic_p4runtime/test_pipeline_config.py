"""SetForwardingPipelineConfig, GetForwardingPipelineConfig and Capabilities of softnic's
P4Runtime server (softnic/p4runtime/pipeline_config.py, p4info_check.py): only our program is
accepted, with simple_switch_grpc's status codes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from nic_contract.constants import NUM_REASONS
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import P4RuntimeError, PipelineError
from nic_contract.p4rt.messages import default_cookie
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2
from nic_contract.pipeline import BMV2_JSON, P4INFO
from softnic.p4runtime.server import P4RuntimeServer
from tests.unit.softnic_p4runtime.helpers import (CPU_PORT, EXCEPTIONS, FLOW_LOOKUP, FLOW_STATE,
                                             TX_RATE, FakeDataplane, flow_entry,
                                             flow_key, p4info, stubs)

pb = p4runtime_pb2


def test_no_pipeline_is_failed_precondition(client: P4RuntimeClient) -> None:
    assert client.pipeline_cookie() is None
    client.p4info = p4info()
    with pytest.raises(PipelineError) as read_err:
        list(client.read([client.p4info.table_wildcard(FLOW_LOOKUP)]))
    assert read_err.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(PipelineError) as write_err:
        client.insert([flow_entry(1)])
    assert write_err.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION


def test_set_and_get_pipeline(loaded: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    cookie = default_cookie(P4INFO, BMV2_JSON)
    assert loaded.pipeline_cookie() == cookie
    assert loaded.fetch_p4info().proto == p4info().proto
    assert not loaded.ensure_pipeline(P4INFO, BMV2_JSON)   # same cookie
    state = dataplane.state
    assert len(dataplane.states) == 1
    assert state.tables[FLOW_LOOKUP] is state.tables["flow_lookup"]
    assert state.tables[FLOW_LOOKUP].default_action == ("P4tasIngress.flow_lookup.unknown_flow",
                                                        ())
    assert state.tables[FLOW_LOOKUP].size == 65536
    assert state.counters[EXCEPTIONS].size == NUM_REASONS
    assert not state.meters[TX_RATE].packets   # a bytes meter
    assert state.registers["flow_rx_state"].bitwidth == 128


def test_get_pipeline_all_returns_device_config(loaded: P4RuntimeClient) -> None:
    req = pb.GetForwardingPipelineConfigRequest(
        device_id=0, response_type=pb.GetForwardingPipelineConfigRequest.ALL)
    resp = loaded._call("GetForwardingPipelineConfig", req)
    assert resp.config.p4_device_config == Path(BMV2_JSON).read_bytes()
    assert resp.config.p4info == p4info().proto
    assert resp.config.cookie.cookie == default_cookie(P4INFO, BMV2_JSON)


def test_new_pipeline_resets_state(loaded: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    loaded.insert([flow_entry(1)])
    assert flow_key(1) in dataplane.state.tables[FLOW_LOOKUP].entries
    loaded.set_pipeline(P4INFO, BMV2_JSON, cookie=7)
    assert len(dataplane.states) == 2
    assert not dataplane.state.tables[FLOW_LOOKUP].entries
    assert loaded.pipeline_cookie() == 7


def _push(client: P4RuntimeClient, info: P4Info, json_bytes: bytes,
          action: int = pb.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT) -> None:
    req = pb.SetForwardingPipelineConfigRequest(device_id=0, election_id=client._election(),
                                                action=action)
    req.config.p4info.CopyFrom(info.proto)
    req.config.p4_device_config = json_bytes
    client._call("SetForwardingPipelineConfig", req)


def test_wrong_p4info_is_refused_naming_the_difference(client: P4RuntimeClient,
                                                       dataplane: FakeDataplane) -> None:
    info = p4info()
    tables = info.proto.tables
    del tables[[t.preamble.name for t in tables].index(FLOW_STATE)]
    for action in info.proto.actions:
        if action.preamble.name.endswith("set_flow_id"):
            action.params[0].bitwidth = 16
    info.proto.counters[0].size = 12   # a size alone may differ: a build for another capacity
    json_bytes = Path(BMV2_JSON).read_bytes()
    with pytest.raises(P4RuntimeError) as err:
        _push(client, P4Info(info.proto), json_bytes)
    assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT
    text = str(err.value)
    assert f"table {FLOW_STATE} missing" in text
    assert "action P4tasIngress.flow_lookup.set_flow_id params differ" in text
    assert "size" not in text   # tests/unit/test_flow_capacity.py: the 1M build is taken
    assert not dataplane.states


def test_p4info_of_another_program_is_refused(client: P4RuntimeClient) -> None:
    other = P4Info.from_text("""
        tables { preamble { id: 37375156 name: "MyIngress.ipv4_lpm" alias: "ipv4_lpm" }
                 match_fields { id: 1 name: "hdr.ipv4.dstAddr" bitwidth: 32 match_type: LPM }
                 size: 1024 }
    """)
    with pytest.raises(P4RuntimeError) as err:
        _push(client, other, b"{}")
    assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown table MyIngress.ipv4_lpm" in str(err.value)
    assert f"table {FLOW_LOOKUP} missing" in str(err.value)


def test_bad_device_config_is_refused(client: P4RuntimeClient) -> None:
    for json_bytes in (b"", b"not json", b'{"actions": [], "pipelines": []}'):
        with pytest.raises(P4RuntimeError) as err:
            _push(client, p4info(), json_bytes)
        assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT


def test_verify_only_and_save_then_commit(client: P4RuntimeClient,
                                          dataplane: FakeDataplane) -> None:
    json_bytes = Path(BMV2_JSON).read_bytes()
    Action = pb.SetForwardingPipelineConfigRequest
    _push(client, p4info(), json_bytes, Action.VERIFY)
    assert not dataplane.states and client.pipeline_cookie() is None
    with pytest.raises(P4RuntimeError) as err:
        _push(client, p4info(), b"", Action.COMMIT)
    assert err.value.grpc_code == grpc.StatusCode.FAILED_PRECONDITION
    _push(client, p4info(), json_bytes, Action.VERIFY_AND_SAVE)
    assert not dataplane.states
    _push(client, P4Info(p4info_pb2.P4Info()), b"", Action.COMMIT)   # commits the saved one
    assert len(dataplane.states) == 1


def test_reconcile_keeps_forwarding_state(loaded: P4RuntimeClient,
                                          dataplane: FakeDataplane) -> None:
    loaded.insert([flow_entry(1)])
    _push(loaded, p4info(), Path(BMV2_JSON).read_bytes(),
          pb.SetForwardingPipelineConfigRequest.RECONCILE_AND_COMMIT)
    assert len(dataplane.states) == 1
    assert flow_key(1) in dataplane.state.tables[FLOW_LOOKUP].entries


def test_capabilities(channel: grpc.Channel, server: P4RuntimeServer) -> None:
    resp = stubs(channel)["Capabilities"](pb.CapabilitiesRequest(), timeout=5)
    assert resp.p4runtime_api_version.startswith("1.")



def test_non_exact_tables_are_unimplemented(tmp_path: Path, dataplane: FakeDataplane) -> None:
    info = p4info()
    info.proto.tables[0].match_fields[0].match_type = info.proto.tables[0].match_fields[0].TERNARY
    p4info_path = tmp_path / "ternary.p4info.txtpb"
    p4info_path.write_text(str(info.proto))
    srv = P4RuntimeServer("127.0.0.1:0", 0, CPU_PORT, dataplane, p4info_path=p4info_path)
    srv.start()
    client = P4RuntimeClient(f"127.0.0.1:{srv.port}", timeout=5.0)
    try:
        client.connect()
        with pytest.raises(P4RuntimeError) as err:
            client.set_pipeline(p4info_path, BMV2_JSON)
        assert err.value.grpc_code == grpc.StatusCode.UNIMPLEMENTED
        assert f"table {FLOW_LOOKUP} field peer_ip: TERNARY match" in str(err.value)
        assert not dataplane.states
    finally:
        client.close()
        srv.stop(grace=0.1)
