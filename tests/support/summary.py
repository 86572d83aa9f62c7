"""Print the summary of a `make test` run from the per-stage lines in the report file.

Each stage appends `stage: N passed, N failed, N skipped (why)`; the stage may carry a target
(`pytest e2e [soft]`, `ptf [bmv2]`) or a kind (`pytest (unit)`). This prints one line per stage
and ends with one `total: N passed, N failed, N skipped` line. Exit 1 if anything failed or a
stage is missing from the report.

    python tests/support/summary.py REPORT [TARGET ...]

With targets (what `make test` passes: the targets it ran), the stages expected are
`pytest (unit)`, `p4-check`, and `pytest e2e [<target>]` and `ptf [<target>]` per target.
Without, a `pytest...`, a `p4-check` and a `ptf...` line are expected."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

STAGES = ("pytest", "p4-check", "ptf")  # without targets: any stage of these families
LINE = re.compile(r"^(?P<stage>[\w-]+(?: \([\w -]+\))?(?: [\w-]+)*(?: \[[\w-]+\])?): "
                  r"(?P<passed>\d+) passed, (?P<failed>\d+) failed, "
                  r"(?P<skipped>\d+) skipped(?: \((?P<why>.*)\))?$")


@dataclass
class StageResult:
    stage: str
    passed: int
    failed: int
    skipped: int
    why: str


def parse(text: str) -> list[StageResult]:
    results = []
    for line in text.splitlines():
        match = LINE.match(line.strip())
        if match:
            results.append(StageResult(match["stage"], int(match["passed"]), int(match["failed"]),
                                       int(match["skipped"]), match["why"] or ""))
    return results


def expected_stages(targets: list[str]) -> list[str]:
    """The stages `make test` runs for these targets, in its order."""
    stages = ["pytest (unit)", "p4-check"]
    for target in targets:
        stages += [f"pytest e2e [{target}]", f"ptf [{target}]"]
    return stages


def missing_stages(results: list[StageResult], targets: list[str] | None) -> list[str]:
    """Expected stages without a line in the report."""
    seen = {r.stage for r in results}
    if targets:
        return [s for s in expected_stages(targets) if s not in seen]
    families = {s.split(" ", 1)[0] for s in seen}
    return [s for s in STAGES if s not in families]


def main(path: str, targets: list[str] | None = None) -> int:
    with open(path, encoding="utf-8") as handle:
        results = parse(handle.read())
    missing = missing_stages(results, targets)
    width = max([9, *(len(r.stage) for r in results), *(len(s) for s in missing)])
    print("== summary of make test")
    for r in results:
        why = f"  skipped because: {r.why}" if r.skipped and r.why else ""
        print(f"  {r.stage:{width}} {r.passed:4} passed {r.failed:3} failed "
              f"{r.skipped:3} skipped{why}")
    for stage in missing:
        print(f"  {stage:{width}} did not report (it crashed before its summary): "
              "counted as failed")
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results) + len(missing)
    skipped = sum(r.skipped for r in results)
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], [t for arg in sys.argv[2:] for t in arg.split()]))
