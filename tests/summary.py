"""Print the summary of a `make test` run from the per-stage lines in the report file.

Each stage appends `stage: N passed, N failed, N skipped (why)`; this adds them up and ends
with one `total: N passed, N failed, N skipped` line. Exit 1 if anything failed or a stage is
missing from the report."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

STAGES = ("pytest", "p4-check", "ptf")
LINE = re.compile(r"^(?P<stage>[\w-]+): (?P<passed>\d+) passed, (?P<failed>\d+) failed, "
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


def main(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        results = parse(handle.read())
    print("== summary of make test")
    for r in results:
        why = f"  skipped because: {r.why}" if r.skipped and r.why else ""
        print(f"  {r.stage:9} {r.passed:4} passed {r.failed:3} failed {r.skipped:3} skipped{why}")
    missing = [s for s in STAGES if s not in {r.stage for r in results}]
    for stage in missing:
        print(f"  {stage:9} did not report (it crashed before its summary): counted as failed")
    passed = sum(r.passed for r in results)
    failed = sum(r.failed for r in results) + len(missing)
    skipped = sum(r.skipped for r in results)
    print(f"total: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
