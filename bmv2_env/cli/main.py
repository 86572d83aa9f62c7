"""p4tas-env's entry point (`p4tas-env`, `python -m bmv2_env`): parse, run the command, map its
errors to an exit status."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from .arguments import parse_args
from .commands import cmd_down, cmd_ptf, cmd_status, cmd_targets, cmd_up
from .errors import ENV_ERRORS, EXIT_FAIL, EXIT_INTERRUPTED, report_error
from .run import cmd_run

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up, "run": cmd_run, "down": cmd_down, "status": cmd_status, "ptf": cmd_ptf,
    "targets": cmd_targets,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `p4tas-env` and `python -m bmv2_env`; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ENV_ERRORS as exc:
        report_error(args.command, exc)
        return EXIT_FAIL

