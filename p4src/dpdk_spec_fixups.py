#!/usr/bin/env python3
"""Fix-ups of a p4c-dpdk .spec for DPDK 22.11's SWX pipeline (p4src/compile.sh runs them on the
PNA program's spec; the committed spec is their output). Each works around a defect measured
here, and fails loudly where it cannot:

1. The parser's input port. p4c-dpdk reads pna_main_parser_input_metadata_t.input_port in the
   parser from its own metadata field, which nothing ever writes (only the main control's
   copy, pna_main_input_metadata_input_port, is the `rx` instruction's operand), so a parser
   that selects on its input port sees 0. Both are the packet's input port: references to the
   parser's field are redirected to the control's.

2. Metadata within 256 bytes. DPDK 22.11's SWX instructions address a field by an 8-bit byte
   offset into its struct (struct instr_operand in rte_swx_pipeline_internal.h: uint8_t
   offset), without checking it, so a field that starts at byte 256 or later is silently read
   and written at offset % 256. p4c-dpdk gives every local and every temporary of the program
   a metadata field of its own and never reuses one: the p4tas PNA program comes out with
   ~1000 fields and ~3.7 KB of metadata, of which no more than ~170 bytes are live at any one
   point. So: a liveness analysis over the spec's apply block (p4c-dpdk emits only forward
   jumps, so one backward pass is exact; a table instruction uses every metadata field its key
   or any of its actions names), then fields whose live ranges do not meet share a slot of
   their width (greedy colouring), and the spec is rewritten with slots m.s<W>_<N>. If the
   slots still do not fit, the longest-lived fields that no instruction needs in metadata move
   to slots of a header that is never extracted, validated or emitted (h.pna_spill.x<W>_<N>),
   as p4c-dpdk's own checksum state lives in such a header. The architecture's port fields, and
   the fields of any instruction this pass does not understand, are left alone. (Table key
   fields are renamed too: the context JSON names keys by their P4 names.)

3. `regadd` with an immediate index and an immediate increment (a counter's count(0)):
   DPDK 22.11's translation of that form (REGADD_RII) never sets the instruction's register
   array, so it adds to the first array of the pipeline. The index is moved into a metadata
   field first (`mov m.regadd_index I`, then `regadd R m.regadd_index V`).

4. A check: every field of every struct starts below byte 256, else this fails.

Usage: dpdk_spec_fixups.py SPEC   (rewrites SPEC in place; prints a one-line summary)"""

from __future__ import annotations

import re
import sys

OFFSET_LIMIT = 256   # bytes: struct instr_operand's uint8_t offset
# Instructions whose first operand is written (and not read).
WRITE_FIRST = {"mov", "rx", "recircid"}
# Read-modify-write of the first operand.
RMW_FIRST = {"add", "sub", "and", "or", "xor", "shl", "shr", "ckadd", "cksub"}
KNOWN = WRITE_FIRST | RMW_FIRST | {
    "regrd", "regwr", "regadd", "meter", "mirror", "tx", "drop", "extract", "emit",
    "lookahead", "validate", "invalidate", "table", "jmp", "jmpeq", "jmpneq", "jmplt",
    "jmpgt", "jmpv", "jmpnv", "jmph", "jmpnh", "jmpa", "jmpna", "return", "recirculate"}


def struct_fields(spec: str, name: str) -> list[tuple[str, int]]:
    body = re.search(r"^struct %s \{\n(.*?)^\}" % re.escape(name), spec, re.S | re.M).group(1)
    return [(n, int(b)) for b, n in re.findall(r"bit<(\d+)> (\w+)", body)]


def check_offsets(spec: str) -> None:
    """Every field of every struct must start below OFFSET_LIMIT."""
    for m in re.finditer(r"^struct (\w+) \{\n(.*?)^\}", spec, re.S | re.M):
        offset = 0
        for kind, name in re.findall(r"(bit<\d+>|varbit<\d+>) (\w+)", m.group(2)):
            if offset // 8 >= OFFSET_LIMIT:
                sys.exit(f"dpdk_spec_fixups: {m.group(1)}.{name} starts at byte {offset // 8}: "
                         f"DPDK's SWX instructions address bytes 0..{OFFSET_LIMIT - 1} only")
            offset += int(kind.split("<")[1][:-1])


