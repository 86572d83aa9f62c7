"""Fixtures of the tests of softnic's P4Runtime server: a server on a free port over a fake
dataplane, and the project's client (nic_contract.p4rt.client) as its primary controller."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.pipeline import BMV2_JSON, P4INFO
from softnic.p4runtime.server import P4RuntimeServer
from tests.unit.softnic_p4runtime.helpers import CPU_PORT, FakeDataplane


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
    client.set_pipeline(P4INFO, BMV2_JSON)
    return client


@pytest.fixture
def channel(address: str) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(address)
    yield ch
    ch.close()

