"""P4Runtime messages the client builds without a P4Info: Entities and Updates around entries,
clone sessions, and the pipeline cookie of a program's files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Iterable

from nic_contract.p4rt.proto import p4runtime_pb2


def default_cookie(p4info_path: str | Path, device_config_path: str | Path) -> int:
    """A stable 64-bit pipeline cookie: SHA-256 over both files' bytes (length-prefixed)."""
    digest = hashlib.sha256()
    for path in (p4info_path, device_config_path):
        data = Path(path).read_bytes()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return int.from_bytes(digest.digest()[:8], "big")


_ENTITY_FIELDS: dict[type, str] = {
    p4runtime_pb2.TableEntry: "table_entry",
    p4runtime_pb2.CounterEntry: "counter_entry",
    p4runtime_pb2.DirectCounterEntry: "direct_counter_entry",
    p4runtime_pb2.MeterEntry: "meter_entry",
    p4runtime_pb2.DirectMeterEntry: "direct_meter_entry",
    p4runtime_pb2.PacketReplicationEngineEntry: "packet_replication_engine_entry",
    p4runtime_pb2.RegisterEntry: "register_entry",
    p4runtime_pb2.DigestEntry: "digest_entry",
    p4runtime_pb2.ValueSetEntry: "value_set_entry",
    p4runtime_pb2.ActionProfileMember: "action_profile_member",
    p4runtime_pb2.ActionProfileGroup: "action_profile_group",
}


def to_entity(obj: Any) -> p4runtime_pb2.Entity:
    """Wrap a TableEntry, CounterEntry, MeterEntry, ... in an Entity (Entities pass through)."""
    if isinstance(obj, p4runtime_pb2.Entity):
        return obj
    name = _ENTITY_FIELDS.get(type(obj))
    if name is None:
        raise TypeError(f"cannot make a P4Runtime Entity from {type(obj).__name__}")
    entity = p4runtime_pb2.Entity()
    getattr(entity, name).CopyFrom(obj)
    return entity


def updates_of(kind: int, entities: Iterable[Any]) -> list[p4runtime_pb2.Update]:
    """Wrap entities in Updates of one type (p4runtime_pb2.Update.INSERT, MODIFY or DELETE)."""
    return [p4runtime_pb2.Update(type=kind, entity=to_entity(e)) for e in entities]


def clone_session_entry(session_id: int, egress_port: int,
                        instance: int = 1) -> p4runtime_pb2.PacketReplicationEngineEntry:
    """A clone session with one replica to `egress_port`."""
    entry = p4runtime_pb2.PacketReplicationEngineEntry()
    session = entry.clone_session_entry
    session.session_id = session_id
    # egress_port (deprecated in 1.4 in favour of `port` bytes) is what every bmv2 PI reads.
    session.replicas.add(egress_port=egress_port, instance=instance)
    return entry
