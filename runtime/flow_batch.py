"""Many flows' fast-path entries in few P4Runtime Writes: both entries of up to `batch` flows per
WriteRequest (state before lookup, as flow_entries orders them), for bulk installs and removals
(issue 18: a million flows at >= 10,000 per second on soft)."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Protocol

from nic_contract.flow_entries import FlowSpec, FlowTuple, flow_entries
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2

DEFAULT_BATCH = 1000   # flows per Write: 2,000 updates, ~0.5 MB (gRPC's limit is far above)

_Update = p4runtime_pb2.Update


class Writes(Protocol):
    """What sends one WriteRequest (nic_contract.p4rt.client.P4RuntimeClient.write)."""

    def write(self, updates: Iterable[p4runtime_pb2.Update],
              timeout: float | None = None) -> None: ...


def chunks(specs: Iterable[FlowSpec], batch: int) -> Iterator[list[FlowSpec]]:
    """`specs` in lists of at most `batch`."""
    if batch < 1:
        raise ValueError(f"batch {batch} must be at least 1")
    it = iter(specs)
    while chunk := list(islice(it, batch)):
        yield chunk


def install_flows(client: Writes, p4info: P4Info, specs: Iterable[FlowSpec],
                  batch: int = DEFAULT_BATCH, timeout: float | None = None) -> int:
    """INSERT every flow's entries, `batch` flows per Write; the number of flows written.
    A failed Write raises the client's WriteError (earlier batches stay installed)."""
    return _write_flows(client, p4info, specs, batch, _Update.INSERT, timeout)


def remove_flows(client: Writes, p4info: P4Info, specs: Iterable[FlowSpec],
                 batch: int = DEFAULT_BATCH, timeout: float | None = None) -> int:
    """DELETE every flow's entries (lookup before state), `batch` flows per Write."""
    return _write_flows(client, p4info, specs, batch, _Update.DELETE, timeout)


def _write_flows(client: Writes, p4info: P4Info, specs: Iterable[FlowSpec], batch: int,
                 kind: int, timeout: float | None) -> int:
    """One Write in flight on a thread while the next batch is encoded (in order: a batch is
    sent once the previous one succeeded)."""
    encoder = FlowEntryEncoder(p4info)
    done, pending = 0, None
    with ThreadPoolExecutor(1, thread_name_prefix="flow-batch") as writer:
        for chunk in chunks(specs, batch):
            request = p4runtime_pb2.WriteRequest()
            for spec in chunk:
                encoder.add(request, kind, spec)
            if pending is not None:
                pending.result()
            pending = writer.submit(client.write, request.updates, timeout)
            done += len(chunk)
        if pending is not None:
            pending.result()
    return done


def _canonical(number: int) -> bytes:
    """P4Runtime's canonical bytestring of a non-negative int (nic_contract.p4rt.p4info.encode)."""
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def _ip(text: str) -> int:
    return int.from_bytes(socket.inet_aton(text), "big")


def _mac(text: str) -> int:
    return int(text.replace(":", ""), 16)


class FlowEntryEncoder:
    """flow_entries() for bulk writes: each flow's two updates are copies of template entries
    whose values are then set (the P4Info's ids resolved once, the values checked by FlowSpec);
    the same messages, ~6x faster (tests/unit/test_flow_batch.py compares them)."""

    def __init__(self, p4info: P4Info) -> None:
        self._state_params = tuple(p.name for p in p4info.action("set_flow_state").params)
        t = FlowTuple("0.0.0.0", 1, "0.0.0.0", 1)
        template = FlowSpec(0, 1, t, "00:00:00:00:00:00", "00:00:00:00:00:00", 2, 0, 0, 1)
        self._state, self._lookup = flow_entries(p4info, template)
        lookup_keys = [m.name for m in p4info.table("flow_lookup").match_fields]
        if lookup_keys != ["peer_ip", "local_ip", "peer_port", "local_port"]:
            raise ValueError(f"flow_lookup's key is {lookup_keys}, not the one encoded here")

    def add(self, request: p4runtime_pb2.WriteRequest, kind: int, spec: FlowSpec) -> None:
        """Append the flow's two updates of `kind` (INSERT: state first; else lookup first)."""
        t, flow_id = spec.tuple, _canonical(spec.flow_id)
        peer_ip, local_ip = _ip(t.peer_ip), _ip(t.local_ip)
        values = {"generation": spec.generation, "local_mac": _mac(spec.local_mac),
                  "peer_mac": _mac(spec.peer_mac), "local_ip": local_ip, "peer_ip": peer_ip,
                  "local_port": t.local_port, "peer_port": t.peer_port,
                  "wire_port": spec.wire_port, "rx_ring_size": spec.rx_ring_size,
                  "rx_start_seq": spec.rx_start_seq, "tx_start_seq": spec.tx_start_seq,
                  "rx_window_shift": spec.rx_window_shift, "timestamps": int(spec.timestamps),
                  "peer_window": spec.peer_window, "ecn": int(spec.ecn), "sack": int(spec.sack),
                  "peer_window_shift": spec.peer_window_shift}
        first, second = request.updates.add(), request.updates.add()
        first.type = second.type = kind
        state, lookup = ((first, second) if kind == _Update.INSERT else (second, first))
        entry = state.entity.table_entry
        entry.CopyFrom(self._state)
        entry.match[0].exact.value = flow_id
        for param, name in zip(entry.action.action.params, self._state_params):
            param.value = _canonical(values[name])
        entry = lookup.entity.table_entry
        entry.CopyFrom(self._lookup)
        match = entry.match
        match[0].exact.value = _canonical(peer_ip)
        match[1].exact.value = _canonical(local_ip)
        match[2].exact.value = _canonical(t.peer_port)
        match[3].exact.value = _canonical(t.local_port)
        entry.action.action.params[0].value = flow_id

    def entries(self, spec: FlowSpec) -> list[p4runtime_pb2.TableEntry]:
        """The flow's entries as flow_entries() orders them (state, lookup)."""
        request = p4runtime_pb2.WriteRequest()
        self.add(request, _Update.INSERT, spec)
        return [u.entity.table_entry for u in request.updates]
