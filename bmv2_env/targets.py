"""The fast-path targets an environment can run, and which one is used (env var TARGET).

- `bmv2`: the P4 reference software switch, `simple_switch_grpc` (found by
  toolchain.find_simple_switch_grpc: $SIMPLE_SWITCH_GRPC, PATH, /opt/p4/bin).
- `soft`: softnic, this repository's software fast path (`python -m softnic`, run by this
  venv's Python from the repository root). Always there, since it is part of the repository.
- `dpdk`: the PNA program on DPDK's SWX pipeline (`python -m dpdk_target`: p4tas-swx and its
  P4Runtime server), found when DPDK (libdpdk-dev) and the committed PNA spec are there.

All take the same command line after the program (switch.build_command) and open the same
veths. TARGET=bmv2|soft|dpdk picks one; unset (or empty), bmv2 is used when simple_switch_grpc
is found and soft otherwise. An explicit TARGET=bmv2 without simple_switch_grpc (or
TARGET=dpdk without DPDK) is an error (toolchain.ToolNotFound), never a silent fallback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from nic_contract.pipeline import DPDK_TARGET_NAME, PNA_SPEC

from .toolchain import SIMPLE_SWITCH_GRPC, ToolNotFound, find_simple_switch_grpc

TARGET_ENV = "TARGET"
BMV2 = "bmv2"
SOFT = "soft"
DPDK = DPDK_TARGET_NAME
REPO_ROOT = Path(__file__).resolve().parent.parent
SOFTNIC = "softnic"  # the package run with `python -m`
SOFTNIC_MAIN = REPO_ROOT / SOFTNIC / "__main__.py"
DPDK_MODULE = "dpdk_target"

# Options of the Python interpreter that take a separate value (python -X dev -m softnic ...).
_PYTHON_OPTIONS_WITH_VALUE = frozenset({"-X", "-W", "-Q"})


# ---- recognizing a target's process in /proc ----------------------------------------------------
def is_bmv2_cmdline(argv: Sequence[str]) -> bool:
    """True if `argv` runs simple_switch_grpc; argv[1] counts too, for a wrapper script run by
    its interpreter (`sh .../simple_switch_grpc`)."""
    return any(os.path.basename(arg).endswith(SIMPLE_SWITCH_GRPC) for arg in argv[:2])


def is_softnic_cmdline(argv: Sequence[str]) -> bool:
    """True if `argv` is a Python running `-m softnic` (the module option must come before the
    first non-option argument, as Python itself reads it: `pytest -m softnic` is no softnic)."""
    return _runs_module(argv, SOFTNIC)


def is_dpdk_cmdline(argv: Sequence[str]) -> bool:
    """True if `argv` is a Python running `-m dpdk_target`."""
    return _runs_module(argv, DPDK_MODULE)


def _runs_module(argv: Sequence[str], module: str) -> bool:
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, None) == module
        if arg.startswith("-m"):
            return arg[2:] == module
        if arg in _PYTHON_OPTIONS_WITH_VALUE:
            next(args, None)
            continue
        if not arg.startswith("-") or arg in ("-", "-c", "--"):
            return False  # a script, `-c code`, stdin: not -m softnic
    return False


# ---- the targets -------------------------------------------------------------------------------
def _bmv2_command() -> list[str]:
    return [str(find_simple_switch_grpc())]


def _softnic_command() -> list[str]:
    if not SOFTNIC_MAIN.is_file():
        raise ToolNotFound(f"softnic not found: {SOFTNIC_MAIN} is missing (the soft target is "
                           "part of this repository)")
    return [sys.executable, "-m", SOFTNIC]


def _dpdk_command() -> list[str]:
    if not PNA_SPEC.is_file():
        raise ToolNotFound(f"the PNA program's spec is missing ({PNA_SPEC}): `make p4` builds "
                           "it with p4c-dpdk")
    if subprocess.run(["pkg-config", "--exists", "libdpdk"], check=False,
                      capture_output=True).returncode != 0:
        raise ToolNotFound("DPDK not found: install Debian package libdpdk-dev "
                           "(`make setup` does as root)")
    return [sys.executable, "-m", DPDK_MODULE]


@dataclass(frozen=True)
class Target:
    """One fast-path target: how to run it and how to recognize its process."""

    name: str  # the TARGET value: "bmv2", "soft" or "dpdk"
    process: str  # what its process is called in messages
    description: str  # a few words for the `target:` line
    _command: Callable[[], list[str]]  # the program part of the command line, or ToolNotFound
    matches: Callable[[Sequence[str]], bool]  # is this /proc cmdline one of ours?
    cwd: Path | None = None  # where the process starts (soft: the repository, for -m softnic)
    bundled: bool = False  # part of this repository: `make test` always runs it

    def command_prefix(self) -> list[str]:
        """The command line up to the switch arguments; ToolNotFound says how to get it."""
        return self._command()

    def missing(self) -> str | None:
        """Why this target cannot run here (the ToolNotFound message), or None."""
        try:
            self._command()
        except ToolNotFound as exc:
            return str(exc)
        return None


BMV2_TARGET = Target(BMV2, SIMPLE_SWITCH_GRPC, "the P4 reference switch", _bmv2_command,
                     is_bmv2_cmdline)
SOFT_TARGET = Target(SOFT, SOFTNIC, "software fast path", _softnic_command, is_softnic_cmdline,
                     cwd=REPO_ROOT, bundled=True)
DPDK_TARGET = Target(DPDK, "p4tas-swx", "the PNA program on DPDK's SWX pipeline", _dpdk_command,
                     is_dpdk_cmdline, cwd=REPO_ROOT)
TARGETS: dict[str, Target] = {BMV2: BMV2_TARGET, SOFT: SOFT_TARGET, DPDK: DPDK_TARGET}
NAMES = tuple(TARGETS)


def get(name: str) -> Target:
    """The target called `name`; ValueError if there is none."""
    try:
        return TARGETS[name]
    except KeyError:
        raise ValueError(f"unknown target {name!r}: the targets are "
                         f"{', '.join(NAMES)}") from None


def of_cmdline(argv: Sequence[str]) -> Target | None:
    """The target whose process `argv` is, or None."""
    return next((t for t in TARGETS.values() if t.matches(argv)), None)


def is_switch_cmdline(argv: Sequence[str]) -> bool:
    """True if `argv` is the process of any target (what `down` may stop)."""
    return of_cmdline(argv) is not None


# ---- selection ---------------------------------------------------------------------------------
def requested(environ: Mapping[str, str] | None = None) -> str | None:
    """The target named by $TARGET (None if unset or empty); ValueError for an unknown name."""
    value = (os.environ if environ is None else environ).get(TARGET_ENV, "").strip()
    if not value:
        return None
    if value.lower() not in TARGETS:
        raise ValueError(f"{TARGET_ENV}={value} is not a target: use {TARGET_ENV}=bmv2, "
                         f"{TARGET_ENV}=soft or {TARGET_ENV}=dpdk, or unset it (bmv2 when "
                         "simple_switch_grpc is found, else soft)")
    return value.lower()


@dataclass(frozen=True)
class Selection:
    """The target a command uses, and why (for the `target:` line every command prints)."""

    target: Target
    detail: str  # what runs: "simple_switch_grpc at /opt/p4/bin/simple_switch_grpc", ...
    why: str  # "TARGET=soft", "default", "simple_switch_grpc not found", ...

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def line(self) -> str:
        """`target: soft (software fast path; simple_switch_grpc not found)`."""
        return f"target: {self.target.name} ({self.detail}; {self.why})"


def _short(exc: ToolNotFound) -> str:
    """The first clause of a ToolNotFound message: `simple_switch_grpc not found`."""
    return str(exc).partition(": ")[0]


def select(environ: Mapping[str, str] | None = None) -> Selection:
    """The target to use: $TARGET, else bmv2 if simple_switch_grpc is found, else soft.

    Raises ValueError for an unknown $TARGET and ToolNotFound (with the fix) for TARGET=bmv2
    without simple_switch_grpc or TARGET=dpdk without DPDK. TARGET=soft is not checked here:
    softnic is part of the repository (Target.missing() says if its entry point is absent).
    """
    name = requested(environ)
    if name == SOFT:
        return Selection(SOFT_TARGET, SOFT_TARGET.description, f"{TARGET_ENV}=soft")
    if name == DPDK:
        DPDK_TARGET.command_prefix()   # ToolNotFound with the fix
        return Selection(DPDK_TARGET, DPDK_TARGET.description, f"{TARGET_ENV}=dpdk")
    try:
        path = find_simple_switch_grpc()
    except ToolNotFound as exc:
        if name == BMV2:
            raise
        return Selection(SOFT_TARGET, SOFT_TARGET.description, _short(exc))
    why = f"{TARGET_ENV}=bmv2" if name == BMV2 else "default"
    return Selection(BMV2_TARGET, f"{SIMPLE_SWITCH_GRPC} at {path}", why)


def selected_name(environ: Mapping[str, str] | None = None) -> str:
    """The selected target's name for labels, never raising (an invalid $TARGET as given)."""
    try:
        return select(environ).name
    except (ToolNotFound, ValueError):
        return (os.environ if environ is None else environ).get(TARGET_ENV, "").strip() or "?"


def tested_targets() -> list[Target]:
    """The targets `make test` runs: every one that is found, and soft always (it is part of
    the repository: if softnic's entry point is missing, its stages are skipped and say why)."""
    return [t for t in TARGETS.values()
            if t.bundled or t.missing() is None]
