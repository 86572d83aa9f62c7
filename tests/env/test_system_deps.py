"""The system package list (bmv2_env/system_packages.txt): what setup installs, what the README
says, and how a missing tool turns into a skip reason instead of a failure in set-up."""

from __future__ import annotations

import re
import subprocess
import sys

from bmv2_env import system_deps
from tests.support.stack import REPO

README_TABLE = re.compile(r"<!-- system-packages: begin -->\n(.*?)<!-- system-packages: end -->",
                          re.S)


def test_every_line_names_a_check_a_package_and_a_purpose() -> None:
    reqs = system_deps.requirements()
    assert {"ip", "ethtool", "nft", "tc", "sysctl"} <= {r.check for r in reqs}
    assert all(r.package and r.purpose for r in reqs)
    assert set(system_deps.ENVIRONMENT_TOOLS) <= {r.check for r in reqs}


def test_the_readme_lists_the_same_packages() -> None:
    table = README_TABLE.search((REPO / "README.md").read_text()).group(1)
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in table.strip().splitlines()[2:]]
    rows = [[check.strip("`"), package, purpose] for check, package, purpose in rows]
    assert rows == [[r.check, r.package, r.purpose] for r in system_deps.requirements()]


def test_a_missing_tool_becomes_a_skip_reason(monkeypatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    reason = system_deps.skip_reason(["ethtool", "ip"])
    assert reason.startswith("ip, ethtool not found") or reason.startswith("ethtool")
    assert "ethtool iproute2" in reason and "make setup" in reason
    monkeypatch.undo()
    assert system_deps.skip_reason([]) is None


def test_without_root_install_says_what_to_install(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(system_deps.os, "geteuid", lambda: 1000)
    assert system_deps.install() == 1
    out = capsys.readouterr().out
    assert "apt-get install" in out and "ethtool" in out and "nftables" in out


def test_setup_runs_with_the_standard_library_alone() -> None:
    """`make setup` runs the script before the venv exists: no third-party import."""
    done = subprocess.run([sys.executable, "-S", "-I", str(REPO / "bmv2_env/system_deps.py"),
                           "check"], capture_output=True, text=True)
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr


def test_an_absolute_path_is_checked_as_that_executable() -> None:
    assert system_deps.Requirement("/bin/sh", "dash", "x").present
    assert not system_deps.Requirement("/nonexistent/python3", "python3", "x").present