class Program:
    """The spec's metadata fields, their liveness, and which of them may live in a header."""

    def __init__(self, spec: str):
        lines = spec.splitlines()
        self.mstruct = re.search(r"^metadata instanceof (\w+)", spec, re.M).group(1)
        self.fields = struct_fields(spec, self.mstruct)
        self.width = dict(self.fields)

        action_refs = {}
        for m in re.finditer(r"^action (\w+) args [^{]*\{\n(.*?)^\}", spec, re.S | re.M):
            action_refs[m.group(1)] = set(re.findall(r"\bm\.(\w+)", m.group(2)))
        table_refs, key_fields = {}, set()
        for m in re.finditer(r"^(?:table|learner) (\w+) \{\n(.*?)^\}", spec, re.S | re.M):
            key_part, _, rest = m.group(2).partition("actions {")
            keys = set(re.findall(r"\bm\.(\w+)", key_part))
            key_fields |= keys
            refs = set(keys) | set(re.findall(r"\bm\.(\w+)", rest.partition("}")[2]))
            for action in re.findall(r"^\t\t(\w+)", rest.partition("}")[0], re.M):
                refs |= action_refs.get(action, set())
            table_refs[m.group(1)] = refs

        start = lines.index("apply {")
        end = len(lines) - 1 - lines[::-1].index("}")
        instrs, labels = [], {}
        for line in lines[start + 1:end]:
            if not line.strip():
                continue
            m = re.match(r"\s*(\w+)\s*:\s*(\S.*)", line)
            if m:
                labels[m.group(1)] = len(instrs)
                line = m.group(2)
            instrs.append(line.split())

        self.fixed = {f for f in self.width if f.startswith("pna_")}
        # Fields an instruction needs in metadata (DPDK 22.11: rx/tx/recircid ports, meter
        # colour out, extract's length, table keys): they may share metadata slots but may
        # not move to a header.
        self.metadata_only = set(key_fields)
        n = len(instrs)
        uses, defs = [], []
        for t in instrs:
            op, ms = t[0], [x[2:] for x in t[1:] if x.startswith("m.")]
            if op not in KNOWN:
                self.fixed |= set(ms)   # not understood: leave its fields alone
                u, d = set(ms), set()
            elif op == "table":
                u, d = set(table_refs[t[1]]), set()
            elif op in WRITE_FIRST or op == "regrd":
                d = {t[1][2:]} if t[1].startswith("m.") else set()
                u = {x[2:] for x in t[2:] if x.startswith("m.")}
            elif op in RMW_FIRST:
                u, d = set(ms), ({t[1][2:]} if t[1].startswith("m.") else set())
            elif op == "meter":
                u = {x[2:] for x in t[1:5] if x.startswith("m.")}
                d = {t[5][2:]} if t[5].startswith("m.") else set()
                self.metadata_only |= d
            else:
                u, d = set(ms), set()
            if op in ("rx", "tx", "recircid", "extract"):
                self.metadata_only |= set(ms)
            uses.append(u)
            defs.append(d)

        # Backward liveness; `points[f]` has bit i set when f is live into instruction i or
        # written by it (so that a dead store still claims its slot at that point).
        live_in = [set() for _ in range(n)]
        for i in range(n - 1, -1, -1):
            op = instrs[i][0]
            if op == "jmp":
                out = set(live_in[labels[instrs[i][1]]])
            elif op.startswith("jmp"):
                target = labels[instrs[i][1]]
                if target <= i:
                    raise SystemExit("dpdk_spec_fixups: backward jump, liveness not supported")
                out = live_in[target] | (live_in[i + 1] if i + 1 < n else set())
            elif op in ("tx", "drop"):
                out = set()
            else:
                out = set(live_in[i + 1]) if i + 1 < n else set()
            live_in[i] = uses[i] | (out - defs[i])
        self.points = {f: 0 for f in self.width}
        for i in range(n):
            bit = 1 << i
            for f in live_in[i] | defs[i]:
                self.points[f] |= bit

    def colour(self, names: list[str], prefix: str) -> tuple[dict[str, str], list[tuple[str, int]]]:
        """Greedy colouring per width, in order of first appearance: {field: slot}, slots."""
        live = [f for f in names if self.points[f]]
        live.sort(key=lambda f: (self.points[f] & -self.points[f]).bit_length())
        slots: dict[int, list[int]] = {}
        rename = {}
        for f in live:
            pool = slots.setdefault(self.width[f], [])
            for k, occupied in enumerate(pool):
                if not occupied & self.points[f]:
                    pool[k] |= self.points[f]
                    break
            else:
                pool.append(self.points[f])
                k = len(pool) - 1
            rename[f] = f"{prefix}{self.width[f]}_{k}"
        # Written and never read: a scratch slot of their width.
        for f in names:
            if not self.points[f]:
                rename[f] = f"{prefix}{self.width[f]}_dead"
        out = [(f"{prefix}{w}_{k}", w) for w in sorted(slots, reverse=True)
               for k in range(len(slots[w]))]
        out += sorted({(r, self.width[f]) for f, r in rename.items() if r.endswith("_dead")})
        return rename, out


