"""softnic's P4Runtime server driven by the project's own client (nic_contract.p4rt.client) and raw
stubs, against a fake dataplane: the status codes and error details a controller sees must be
those of simple_switch_grpc."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nic_contract.p4rt.client import (NotPrimaryError, P4RuntimeClient, P4RuntimeError,
                                 PipelineError, WriteError, default_cookie, updates_of)
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import code_pb2, p4info_pb2, p4runtime_pb2, status_pb2
from softnic.p4runtime_server import DEFAULT_BMV2_JSON, DEFAULT_P4INFO, P4RuntimeServer
from softnic.state import SwitchState

pb = p4runtime_pb2
Code = code_pb2.Code

FLOW_LOOKUP = "P4tasIngress.flow_lookup.flow_lookup"
FLOW_STATE = "P4tasIngress.flow_state.flow_state"
NEW_ACK = "P4tasIngress.ack_processing.new_ack_counter"
EXCEPTIONS = "P4tasIngress.verdict.exception_counter"
TX_RATE = "P4tasIngress.transmit.rate_limit.tx_rate"
CPU_PORT = 255


class FakeDataplane:
    """Records the states the server loads and the frames it sends out."""

    def __init__(self) -> None:
        self.states: list[SwitchState] = []
        self.frames: queue.Queue[bytes] = queue.Queue()

    def load(self, state: SwitchState) -> None:
        self.states.append(state)

    def packet_out(self, frame: bytes) -> None:
        self.frames.put(frame)

    @property
    def state(self) -> SwitchState:
        return self.states[-1]


@pytest.fixture
def dataplane() -> FakeDataplane:
    return FakeDataplane()


@pytest.fixture
def server(dataplane: FakeDataplane) -> Iterator[P4RuntimeServer]:
    srv = P4RuntimeServer("127.0.0.1:0", 0, CPU_PORT, dataplane)
    srv.start()
    yield srv
    srv.stop(grace=0.1)


@pytest.fixture
def address(server: P4RuntimeServer) -> str:
    return f"127.0.0.1:{server.port}"


@pytest.fixture
def client(address: str) -> Iterator[P4RuntimeClient]:
    """The primary controller, with no pipeline pushed yet."""
    c = P4RuntimeClient(address, device_id=0, election_id=(0, 10), timeout=5.0)
    c.connect()
    yield c
    c.close()


@pytest.fixture
def loaded(client: P4RuntimeClient) -> P4RuntimeClient:
    """The primary controller after pushing p4tas's pipeline."""
    client.set_pipeline(DEFAULT_P4INFO, DEFAULT_BMV2_JSON)
    return client


@pytest.fixture
def channel(address: str) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(address)
    yield ch
    ch.close()


def stubs(channel: grpc.Channel) -> dict:
    """Raw unary/stream callables of the P4Runtime service."""
    svc = "/p4.v1.P4Runtime/"
    return {
        "Write": channel.unary_unary(svc + "Write", pb.WriteRequest.SerializeToString,
                                     pb.WriteResponse.FromString),
        "Read": channel.unary_stream(svc + "Read", pb.ReadRequest.SerializeToString,
                                     pb.ReadResponse.FromString),
        "Set": channel.unary_unary(svc + "SetForwardingPipelineConfig",
                                   pb.SetForwardingPipelineConfigRequest.SerializeToString,
                                   pb.SetForwardingPipelineConfigResponse.FromString),
        "Capabilities": channel.unary_unary(svc + "Capabilities",
                                            pb.CapabilitiesRequest.SerializeToString,
                                            pb.CapabilitiesResponse.FromString),
        "Stream": channel.stream_stream(svc + "StreamChannel",
                                        pb.StreamMessageRequest.SerializeToString,
                                        pb.StreamMessageResponse.FromString),
    }


