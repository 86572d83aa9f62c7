"""Write of softnic's P4Runtime server: each update validated as PI does (codes and messages)
and applied to the committed pipeline's SwitchState: table entries and default actions,
indirect counters and meters, clone sessions."""

from __future__ import annotations

from typing import Any

from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2
from softnic.p4runtime.encoding import U32_MAX, U64_MAX, to_int
from softnic.p4runtime.failures import Code, RpcFailure, invalid
from softnic.p4runtime.lookup import (find_counter, find_meter, find_table, match_key,
                                      refuse_direct_resource)
from softnic.p4runtime.pipeline_config import LoadedPipeline
from softnic.p4runtime.program import Program, TableInfo

pb = p4runtime_pb2
_Update = pb.Update
_MAX_CLONE_SESSION = 32768         # PI: clone session ids 1..32767
_MAX_PORT_BYTES = 4                # PI: replica ports as bytestrings of at most 4 bytes
# plain ints: enum wrapper attribute lookups cost microseconds per update
_TABLE_ONLY = p4info_pb2.ActionRef.Scope.Value("TABLE_ONLY")
_DEFAULT_ONLY = p4info_pb2.ActionRef.Scope.Value("DEFAULT_ONLY")
_UNIT_BYTES = p4info_pb2.CounterSpec.Unit.Value("BYTES")
_UNIT_PACKETS = p4info_pb2.CounterSpec.Unit.Value("PACKETS")

ActionCall = tuple[str, tuple[int, ...]]   # (action name, params) as the SwitchState holds it


