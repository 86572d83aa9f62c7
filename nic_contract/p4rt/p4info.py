"""P4Info wrapper: name lookups and builders for P4Runtime messages.

Everything here is pure Python over the protobuf classes of `nic_contract.p4rt.proto`; nothing talks to
a switch, so the encoding rules (canonical bytestrings, don't-care omission) are unit-tested.
"""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from google.protobuf import text_format

from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2

Value = int | bytes | str
MatchType = p4info_pb2.MatchField.MatchType

# The P4Info kinds that are looked up by name, keyed by their repeated field in P4Info.
_KINDS = (
    "tables", "actions", "action_profiles", "counters", "direct_counters", "meters",
    "direct_meters", "controller_packet_metadata", "registers", "digests", "value_sets",
)
_PACKET_KINDS = ("packet_in", "packet_out")


# --------------------------------------------------------------------------- encoding

def encode(value: Value, bitwidth: int, name: str = "value") -> bytes:
    """Encode `value` as a P4Runtime canonical bytestring for a field of `bitwidth` bits.

    Accepts non-negative ints, bytes (any length, leading zeros allowed), MAC strings
    ("aa:bb:cc:dd:ee:ff"), IPv4/IPv6 address strings and decimal or 0x-hex strings.
    """
    number = to_int(value, name)
    if number < 0:
        raise ValueError(f"{name}: negative value {value!r} cannot be encoded")
    if number.bit_length() > bitwidth:
        raise ValueError(f"{name}: value {value!r} does not fit in {bitwidth} bits")
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


def decode(data: bytes) -> int:
    """Decode a P4Runtime bytestring (canonical or padded) to an int."""
    return int.from_bytes(data, "big")


