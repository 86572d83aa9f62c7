"""Is a pushed P4Info the one of the program softnic runs (p4info_differences), and can
softnic run it at all (unsupported_features): the checks of SetForwardingPipelineConfig."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nic_contract.p4rt.proto import p4info_pb2

MatchType = p4info_pb2.MatchField.MatchType

# What identifies each kind of P4 object, beyond its name and id: the fields a controller's
# encoding depends on. Annotations, docs and aliases are left out on purpose.
_Describe = Callable[[Any], dict[str, Any]]


def _fields(items: Any) -> tuple:
    return tuple((f.id, f.name, f.bitwidth) for f in items)


def _table(t: Any) -> dict[str, Any]:
    return {
        "match fields": tuple((m.id, m.name, m.bitwidth, MatchType.Name(m.match_type))
                              for m in t.match_fields),
        "actions": tuple(sorted((r.id, p4info_pb2.ActionRef.Scope.Name(r.scope))
                                for r in t.action_refs)),
        "size": t.size,
        "const default action": t.const_default_action_id,
        "implementation": t.implementation_id,
        "direct resources": tuple(sorted(t.direct_resource_ids)),
        "const entries": t.is_const_table,
    }


def _action(a: Any) -> dict[str, Any]:
    return {"params": _fields(a.params)}


def _unit_size(c: Any) -> dict[str, Any]:
    return {"unit": c.spec.unit, "size": c.size}


def _direct(c: Any) -> dict[str, Any]:
    return {"unit": c.spec.unit, "table": c.direct_table_id}


def _register(r: Any) -> dict[str, Any]:
    return {"type": r.type_spec.SerializeToString(deterministic=True), "size": r.size}


def _packet_metadata(c: Any) -> dict[str, Any]:
    return {"metadata": _fields(c.metadata)}


def _digest(d: Any) -> dict[str, Any]:
    return {"type": d.type_spec.SerializeToString(deterministic=True)}


def _action_profile(p: Any) -> dict[str, Any]:
    return {"tables": tuple(sorted(p.table_ids)), "selector": p.with_selector, "size": p.size}


def _value_set(v: Any) -> dict[str, Any]:
    return {"match": tuple((m.id, m.name, m.bitwidth) for m in v.match), "size": v.size}


# P4Info field -> (singular name for messages, describer)
_KINDS: dict[str, tuple[str, _Describe]] = {
    "tables": ("table", _table),
    "actions": ("action", _action),
    "counters": ("counter", _unit_size),
    "direct_counters": ("direct counter", _direct),
    "meters": ("meter", _unit_size),
    "direct_meters": ("direct meter", _direct),
    "registers": ("register", _register),
    "controller_packet_metadata": ("controller packet metadata", _packet_metadata),
    "digests": ("digest", _digest),
    "action_profiles": ("action profile", _action_profile),
    "value_sets": ("value set", _value_set),
}


def p4info_differences(expected: p4info_pb2.P4Info, given: p4info_pb2.P4Info,
                       ignore_sizes: bool = False) -> list[str]:
    """What differs between two P4Infos, one line per object ("table X missing", ...);
    empty when they describe the same program (`ignore_sizes`: built for another capacity)."""
    out: list[str] = []
    skip = frozenset({"size"}) if ignore_sizes else frozenset()
    for kind, (what, describe) in _KINDS.items():
        mine = {o.preamble.name: o for o in getattr(expected, kind)}
        theirs = {o.preamble.name: o for o in getattr(given, kind)}
        out += [f"{what} {name} missing" for name in mine if name not in theirs]
        out += [f"unknown {what} {name}" for name in theirs if name not in mine]
        for name in mine.keys() & theirs.keys():
            out += _object_differences(what, name, mine[name], theirs[name], describe, skip)
    return out


def _object_differences(what: str, name: str, mine: Any, theirs: Any,
                        describe: _Describe, skip: frozenset[str] = frozenset()) -> list[str]:
    out = []
    if mine.preamble.id != theirs.preamble.id:
        out.append(f"{what} {name} id differs (expected {mine.preamble.id}, "
                   f"got {theirs.preamble.id})")
    want, got = describe(mine), describe(theirs)
    for attr, value in want.items():
        if attr not in skip and got[attr] != value:
            out.append(f"{what} {name} {attr} differ (expected {_show(value)}, "
                       f"got {_show(got[attr])})")
    return out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def unsupported_features(p4info: p4info_pb2.P4Info) -> list[str]:
    """Parts of a program softnic's state model cannot hold: it has exact-match tables with
    direct actions, indirect counters and meters only."""
    out = []
    for table in p4info.tables:
        for mf in table.match_fields:
            if mf.match_type != MatchType.EXACT:
                out.append(f"table {table.preamble.name} field {mf.name}: "
                           f"{MatchType.Name(mf.match_type)} match (only EXACT is supported)")
        if table.implementation_id:
            out.append(f"table {table.preamble.name}: action profile implementation")
    for kind in ("direct_counters", "direct_meters", "action_profiles", "value_sets"):
        out += [f"{_KINDS[kind][0]} {o.preamble.name}" for o in getattr(p4info, kind)]
    return out