class Writer:
    """Applies the updates of Write requests to a committed pipeline (the caller holds the
    server's lock)."""

    def __init__(self, program: Program, loaded: LoadedPipeline) -> None:
        self._program, self._loaded, self._state = program, loaded, loaded.state

    def apply(self, update: pb.Update) -> RpcFailure | None:
        """Apply one update; its failure, if any."""
        entity = update.entity
        kind = entity.WhichOneof("entity")
        try:
            if kind == "table_entry":
                self._write_table(update.type, entity.table_entry)
            elif kind == "counter_entry":
                self._write_counter(update.type, entity.counter_entry)
            elif kind == "meter_entry":
                self._write_meter(update.type, entity.meter_entry)
            elif kind == "packet_replication_engine_entry":
                self._write_pre(update.type, entity.packet_replication_engine_entry)
            else:
                self._write_other(kind, entity)
        except RpcFailure as failure:
            return failure
        return None

    def _write_other(self, kind: str | None, entity: pb.Entity) -> None:
        """Entities our program has none of, or that bmv2 cannot write."""
        if kind == "register_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Register writes are not supported yet")
        if kind == "value_set_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "ValueSet writes are not supported yet")
        if kind == "extern_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Extern writes are not supported")
        if kind in ("direct_counter_entry", "direct_meter_entry"):
            refuse_direct_resource(self._program, getattr(entity, kind), kind)
        if kind == "digest_entry":
            raise RpcFailure(Code.NOT_FOUND, f"{entity.digest_entry.digest_id} is not a valid "
                             "digest id")
        if kind in ("action_profile_member", "action_profile_group"):
            raise invalid(f"Invalid P4 id {getattr(entity, kind).action_profile_id}: the "
                          "program has no action profiles")
        raise RpcFailure(Code.UNKNOWN, "Incorrect entity type")

    # ---- tables

    def _write_table(self, kind: int, entry: pb.TableEntry) -> None:
        table = find_table(self._program, entry.table_id)
        if entry.HasField("time_since_last_hit"):
            raise invalid("has_time_since_last_hit must not be set in WriteRequest")
        if kind == _Update.INSERT:
            self._table_insert(table, entry)
        elif kind == _Update.MODIFY:
            if entry.is_default_action:
                self._table_set_default(table, entry)
            else:
                self._table_modify(table, entry)
        elif kind == _Update.DELETE:
            self._table_delete(table, entry)
        else:
            raise _bad_update_type(kind)

    def _table_insert(self, table: TableInfo, entry: pb.TableEntry) -> None:
        if entry.is_default_action:
            raise invalid("Cannot use INSERT for default entry")
        if not entry.HasField("action"):
            raise invalid("'action' field must be set")
        key = match_key(table, entry)
        action = self._action_call(table, entry)
        _check_no_extras(table, entry)
        exact = self._state.tables[table.name]
        if key in exact.entries:
            raise RpcFailure(Code.ALREADY_EXISTS,
                             "Match entry exists, use MODIFY if you wish to change action")
        if len(exact.entries) >= table.size:
            # bmv2's TABLE_FULL reaches P4Runtime as UNKNOWN
            raise RpcFailure(Code.UNKNOWN, f"Error when adding match entry to target: table "
                             f"{table.name} is full ({table.size} entries)")
        exact.entries[key] = action
        self._remember_meta(table, key, entry)

    def _table_modify(self, table: TableInfo, entry: pb.TableEntry) -> None:
        key = match_key(table, entry)
        if not entry.HasField("action"):
            raise invalid("'action' field must be set for non-default entries")
        action = self._action_call(table, entry)
        _check_no_extras(table, entry)
        exact = self._state.tables[table.name]
        if key not in exact.entries:
            raise RpcFailure(Code.NOT_FOUND, "Cannot find match entry")
        exact.entries[key] = action
        self._remember_meta(table, key, entry)

    def _table_set_default(self, table: TableInfo, entry: pb.TableEntry) -> None:
        """MODIFY of the default entry; without an action it goes back to the initial one."""
        if entry.match:
            raise invalid("Non-empty key for default entry")
        if entry.priority:
            raise invalid("Non-zero priority for default entry")
        if table.const_default:
            raise RpcFailure(Code.PERMISSION_DENIED, f"Cannot set / reset default action for "
                             f"table {table.name} which has a const default action")
        if entry.HasField("action"):
            action = self._action_call(table, entry)
        else:
            action = self._loaded.initial_defaults[table.id]
        _check_no_extras(table, entry)
        self._state.tables[table.name].default_action = action
        if entry.HasField("action"):
            self._remember_meta(table, None, entry)
        else:
            self._loaded.entry_meta[table.id].pop(None, None)

    def _table_delete(self, table: TableInfo, entry: pb.TableEntry) -> None:
        if entry.is_default_action:
            raise invalid("Cannot use DELETE for default entry")
        key = match_key(table, entry)
        exact = self._state.tables[table.name]
        if exact.entries.pop(key, None) is None:
            raise RpcFailure(Code.NOT_FOUND, "Cannot find match entry")
        self._loaded.entry_meta[table.id].pop(key, None)

    def _remember_meta(self, table: TableInfo, key: Any, entry: pb.TableEntry) -> None:
        """Controller metadata, read back as written (kept only when set)."""
        meta = self._loaded.entry_meta[table.id]
        if entry.controller_metadata or entry.metadata:
            meta[key] = (entry.controller_metadata, entry.metadata)
        else:
            meta.pop(key, None)

    def _action_call(self, table: TableInfo, entry: pb.TableEntry) -> ActionCall:
        """The (action name, params) of an entry's direct action, validated as PI does."""
        if entry.action.WhichOneof("type") != "action":
            raise invalid(f"Cannot provide indirect action for direct table {table.name}")
        call = entry.action.action
        action = self._program.actions.get(call.action_id)
        if action is None:
            raise invalid(f"Invalid P4 id: no action with id {call.action_id}")
        scope = table.scopes.get(action.id)
        if scope is None:
            raise invalid(f"Invalid action for table: {action.name} is not an action of "
                          f"{table.name}")
        if scope == _TABLE_ONLY and entry.is_default_action:
            raise RpcFailure(Code.PERMISSION_DENIED,
                             f"Cannot use TABLE_ONLY action {action.name} as default action")
        if scope == _DEFAULT_ONLY and not entry.is_default_action:
            raise RpcFailure(Code.PERMISSION_DENIED,
                             f"Cannot use DEFAULT_ONLY action {action.name} in table entry")
        if len(call.params) != len(action.params):
            raise invalid(f"Unexpected number of action parameters for {action.name}: "
                          f"{len(call.params)}, expected {len(action.params)}")
        values: list[int | None] = [None] * len(action.params)
        positions, specs = action.param_pos, action.params
        for param in call.params:
            pid = param.param_id
            pos = positions.get(pid)
            if pos is None or values[pos] is not None:
                raise invalid(f"Unknown action parameter {pid} of {action.name}")
            value = int.from_bytes(param.value, "big")   # to_int inlined: the hot loop
            if value >> specs[pos][1]:
                to_int(param.value, specs[pos][1], f"{action.name} param {pid}")
            values[pos] = value
        return action.name, tuple(values)  # type: ignore[arg-type]

    # ---- counters and meters

    def _write_counter(self, kind: int, entry: pb.CounterEntry) -> None:
        info = find_counter(self._program, entry.counter_id)
        index = _write_index(entry, "counters")
        if kind == _Update.INSERT:
            raise invalid("INSERT update type not supported for counters")
        if kind not in (_Update.MODIFY, _Update.DELETE):
            raise _bad_update_type(kind)
        if index >= info.size:
            raise RpcFailure(Code.UNKNOWN, f"Error when writing to counter: index {index} outside "
                             f"{info.name}[0..{info.size - 1}]")
        counter = self._state.counters[info.name]
        packets = bytes_ = 0
        if kind == _Update.MODIFY:
            # bmv2 keeps both values and zeroes the one the counter's unit does not have
            unit = info.unit
            packets = entry.data.packet_count if unit != _UNIT_BYTES else 0
            bytes_ = entry.data.byte_count if unit != _UNIT_PACKETS else 0
        counter.packets[index], counter.bytes[index] = packets, bytes_

    def _write_meter(self, kind: int, entry: pb.MeterEntry) -> None:
        info = find_meter(self._program, entry.meter_id)
        index = _write_index(entry, "meters")
        if kind in (_Update.INSERT, _Update.DELETE):
            raise invalid(f"{_Update.Type.Name(kind)} update type not supported for meters")
        if kind != _Update.MODIFY:
            raise _bad_update_type(kind)
        rates = _meter_rates(entry.config) if entry.HasField("config") else None
        if index >= info.size:
            raise RpcFailure(Code.UNKNOWN, f"Error when writing meter spec: index {index} outside "
                             f"{info.name}[0..{info.size - 1}]")
        meter = self._state.meters[info.name]
        if rates is None:
            meter.reset(index)
        else:
            meter.set_config(index, *rates)

    # ---- packet replication engine

    def _write_pre(self, kind: int, entry: pb.PacketReplicationEngineEntry) -> None:
        which = entry.WhichOneof("type")
        if which == "multicast_group_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "softnic has no multicast groups")
        if which != "clone_session_entry":
            raise invalid("Invalid PRE operation")
        session = entry.clone_session_entry
        sid = session.session_id
        if sid == 0:
            raise invalid("0 is not a valid session id")
        if kind not in (_Update.INSERT, _Update.MODIFY, _Update.DELETE):
            raise _bad_update_type(kind)
        if not 1 <= sid < _MAX_CLONE_SESSION:
            raise invalid("Clone session id out-of-range")
        sessions = self._loaded.clone_sessions
        exists = sid in sessions
        if kind == _Update.INSERT and exists:
            raise RpcFailure(Code.ALREADY_EXISTS, "Clone session id already exists")
        if kind != _Update.INSERT and not exists:
            raise RpcFailure(Code.NOT_FOUND, "Clone session id does not exist")
        if kind == _Update.DELETE:
            del sessions[sid]
            self._state.clone_sessions.pop(sid, None)
            return
        ports = _replica_ports(session)
        if session.class_of_service:
            raise RpcFailure(Code.UNIMPLEMENTED, "COS for clone sessions not supported yet")
        stored = pb.CloneSessionEntry()
        stored.CopyFrom(session)
        sessions[sid] = stored
        if ports:
            self._state.clone_sessions[sid] = ports[0]   # p4tas clones to one port per session
        else:
            self._state.clone_sessions.pop(sid, None)


