"""Managed background processes: a pid file and a log file, /proc checks before every signal.

A ProcessKind says what a process is (its name in messages, a predicate on its command line,
the error it raises); a ManagedProcess adds where its pid file and log go. A PID is signalled
only while /proc/<pid>/cmdline still matches, so a reused PID is never killed; stopping is
SIGTERM, then SIGKILL after a grace period. Children started here are reaped (`_children`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

log = logging.getLogger(__name__)

POLL = 0.05
KILL_WAIT = 5.0  # how long a SIGKILLed process may take to disappear
T = TypeVar("T")

# Processes started by this process, so that their exit is reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


# ---- /proc -------------------------------------------------------------------------------------
def cmdline(pid: int) -> list[str]:
    """The arguments of `pid` from /proc ([] if it is gone, or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie; reaps it if it is our child."""
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def reap(pid: int) -> None:
    """Forget our child `pid`, collecting its exit status if it already exited."""
    child = _children.pop(pid, None)
    if child is not None:
        child.poll()


def find_pids(test: Callable[[int], bool]) -> list[int]:
    """The PIDs in /proc for which `test` holds, sorted."""
    return sorted(int(e.name) for e in Path("/proc").iterdir()
                  if e.name.isdigit() and test(int(e.name)))


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# ---- signals -----------------------------------------------------------------------------------
def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`, and its process group if it leads one (spawn() makes it a session leader)."""
    try:
        leader = os.getpgid(pid) == pid
        os.killpg(pid, sig) if leader else os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` s for `pid` to go; True if it did."""
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)
    return True


@dataclass(frozen=True)
class ProcessKind:
    """What a managed process is: its name in messages, its command line, its error type."""

    name: str
    matches: Callable[[Sequence[str]], bool]
    error: type[Exception] = RuntimeError

    def is_ours(self, pid: int) -> bool:
        """True if `pid` is a live process of this kind (a reused PID is not)."""
        if pid <= 0 or pid == os.getpid():
            return False
        return self.matches(cmdline(pid)) and alive(pid)

    def terminate(self, pid: int, grace: float) -> bool:
        """SIGTERM `pid`, SIGKILL it after `grace` s; True if it was ours, error if it survives.

        The command line is checked again before each signal: a PID that changed hands is left
        alone.
        """
        signalled = False
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, KILL_WAIT)):
            if not self.is_ours(pid):
                if not signalled:
                    log.info("pid %d is not our %s: not signalling it", pid, self.name)
                return signalled
            _signal(pid, sig)
            signalled = True
            if _wait_gone(pid, wait):
                log.info("stopped %s pid %d (%s)", self.name, pid, sig.name)
                return True
            log.warning("%s pid %d still running %g s after %s", self.name, pid, wait, sig.name)
        raise self.error(f"{self.name} pid {pid} survived SIGKILL")


@dataclass(frozen=True)
class ManagedProcess:
    """A background process of `kind` whose PID is in `pid_path` and output in `log_path`."""

    kind: ProcessKind
    pid_path: Path
    log_path: Path
    tail_lines: int = 20  # how much of the log an error carries

    def read_pid(self) -> int | None:
        """The PID in the pid file, or None (no file, or not a number)."""
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def running_pid(self) -> int | None:
        """The recorded PID if that process really is a running process of this kind."""
        pid = self.read_pid()
        return pid if pid is not None and self.kind.is_ours(pid) else None

    def spawn(self, cmd: Sequence[str], *, cwd: Path | None = None,
              env: Mapping[str, str] | None = None, umask: int = -1) -> subprocess.Popen[bytes]:
        """Start `cmd` in its own session, output to the log file; record its PID. `umask`
        (-1: ours) applies to what the process creates, sockets included."""
        with open(self.log_path, "wb") as log_file:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log_file, stderr=subprocess.STDOUT,
                                    start_new_session=True, umask=umask)
        _children[proc.pid] = proc
        self.pid_path.write_text(f"{proc.pid}\n")
        return proc

    def failure(self, message: str) -> Exception:
        """The kind's error for `message`, carrying the log's tail."""
        tail = log_tail(self.log_path, self.tail_lines)
        if not tail:
            return self.kind.error(f"{message} ({self.log_path} is empty)")
        return self.kind.error(f"{message}\n--- last lines of {self.log_path} ---\n{tail}")

    def wait_ready(self, proc: subprocess.Popen[bytes], ready: Callable[[], T | None],
                   timeout: float, exited: Callable[[int], str], silent: str,
                   poll: float = POLL) -> T:
        """Poll `ready` until it returns a value; fail with exited(code) or `silent` and the log."""
        deadline = time.monotonic() + timeout
        while (result := ready()) is None:
            if proc.poll() is not None:
                raise self.failure(exited(proc.returncode))
            if time.monotonic() >= deadline:
                raise self.failure(silent)
            time.sleep(poll)
        return result

    def stop(self, grace: float) -> int | None:
        """Terminate the recorded process if it is ours, remove the pid file; the PID stopped."""
        pid = self.read_pid()
        if pid is None:
            return None
        stopped = pid if self.kind.terminate(pid, grace) else None
        reap(pid)
        self.pid_path.unlink(missing_ok=True)
        return stopped
