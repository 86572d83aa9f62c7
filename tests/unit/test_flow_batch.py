"""runtime/flow_batch.py: many flows' entries per P4Runtime Write, the same entries as
nic_contract.flow_entries builds, installed on and removed from a real softnic server."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator

import pytest

from nic_contract.flow_entries import FlowSpec, FlowTuple, flow_entries
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import WriteError
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from nic_contract.pipeline import P4INFO
from runtime.flow_batch import FlowEntryEncoder, chunks, install_flows, remove_flows
from tests.support.footprint import flow_specs
from tests.unit.softnic_p4runtime.helpers import FLOW_LOOKUP, FLOW_STATE, FakeDataplane
from tests.unit.softnic_p4runtime.conftest import (  # noqa: F401 (fixtures)
    address, client, dataplane, loaded, server)


def random_spec(rng: random.Random) -> FlowSpec:
    """A flow with every field drawn from its whole range."""
    ip = lambda: ".".join(str(rng.randrange(256)) for _ in range(4))  # noqa: E731
    mac = lambda: ":".join(f"{rng.randrange(256):02x}" for _ in range(6))  # noqa: E731
    return FlowSpec(rng.randrange(1 << 20), rng.randrange(1, 1 << 16),
                    FlowTuple(ip(), rng.randrange(1, 1 << 16), ip(), rng.randrange(1, 1 << 16)),
                    mac(), mac(), 1 << rng.randrange(1, 32), rng.getrandbits(32),
                    rng.getrandbits(32), rng.randrange(1, 511), rng.randrange(15),
                    rng.random() < 0.5, rng.randrange(1 << 16), rng.random() < 0.5,
                    rng.random() < 0.5, rng.randrange(15))


def test_encoder_builds_what_flow_entries_builds() -> None:
    p4info, rng = P4Info.from_file(P4INFO), random.Random(18)
    encoder = FlowEntryEncoder(p4info)
    for spec in [random_spec(rng) for _ in range(500)]:
        want = [e.SerializeToString(deterministic=True) for e in flow_entries(p4info, spec)]
        assert [e.SerializeToString(deterministic=True) for e in encoder.entries(spec)] == want


def test_chunks() -> None:
    assert [len(c) for c in chunks(range(2500), 1000)] == [1000, 1000, 500]
    assert list(chunks([], 10)) == []
    with pytest.raises(ValueError):
        list(chunks([1], 0))


class CountingClient:
    """A client that counts Writes and their updates."""

    def __init__(self, client: P4RuntimeClient) -> None:
        self.client, self.writes = client, []

    def write(self, updates: Iterable[p4runtime_pb2.Update], timeout: float | None = None) -> None:
        updates = list(updates)
        self.writes.append([u.type for u in updates])
        self.client.write(updates, timeout)


def test_install_and_remove_in_batches(loaded: P4RuntimeClient,
                                       dataplane: FakeDataplane) -> None:
    counting = CountingClient(loaded)
    assert install_flows(counting, loaded.p4info, flow_specs(2500), batch=1000) == 2500
    assert [len(w) for w in counting.writes] == [2000, 2000, 1000]   # 2 entries per flow
    tables = dataplane.state.tables
    assert len(tables[FLOW_STATE].entries) == len(tables[FLOW_LOOKUP].entries) == 2500
    read = list(loaded.read([loaded.p4info.table_wildcard("flow_state")]))
    assert len(read) == 2500
    assert remove_flows(counting, loaded.p4info, flow_specs(2500), batch=2000) == 2500
    assert [len(w) for w in counting.writes[3:]] == [4000, 1000]
    assert not tables[FLOW_STATE].entries and not tables[FLOW_LOOKUP].entries


def test_a_failed_batch_stops_the_install(loaded: P4RuntimeClient,
                                          dataplane: FakeDataplane) -> None:
    install_flows(loaded, loaded.p4info, flow_specs(10, first_id=5000))
    counting = CountingClient(loaded)

    def specs() -> Iterator[FlowSpec]:
        yield from flow_specs(300)
        yield from flow_specs(10, first_id=5000)   # already installed: ALREADY_EXISTS
        yield from flow_specs(300, first_id=1000)
    with pytest.raises(WriteError):
        install_flows(counting, loaded.p4info, specs(), batch=200)
    assert len(counting.writes) == 2   # the third batch was never sent
    # the failed Write's other updates apply (CONTINUE_ON_ERROR): 300 + 90 of the third range
    assert len(dataplane.state.tables[FLOW_STATE].entries) == 10 + 300 + 90
