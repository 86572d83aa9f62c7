"""Marks the tests that run a switch, names the target in pytest's header, and adds the pytest
counts to the `make test` report (P4TAS_REPORT); tests/support/summary.py adds the stages up.

Tests by kind: tests/unit/, tests/contract/ (P4 vs Python, bmv2 vs softnic), tests/env/
(bmv2_env), tests/e2e/ (the stack against Linux peers); helpers in tests/support/. A test that
starts a real switch (every test under tests/e2e/, and the `@pytest.mark.target` tests of
tests/env/) has the `target` marker: `make test` runs unit, contract and env with
`-m "not target"` once (the unit stage) and e2e and env with `-m target` once per target
(TARGET=bmv2, TARGET=soft). P4TAS_PYTEST_STAGE names the stage in the report line:

- `unit` -> `pytest (unit): ...`
- `e2e`  -> `pytest e2e [<target>]: ...` (the target TARGET selects, bmv2_env.targets)
- unset  -> `pytest: ...`, or `pytest [<target>]: ...` when target tests ran
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest

from bmv2_env import targets
from bmv2_env.toolchain import ToolNotFound
from tests.support.stack import Stack

TARGET_MARK = "target"
STAGE_ENV = "P4TAS_PYTEST_STAGE"
E2E_DIR = "e2e"  # tests/e2e/: every test there runs a switch
FAILURE_LOG_LINES = 80  # of the runtime's log, shown with a failed end-to-end test


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{TARGET_MARK}: runs a real switch of the selected target (TARGET=bmv2|soft); "
                   "`make test` runs these once per target")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every end-to-end test runs a switch: mark it."""
    for item in items:
        if item.path.parent.name == E2E_DIR:
            item.add_marker(TARGET_MARK)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator:
    """A failed test that ran on a stack shows the tail of the runtime's log in its report: the
    next module's stack reuses the log file, and CI keeps only what the report printed."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, Stack):
            tail = value.runtime_log[-FAILURE_LOG_LINES:]
            report.sections.append((f"runtime log, last {len(tail)} lines "
                                    f"({value.runtime.log_path})", "\n".join(tail)))
            return


def pytest_report_header(config: pytest.Config) -> str:
    try:
        return targets.select().line
    except (ToolNotFound, ValueError) as exc:
        return f"target: unusable: {exc}"


def stage_label(stage: str | None, target: str, ran_target_tests: bool) -> str:
    """The report label of this pytest run (see the module docstring)."""
    if stage == "unit":
        return "pytest (unit)"
    if stage == "e2e":
        return f"pytest e2e [{target}]"
    return f"pytest [{target}]" if ran_target_tests else "pytest"


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    report = os.environ.get("P4TAS_REPORT")
    if not report:
        return
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = stats.get("skipped", [])
    reasons = sorted({str(r.longrepr[2]) for r in skipped if isinstance(r.longrepr, tuple)})
    ran_target_tests = any(TARGET_MARK in r.keywords for key in ("passed", "failed", "error",
                                                                 "skipped")
                           for r in stats.get(key, []) if hasattr(r, "keywords"))
    label = stage_label(os.environ.get(STAGE_ENV, "").strip() or None, targets.selected_name(),
                        ran_target_tests)
    line = f"{label}: {passed} passed, {failed} failed, {len(skipped)} skipped"
    if reasons:
        line += f" ({'; '.join(reasons)})"
    with open(report, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
