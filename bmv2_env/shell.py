"""Run system commands (ip, ethtool, sysctl) and turn failures into one clear exception."""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Sequence

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0


class CommandError(RuntimeError):
    """A system command failed; the message names the command and quotes its stderr."""

    def __init__(self, argv: Sequence[str], detail: str) -> None:
        self.argv = list(argv)
        self.detail = detail.strip()
        shown = self.detail or "no error output"
        super().__init__(f"command failed: {shlex.join(self.argv)}: {shown}")


def run(argv: Sequence[str], timeout: float = DEFAULT_TIMEOUT) -> str:
    """Run `argv` without a shell and return its stdout; raise CommandError on any failure."""
    log.debug("run: %s", shlex.join(argv))
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        hint = f"{argv[0]}: command not found (install it: iproute2, ethtool, procps)"
        raise CommandError(argv, hint) from None
    except subprocess.TimeoutExpired:
        raise CommandError(argv, f"timed out after {timeout:g} s") from None
    if done.returncode != 0:
        raise CommandError(argv, f"exit code {done.returncode}: {done.stderr or done.stdout}")
    return done.stdout
