"""Start, check and stop the example echo server (examples/echo_server.py) of an environment
whose runtime daemon runs (`p4tas-env run`).

Like the runtime (runtime_proc), everything goes to the environment's state dir:

- the command is `python examples/echo_server.py --host <p4tas ip> --port <port> --ready-ns
  <peer namespace>`, with `P4TAS_CONTROL_SOCKET=<state dir>/control.sock` in its environment;
- its output goes to `echo.log`, its PID to `echo.pid`; it runs in its own session;
- `start` returns once the server printed its `READY ns=... addr=...` line and a Linux client in
  the peer namespace got an echo back (`check`); it fails with the log's tail otherwise;
- `stop` signals by PID (SIGTERM, then SIGKILL after a grace period), and only a process whose
  command line runs examples/echo_server.py *and* whose environment names this state dir's
  control socket: a reused PID, or another environment's server, is never signalled.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .peers import Peer, netns_argv
from .processes import ManagedProcess, ProcessKind, find_pids
from .state import CONTROL_SOCKET, ECHO_LOG, ECHO_PID

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
SCRIPT = REPO_ROOT / "examples" / "echo_server.py"
CONTROL_SOCKET_ENV = "P4TAS_CONTROL_SOCKET"  # host_lib's variable (host_lib/control_channel.py)
DEFAULT_PORT = 7  # the echo service's port
READY_PREFIX = "READY "
DEFAULT_READY_TIMEOUT = 30.0
STOP_GRACE = 5.0  # the server lingers 2 s for its clients' FINs
CHECK_TIMEOUT = 10.0
# What check() sends: bytes that are easy to recognise in a capture.
CHECK_PAYLOAD = b"p4tas echo check\n"


class EchoProcError(RuntimeError):
    """The echo server could not be started, checked or stopped; the message says why."""


@dataclass(frozen=True)
class EchoInfo:
    """An echo server that printed READY and answered a Linux client."""

    pid: int
    host: str
    port: int
    netns: str
    log_path: Path
    command: tuple[str, ...] = ()

    @property
    def ready_line(self) -> str:
        """The line `run` prints (exactly this form; scripts wait for it)."""
        return f"READY ns={self.netns} addr={self.host}:{self.port}"


def _dir(state_dir: Path | str) -> Path:
    return Path(os.path.abspath(state_dir))


def log_path(state_dir: Path | str) -> Path:
    """<state dir>/echo.log: the server's output."""
    return _dir(state_dir) / ECHO_LOG


def pid_path(state_dir: Path | str) -> Path:
    """<state dir>/echo.pid."""
    return _dir(state_dir) / ECHO_PID


def build_command(host: str, port: int, netns: str, python: str = sys.executable) -> list[str]:
    """The server's command line."""
    return [python, str(SCRIPT), "--host", host, "--port", str(port), "--ready-ns", netns]


def _environ(pid: int) -> dict[str, str]:
    """The environment of `pid` ({} if unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {key: value for key, _, value in pairs}


@dataclass(frozen=True)
class _EchoKind(ProcessKind):
    """An echo server of *this* state dir: the script on its command line and the state dir's
    control socket in its environment."""

    control_socket: str = ""

    def is_ours(self, pid: int) -> bool:
        return (super().is_ours(pid)
                and _environ(pid).get(CONTROL_SOCKET_ENV) == self.control_socket)


def _kind(state_dir: Path | str) -> _EchoKind:
    def matches(argv: Sequence[str]) -> bool:
        return str(SCRIPT) in argv[:3]
    return _EchoKind("echo server", matches, EchoProcError,
                     str(_dir(state_dir) / CONTROL_SOCKET))


def _process(state_dir: Path | str) -> ManagedProcess:
    return ManagedProcess(_kind(state_dir), pid_path(state_dir), log_path(state_dir), 20)


def running_pid(state_dir: Path | str) -> int | None:
    """The recorded PID if that process really is this state dir's running echo server."""
    return _process(state_dir).running_pid()


def find_servers_for(state_dir: Path | str) -> list[int]:
    """PIDs of every echo server of this state dir (say, one whose pid file was lost)."""
    return find_pids(_kind(state_dir).is_ours)


