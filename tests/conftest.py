"""Adds the pytest counts (unit and end-to-end tests) to the `make test` report
(P4TAS_REPORT); tests/summary.py adds the stages up."""

from __future__ import annotations

import os


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = os.environ.get("P4TAS_REPORT")
    if not report:
        return
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = stats.get("skipped", [])
    reasons = sorted({str(r.longrepr[2]) for r in skipped if isinstance(r.longrepr, tuple)})
    line = f"pytest: {passed} passed, {failed} failed, {len(skipped)} skipped"
    if reasons:
        line += f" ({'; '.join(reasons)})"
    with open(report, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
