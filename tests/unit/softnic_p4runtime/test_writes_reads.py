"""Write and Read of each kind of entity on softnic's P4Runtime server (softnic/p4runtime/
writes.py, reads.py): what reaches the SwitchState, what reads back, and the status codes and
per-update error details of simple_switch_grpc."""

from __future__ import annotations

import time

import grpc
import pytest

from nic_contract.constants import NUM_REASONS
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import P4RuntimeError, WriteError
from nic_contract.p4rt.messages import updates_of
from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2, status_pb2
from tests.unit.softnic_p4runtime.helpers import (EXCEPTIONS, FLOW_LOOKUP, FLOW_STATE, NEW_ACK,
                                             TX_RATE, FakeDataplane, flow_entry, flow_key,
                                             stubs, write_failures)

pb = p4runtime_pb2
Code = code_pb2.Code


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
    assert [e.index.index for e in everything] == list(range(NUM_REASONS))
    assert [(e.data.packet_count, e.data.byte_count) for e in everything][12:14] == [(0, 0),
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
    out_of_range.index.index = NUM_REASONS
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
