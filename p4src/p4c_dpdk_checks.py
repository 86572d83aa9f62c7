#!/usr/bin/env python3
"""Fail the build on the constructs p4c-dpdk (p4c 1.2.5.x) miscompiles without an error.

p4c-dpdk lowers expressions to one operation per statement in StatementUnroll and
IfStatementUnroll. Their expression walkers (ExpressionUnroll, LogicalExpressionUnroll in
backends/dpdk/dpdkArch.cpp) are Inspectors, which visit a node of the IR DAG once, and keep
the temporary of the last node visited in `root`. Two defects follow, both silent when the
types happen to agree:

1. A subexpression node shared twice within one statement (p4c's copy propagation shares the
   node of a local's value among its uses: `ahead == 0 || ahead < x` with a local `ahead`, or
   the SipHash rounds of an action) is unrolled once; its second use takes whatever temporary
   was computed last. In a correct unroll every temporary these passes introduce is read
   exactly once, so one read twice (or never) is this defect.
2. A negated method call inside && or || (`a || !h.isValid()`): LogicalExpressionUnroll
   returns early on `!call` without setting `root`, so the operand before it is used in its
   place. (p4c-dpdk rejects it as the left operand; as a right operand it is silent.)
3. A < or > inside && (or a <= or >= inside ||) of a condition. BranchingInstructionGeneration
   (dpdkHelpers.cpp) always emits `jmplt/jmpgt TRUE` for < and > and `jmplt/jmpgt FALSE` for
   >= and <=, whatever the operator around them, and && then continues as if the comparison
   had fallen through on true: `a != 0 && x < y` is true whenever a != 0, `x < y && b` is true
   whenever x < y. So in && only ==, !=, >=, <=, isValid() and flags may appear, in || only
   ==, !=, <, >, isValid() and flags. The checked form is the one after p4c-dpdk's
   ConvertLogicalExpression, where p4c has propagated boolean locals into the conditions.
4. A copy read after its source changed. CopyPropagationAndElimination (dpdkAsmOpt.cpp), on
   the DPDK assembly, replaces the one use of a metadata field that is defined once, by a
   `mov`, with the `mov`'s source, without looking at whether the source is written in
   between: `before = rx_free; rx_free = rx_free + n; if (before < t)` compares the new
   rx_free. (A use that is a plain copy into a header field is left alone: the pass rewrites
   only copies into metadata.) Checked on the last P4 dump, in textual order, which is the
   order of the assembly (its jumps go forward only); use and def counts are whole-program,
   where the pass counts per action and per control, so this may miss a case but finds the
   ones p4tas has had.

The P4 source avoids them (p4src/pna: nested ifs, flags set in ifs, one statement per action);
this check keeps it that way. Usage: p4c_dpdk_checks.py P4C_DPDK MAIN.p4"""

from __future__ import annotations

import collections
import glob
import re
import shutil
import subprocess
import sys
import tempfile


def split_top(text: str, op: str) -> list[str]:
    """`text` split at `op` outside parentheses."""
    parts, depth, i, last = [], 0, 0, 0
    while i < len(text):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
        elif depth == 0 and text.startswith(op, i):
            parts.append(text[last:i].strip())
            i += len(op)
            last = i
            continue
        i += 1
    return parts + [text[last:].strip()]


def strip_parens(text: str) -> str:
    text = text.strip()
    while text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, c in enumerate(text):
            depth += {"(": 1, ")": -1}.get(c, 0)
            if depth == 0 and i < len(text) - 1:
                return text
        text = text[1:-1].strip()
    return text


def comparison(atom: str) -> str | None:
    """The comparison operator at the top level of `atom` (not a shift, not a type's <>)."""
    text = re.sub(r"bit<\d+>", "T", atom)
    depth = 0
    for i, c in enumerate(text):
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth:
            continue
        for op in ("<=", ">=", "==", "!="):
            if text.startswith(op, i):
                return op
        if c in "<>" and text[i - 1:i] not in "<>" and text[i + 1:i + 2] not in "<>=":
            return c
    return None


def check_condition(cond: str, context: str | None, problems: list) -> None:
    """Defect 3: the comparisons p4c-dpdk mis-branches on within && and ||."""
    expr = strip_parens(cond)
    for op in ("||", "&&"):
        parts = split_top(expr, op)
        if len(parts) > 1:
            for part in parts:
                check_condition(part, op, problems)
            return
    if context and expr.startswith("!") and comparison(expr[1:]):
        problems.append((f"negated comparison inside {context}", expr))
        return
    op = comparison(expr)
    if (context, op) in (("&&", "<"), ("&&", ">"), ("||", "<="), ("||", ">=")):
        problems.append((f"'{op}' inside {context} (p4c-dpdk mis-branches)", expr))


