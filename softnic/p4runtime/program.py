"""The program softnic runs, its P4Info indexed by id once for per-update lookups: tables,
actions, indirect counters and meters, controller headers; its tables' default actions from the
bmv2 JSON, and a fresh SwitchState for each commit (Program)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from nic_contract.p4rt.proto import p4info_pb2
from nic_contract.controller_header import ControllerHeader
from softnic.state import Counter, ExactTable, Meter, Register, SwitchState

class ConfigError(ValueError):
    """A bmv2 JSON that does not fit the program."""


@dataclass(frozen=True)
class TableInfo:
    """An exact-match table: its fields in p4info order and the actions it takes."""

    id: int
    name: str
    alias: str
    size: int
    fields: tuple[tuple[int, int, str], ...]   # (field id, bitwidth, name)
    field_pos: dict[int, int]                   # field id -> position in the key
    scopes: dict[int, int]                      # action id -> ActionRef scope
    const_default: bool


@dataclass(frozen=True)
class ActionInfo:
    """An action: its parameters in p4info order."""

    id: int
    name: str
    params: tuple[tuple[int, int], ...]          # (param id, bitwidth)
    param_pos: dict[int, int]                    # param id -> position


@dataclass(frozen=True)
class IndexedInfo:
    """An indirect counter or meter."""

    id: int
    name: str
    size: int
    unit: int


DefaultActions = dict[int, tuple[str, tuple[int, ...]]]   # table id -> (action, params)


class Program:
    """The P4Info of the program softnic runs, indexed by id once."""

    # Whether a build of the program for another capacity (sizes of tables, counters, meters
    # and registers: `make p4`'s p4src/build/1m/) may be pushed: softnic's state takes any size.
    resizable = True

    def __init__(self, p4info: p4info_pb2.P4Info) -> None:
        self.resize(p4info)

    def resize(self, p4info: p4info_pb2.P4Info) -> None:
        """Index `p4info` (the program's, with the sizes of the build that was pushed)."""
        self.p4info = p4info
        self.tables = {t.preamble.id: _table_info(t) for t in p4info.tables}
        self.actions = {a.preamble.id: _action_info(a) for a in p4info.actions}
        self.actions_by_name = {a.name: a for a in self.actions.values()}
        self.counters = {c.preamble.id: IndexedInfo(c.preamble.id, c.preamble.name, c.size,
                                                    c.spec.unit) for c in p4info.counters}
        self.meters = {m.preamble.id: IndexedInfo(m.preamble.id, m.preamble.name, m.size,
                                                  m.spec.unit) for m in p4info.meters}
        headers = {c.preamble.name: ControllerHeader.of(c)
                   for c in p4info.controller_packet_metadata}
        self.packet_in, self.packet_out = headers.get("packet_in"), headers.get("packet_out")

    def new_state(self, defaults: DefaultActions) -> SwitchState:
        """A fresh SwitchState: empty tables with their default actions, zeroed counters,
        unconfigured meters, zeroed registers, no clone sessions."""
        state = SwitchState()
        for table in self.tables.values():
            exact = ExactTable(table.name, table.size, defaults[table.id])
            state.tables[table.name] = exact
            state.tables.setdefault(table.alias, exact)
        for c in self.counters.values():
            state.counters[c.name] = Counter(c.name, c.size)
        epoch_us = time.monotonic_ns() // 1000
        for m in self.meters.values():
            packets = m.unit == p4info_pb2.MeterSpec.PACKETS
            state.meters[m.name] = Meter(m.name, m.size, packets, epoch_us)
        for r in self.p4info.registers:
            state.registers[r.preamble.name] = Register(r.preamble.name, r.size,
                                                        _register_bitwidth(r))
        return state

    def commit(self) -> None:
        """A Write's updates were applied (a target that stages them applies them here)."""

    def before_read(self, state: SwitchState) -> None:
        """A Read is about to read `state` (a target whose counters live elsewhere fetches
        them here)."""

    def default_actions(self, bmv2_json: bytes) -> DefaultActions:
        """Each table's default action from a bmv2 JSON's "default_entry"s; ConfigError if
        the JSON is not one of this program."""
        try:
            doc = json.loads(bmv2_json)
            json_actions = {a["id"]: a for a in doc["actions"]}
            json_tables = {t["name"]: t for p in doc["pipelines"] for t in p["tables"]}
            out: DefaultActions = {}
            for table in self.tables.values():
                jt = json_tables.get(table.name)
                if jt is None or "default_entry" not in jt:
                    raise ConfigError(f"bmv2 JSON has no default entry for table {table.name}")
                out[table.id] = self._json_default(table, jt["default_entry"], json_actions)
        except ConfigError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise ConfigError(f"not a bmv2 JSON: {err!r}") from None
        return out

    def _json_default(self, table: TableInfo, entry: dict,
                      json_actions: dict[int, dict]) -> tuple[str, tuple[int, ...]]:
        name = json_actions.get(entry.get("action_id"), {}).get("name")
        action = self.actions_by_name.get(name)
        if action is None:
            raise ConfigError(f"bmv2 JSON: default action {name!r} of table {table.name} "
                              "is not a P4Info action")
        params = tuple(int(v, 16) for v in entry.get("action_data", []))
        if len(params) != len(action.params):
            raise ConfigError(f"bmv2 JSON: default action {name} of table {table.name} has "
                              f"{len(params)} parameters, P4Info says {len(action.params)}")
        return action.name, params


def _table_info(t: Any) -> TableInfo:
    fields = tuple((m.id, m.bitwidth, m.name) for m in t.match_fields)
    return TableInfo(t.preamble.id, t.preamble.name, t.preamble.alias or t.preamble.name,
                     t.size, fields, {fid: i for i, (fid, _, _) in enumerate(fields)},
                     {r.id: r.scope for r in t.action_refs}, bool(t.const_default_action_id))


def _action_info(a: Any) -> ActionInfo:
    params = tuple((p.id, p.bitwidth) for p in a.params)
    return ActionInfo(a.preamble.id, a.preamble.name, params,
                      {pid: i for i, (pid, _) in enumerate(params)})


def _register_bitwidth(register: Any) -> int:
    spec = register.type_spec
    if spec.WhichOneof("type_spec") == "bitstring":
        bits = spec.bitstring
        return getattr(bits, bits.WhichOneof("type_spec")).bitwidth
    return 0