def pack(spec: str) -> tuple[str, str]:
    prog = Program(spec)
    movable = [f for f in prog.width if f not in prog.fixed]
    # Fields that may live in a header instead, longest-lived first.
    spillable = sorted((f for f in movable if f not in prog.metadata_only),
                       key=lambda f: -bin(prog.points[f]).count("1"))
    kept = [(f, w) for f, w in prog.fields if f in prog.fixed]
    spilled: list[str] = []
    while True:
        in_meta = [f for f in movable if f not in spilled]
        rename, slots = prog.colour(in_meta, "s")
        if sum(w for _, w in kept + slots) // 8 <= OFFSET_LIMIT - 8 or not spillable:
            break
        spilled += spillable[:4]
        spillable = spillable[4:]
    spill_rename, spill_slots = prog.colour(spilled, "x")

    body = "".join(f"\tbit<{w}> {f}\n" for f, w in kept + slots)
    spec = re.sub(r"^(struct %s \{\n)(.*?)(^\})" % re.escape(prog.mstruct),
                  lambda m: m.group(1) + body + m.group(3), spec, count=1, flags=re.S | re.M)
    refs = {f: "m." + r for f, r in rename.items()}
    if spilled:
        # A header that is never extracted, validated or emitted: DPDK points it at its own
        # storage when the pipeline is built and nothing moves it (p4c-dpdk's checksum state
        # and pseudo-headers are such headers too).
        decl = "struct pna_spill_t {\n" + "".join(f"\tbit<{w}> {f}\n" for f, w in spill_slots) + "}\n\n"
        spec = re.sub(r"^(metadata instanceof )", lambda m: decl + m.group(1), spec, count=1,
                      flags=re.M)
        last_header = list(re.finditer(r"^header \w+ instanceof \w+\n", spec, re.M))[-1]
        spec = (spec[:last_header.end()] + "header pna_spill instanceof pna_spill_t\n"
                + spec[last_header.end():])
        refs.update({f: "h.pna_spill." + r for f, r in spill_rename.items()})
    spec = re.sub(r"\bm\.(\w+)", lambda m: refs.get(m.group(1), "m." + m.group(1)), spec)
    before = sum(prog.width.values()) // 8
    after = sum(w for _, w in kept + slots) // 8
    summary = (f"metadata {len(prog.fields)} fields {before} bytes -> {len(kept + slots)} fields "
               f"{after} bytes" + (f", {len(spilled)} long-lived fields in header pna_spill "
                                   f"({sum(w for _, w in spill_slots) // 8} bytes)"
                                   if spilled else ""))
    return spec, summary


def regadd_index(spec: str) -> str:
    """Fix-up 3: no REGADD_RII (immediate index and increment)."""
    imm = r"(?:0x[0-9a-fA-F]+|\d+)"
    pattern = re.compile(rf"^(\s*(?:\w+ : )?)regadd (\S+) ({imm}) ({imm})\s*$", re.M)
    if not pattern.search(spec):
        return spec
    spec = pattern.sub(lambda m: f"{m.group(1)}mov m.regadd_index {m.group(3)}\n"
                                 f"\tregadd {m.group(2)} m.regadd_index {m.group(4)}", spec)
    mstruct = re.search(r"^metadata instanceof (\w+)", spec, re.M).group(1)
    return re.sub(r"^(struct %s \{\n)" % re.escape(mstruct),
                  lambda m: m.group(1) + "\tbit<32> regadd_index\n", spec, count=1, flags=re.M)


def parser_input_port(spec: str) -> str:
    """Fix-up 1: the parser's input port is the control's (written by `rx`)."""
    if "rx m.pna_main_input_metadata_input_port" not in spec:
        sys.exit("dpdk_spec_fixups: no `rx m.pna_main_input_metadata_input_port`: not a PNA spec?")
    return spec.replace("m.pna_main_parser_input_metadata_input_port",
                        "m.pna_main_input_metadata_input_port")


def main() -> None:
    path = sys.argv[1]
    spec = regadd_index(parser_input_port(open(path).read()))
    spec, summary = pack(spec)
    check_offsets(spec)
    open(path, "w").write(spec)
    print("dpdk_spec_fixups:", summary)


if __name__ == "__main__":
    main()