class RawStream:
    """A StreamChannel driven by hand: send requests, take responses one by one."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._requests: queue.Queue = queue.Queue()
        self.call = stubs(channel)["Stream"](iter(self._requests.get, None))

    def arbitrate(self, election_id: int, device_id: int = 0) -> pb.MasterArbitrationUpdate:
        req = pb.StreamMessageRequest()
        req.arbitration.device_id = device_id
        req.arbitration.election_id.low = election_id
        self._requests.put(req)
        return next(self.call).arbitration

    def close(self) -> None:
        self._requests.put(None)
        self.call.cancel()


def p4info() -> P4Info:
    return P4Info.from_file(DEFAULT_P4INFO)


def flow_entry(peer_port: int, flow_id: int | None = 1) -> pb.TableEntry:
    match = {"peer_ip": "10.0.0.2", "local_ip": "10.0.0.1", "peer_port": peer_port,
             "local_port": 80}
    if flow_id is None:
        return p4info().table_entry(FLOW_LOOKUP, match)
    return p4info().table_entry(FLOW_LOOKUP, match, "set_flow_id", {"flow_id": flow_id})


def flow_key(peer_port: int) -> tuple[int, ...]:
    return (0x0A000002, 0x0A000001, peer_port, 80)


def write_failures(client: P4RuntimeClient, kind: int, entities: list) -> list:
    """Write expecting failures; return (index, code) of each failed update."""
    with pytest.raises(WriteError) as info:
        client.write(updates_of(kind, entities))
    return [(f.index, f.code) for f in info.value.failures]


def wait_until(predicate, timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# --------------------------------------------------------------------------- pipeline config

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
    cookie = default_cookie(DEFAULT_P4INFO, DEFAULT_BMV2_JSON)
    assert loaded.pipeline_cookie() == cookie
    assert loaded.fetch_p4info().proto == p4info().proto
    assert not loaded.ensure_pipeline(DEFAULT_P4INFO, DEFAULT_BMV2_JSON)   # same cookie
    state = dataplane.state
    assert len(dataplane.states) == 1
    assert state.tables[FLOW_LOOKUP] is state.tables["flow_lookup"]
    assert state.tables[FLOW_LOOKUP].default_action == ("P4tasIngress.flow_lookup.unknown_flow",
                                                        ())
    assert state.tables[FLOW_LOOKUP].size == 65536
    assert state.counters[EXCEPTIONS].size == 14
    assert not state.meters[TX_RATE].packets   # a bytes meter
    assert state.registers["flow_rx_state"].bitwidth == 128


def test_get_pipeline_all_returns_device_config(loaded: P4RuntimeClient) -> None:
    req = pb.GetForwardingPipelineConfigRequest(
        device_id=0, response_type=pb.GetForwardingPipelineConfigRequest.ALL)
    resp = loaded._call("GetForwardingPipelineConfig", req)
    assert resp.config.p4_device_config == Path(DEFAULT_BMV2_JSON).read_bytes()
    assert resp.config.p4info == p4info().proto
    assert resp.config.cookie.cookie == default_cookie(DEFAULT_P4INFO, DEFAULT_BMV2_JSON)


def test_new_pipeline_resets_state(loaded: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    loaded.insert([flow_entry(1)])
    assert flow_key(1) in dataplane.state.tables[FLOW_LOOKUP].entries
    loaded.set_pipeline(DEFAULT_P4INFO, DEFAULT_BMV2_JSON, cookie=7)
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
    info.proto.counters[0].size = 12
    json_bytes = Path(DEFAULT_BMV2_JSON).read_bytes()
    with pytest.raises(P4RuntimeError) as err:
        _push(client, P4Info(info.proto), json_bytes)
    assert err.value.grpc_code == grpc.StatusCode.INVALID_ARGUMENT
    text = str(err.value)
    assert f"table {FLOW_STATE} missing" in text
    assert "action P4tasIngress.flow_lookup.set_flow_id params differ" in text
    assert f"counter {NEW_ACK} size differ" in text
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
    json_bytes = Path(DEFAULT_BMV2_JSON).read_bytes()
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
    _push(loaded, p4info(), Path(DEFAULT_BMV2_JSON).read_bytes(),
          pb.SetForwardingPipelineConfigRequest.RECONCILE_AND_COMMIT)
    assert len(dataplane.states) == 1
    assert flow_key(1) in dataplane.state.tables[FLOW_LOOKUP].entries


def test_capabilities(channel: grpc.Channel, server: P4RuntimeServer) -> None:
    resp = stubs(channel)["Capabilities"](pb.CapabilitiesRequest(), timeout=5)
    assert resp.p4runtime_api_version.startswith("1.")


# --------------------------------------------------------------------------- arbitration

def test_lower_election_id_is_backup_and_cannot_write(loaded: P4RuntimeClient,
                                                      channel: grpc.Channel,
                                                      address: str) -> None:
    backup = P4RuntimeClient(address, device_id=0, election_id=(0, 5), timeout=5.0)
    with pytest.raises(NotPrimaryError):
        backup.connect()
    stream = RawStream(channel)
    try:
        arb = stream.arbitrate(5)
        assert arb.status.code == Code.ALREADY_EXISTS
        assert (arb.election_id.high, arb.election_id.low) == (0, 10)   # the primary's
        req = pb.WriteRequest(device_id=0, updates=updates_of(pb.Update.INSERT,
                                                              [flow_entry(1)]))
        req.election_id.low = 5
        with pytest.raises(grpc.RpcError) as err:
            stubs(channel)["Write"](req, timeout=5)
        assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert loaded.is_primary
    finally:
        stream.close()
    loaded.insert([flow_entry(1)])   # the primary still writes


def test_observer_without_stream_cannot_write(loaded: P4RuntimeClient, address: str) -> None:
    observer = P4RuntimeClient(address, device_id=0, election_id=(0, 3), timeout=5.0)
    observer.connect(primary=False)
    try:
        observer.p4info = p4info()
        assert len(list(observer.read([observer.p4info.table_wildcard(FLOW_LOOKUP)]))) == 0
        with pytest.raises(NotPrimaryError) as err:
            observer.insert([flow_entry(1)])
        assert err.value.grpc_code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        observer.close()


def test_higher_election_id_takes_over_and_primary_returns(loaded: P4RuntimeClient,
                                                           channel: grpc.Channel,
                                                           server: P4RuntimeServer) -> None:
    stream = RawStream(channel)
    arb = stream.arbitrate(20)
    assert arb.status.code == Code.OK
    assert server.primary_election_id == 20
    assert wait_until(lambda: not loaded.is_primary)
    with pytest.raises(NotPrimaryError):
        loaded.insert([flow_entry(1)])
    stream.close()
    assert wait_until(lambda: loaded.is_primary)
    loaded.insert([flow_entry(1)])


def test_duplicate_election_id_is_refused(loaded: P4RuntimeClient,
                                          channel: grpc.Channel) -> None:
    stream = RawStream(channel)
    with pytest.raises(grpc.RpcError) as err:
        stream.arbitrate(10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stream.close()


def test_unknown_device_id_is_not_found(server: P4RuntimeServer, channel: grpc.Channel,
                                        address: str) -> None:
    stream = RawStream(channel)
    with pytest.raises(grpc.RpcError) as err:
        stream.arbitrate(1, device_id=3)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    stream.close()
    other = P4RuntimeClient(address, device_id=3, timeout=5.0)
    other.connect(primary=False)
    try:
        with pytest.raises(P4RuntimeError) as read_err:
            list(other.read([pb.TableEntry()]))
        assert read_err.value.grpc_code == grpc.StatusCode.NOT_FOUND
    finally:
        other.close()


# --------------------------------------------------------------------------- tables

def test_table_insert_read_modify_delete(loaded: P4RuntimeClient,
                                         dataplane: FakeDataplane) -> None:
    info = loaded.p4info
    table = dataplane.state.tables[FLOW_LOOKUP]
    loaded.insert([flow_entry(port, flow_id=port + 100) for port in (1, 2, 3)])
    assert table.entries[flow_key(2)] == ("P4tasIngress.flow_lookup.set_flow_id", (102,))

    entries = [e.table_entry for e in loaded.read([info.table_wildcard(FLOW_LOOKUP)])]
    assert entries == [flow_entry(port, flow_id=port + 100) for port in (1, 2, 3)]

    loaded.modify([flow_entry(2, flow_id=7)])
    assert table.entries[flow_key(2)] == ("P4tasIngress.flow_lookup.set_flow_id", (7,))
    one = [e.table_entry for e in loaded.read([flow_entry(2, flow_id=None)])]
    assert one == [flow_entry(2, flow_id=7)]
    assert list(loaded.read([flow_entry(9, flow_id=None)])) == []   # no such entry: empty

    loaded.delete([flow_entry(port, flow_id=None) for port in (1, 3)])
    assert list(table.entries) == [flow_key(2)]
    every_table = [e.table_entry for e in loaded.read([pb.TableEntry()])]
    assert every_table == [flow_entry(2, flow_id=7)]


def test_default_entry_modify_read_and_reset(loaded: P4RuntimeClient,
                                             dataplane: FakeDataplane) -> None:
    info = loaded.p4info
    table = dataplane.state.tables[FLOW_LOOKUP]
    read_default = pb.TableEntry(table_id=info.table(FLOW_LOOKUP).preamble.id,
                                 is_default_action=True)
    [initial] = [e.table_entry for e in loaded.read([read_default])]
    assert initial == info.default_entry(FLOW_LOOKUP, "unknown_flow")

    loaded.modify([info.default_entry(FLOW_LOOKUP, "set_flow_id", {"flow_id": 9})])
    assert table.default_action == ("P4tasIngress.flow_lookup.set_flow_id", (9,))
    [changed] = [e.table_entry for e in loaded.read([read_default])]
    assert changed == info.default_entry(FLOW_LOOKUP, "set_flow_id", {"flow_id": 9})

    loaded.modify([read_default])   # no action: back to the program's default
    assert table.default_action == ("P4tasIngress.flow_lookup.unknown_flow", ())


def test_padded_key_bytes_are_accepted_and_read_back_canonical(
        loaded: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    entry = flow_entry(1, flow_id=5)
    entry.match[2].exact.value = b"\x00\x00\x00\x01"   # 16-bit field, padded to 4 bytes
    entry.action.action.params[0].value = b"\x00\x00\x00\x00\x05"
    loaded.insert([entry])
    assert dataplane.state.tables[FLOW_LOOKUP].entries[flow_key(1)][1] == (5,)
    [read] = [e.table_entry for e in loaded.read([loaded.p4info.table_wildcard(FLOW_LOOKUP)])]
    assert read == flow_entry(1, flow_id=5)
    assert read.match[2].exact.value == b"\x01"


def test_duplicate_insert_and_missing_delete(loaded: P4RuntimeClient) -> None:
    loaded.insert([flow_entry(1)])
    assert write_failures(loaded, pb.Update.INSERT, [flow_entry(1)]) == [(0, Code.ALREADY_EXISTS)]
    assert write_failures(loaded, pb.Update.DELETE, [flow_entry(2, None)]) == [
        (0, Code.NOT_FOUND)]
    assert write_failures(loaded, pb.Update.MODIFY, [flow_entry(2)]) == [(0, Code.NOT_FOUND)]


def test_invalid_entries_are_invalid_argument(loaded: P4RuntimeClient) -> None:
    info = loaded.p4info
    too_wide = flow_entry(1)
    too_wide.match[2].exact.value = (1 << 16).to_bytes(3, "big")   # peer_port is 16 bits
    wide_param = flow_entry(2)
    wide_param.action.action.params[0].value = (1 << 32).to_bytes(5, "big")
    unknown_table = flow_entry(3)
    unknown_table.table_id = 12345
    unknown_action = flow_entry(4)
    unknown_action.action.action.action_id = 12345
    foreign_action = flow_entry(5)
    foreign_action.action.action.CopyFrom(info.action_call("set_flow_state", {
        p.name: 0 for p in info.action("set_flow_state").params}))
    missing_field = flow_entry(6)
    del missing_field.match[3]
    entries = [too_wide, wide_param, unknown_table, unknown_action, foreign_action,
               missing_field]
    failures = write_failures(loaded, pb.Update.INSERT, entries)
    assert failures == [(i, Code.INVALID_ARGUMENT) for i in range(len(entries))]


def test_default_only_action_in_entry_is_permission_denied(loaded: P4RuntimeClient) -> None:
    entry = flow_entry(1)
    entry.action.action.CopyFrom(loaded.p4info.action_call("unknown_flow", {}))
    assert write_failures(loaded, pb.Update.INSERT, [entry]) == [(0, Code.PERMISSION_DENIED)]


def test_one_failing_update_in_a_batch(loaded: P4RuntimeClient, channel: grpc.Channel,
                                       dataplane: FakeDataplane) -> None:
    loaded.insert([flow_entry(2)])
    batch = [flow_entry(1), flow_entry(2), flow_entry(3)]
    with pytest.raises(WriteError) as err:
        loaded.insert(batch)
    [failure] = err.value.failures
    assert (failure.index, failure.code_name) == (1, "ALREADY_EXISTS")
    assert failure.update.entity.table_entry == batch[1]
    entries = dataplane.state.tables[FLOW_LOOKUP].entries
    assert {flow_key(1), flow_key(3)} <= set(entries)

    # the raw status: UNKNOWN with one p4.v1.Error per update, OK for the others
    req = pb.WriteRequest(device_id=0, election_id=loaded._election(),
                          updates=updates_of(pb.Update.INSERT, [flow_entry(4), flow_entry(1)]))
    with pytest.raises(grpc.RpcError) as raw:
        stubs(channel)["Write"](req, timeout=5)
    assert raw.value.code() == grpc.StatusCode.UNKNOWN
    [status_bytes] = [v for k, v in raw.value.trailing_metadata()
                      if k == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(status_bytes)
    assert status.code == Code.UNKNOWN
    codes = []
    for detail in status.details:
        error = pb.Error()
        assert detail.Unpack(error)
        codes.append(error.canonical_code)
    assert codes == [Code.OK, Code.ALREADY_EXISTS]


def test_thousands_of_entries_in_one_batch(loaded: P4RuntimeClient,
                                           dataplane: FakeDataplane) -> None:
    info = loaded.p4info
    entries = [info.table_entry(FLOW_STATE, {"flow_id": i}, "set_flow_state",
                                {p.name: i & 0xFF for p in info.action("set_flow_state").params})
               for i in range(3000)]
    started = time.monotonic()
    loaded.insert(entries)
    assert time.monotonic() - started < 5.0
    assert len(dataplane.state.tables[FLOW_STATE].entries) == 3000
    read = [e.table_entry for e in loaded.read([info.table_wildcard(FLOW_STATE)])]
    assert read == entries


# --------------------------------------------------------------------------- counters

def test_counter_read_one_index_and_wildcard(loaded: P4RuntimeClient,
                                             dataplane: FakeDataplane) -> None:
    counter = dataplane.state.counters[EXCEPTIONS]
    counter.count(3, 100)
    counter.count(3, 60)
    counter.count(13, 1)
    assert loaded.read_counter(EXCEPTIONS, 3) == (2, 160)
    everything = [e.counter_entry for e in loaded.read([loaded.p4info.counter_entry(EXCEPTIONS)])]
    assert [e.index.index for e in everything] == list(range(14))
    assert [(e.data.packet_count, e.data.byte_count) for e in everything][12:] == [(0, 0),
                                                                                   (1, 1)]
    big = list(loaded.read([loaded.p4info.counter_entry(NEW_ACK)]))
    assert len(big) == 65536


def test_counter_modify_and_out_of_range(loaded: P4RuntimeClient,
                                         dataplane: FakeDataplane) -> None:
    entry = loaded.p4info.counter_entry(EXCEPTIONS, 2)
    entry.data.packet_count, entry.data.byte_count = 5, 500
    loaded.modify([entry])
    assert loaded.read_counter(EXCEPTIONS, 2) == (5, 500)
    out_of_range = pb.CounterEntry(counter_id=entry.counter_id)
    out_of_range.index.index = 14
    assert write_failures(loaded, pb.Update.MODIFY, [out_of_range]) == [(0, Code.UNKNOWN)]
    with pytest.raises(P4RuntimeError) as err:
        list(loaded.read([out_of_range]))
    assert err.value.grpc_code == grpc.StatusCode.UNKNOWN
    assert write_failures(loaded, pb.Update.INSERT, [entry]) == [(0, Code.INVALID_ARGUMENT)]


# --------------------------------------------------------------------------- meters

def test_meter_modify_read_and_reset(loaded: P4RuntimeClient,
                                     dataplane: FakeDataplane) -> None:
    info = loaded.p4info
    meter = dataplane.state.meters[TX_RATE]
    loaded.modify([info.meter_entry(TX_RATE, 7, cir=125000, cburst=3000, pir=250000,
                                    pburst=6000)])
    assert meter.configs == {7: (125000, 3000, 250000, 6000)}
    [read] = [e.meter_entry for e in loaded.read([info.meter_reset_entry(TX_RATE, 7)])]
    assert (read.config.cir, read.config.cburst, read.config.pir,
            read.config.pburst) == (125000, 3000, 250000, 6000)

    loaded.modify([info.meter_reset_entry(TX_RATE, 7)])
    assert meter.configs == {}
    [read] = [e.meter_entry for e in loaded.read([info.meter_reset_entry(TX_RATE, 7)])]
    assert not read.HasField("config")


def test_meter_insert_and_delete_are_invalid(loaded: P4RuntimeClient) -> None:
    entry = loaded.p4info.meter_entry(TX_RATE, 1, 1, 1, 1, 1)
    assert write_failures(loaded, pb.Update.INSERT, [entry]) == [(0, Code.INVALID_ARGUMENT)]
    assert write_failures(loaded, pb.Update.DELETE, [entry]) == [(0, Code.INVALID_ARGUMENT)]


# --------------------------------------------------------------------------- clone sessions

def test_clone_sessions(loaded: P4RuntimeClient, dataplane: FakeDataplane) -> None:
    state = dataplane.state
    loaded.insert([loaded.clone_session_entry(5, 3)])
    assert state.clone_sessions == {5: 3}
    assert write_failures(loaded, pb.Update.INSERT, [loaded.clone_session_entry(5, 3)]) == [
        (0, Code.ALREADY_EXISTS)]
    loaded.modify([loaded.clone_session_entry(5, 4)])
    assert state.clone_sessions == {5: 4}
    loaded.write_clone_sessions({5: 6, 9: 1})   # inserts 9, modifies 5
    assert state.clone_sessions == {5: 6, 9: 1}

    wildcard = pb.PacketReplicationEngineEntry()
    wildcard.clone_session_entry.session_id = 0
    read = [e.packet_replication_engine_entry.clone_session_entry
            for e in loaded.read([wildcard])]
    assert [(s.session_id, s.replicas[0].egress_port) for s in read] == [(5, 6), (9, 1)]

    loaded.delete([loaded.clone_session_entry(5, 6)])
    assert state.clone_sessions == {9: 1}
    assert write_failures(loaded, pb.Update.DELETE, [loaded.clone_session_entry(5, 6)]) == [
        (0, Code.NOT_FOUND)]
    assert write_failures(loaded, pb.Update.INSERT, [loaded.clone_session_entry(0, 6)]) == [
        (0, Code.INVALID_ARGUMENT)]


# --------------------------------------------------------------------------- registers

def test_registers_are_unimplemented_like_bmv2(loaded: P4RuntimeClient) -> None:
    entry = pb.RegisterEntry(register_id=loaded.p4info.register("flow_rx_state").preamble.id)
    entry.index.index = 0
    assert write_failures(loaded, pb.Update.MODIFY, [entry]) == [(0, Code.UNIMPLEMENTED)]
    with pytest.raises(P4RuntimeError) as err:
        list(loaded.read([entry]))
    assert err.value.grpc_code == grpc.StatusCode.UNIMPLEMENTED


# --------------------------------------------------------------------------- packet I/O

def test_packet_out_reaches_the_dataplane(loaded: P4RuntimeClient,
                                          dataplane: FakeDataplane) -> None:
    payload = bytes(range(60))
    loaded.packet_out(payload, egress_port=3)
    frame = dataplane.frames.get(timeout=3)
    assert frame == bytes([0x01, 0x80]) + payload   # egress_port 3 in 9 bits, 7 pad bits


def test_packet_out_with_unknown_metadata_is_not_sent(loaded: P4RuntimeClient,
                                                      dataplane: FakeDataplane) -> None:
    msg = loaded.p4info.packet_out(b"x", egress_port=1)
    msg.metadata.add(metadata_id=99, value=b"\x01")
    loaded._requests.put(pb.StreamMessageRequest(packet=msg))
    loaded.packet_out(b"y", egress_port=1)
    assert dataplane.frames.get(timeout=3) == bytes([0x00, 0x80]) + b"y"


def test_packet_in_reaches_the_primary(loaded: P4RuntimeClient,
                                       server: P4RuntimeServer) -> None:
    ingress_port, reason, tsval = 7, 5, 0x12345678
    header = (((ingress_port << 7) << 8 | reason) << 32 | tsval).to_bytes(7, "big")
    payload = b"\xaa" * 64
    server.packet_in(header + payload)
    got = loaded.packet_in(timeout=3)
    assert got == (payload, {"ingress_port": 7, "_pad": 0, "reason": 5, "tsval": tsval})


def test_packet_in_without_primary_is_dropped(loaded: P4RuntimeClient,
                                              server: P4RuntimeServer) -> None:
    server.packet_in(bytes(7) + b"first")
    assert loaded.packet_in(timeout=3) == (b"first", {"ingress_port": 0, "_pad": 0,
                                                      "reason": 0, "tsval": 0})
    loaded.close()   # the only controller leaves: nobody to send PacketIns to
    assert wait_until(lambda: server.primary_election_id is None)
    server.packet_in(bytes(7) + b"second")
    assert (server.packet_in_count, server.packet_in_drops) == (1, 1)


# --------------------------------------------------------------------------- unsupported programs

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
            client.set_pipeline(p4info_path, DEFAULT_BMV2_JSON)
        assert err.value.grpc_code == grpc.StatusCode.UNIMPLEMENTED
        assert f"table {FLOW_LOOKUP} field peer_ip: TERNARY match" in str(err.value)
        assert not dataplane.states
    finally:
        client.close()
        srv.stop(grace=0.1)
