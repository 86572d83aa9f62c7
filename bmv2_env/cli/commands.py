"""The p4tas-env commands up, down, status, targets and ptf (`run` is in bmv2_env.cli.run)."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from .. import env, ptf_runner, system_deps, targets
from ..ptf_runner import PtfCounts
from ..state import PTF_LOG, SWITCH_LOG
from ..targets import Selection, Target
from ..toolchain import ToolNotFound
from nic_contract.pipeline import PipelineFiles
from .arguments import options
from .describe import describe_status, describe_up
from .errors import (ENV_ERRORS, EXIT_FAIL, EXIT_INTERRUPTED, EXIT_OK, first_line, report_error,
                     signals_ignored, signals_interrupt)


def select_target() -> Selection:
    """The target of this command (TARGET, else the default); prints the `target:` line."""
    selection = targets.select()
    print(selection.line, flush=True)
    return selection


def cmd_up(args: argparse.Namespace) -> int:
    """`up`: see bmv2_env.cli.arguments.build_parser."""
    opts = dataclasses.replace(options(args), target=select_target().name)
    with signals_interrupt():  # Ctrl-C or SIGTERM mid-way: env.up removes what it made
        result = env.up(opts)
    print(describe_up(result))
    return EXIT_OK


def cmd_down(args: argparse.Namespace) -> int:
    """`down`: see bmv2_env.cli.arguments.build_parser."""
    result = env.down(args.prefix)
    if result.nothing:
        print(f"nothing to clean for '{args.prefix}'")
        return EXIT_OK
    parts = []
    if result.runtime_pids:
        parts.append(f"stopped runtime pid {', '.join(map(str, result.runtime_pids))}")
    parts += [f"stopped {item}" for item in result.switches_stopped()]
    if result.removed:
        parts.append(f"deleted {' '.join(result.removed)}")  # veths (both ends) and namespaces
    if result.state_files:
        parts.append(f"cleared {env.state_dir(args.prefix)}")
    print(f"down '{args.prefix}': " + "; ".join(parts))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`status`: see bmv2_env.cli.arguments.build_parser."""
    select_target()  # what `up` and `run` would use; the environment's own target is in the body
    st = env.status(args.prefix)
    print(describe_status(st))
    return EXIT_OK if st.up or st.nothing else EXIT_FAIL


def cmd_targets(args: argparse.Namespace) -> int:
    """`targets`: see bmv2_env.cli.arguments.build_parser."""
    if args.tested:
        print(" ".join(t.name for t in targets.tested_targets()))
        return EXIT_OK
    try:
        print(targets.select().line)
    except (ToolNotFound, ValueError) as exc:
        print(f"target: none: {first_line(exc)}")
    for target in targets.TARGETS.values():
        missing = target.missing()
        where = f"NOT AVAILABLE: {missing}" if missing else " ".join(target.command_prefix())
        print(f"  {target.name:<5} {target.description}: {where}")
    print(f"make test runs: {' '.join(t.name for t in targets.tested_targets())}")
    return EXIT_OK


def _ptf_skip_reason(target: Target) -> tuple[str, str] | None:
    """(short, full) reason to skip the PTF suite on `target`, or None to run it."""
    missing = target.missing()
    if missing:  # only the soft target can get here: TARGET=bmv2 without bmv2 is an error
        return missing.partition(": ")[0], missing
    if os.geteuid() != 0:
        return "needs root", "creating veths and running ptf needs root (run as root or with sudo)"
    lacking = system_deps.skip_reason()
    if lacking is not None:
        return lacking.partition(":")[0], lacking
    return None


def _run_suite(opts: env.EnvOptions, extra: Sequence[str],
               stage: str) -> tuple[PtfCounts, str | None]:
    """up, then ptf; return the counts and a note for the report line."""
    result = env.up(opts)
    record = result.record
    print(f"{stage}: environment up: {targets.get(record.target).process} pid {result.pid}, "
          f"gRPC {record.grpc_addr}, {record.portmap.num_wire_ports} wire ports + host port",
          flush=True)
    cmd = ptf_runner.build_command(record.portmap, record.grpc_addr, result.state_dir,
                                   PipelineFiles.for_target(record.target), extra,
                                   target=record.target)
    code, output = ptf_runner.run(cmd)
    counts = ptf_runner.parse_output(output)
    if counts is None:
        return PtfCounts(failed=1), f"ptf exited with code {code} before its test summary"
    if code != 0 and counts.ok:
        return PtfCounts(counts.passed, 1, counts.skipped), f"ptf exited with code {code}"
    return counts, None


def cmd_ptf(args: argparse.Namespace) -> int:
    """`ptf`: see bmv2_env.cli.arguments.build_parser."""
    try:
        selection = select_target()
    except (ToolNotFound, ValueError) as exc:  # TARGET=bmv2 without bmv2, or TARGET=nonsense
        stage = ptf_runner.stage_name(targets.selected_name())
        report_error("ptf", exc)
        line = PtfCounts(failed=1).line(f"error: {first_line(exc)}", stage)
        print(line)
        ptf_runner.append_report(line)
        return EXIT_FAIL
    stage = ptf_runner.stage_name(selection.name)
    skip = _ptf_skip_reason(selection.target)
    if skip is not None:
        print(f"{stage}: SKIPPED: {skip[1]}")
        ptf_runner.append_report(PtfCounts(skipped=ptf_runner.count_tests()).line(skip[0], stage))
        return EXIT_OK
    opts = dataclasses.replace(options(args), target=selection.name)
    exit_code = EXIT_FAIL
    try:
        with signals_interrupt():
            counts, note = _run_suite(opts, args.extra, stage)
            exit_code = EXIT_OK if counts.ok else EXIT_FAIL
    except KeyboardInterrupt:
        counts, note, exit_code = PtfCounts(failed=1), "interrupted", EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - whatever broke, the report must say so
        report_error("ptf", exc)
        counts, note = PtfCounts(failed=1), f"error: {first_line(exc)}"
    finally:
        with signals_ignored():
            exit_code = _teardown(opts.prefix, exit_code)
    line = counts.line(note, stage)
    print(line)
    kept = [name for name in (PTF_LOG, "ptf.pcap", SWITCH_LOG) if (opts.state_dir / name).exists()]
    if kept:
        print(f"{stage}: logs kept in {opts.state_dir}: {', '.join(kept)}")
    ptf_runner.append_report(line)
    return exit_code


def _teardown(prefix: str, exit_code: int) -> int:
    """down (keeping logs); a failing teardown turns the exit code into a failure."""
    try:
        env.down(prefix, keep_logs=True)
    except ENV_ERRORS as exc:
        report_error("ptf: teardown", exc)
        return exit_code or EXIT_FAIL
    return exit_code