def _bad_update_type(kind: int) -> RpcFailure:
    return invalid("Update type is not set" if kind == _Update.UNSPECIFIED
                   else "Invalid update type")


def _check_no_extras(table: TableInfo, entry: pb.TableEntry) -> None:
    """Direct resources and idle timeouts, which no table of ours has."""
    if entry.HasField("meter_config") or entry.HasField("meter_counter_data"):
        raise invalid(f"Table {table.name} has no direct meters")
    if entry.HasField("counter_data"):
        raise invalid(f"Table {table.name} has no direct counters")
    if entry.idle_timeout_ns < 0:
        raise invalid("idle_timeout_ns must be a positive value")
    if entry.idle_timeout_ns > 0:
        raise invalid("idle_timeout_ns must be set to 0 for tables which do not support "
                      "idle timeout")


def _write_index(entry: Any, what: str) -> int:
    if not entry.HasField("index"):
        raise RpcFailure(Code.UNIMPLEMENTED,
                         f"Wildcard write is not supported for indirect {what} yet")
    if entry.index.index < 0:
        raise invalid("A negative number is not a valid index value")
    return entry.index.index


def _meter_rates(config: pb.MeterConfig) -> tuple[int, int, int, int] | None:
    """A MeterConfig as bmv2 takes it; None for PI's all -1 "default" (unconfigured)."""
    values = (config.cir, config.cburst, config.pir, config.pburst)
    if values == (-1, -1, -1, -1):
        return None
    for name, value in zip(("CIR", "CBurst", "PIR", "PBurst"), values, strict=True):
        if value < -1:
            raise invalid(f"Negative meter {name}")
    if config.cburst > U32_MAX:
        raise RpcFailure(Code.UNIMPLEMENTED, "CBurst too large")
    if config.pburst > U32_MAX:
        raise RpcFailure(Code.UNIMPLEMENTED, "Pburst too large")
    # PI casts -1 to the largest unsigned value: an unlimited rate or burst
    cir, pir = (U64_MAX if r == -1 else r for r in (config.cir, config.pir))
    cburst, pburst = (U32_MAX if b == -1 else b for b in (config.cburst, config.pburst))
    return cir, cburst, pir, pburst


def _replica_ports(session: pb.CloneSessionEntry) -> list[int]:
    """Egress ports of a clone session's replicas, validated as PI does."""
    ports, seen = [], set()
    for replica in session.replicas:
        kind = replica.WhichOneof("port_kind")
        if kind == "egress_port":
            port = replica.egress_port
        elif kind == "port":
            port = _port_bytes(replica.port)
        else:
            raise invalid("Missing port in multicast group replica")
        if (replica.instance, port) in seen:
            raise invalid("Duplicate replica in multicast group")
        seen.add((replica.instance, port))
        ports.append(port)
    return ports


def _port_bytes(data: bytes) -> int:
    if not data:
        raise invalid("Port must not be the empty string")
    if len(data) > _MAX_PORT_BYTES:
        raise RpcFailure(Code.UNIMPLEMENTED, f"Got port of {len(data)} bytes, but only "
                         f"{_MAX_PORT_BYTES} bytes are supported")
    port = int.from_bytes(data, "big", signed=False)
    if port == 0 or port >= 1 << 31:
        raise invalid("Port must be non-negative.")
    return port
