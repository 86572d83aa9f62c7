"""Start and stop the p4tas runtime daemon (`python -m runtime`) for an environment that is up
with Linux peers (`p4tas-env up --peers`).

Everything goes to the environment's state dir (bmv2_env.state.state_dir):

- the command is `python -m runtime --grpc-addr <env grpc> --control-socket
  <state dir>/control.sock --interface PORT=IP/LEN,MAC ... --host-interface <host veth>
  [--route SUBNET via GATEWAY ...] [extra args]`: this module reads the state dir's peers.json,
  routed.json (bmv2_env.routed) and portmap.json, the daemon never reads a file of ours;
- its stdout and stderr go to `runtime.log`, its PID to `runtime.pid`;
- `start` returns once the daemon printed its `READY` line, and fails with the log's tail if
  it exits first or stays silent past the timeout;
- `stop` signals by PID, SIGTERM then SIGKILL after a grace period, and only a process whose
  /proc/<pid>/cmdline carries *this* state dir's `--control-socket` argument: a PID reused by any other process is never signalled.

The daemon runs in its own session, so it outlives the command that started it (`make run`)
and a Ctrl-C in that terminal; `env.down` (`make clean-env`) stops it before the switch.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nic_contract.pipeline import PipelineFiles

from . import routed
from .peers import PeerError, PeerSet
from .processes import ManagedProcess, ProcessKind, find_pids
from .state import CONTROL_SOCKET, PEERS_FILE, RUNTIME_LOG, RUNTIME_PID, EnvRecord

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "READY"
DEFAULT_READY_TIMEOUT = 30.0
STOP_GRACE = 10.0  # the daemon resets its connections on SIGTERM before it exits
# Arguments this module sets itself; passing them as extra arguments is an error.
_MANAGED_ARGS = ("--grpc-addr", "--control-socket", "--interface", "--host-interface",
                 "--cpu-interface")


class RuntimeProcError(RuntimeError):
    """The runtime daemon could not be started or stopped; the message says why."""


@dataclass(frozen=True)
class RuntimeInfo:
    """A runtime daemon that printed READY."""

    pid: int
    state_dir: Path
    grpc_addr: str
    control_socket: Path
    log_path: Path
    ready_line: str
    command: tuple[str, ...] = ()


# ---- paths -------------------------------------------------------------------------------------
def _dir(state_dir: Path | str) -> Path:
    """The state dir as an absolute path, as it appears on the daemon's command line."""
    return Path(os.path.abspath(state_dir))


def control_socket_path(state_dir: Path | str) -> Path:
    """<state dir>/control.sock: where applications (host_lib) reach the daemon."""
    return _dir(state_dir) / CONTROL_SOCKET


def log_path(state_dir: Path | str) -> Path:
    """<state dir>/runtime.log: the daemon's stdout and stderr."""
    return _dir(state_dir) / RUNTIME_LOG


def pid_path(state_dir: Path | str) -> Path:
    """<state dir>/runtime.pid."""
    return _dir(state_dir) / RUNTIME_PID


def build_command(state_dir: Path | str, grpc_addr: str, extra: Sequence[str] = (),
                  program: Sequence[str] | None = None, *, interfaces: Sequence[str] = (),
                  host_interface: str | None = None, cpu_interface: str | None = None,
                  routes: Sequence[str] = ()) -> list[str]:
    """The daemon's command line; `program` replaces `python -m runtime` (tests use a stand-in).

    `interfaces`: PORT=IP/LEN,MAC per wire port; `host_interface`: the host port's veth;
    `cpu_interface`: the CPU port's veth, if it has one (else PacketIn/Out go over P4Runtime);
    `routes`: --route options (to the routed hosts, bmv2_env.routed)."""
    if isinstance(extra, (str, bytes)):
        raise TypeError("extra must be a sequence of arguments, not a string")
    clash = [a for a in extra if a.split("=", 1)[0] in _MANAGED_ARGS]
    if clash:
        raise ValueError(f"{', '.join(clash)}: set by bmv2_env itself, not an extra argument")
    directory = _dir(state_dir)
    prog = list(program) if program else [sys.executable, "-m", "runtime"]
    ours = [arg for text in interfaces for arg in ("--interface", text)]
    if host_interface is not None:
        ours += ["--host-interface", host_interface]
    if cpu_interface is not None:
        ours += ["--cpu-interface", cpu_interface]
    ours += routes
    return [*prog, "--grpc-addr", grpc_addr, "--control-socket", str(directory / CONTROL_SOCKET),
            *ours, *map(str, extra)]


