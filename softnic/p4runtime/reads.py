"""Read of softnic's P4Runtime server: the entities a (possibly wildcard) request names, from the
committed pipeline, encoded and refused as PI does."""

from __future__ import annotations

from typing import Any

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.encoding import U32_MAX, U64_MAX, canonical
from softnic.p4runtime.failures import Code, RpcFailure, invalid
from softnic.p4runtime.lookup import (find_counter, find_meter, find_table, match_key,
                                      refuse_direct_resource)
from softnic.p4runtime.pipeline_config import LoadedPipeline
from softnic.p4runtime.program import IndexedInfo, Program, TableInfo

pb = p4runtime_pb2
_READ_CHUNK = 8192                 # entities per ReadResponse: keeps messages a few MB


class ReadOut:
    """Entities read so far, in ReadResponses of at most _READ_CHUNK entities each."""

    def __init__(self) -> None:
        self.responses = [pb.ReadResponse()]
        self._count = 0

    def add(self) -> pb.Entity:
        if self._count == _READ_CHUNK:
            self.responses.append(pb.ReadResponse())
            self._count = 0
        self._count += 1
        return self.responses[-1].entities.add()


class Reader:
    """Reads entities of a committed pipeline into a ReadOut (the caller holds the server's
    lock)."""

    def __init__(self, program: Program, loaded: LoadedPipeline) -> None:
        self._program, self._loaded, self._state = program, loaded, loaded.state

    def read(self, entity: pb.Entity, out: ReadOut) -> None:
        """Add what one requested entity matches to `out`; RpcFailure if PI would refuse it."""
        kind = entity.WhichOneof("entity")
        if kind == "table_entry":
            self._read_tables(entity.table_entry, out)
        elif kind == "counter_entry":
            self._read_counters(entity.counter_entry, out)
        elif kind == "meter_entry":
            self._read_meters(entity.meter_entry, out)
        elif kind == "packet_replication_engine_entry":
            self._read_pre(entity.packet_replication_engine_entry, out)
        elif kind == "register_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Register reads are not supported yet")
        elif kind == "value_set_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "ValueSet reads are not supported yet")
        elif kind in ("direct_counter_entry", "direct_meter_entry"):
            entry = getattr(entity, kind)
            if entry.HasField("table_entry") and entry.table_entry.table_id == 0:
                raise RpcFailure(Code.UNIMPLEMENTED, "Reading all direct resources for ALL "
                                 "tables is not supported yet")
            refuse_direct_resource(self._program, entry, kind)
        elif kind == "digest_entry":
            digest_id = entity.digest_entry.digest_id
            if digest_id == 0:
                raise RpcFailure(Code.UNIMPLEMENTED,
                                 "digest_id must be set when reading DigestEntry")
            raise RpcFailure(Code.NOT_FOUND, f"{digest_id} is not a valid digest id")
        elif kind in ("action_profile_member", "action_profile_group"):
            profile_id = getattr(entity, kind).action_profile_id
            if profile_id != 0:   # a wildcard read finds nothing: the program has none
                raise invalid(f"Invalid P4 id {profile_id}: the program has no action "
                              "profiles")
        else:
            raise RpcFailure(Code.UNKNOWN, "Incorrect entity type")

    # ---- tables

    def _read_tables(self, request: pb.TableEntry, out: ReadOut) -> None:
        tables = (self._program.tables.values() if request.table_id == 0
                  else [find_table(self._program, request.table_id)])
        for table in tables:
            if request.is_default_action:
                self._read_default(table, request, out)
            else:
                self._read_entries(table, request, out)

    def _read_default(self, table: TableInfo, request: pb.TableEntry, out: ReadOut) -> None:
        if request.HasField("time_since_last_hit"):
            raise invalid("Default table entries do not support entry ageing, do not set "
                          "'time_since_last_hit' in your ReadRequest")
        action, params = self._state.tables[table.name].default_action
        entry = out.add().table_entry
        entry.table_id = table.id
        entry.is_default_action = True
        self._fill_action(entry, action, params)
        self._fill_meta(entry, table, None)

    def _read_entries(self, table: TableInfo, request: pb.TableEntry, out: ReadOut) -> None:
        if request.HasField("time_since_last_hit"):
            raise invalid("Do not set time_since_last_hit for a ReadRequest if the table "
                          "does not support idle timeout; yes, that includes wildcard reads")
        entries = self._state.tables[table.name].entries
        if request.match:
            key = match_key(table, request)
            items = [(key, entries[key])] if key in entries else []
        else:
            items = list(entries.items())
        meta = self._loaded.entry_meta[table.id]
        for key, (action, params) in items:
            entry = out.add().table_entry
            entry.table_id = table.id
            for (fid, _, _), value in zip(table.fields, key, strict=True):
                entry.match.add(field_id=fid).exact.value = canonical(value)
            self._fill_action(entry, action, params)
            if key in meta:
                self._fill_meta(entry, table, key)

    def _fill_action(self, entry: pb.TableEntry, name: str, params: tuple[int, ...]) -> None:
        action = self._program.actions_by_name[name]
        call = entry.action.action
        call.action_id = action.id
        for (pid, _), value in zip(action.params, params, strict=True):
            call.params.add(param_id=pid, value=canonical(value))

    def _fill_meta(self, entry: pb.TableEntry, table: TableInfo, key: Any) -> None:
        meta = self._loaded.entry_meta[table.id].get(key)
        if meta is not None:
            entry.controller_metadata, entry.metadata = meta

    # ---- counters, meters and clone sessions

    def _read_counters(self, request: pb.CounterEntry, out: ReadOut) -> None:
        infos = (self._program.counters.values() if request.counter_id == 0
                 else [find_counter(self._program, request.counter_id)])
        for info in infos:
            counter = self._state.counters[info.name]
            for index in _read_indexes(request, info, "counter"):
                entry = out.add().counter_entry
                entry.counter_id = info.id
                entry.index.index = index
                entry.data.packet_count = counter.packets[index]
                entry.data.byte_count = counter.bytes[index]

    def _read_meters(self, request: pb.MeterEntry, out: ReadOut) -> None:
        infos = (self._program.meters.values() if request.meter_id == 0
                 else [find_meter(self._program, request.meter_id)])
        for info in infos:
            configs = self._state.meters[info.name].configs
            for index in _read_indexes(request, info, "meter spec"):
                entry = out.add().meter_entry
                entry.meter_id = info.id
                entry.index.index = index
                config = configs.get(index)
                if config is not None:
                    _fill_meter_config(entry.config, config)

    def _read_pre(self, request: pb.PacketReplicationEngineEntry, out: ReadOut) -> None:
        which = request.WhichOneof("type")
        if which == "multicast_group_entry":
            if request.multicast_group_entry.multicast_group_id != 0:
                raise RpcFailure(Code.NOT_FOUND, "Multicast group does not exist")
            return
        if which != "clone_session_entry":
            raise invalid("Invalid PRE operation")
        sessions = self._loaded.clone_sessions
        sid = request.clone_session_entry.session_id
        if sid == 0:
            sids = sorted(sessions)
        elif sid in sessions:
            sids = [sid]
        else:
            raise RpcFailure(Code.NOT_FOUND, "Clone session id does not exist")
        for s in sids:
            out.add().packet_replication_engine_entry.clone_session_entry.CopyFrom(sessions[s])


def _read_indexes(request: Any, info: IndexedInfo, what: str) -> range:
    """The indexes a counter/meter read asks for: one, or all when none is given."""
    if not request.HasField("index"):
        return range(info.size)
    index = request.index.index
    if index < 0:
        raise invalid("A negative number is not a valid index value")
    if index >= info.size:
        raise RpcFailure(Code.UNKNOWN, f"Error when reading {what} from target: index "
                         f"{index} outside {info.name}[0..{info.size - 1}]")
    return range(index, index + 1)


def _fill_meter_config(config: pb.MeterConfig, values: tuple[int, int, int, int]) -> None:
    """A meter's rates as PI reads them back: the largest unsigned values are -1 (unlimited)."""
    cir, cburst, pir, pburst = values
    config.cir = -1 if cir == U64_MAX else cir
    config.cburst = -1 if cburst == U32_MAX else cburst
    config.pir = -1 if pir == U64_MAX else pir
    config.pburst = -1 if pburst == U32_MAX else pburst
