"""What the tests of softnic's P4Runtime server share: a fake dataplane, raw stubs of the
service, and p4tas's table entries."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import grpc
import pytest

from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import WriteError
from nic_contract.p4rt.messages import updates_of
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from nic_contract.pipeline import P4INFO
from softnic.state import SwitchState

pb = p4runtime_pb2

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



def p4info() -> P4Info:
    return P4Info.from_file(P4INFO)


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


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()