def interface_args(peers: PeerSet) -> list[str]:
    """`--interface` values for the wire ports of `peers`: the address p4tas owns on each."""
    return [f"{p.wire_port}={p.local_ip}/{ipaddress.IPv4Network(p.subnet).prefixlen},"
            f"{p.local_mac}" for p in peers]


# ---- processes ---------------------------------------------------------------------------------
def _has_pair(argv: Sequence[str], option: str, value: str) -> bool:
    return any(a == option and b == value for a, b in zip(argv, argv[1:])) \
        or f"{option}={value}" in argv


def _kind(state_dir: Path | str) -> ProcessKind:
    """A runtime daemon of *this* state dir: `--control-socket <state dir>/control.sock` on its
    command line, exactly as build_command writes it."""
    directory = _dir(state_dir)

    def matches(argv: Sequence[str]) -> bool:
        return _has_pair(argv, "--control-socket", str(directory / CONTROL_SOCKET))
    return ProcessKind("runtime", matches, RuntimeProcError)


def _process(state_dir: Path | str) -> ManagedProcess:
    """This state dir's daemon: runtime.pid, runtime.log; errors carry 30 lines of the log."""
    return ManagedProcess(_kind(state_dir), pid_path(state_dir), log_path(state_dir), 30)


def is_runtime_process(pid: int, state_dir: Path | str) -> bool:
    """True if `pid` is a live runtime daemon of *this* state dir (a reused PID is not)."""
    return _kind(state_dir).is_ours(pid)


def read_pid(state_dir: Path | str) -> int | None:
    """The PID recorded in runtime.pid, or None (no file, or not a number)."""
    return _process(state_dir).read_pid()


def running_pid(state_dir: Path | str) -> int | None:
    """The recorded PID if that process really is this state dir's running daemon."""
    return _process(state_dir).running_pid()


def find_runtimes_for(state_dir: Path | str) -> list[int]:
    """PIDs of every daemon running for this state dir (say, one whose pid file was lost)."""
    return find_pids(_kind(state_dir).is_ours)


def terminate(pid: int, state_dir: Path | str, grace: float = STOP_GRACE) -> bool:
    """SIGTERM this state dir's daemon `pid`, SIGKILL it after `grace` s; True if it was ours.

    The command line is checked again before each signal, so a PID that changed hands
    meanwhile is left alone. Raises RuntimeProcError if the daemon survives SIGKILL.
    """
    return _kind(state_dir).terminate(pid, grace)


# ---- start / stop ------------------------------------------------------------------------------
def _ready_line(path: Path) -> str | None:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    return next((line for line in text.splitlines() if line.startswith(READY_PREFIX)), None)


def _wait_ready(process: ManagedProcess, proc: subprocess.Popen[bytes], timeout: float) -> str:
    """The daemon's READY line, once it printed it; RuntimeProcError with its log if it did not."""
    def exited(code: int) -> str:
        return f"the runtime exited with code {code} before it was ready"
    silent = f"the runtime printed no {READY_PREFIX} line within {timeout:g} s"
    return process.wait_ready(proc, lambda: _ready_line(process.log_path), timeout, exited,
                              silent)


