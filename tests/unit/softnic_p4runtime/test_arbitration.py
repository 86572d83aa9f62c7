"""Arbitration on softnic's P4Runtime server (softnic/p4runtime/arbitration.py): primary and
backup controllers, observers, election ids and device ids, as simple_switch_grpc answers them."""

from __future__ import annotations

import queue

import grpc
import pytest

from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import NotPrimaryError, P4RuntimeError
from nic_contract.p4rt.messages import updates_of
from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2
from softnic.p4runtime.server import P4RuntimeServer
from tests.unit.softnic_p4runtime.helpers import (FLOW_LOOKUP, flow_entry, p4info, stubs,
                                             wait_until)

pb = p4runtime_pb2
Code = code_pb2.Code


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