ASSIGN = re.compile(r"^\s*(?:\} else )?([mh]\.[\w.]+) = (.*);\s*$")
FIELD = re.compile(r"\b[mh]\.[\w.]+")


def stale_copies(text: str) -> list[str]:
    """Defect 4: `m.d = s;` with m.d defined once and read once, and s written before that
    read (the read would become a read of the new s)."""
    lines = text.splitlines()
    defs, uses = collections.Counter(), collections.Counter()
    for line in lines:
        m = ASSIGN.match(line)
        if m:
            defs[m.group(1)] += 1
        for name in FIELD.findall(m.group(2) if m else line):
            uses[name] += 1
    problems = []
    for i, line in enumerate(lines):
        m = ASSIGN.match(line)
        if not m or not m.group(1).startswith("m."):
            continue
        dst, src = m.group(1), m.group(2).strip()
        if not FIELD.fullmatch(src) or defs[dst] != 1 or uses[dst] != 1:
            continue
        use = next((j for j in range(i + 1, len(lines))
                    if re.search(re.escape(dst) + r"\b", lines[j])), None)
        if use is None:
            continue
        u = ASSIGN.match(lines[use])
        if u and u.group(1).startswith("h.") and u.group(2).strip() == dst:
            continue   # a copy into a header field: not rewritten
        if any((w := ASSIGN.match(lines[k])) and w.group(1) == src for k in range(i + 1, use)):
            problems.append(f"{dst} = {src}, read after {src} is written: "
                            f"{lines[use].strip()}")
    return problems


def main() -> int:
    p4c, main_p4 = sys.argv[1], sys.argv[2]
    dump = tempfile.mkdtemp()
    try:
        done = subprocess.run([p4c, "--arch", "pna", "-o", dump + "/x.spec", "--dump", dump,
                               "--top4", "PassManager_30_,PassManager_31_,PassManager_32_,"
                               "PassManager_46_",
                               main_p4], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"p4c_dpdk_checks: {p4c} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        files = sorted(glob.glob(dump + "/*.p4"))
        if not any("StatementUnroll" in f for f in files):
            print(f"p4c_dpdk_checks: the dump has no StatementUnroll pass ({len(files)} files): "
                  f"p4c-dpdk's passes have moved, update this check", file=sys.stderr)
            return 1
        unroll = [f for f in files if "PassManager_32_" in f]
        before, after = open(files[0]).read(), open(unroll[-1]).read()
        final = open(files[-1]).read()
    finally:
        shutil.rmtree(dump, ignore_errors=True)

    old = set(re.findall(r"\btmp_\d+\b", before))
    reads = collections.Counter()
    for line in after.splitlines():
        line = line.strip()
        if re.match(r"^(bit<\d+>|bool|int)\s+tmp_\d+;$", line):
            continue
        m = re.match(r"^(tmp_\d+)\s*=\s*(.*);$", line)
        for t in re.findall(r"\btmp_\d+\b", m.group(2) if m else line):
            reads[t] += 1
    new = {t for t in re.findall(r"\btmp_\d+\b", after) if t not in old}
    shared = sorted(t for t in new if reads[t] != 1)
    negated = [line.strip() for line in before.splitlines()
               if ("&&" in line or "||" in line)
               and re.search(r"!\s*\(?[\w.$]+\([^()]*\)\)?", line)]
    problems = [f"temporary {t} read {reads[t]} times (a shared subexpression): "
                + next(line.strip() for line in after.splitlines()
                       if re.search(rf"\b{t}\b", line) and "=" in line)
                for t in shared]
    problems += [f"negated method call inside a logical expression: {line}" for line in negated]
    branches = []
    for m in re.finditer(r"^\s*(?:\} else )?if \((.*)\) \{\s*$", final, re.M):
        check_condition(m.group(1), None, branches)
    problems += [f"{what}: if ({cond})" for what, cond in branches]
    problems += [f"a copy read after its source changed: {p}" for p in stale_copies(final)]
    if problems:
        print(f"p4c_dpdk_checks: {main_p4}: {len(problems)} construct(s) p4c-dpdk miscompiles:",
              file=sys.stderr)
        for p in problems[:20]:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"p4c_dpdk_checks: {len(new)} temporaries each read once, no negated calls, no "
          f"mis-branching comparisons in logical expressions, no copy read after its source "
          f"changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
