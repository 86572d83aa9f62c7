"""What p4c-dpdk called each P4Runtime object in the pipeline spec: tables and externs by the
context JSON's target names, actions and their arguments by the spec's `action` statements,
and each table's default action from its `default_action` statement."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_ACTION = re.compile(r"^action (\S+) args (?:none|instanceof (\S+))", re.M)
_STRUCT = re.compile(r"^struct (\S+) \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"bit<(\d+)> (\S+)")
_TABLE = re.compile(r"^table (\S+) \{\n(.*?)^\}", re.M | re.S)
_DEFAULT = re.compile(r"default_action (\S+) args (none|.*?)(?: const)?$", re.M)
_REGARRAY = re.compile(r"^regarray (\S+) size (\S+)", re.M)


@dataclass(frozen=True)
class SpecAction:
    """An action of the spec: its name and argument names in order."""

    name: str
    args: tuple[str, ...]


@dataclass
class SpecNames:
    """P4Info names -> spec names, and the spec's table defaults."""

    tables: dict[str, str] = field(default_factory=dict)        # p4info table -> spec table
    externs: dict[str, str] = field(default_factory=dict)       # p4info extern -> target name
    counter_types: dict[str, str] = field(default_factory=dict)  # p4info counter -> type
    actions: dict[str, SpecAction] = field(default_factory=dict)  # spec action name -> action
    action_names: dict[str, str] = field(default_factory=dict)   # p4info action -> spec action
    defaults: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    regarrays: dict[str, int] = field(default_factory=dict)      # spec regarray -> size

    @classmethod
    def parse(cls, spec: str, context: str) -> SpecNames:
        names = cls()
        doc = json.loads(context)
        for table in doc.get("tables", []):
            names.tables[table["name"]] = table["target_name"]
            for action in table.get("actions", []):
                # "P4tasIngress.flow_lookup_set_flow_id_0": the control, then the spec's name
                names.action_names[action["name"]] = action["target_name"].split(".", 1)[-1]
        for extern in doc.get("externs", []):
            names.externs[extern["name"]] = extern["target_name"]
            if extern.get("type") == "Counter":
                names.counter_types[extern["name"]] = extern.get("attributes", {}).get(
                    "type", "packets")
        structs = {m[1]: tuple(f[1] for f in _FIELD.findall(m[2]))
                   for m in _STRUCT.finditer(spec)}
        for m in _ACTION.finditer(spec):
            names.actions[m[1]] = SpecAction(m[1], structs.get(m[2], ()) if m[2] else ())
        for m in _TABLE.finditer(spec):
            default = _DEFAULT.search(m[2])
            if default:
                args = default[2].split()[1::2] if default[2] != "none" else []
                names.defaults[m[1]] = (default[1], tuple(int(a, 0) for a in args))
        names.regarrays = {m[1]: int(m[2], 0) for m in _REGARRAY.finditer(spec)}
        return names

    def action(self, p4info_name: str) -> SpecAction:
        """The spec action of a table's P4Info action (named by the context JSON)."""
        action = self.actions.get(self.action_names.get(p4info_name, p4info_name))
        if action is None:
            raise KeyError(f"the pipeline spec has no action for {p4info_name}")
        return action

    def counter_arrays(self, p4info_name: str) -> tuple[str | None, str | None]:
        """The register arrays of a counter: (packets, bytes), None where it has none."""
        target = self.externs[p4info_name]
        kind = self.counter_types.get(p4info_name, "packets")
        if kind == "packets_and_bytes":
            return f"{target}_packets", f"{target}_bytes"
        return (target, None) if kind == "packets" else (None, target)
