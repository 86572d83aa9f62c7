"""`p4tas-env run`: the whole stack (up --peers, the runtime daemon, the echo server) in the
foreground until a signal or a part dying, or left running with --background."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .. import echo_proc, env, runtime_proc, switch, targets
from ..echo_proc import EchoInfo, EchoProcError
from ..runtime_proc import RuntimeProcError
from ..state import SWITCH_LOG, EnvRecord
from .arguments import options
from .commands import select_target
from .describe import describe_foreground, describe_run, stop_hint
from .errors import (ENV_ERRORS, EXIT_FAIL, EXIT_OK, report_error, signals_ignored,
                     signals_interrupt)

# How often the foreground `run` checks that the switch, the runtime and the echo server live.
WATCH_INTERVAL = 1.0


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: see bmv2_env.cli.arguments.build_parser."""
    opts = dataclasses.replace(options(args), peers=True, pipeline=True, cpu_interface=True,
                               target=select_target().name)
    extra = runtime_extra(args)
    runtime_proc.build_command(opts.state_dir, "-", extra)  # bad extra arguments: fail now
    with signals_interrupt():  # Ctrl-C or SIGTERM mid-way: tear down what was made
        result = env.up(opts)
        try:
            info = runtime_proc.start(result.state_dir, result.record.grpc_addr, extra,
                                      timeout=args.runtime_timeout)
            echo = None
            if not args.background:
                peer = result.peers.peer(1)  # type: ignore[union-attr]
                echo = echo_proc.start(result.state_dir, peer, args.echo_port)
        except (RuntimeProcError, EchoProcError) as exc:
            with signals_ignored():
                _teardown_quietly(opts.prefix)
            report_error("run", exc)
            print(f"run: everything torn down; logs kept in {opts.state_dir}", file=sys.stderr)
            return EXIT_FAIL
        except BaseException:
            with signals_ignored():
                _teardown_quietly(opts.prefix)
            raise
    if echo is None:
        print(describe_run(result, info))
        return EXIT_OK
    return _foreground(result, info, echo)


def runtime_extra(args: argparse.Namespace) -> list[str]:
    """The runtime's extra arguments: the user's, plus the metrics port unless they set one."""
    extra = list(args.extra)
    if args.metrics_port and not any(a.split("=")[0] == "--metrics-port" for a in extra):
        extra += ["--metrics-port", str(args.metrics_port)]
    return extra



def _foreground(result: env.UpResult, info: runtime_proc.RuntimeInfo, echo: EchoInfo) -> int:
    """Print what runs and the READY line, wait for SIGINT/SIGTERM (or a part dying), tear down."""
    prefix, directory = result.record.portmap.prefix, result.state_dir
    stop = threading.Event()
    caught: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum).name)
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    died = None
    try:
        print(describe_foreground(result, info, echo), flush=True)
        print(echo.ready_line, flush=True)  # exactly one such line: scripts wait for it
        while not stop.wait(WATCH_INTERVAL):
            died = _what_died(directory)
            if died:
                break
    finally:
        for sig in previous:  # no second Ctrl-C may interrupt the teardown
            signal.signal(sig, signal.SIG_IGN)
    try:
        if died:
            print(f"run: error: {died}; tearing everything down (logs kept in {directory})",
                  file=sys.stderr, flush=True)
        else:
            print(f"run: {caught[0] if caught else 'stopping'}: tearing everything down",
                  flush=True)
        return _foreground_teardown(prefix, directory, keep_logs=bool(died),
                                    code=EXIT_FAIL if died else EXIT_OK)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _what_died(directory: Path) -> str | None:
    """Which part of a running stack is gone (None if all run)."""
    if not echo_proc.alive(directory):
        return f"the echo server exited (see {echo_proc.log_path(directory)})"
    if runtime_proc.running_pid(directory) is None:
        return f"the runtime exited (see {runtime_proc.log_path(directory)})"
    if switch.running_pid(directory) is None:
        record = EnvRecord.load(directory)
        name = targets.get(record.target).process if record else "the switch"
        return f"{name} exited (see {directory / SWITCH_LOG})"
    return None


def _foreground_teardown(prefix: str, directory: Path, keep_logs: bool, code: int) -> int:
    """Stop the echo server, then everything `down` stops; say what was stopped."""
    try:
        echo_pids = echo_proc.stop_all(directory)
        result = env.down(prefix, keep_logs=keep_logs)
    except ENV_ERRORS as exc:
        report_error("run: teardown", exc)
        print(f"run: clean up with: {stop_hint(prefix)}", file=sys.stderr)
        return EXIT_FAIL
    parts = []
    if echo_pids:
        parts.append(f"echo server pid {', '.join(map(str, echo_pids))}")
    if result.runtime_pids:
        parts.append(f"runtime pid {', '.join(map(str, result.runtime_pids))}")
    parts += result.switches_stopped()
    stopped = "; ".join(parts) or "nothing was running any more"
    removed = " ".join(result.removed) or "nothing"
    print(f"run: stopped {stopped}; deleted {removed}", flush=True)
    return code


def _teardown_quietly(prefix: str) -> None:
    """down (keeping logs) after a failure, without hiding the failure behind a cleanup error."""
    try:
        env.down(prefix, keep_logs=True)
    except ENV_ERRORS as exc:
        report_error("run: teardown", exc)
