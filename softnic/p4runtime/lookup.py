"""What Write and Read share: P4 objects found by P4Runtime id, and exact-match keys, validated
with PI's codes and messages."""

from __future__ import annotations

from typing import Any, NoReturn

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.encoding import to_int
from softnic.p4runtime.failures import invalid
from softnic.p4runtime.program import IndexedInfo, Program, TableInfo


def find_table(program: Program, table_id: int) -> TableInfo:
    table = program.tables.get(table_id)
    if table is None:
        raise invalid(f"Invalid P4 id: no table with id {table_id}")
    return table


def find_counter(program: Program, counter_id: int) -> IndexedInfo:
    counter = program.counters.get(counter_id)
    if counter is None:
        raise invalid(f"Invalid P4 id: no counter with id {counter_id}")
    return counter


def find_meter(program: Program, meter_id: int) -> IndexedInfo:
    meter = program.meters.get(meter_id)
    if meter is None:
        raise invalid(f"Invalid P4 id: no meter with id {meter_id}")
    return meter


def refuse_direct_resource(program: Program, entry: Any, kind: str) -> NoReturn:
    """Direct counters and meters: refused as PI refuses them for tables without any."""
    if not entry.HasField("table_entry"):
        raise invalid(f"Missing table_entry field in {type(entry).__name__}")
    table = find_table(program, entry.table_entry.table_id)
    what = "counters" if kind == "direct_counter_entry" else "meters"
    raise invalid(f"Table {table.name} has no direct {what}")


def match_key(table: TableInfo, entry: p4runtime_pb2.TableEntry) -> tuple[int, ...]:
    """The exact-match key of an entry, in p4info field order, validated as PI does."""
    if len(entry.match) > len(table.fields):
        raise invalid(f"Too many fields in match key of {table.name}")
    values: list[int | None] = [None] * len(table.fields)
    for fm in entry.match:
        pos = table.field_pos.get(fm.field_id)
        if pos is None or values[pos] is not None:
            raise invalid(f"Unknown field in match key of {table.name}: id {fm.field_id}")
        if fm.WhichOneof("field_match_type") != "exact":
            raise invalid(f"Invalid match type for field {table.fields[pos][2]} of "
                          f"{table.name}: it is EXACT")
        data = fm.exact.value
        value = int.from_bytes(data, "big")   # to_int inlined: the hot loop
        _, width, name = table.fields[pos]
        if value >> width:
            to_int(data, width, f"{table.name} field {name}")
        values[pos] = value
    if None in values:
        missing = [table.fields[i][2] for i, v in enumerate(values) if v is None]
        raise invalid(f"Missing non-ternary field in match key of {table.name}: "
                      + ", ".join(missing))
    if entry.priority > 0:
        raise invalid("Non-zero priority for non-ternary match")
    return tuple(values)  # type: ignore[arg-type]