def start(state_dir: Path | str, grpc_addr: str | None = None, extra: Sequence[str] = (), *,
          timeout: float = DEFAULT_READY_TIMEOUT, program: Sequence[str] | None = None,
          env: dict[str, str] | None = None) -> RuntimeInfo:
    """Start the daemon for the environment in `state_dir` and wait for its READY line.

    `grpc_addr` defaults to the one the environment recorded (env.json). `extra` are more
    daemon options (`--time-wait 0.5` ...). `program` replaces `python -m runtime`, `env` the
    environment (tests). On failure the daemon is stopped, its log kept, and RuntimeProcError
    carries the log's tail.
    """
    directory = _dir(state_dir)
    record = EnvRecord.load(directory)
    if record is None:
        raise RuntimeProcError(f"no environment is up in {directory}: bring it up with "
                               "`python -m bmv2_env up --peers` (or `make run`)")
    grpc_addr = grpc_addr or record.grpc_addr
    if not (directory / PEERS_FILE).is_file():
        raise RuntimeProcError(f"{directory / PEERS_FILE} missing: the runtime takes its "
                               "interfaces from the Linux peers of `python -m bmv2_env up "
                               "--peers`")
    try:
        interfaces = interface_args(PeerSet.load(directory))
        routes = [arg for host in routed.load(directory) for arg in host.route_args()]
    except (PeerError, ValueError) as exc:
        raise RuntimeProcError(str(exc)) from None
    running = running_pid(directory)
    if running is not None:
        raise RuntimeProcError(f"a runtime for {directory} already runs (pid {running}); stop "
                               "it first (`python -m bmv2_env down` stops everything)")
    files = PipelineFiles.for_target(record.target)
    cmd = build_command(directory, grpc_addr, [*files.target_args, *extra], program,
                        interfaces=interfaces, host_interface=record.portmap.host_link.peer_iface,
                        cpu_interface=cpu.peer_iface if (cpu := record.portmap.cpu_link) else None,
                        routes=routes)
    process = _process(directory)
    process.pid_path.unlink(missing_ok=True)
    log.info("starting: %s", " ".join(cmd))
    child_env = dict(os.environ if env is None else env)
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    proc = process.spawn(cmd, cwd=REPO_ROOT, env=child_env)
    try:
        line = _wait_ready(process, proc, timeout)
    except BaseException:
        stop(directory)
        raise
    log.info("runtime pid %d ready: %s", proc.pid, line)
    return RuntimeInfo(proc.pid, directory, grpc_addr, control_socket_path(directory),
                       log_path(directory), line, tuple(cmd))


def stop(state_dir: Path | str, grace: float = STOP_GRACE) -> int | None:
    """Stop the daemon named by runtime.pid; remove the pid file and the control socket.

    Returns the PID stopped, or None if there was no pid file or it named a process that is
    not this state dir's daemon (which is then left alone).
    """
    directory = _dir(state_dir)
    process = _process(directory)
    if process.read_pid() is None:
        if process.pid_path.exists():
            log.warning("%s is unreadable: removing it", process.pid_path)
            process.pid_path.unlink(missing_ok=True)
        return None
    stopped = process.stop(grace)
    _remove_socket(directory)
    return stopped


def stop_all(state_dir: Path | str, grace: float = STOP_GRACE) -> list[int]:
    """stop(), then any other daemon of this state dir found in /proc; return the PIDs stopped."""
    directory = _dir(state_dir)
    stopped = [pid] if (pid := stop(directory, grace)) is not None else []
    for other in find_runtimes_for(directory):
        if terminate(other, directory, grace):
            stopped.append(other)
    if stopped:
        _remove_socket(directory)
    return stopped


def _remove_socket(directory: Path) -> None:
    """Delete a leftover control socket, unless a daemon of this state dir still serves it."""
    path = directory / CONTROL_SOCKET
    if (path.is_socket() or path.is_symlink()) and not find_runtimes_for(directory):
        path.unlink(missing_ok=True)
