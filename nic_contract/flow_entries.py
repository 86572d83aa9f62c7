"""The data-plane entries of one connection: flow_lookup (4-tuple -> flow id) and flow_state
(flow id -> static state), built for P4Runtime. See p4src/v1model/flow_lookup.p4."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2

MAX_GENERATION = 0xFFFF
FLOW_ID_LIMIT = 1 << 32   # flow_id_t is bit<32>; a build's capacity is in its P4Info
MAX_WINDOW_SHIFT = 14  # RFC 7323


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """A connection's addresses and ports, seen from our side."""

    local_ip: str
    local_port: int
    peer_ip: str
    peer_port: int

    def __post_init__(self) -> None:
        for name in ("local_ip", "peer_ip"):
            ipaddress.IPv4Address(getattr(self, name))
        for name in ("local_port", "peer_port"):
            if not 0 < getattr(self, name) <= 0xFFFF:
                raise ValueError(f"{name} {getattr(self, name)} is not a TCP port (1..65535)")


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """Everything the fast path needs to know about a connection that does not change."""

    flow_id: int
    generation: int
    tuple: FlowTuple
    local_mac: str
    peer_mac: str
    rx_ring_size: int
    rx_start_seq: int
    tx_start_seq: int
    wire_port: int
    rx_window_shift: int = 0
    timestamps: bool = True
    peer_window: int = 0xFFFF  # the peer's raw window when the connection was set up
    ecn: bool = False  # ECN negotiated (RFC 3168): the NIC sends data ECT(0)
    sack: bool = False  # SACK negotiated (RFC 2018): SACK frames to the host, blocks in ACKs
    peer_window_shift: int = 0  # the peer's window scale: old ACKs beyond its window are bad

    def __post_init__(self) -> None:
        if not 0 <= self.flow_id < FLOW_ID_LIMIT:
            raise ValueError(f"flow_id {self.flow_id} outside 0..{FLOW_ID_LIMIT - 1} (flow_id_t)")
        # Registers start at generation 0, so 0 would never trigger re-initialization.
        if not 0 < self.generation <= MAX_GENERATION:
            raise ValueError(f"generation {self.generation} outside 1..{MAX_GENERATION}")
        size = self.rx_ring_size
        if size < 2 or size & (size - 1) or size > 1 << 31:
            raise ValueError(f"rx_ring_size {size} must be a power of two between 2 and 2^31 "
                             "(the fast path masks ring offsets)")
        for name in ("rx_start_seq", "tx_start_seq"):
            if not 0 <= getattr(self, name) <= 0xFFFFFFFF:
                raise ValueError(f"{name} {getattr(self, name)} is not a 32-bit sequence number")
        if not 0 < self.wire_port < 0x1FF:
            raise ValueError(f"wire_port {self.wire_port} is not a bmv2 port (1..510)")
        if not 0 <= self.peer_window <= 0xFFFF:
            raise ValueError(f"peer_window {self.peer_window} is not a 16-bit TCP window")
        if not 0 <= self.peer_window_shift <= MAX_WINDOW_SHIFT:
            raise ValueError(f"peer_window_shift {self.peer_window_shift} outside "
                             f"0..{MAX_WINDOW_SHIFT}")
        if not 0 <= self.rx_window_shift <= MAX_WINDOW_SHIFT:
            raise ValueError(f"rx_window_shift {self.rx_window_shift} outside 0..{MAX_WINDOW_SHIFT}")


def lookup_entry(p4info: P4Info, spec: FlowSpec) -> p4runtime_pb2.TableEntry:
    """The flow_lookup entry: the peer's packets of this connection -> its flow id."""
    t = spec.tuple
    return p4info.table_entry(
        "flow_lookup",
        match={"peer_ip": t.peer_ip, "local_ip": t.local_ip,
               "peer_port": t.peer_port, "local_port": t.local_port},
        action="set_flow_id",
        params={"flow_id": spec.flow_id},
    )


def state_entry(p4info: P4Info, spec: FlowSpec) -> p4runtime_pb2.TableEntry:
    """The flow_state entry: flow id -> static state (what TX needs to build headers too)."""
    return p4info.table_entry(
        "flow_state",
        match={"flow_id": spec.flow_id},
        action="set_flow_state",
        params={
            "generation": spec.generation,
            "local_mac": spec.local_mac,
            "peer_mac": spec.peer_mac,
            "local_ip": spec.tuple.local_ip,
            "peer_ip": spec.tuple.peer_ip,
            "local_port": spec.tuple.local_port,
            "peer_port": spec.tuple.peer_port,
            "wire_port": spec.wire_port,
            "rx_ring_size": spec.rx_ring_size,
            "rx_start_seq": spec.rx_start_seq,
            "tx_start_seq": spec.tx_start_seq,
            "rx_window_shift": spec.rx_window_shift,
            "timestamps": int(spec.timestamps),
            "peer_window": spec.peer_window,
            "ecn": int(spec.ecn),
            "sack": int(spec.sack),
            "peer_window_shift": spec.peer_window_shift,
        },
    )


def flow_entries(p4info: P4Info, spec: FlowSpec) -> list[p4runtime_pb2.TableEntry]:
    """Both entries of a connection, in the order to insert them (state before lookup)."""
    return [state_entry(p4info, spec), lookup_entry(p4info, spec)]