def check(peer: Peer | str, host: str, port: int, timeout: float = CHECK_TIMEOUT) -> None:
    """A Linux client in the peer's namespace connects, sends CHECK_PAYLOAD and reads it back;
    EchoProcError if it does not."""
    code = client_code(host, port, CHECK_PAYLOAD, timeout)
    try:
        done = subprocess.run(netns_argv(peer, ["python3", "-c", code]), capture_output=True,
                              text=True, timeout=timeout + 5)
    except subprocess.TimeoutExpired:
        raise EchoProcError(f"no echo from {host}:{port} within {timeout + 5:g} s") from None
    if done.returncode != 0 or done.stdout.strip() != "ok":
        detail = (done.stderr.strip().splitlines() or [done.stdout.strip()])[-1:]
        raise EchoProcError(f"the echo check against {host}:{port} failed: "
                            f"{' '.join(detail) or f'exit code {done.returncode}'}")


def client_code(host: str, port: int, payload: bytes, timeout: float = CHECK_TIMEOUT) -> str:
    """python3 -c code: connect, send `payload`, shut down the sending side, read until EOF,
    print ok if the bytes came back."""
    return ("import socket; "
            f"s = socket.create_connection(({host!r}, {port}), timeout={timeout:g}); "
            f"data = {payload!r}; s.sendall(data); s.shutdown(socket.SHUT_WR); "
            "back = b''.join(iter(lambda: s.recv(65536), b'')); s.close(); "
            "print('ok' if back == data else f'mismatch: {back!r}')")


def start(state_dir: Path | str, peer: Peer, port: int = DEFAULT_PORT, *,
          timeout: float = DEFAULT_READY_TIMEOUT) -> EchoInfo:
    """Start the echo server on the p4tas address facing `peer` and wait until it answers a
    Linux client in the peer's namespace. On failure the server is stopped, its log kept, and
    EchoProcError carries the log's tail."""
    directory = _dir(state_dir)
    control_socket = directory / CONTROL_SOCKET
    if not control_socket.is_socket():
        raise EchoProcError(f"{control_socket} is not there: the echo server needs the runtime "
                            "daemon (`python -m bmv2_env run`)")
    running = running_pid(directory)
    if running is not None:
        raise EchoProcError(f"an echo server for {directory} already runs (pid {running})")
    cmd = build_command(peer.local_ip, port, peer.netns)
    process = _process(directory)
    process.pid_path.unlink(missing_ok=True)
    child_env = dict(os.environ, PYTHONUNBUFFERED="1")
    child_env[CONTROL_SOCKET_ENV] = str(control_socket)
    log.info("starting: %s=%s %s", CONTROL_SOCKET_ENV, control_socket, " ".join(cmd))
    proc = process.spawn(cmd, cwd=REPO_ROOT, env=child_env)
    info = EchoInfo(proc.pid, peer.local_ip, port, peer.netns, process.log_path, tuple(cmd))

    def ready() -> str | None:
        try:
            text = process.log_path.read_text(errors="replace")
        except OSError:
            return None
        return next((l for l in text.splitlines() if l.startswith(READY_PREFIX)), None)
    try:
        process.wait_ready(proc, ready, timeout,
                           lambda code: f"the echo server exited with code {code} before it "
                                        "was ready",
                           f"the echo server printed no READY line within {timeout:g} s")
        try:
            check(peer, peer.local_ip, port)
        except EchoProcError as exc:
            raise process.failure(str(exc)) from None
    except BaseException:
        stop(directory)
        raise
    log.info("echo server pid %d ready on %s:%d", proc.pid, peer.local_ip, port)
    return info


def alive(state_dir: Path | str) -> bool:
    """True while this state dir's recorded echo server runs."""
    return running_pid(state_dir) is not None


def stop(state_dir: Path | str, grace: float = STOP_GRACE) -> int | None:
    """Stop the server named by echo.pid; remove the pid file. The PID stopped, or None."""
    process = _process(state_dir)
    if process.read_pid() is None:
        process.pid_path.unlink(missing_ok=True)
        return None
    return process.stop(grace)


def stop_all(state_dir: Path | str, grace: float = STOP_GRACE) -> list[int]:
    """stop(), then any other echo server of this state dir found in /proc."""
    stopped = [pid] if (pid := stop(state_dir, grace)) is not None else []
    kind = _kind(state_dir)
    for other in find_servers_for(state_dir):
        if kind.terminate(other, grace):
            stopped.append(other)
    return stopped