def to_int(value: Value, name: str = "value") -> int:
    """Convert an int, bytes, MAC, IP address or numeric string to an int."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)):
        return int.from_bytes(value, "big")
    if isinstance(value, str):
        return _str_to_int(value, name)
    raise TypeError(f"{name}: cannot encode {type(value).__name__} value {value!r}")


def _str_to_int(text: str, name: str) -> int:
    text = text.strip()
    parts = text.split(":")
    if len(parts) == 6 and all(len(p) in (1, 2) for p in parts):
        try:
            return int("".join(p.zfill(2) for p in parts), 16)
        except ValueError:
            pass
    try:
        return int(ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        return int(text, 0)
    except ValueError:
        raise ValueError(
            f"{name}: {text!r} is not an int, MAC (aa:bb:cc:dd:ee:ff) or IP address"
        ) from None


def _mask(bitwidth: int, prefix_len: int) -> int:
    """Return the int mask of the top `prefix_len` bits of a `bitwidth`-bit field."""
    return ((1 << prefix_len) - 1) << (bitwidth - prefix_len)


# --------------------------------------------------------------------------- name lookup

def _resolve(items: Mapping[str, Any], query: str, what: str) -> Any:
    """Find `query` among fully qualified names: exact name or a unique suffix after a dot."""
    if query in items:
        return items[query]
    hits = [n for n in items if n.endswith("." + query)]
    if len(hits) == 1:
        return items[hits[0]]
    if hits:
        raise KeyError(f"{what} {query!r} is ambiguous: matches {', '.join(sorted(hits))}")
    raise KeyError(f"unknown {what} {query!r}; {_candidates(items, query)}")


def _candidates(items: Iterable[str], query: str) -> str:
    names = sorted(items)
    if not names:
        return "there are none"
    short = {n.rsplit(".", 1)[-1]: n for n in names}
    close = difflib.get_close_matches(query, names, n=5, cutoff=0.5)
    close += [short[s] for s in difflib.get_close_matches(query, list(short), n=5, cutoff=0.5)]
    close = list(dict.fromkeys(close))
    if close:
        return "did you mean " + ", ".join(close) + "?"
    listed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f"known: {listed}"


@dataclass
class P4Info:
    """A P4Info message with name indexes (fully qualified names and unique dotted suffixes)."""

    proto: p4info_pb2.P4Info
    _by_kind: dict[str, dict[str, Any]] = field(init=False, repr=False)
    _by_id: dict[int, Any] = field(init=False, repr=False)
    # Names already resolved: a suffix scan per lookup made building a flow's entries ~75 us.
    _resolved: dict[tuple[str, str, str], Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_kind = {k: {e.preamble.name: e for e in getattr(self.proto, k)} for k in _KINDS}
        self._by_id = {e.preamble.id: e for k in _KINDS for e in getattr(self.proto, k)}
        self._resolved = {}

    def _memo(self, key: tuple[str, str, str], resolve: Callable[[], Any]) -> Any:
        """`resolve()` the first time `key` is asked for, the remembered answer after."""
        try:
            return self._resolved[key]
        except KeyError:
            value = self._resolved[key] = resolve()
            return value

    # ---- construction

    @classmethod
    def from_file(cls, path: str | Path) -> "P4Info":
        """Read a P4Info in protobuf text format (what p4c --p4runtime-files *.txtpb writes)."""
        return cls.from_text(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def from_text(cls, text: str) -> "P4Info":
        """Parse a P4Info from protobuf text format."""
        return cls(text_format.Parse(text, p4info_pb2.P4Info()))

    # ---- lookups by name

    def lookup(self, kind: str, name: str) -> Any:
        """Return the P4Info object of `kind` (a P4Info field such as "tables") called `name`."""
        return self._memo((kind, "", name), lambda: _resolve(
            self._by_kind[kind], name, kind.rstrip("s").replace("_", " ")))

    def table(self, name: str) -> p4info_pb2.Table:
        """A table by name."""
        return self.lookup("tables", name)

    def action(self, name: str) -> p4info_pb2.Action:
        """An action by name."""
        return self.lookup("actions", name)

    def counter(self, name: str) -> p4info_pb2.Counter:
        """An indirect counter by name."""
        return self.lookup("counters", name)

    def direct_counter(self, name: str) -> p4info_pb2.DirectCounter:
        """A direct counter by name."""
        return self.lookup("direct_counters", name)

    def meter(self, name: str) -> p4info_pb2.Meter:
        """An indirect meter by name."""
        return self.lookup("meters", name)

    def register(self, name: str) -> p4info_pb2.Register:
        """A register by name (bmv2 cannot read or write them over P4Runtime)."""
        return self.lookup("registers", name)

    def digest(self, name: str) -> p4info_pb2.Digest:
        """A digest by name."""
        return self.lookup("digests", name)

    def match_field(self, table: str, name: str) -> p4info_pb2.MatchField:
        """Return match field `name` of `table` (full name such as "hdr.ipv4.dst" or a suffix)."""
        tab = self.table(table)
        return self._memo(("match_field", table, name), lambda: _resolve(
            {mf.name: mf for mf in tab.match_fields}, name, f"match field of {tab.preamble.name}"))

    def action_param(self, action: str, name: str) -> p4info_pb2.Action.Param:
        act = self.action(action)
        return self._memo(("action_param", action, name), lambda: _resolve(
            {p.name: p for p in act.params}, name, f"parameter of {act.preamble.name}"))

    def by_id(self, obj_id: int) -> Any:
        """Return the P4Info object (table, action, counter, ...) with this id."""
        try:
            return self._by_id[obj_id]
        except KeyError:
            raise KeyError(f"no P4Info object with id {obj_id:#x}") from None

    def name_of(self, obj_id: int) -> str:
        """The fully qualified name of the object with this id."""
        return self.by_id(obj_id).preamble.name

    # ---- tables

    def table_entry(
        self,
        table: str,
        match: Mapping[str, Any] | None = None,
        action: str | None = None,
        params: Mapping[str, Value] | None = None,
        priority: int = 0,
    ) -> p4runtime_pb2.TableEntry:
        """Build a TableEntry; lpm values are (value, prefix_len), ternary (value, mask).

        Don't-care matches (None, /0 prefixes, zero masks, full ranges) are omitted as P4Runtime
        requires; bits outside an lpm prefix or ternary mask are cleared. `action=None` builds a
        key-only entry (for DELETE or a filtered read).
        """
        tab = self.table(table)
        entry = p4runtime_pb2.TableEntry(table_id=tab.preamble.id, priority=priority)
        for name, value in (match or {}).items():
            fm = self._field_match(tab, name, value)
            if fm is not None:
                entry.match.append(fm)
        needs_priority = any(mf.match_type in (MatchType.TERNARY, MatchType.RANGE,
                                               MatchType.OPTIONAL) for mf in tab.match_fields)
        if needs_priority and priority <= 0:
            raise ValueError(f"table {tab.preamble.name} has ternary/range/optional fields: "
                             "entries need priority > 0")
        if not needs_priority and priority:
            raise ValueError(f"table {tab.preamble.name} is exact/lpm only: priority must be 0")
        if action is not None:
            self._check_action_allowed(tab, action, default=False)
            entry.action.action.CopyFrom(self.action_call(action, params or {}))
        elif params:
            raise ValueError("params given without an action")
        return entry

    def default_entry(self, table: str, action: str,
                      params: Mapping[str, Value] | None = None) -> p4runtime_pb2.TableEntry:
        """Build the default-action entry of `table` (write it with MODIFY)."""
        tab = self.table(table)
        self._check_action_allowed(tab, action, default=True)
        entry = p4runtime_pb2.TableEntry(table_id=tab.preamble.id, is_default_action=True)
        entry.action.action.CopyFrom(self.action_call(action, params or {}))
        return entry

    def table_wildcard(self, table: str) -> p4runtime_pb2.TableEntry:
        """A TableEntry that reads every entry of `table`."""
        return p4runtime_pb2.TableEntry(table_id=self.table(table).preamble.id)

    def action_call(self, action: str, params: Mapping[str, Value]) -> p4runtime_pb2.Action:
        """Build an Action with all of its parameters encoded; missing or extra ones raise."""
        act = self.action(action)
        given = {self.action_param(action, k).name: v for k, v in params.items()}
        missing = [p.name for p in act.params if p.name not in given]
        if missing:
            raise ValueError(f"action {act.preamble.name}: missing params {', '.join(missing)}")
        msg = p4runtime_pb2.Action(action_id=act.preamble.id)
        for p in act.params:
            value = encode(given[p.name], p.bitwidth, f"{act.preamble.name}.{p.name}")
            msg.params.add(param_id=p.id, value=value)
        return msg

    def _check_action_allowed(self, tab: p4info_pb2.Table, action: str, default: bool) -> None:
        act = self.action(action)
        refs = {r.id: r for r in tab.action_refs}
        ref = refs.get(act.preamble.id)
        if ref is None:
            allowed = ", ".join(self.name_of(i) for i in refs)
            raise ValueError(f"action {act.preamble.name} is not an action of table "
                             f"{tab.preamble.name} (allowed: {allowed})")
        forbidden = p4info_pb2.ActionRef.TABLE_ONLY if default else p4info_pb2.ActionRef.DEFAULT_ONLY
        if ref.scope == forbidden:
            where = "the default action" if default else "an entry action"
            raise ValueError(f"action {act.preamble.name} cannot be {where} of {tab.preamble.name}")

    def _field_match(self, tab: p4info_pb2.Table, name: str,
                     value: Any) -> p4runtime_pb2.FieldMatch | None:
        """Encode one match field, or return None for a don't-care."""
        if value is None:
            return None
        mf = self.match_field(tab.preamble.name, name)
        width, label = mf.bitwidth, f"{tab.preamble.name}.{mf.name}"
        fm = p4runtime_pb2.FieldMatch(field_id=mf.id)
        kind = mf.match_type
        if kind == MatchType.EXACT:
            fm.exact.value = encode(value, width, label)
        elif kind == MatchType.LPM:
            val, plen = value if isinstance(value, tuple) else (value, width)
            if not 0 <= plen <= width:
                raise ValueError(f"{label}: prefix length {plen} outside 0..{width}")
            if plen == 0:
                return None
            number = to_int(encode(val, width, label))
            fm.lpm.value = encode(number & _mask(width, plen), width, label)
            fm.lpm.prefix_len = plen
        elif kind == MatchType.TERNARY:
            val, mask = value if isinstance(value, tuple) else (value, (1 << width) - 1)
            mask_bytes = encode(mask, width, label + " mask")
            if to_int(mask_bytes) == 0:
                return None
            number = to_int(encode(val, width, label))
            fm.ternary.value = encode(number & to_int(mask_bytes), width, label)
            fm.ternary.mask = mask_bytes
        elif kind == MatchType.RANGE:
            low, high = value
            low_b, high_b = encode(low, width, label + " low"), encode(high, width, label + " high")
            if to_int(low_b) > to_int(high_b):
                raise ValueError(f"{label}: range low {low!r} > high {high!r}")
            if to_int(low_b) == 0 and to_int(high_b) == (1 << width) - 1:
                return None
            fm.range.low, fm.range.high = low_b, high_b
        elif kind == MatchType.OPTIONAL:
            fm.optional.value = encode(value, width, label)
        else:
            raise ValueError(f"{label}: unsupported match type {mf.match_type}")
        return fm

    # ---- counters and meters

    def counter_entry(self, name: str, index: int | None = None) -> p4runtime_pb2.CounterEntry:
        """A CounterEntry for one index, or for all of them when `index` is None."""
        ctr = self.counter(name)
        entry = p4runtime_pb2.CounterEntry(counter_id=ctr.preamble.id)
        if index is not None:
            self._check_index(ctr, index)
            entry.index.index = index
        return entry

    def meter_entry(self, name: str, index: int, cir: int, cburst: int, pir: int,
                    pburst: int) -> p4runtime_pb2.MeterEntry:
        """A MeterEntry configuring one index (bmv2 accepts only MODIFY for meters)."""
        mtr = self.meter(name)
        self._check_index(mtr, index)
        entry = p4runtime_pb2.MeterEntry(meter_id=mtr.preamble.id)
        entry.index.index = index
        entry.config.CopyFrom(p4runtime_pb2.MeterConfig(cir=cir, cburst=cburst, pir=pir,
                                                        pburst=pburst))
        return entry

    def meter_reset_entry(self, name: str, index: int) -> p4runtime_pb2.MeterEntry:
        """A MeterEntry without config: back to the default, every packet green."""
        mtr = self.meter(name)
        self._check_index(mtr, index)
        entry = p4runtime_pb2.MeterEntry(meter_id=mtr.preamble.id)
        entry.index.index = index
        return entry

    @staticmethod
    def _check_index(obj: Any, index: int) -> None:
        if not 0 <= index < obj.size:
            raise ValueError(f"{obj.preamble.name}: index {index} outside 0..{obj.size - 1}")

    # ---- packet I/O

    def packet_metadata(self, kind: str) -> dict[str, tuple[int, int]]:
        """Map metadata name -> (id, bitwidth) of the "packet_in" or "packet_out" header."""
        if kind not in _PACKET_KINDS:
            raise ValueError(f"kind must be one of {_PACKET_KINDS}, not {kind!r}")
        cpm = self.lookup("controller_packet_metadata", kind)
        return {m.name: (m.id, m.bitwidth) for m in cpm.metadata}

    def decode_packet_in(self, packet_in: p4runtime_pb2.PacketIn) -> tuple[bytes, dict[str, int]]:
        """Return (payload, {metadata name: int}) of a PacketIn."""
        names = {mid: name for name, (mid, _) in self.packet_metadata("packet_in").items()}
        meta = {names.get(m.metadata_id, f"id{m.metadata_id}"): decode(m.value)
                for m in packet_in.metadata}
        return packet_in.payload, meta

    def packet_out(self, payload: bytes, **metadata: Value) -> p4runtime_pb2.PacketOut:
        """Build a PacketOut; metadata fields not given (e.g. padding) are sent as 0."""
        fields = self.packet_metadata("packet_out")
        unknown = sorted(set(metadata) - set(fields))
        if unknown:
            raise KeyError(f"unknown packet_out metadata {', '.join(unknown)}; "
                           f"known: {', '.join(fields)}")
        msg = p4runtime_pb2.PacketOut(payload=bytes(payload))
        for name, (mid, width) in fields.items():
            value = encode(metadata.get(name, 0), width, f"packet_out.{name}")
            msg.metadata.add(metadata_id=mid, value=value)
        return msg
