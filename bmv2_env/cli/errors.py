"""How p4tas-env commands end: exit statuses, the errors reported as one line, and signal handling
that turns Ctrl-C into a teardown."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..echo_proc import EchoProcError
from ..peers import PeerError
from ..ptf_runner import PtfError
from ..runtime_proc import RuntimeProcError
from ..shell import CommandError
from ..switch import SwitchError
from ..toolchain import ToolNotFound
from nic_contract.pipeline import PipelineError

EXIT_OK, EXIT_FAIL, EXIT_INTERRUPTED = 0, 1, 130
ENV_ERRORS = (ToolNotFound, CommandError, SwitchError, PipelineError, PtfError, PeerError,
              RuntimeProcError, EchoProcError, ValueError, OSError)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    return (str(exc) or type(exc).__name__).splitlines()[0]


def report_error(command: str, exc: BaseException) -> None:
    """One line on stderr naming the command and the error; details (a log tail) follow."""
    first, _, rest = str(exc).partition("\n")
    print(f"{command}: error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so that `finally` tears down."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM (a second Ctrl-C must not interrupt the teardown)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
