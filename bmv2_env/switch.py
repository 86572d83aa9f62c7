"""Start and stop the switch (a target's process: simple_switch_grpc, or softnic) on a PortMap's
interfaces; PID and log go to the state dir. The targets take the same arguments."""

from __future__ import annotations

import logging
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import targets
from .portmap import PortMap
from .processes import ManagedProcess, ProcessKind, cmdline, find_pids
from .state import P4RUNTIME_SOCKET, SWITCH_LOG, SWITCH_PID
from .targets import BMV2, Target
from .topology import interface_pattern

log = logging.getLogger(__name__)

# P4Runtime has no authentication: whoever connects can become primary controller and rewrite
# the fast path. By default the switch listens on a UNIX socket that only its owner (root) can
# connect to; a TCP port, on loopback only, is an explicit choice (`--grpc-port`).
GRPC_HOST = "127.0.0.1"
UNIX_SCHEME = "unix:"
DEFAULT_START_TIMEOUT = 20.0
STOP_GRACE = 5.0


class SwitchError(RuntimeError):
    """The switch (simple_switch_grpc, softnic) could not be started or stopped."""


@dataclass(frozen=True)
class SwitchConfig:
    """How to run one switch of `target` (bmv2_env.targets: "bmv2" or "soft")."""

    portmap: PortMap
    state_dir: Path
    grpc_port: int | None = None   # None: the UNIX socket in state_dir
    log: bool = False
    device_id: int = 0
    target: str = BMV2

    def __post_init__(self) -> None:
        if self.grpc_port is not None and (
                isinstance(self.grpc_port, bool) or not isinstance(self.grpc_port, int)
                or not 1 <= self.grpc_port <= 65535):
            raise ValueError(f"gRPC port must be an integer from 1 to 65535, "
                             f"got {self.grpc_port!r}")
        targets.get(self.target)  # ValueError for an unknown target

    @property
    def target_info(self) -> Target:
        """The target this switch runs."""
        return targets.get(self.target)

    @property
    def grpc_addr(self) -> str:
        """The P4Runtime server's gRPC address: unix:PATH, or 127.0.0.1:PORT."""
        if self.grpc_port is None:
            return f"{UNIX_SCHEME}{self.state_dir / P4RUNTIME_SOCKET}"
        return f"{GRPC_HOST}:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        """The switch's stdout/stderr (and its packet log with `log`)."""
        return self.state_dir / SWITCH_LOG

    @property
    def pid_path(self) -> Path:
        """The file holding the switch's PID."""
        return self.state_dir / SWITCH_PID


def build_command(program: Path | str | Sequence[str], config: SwitchConfig) -> list[str]:
    """The switch command line for `config` (no P4 program: it is pushed over P4Runtime).

    `program` is a binary (simple_switch_grpc) or a command prefix (`python -m softnic`): the
    arguments after it are the same for every target.
    """
    prefix = [str(program)] if isinstance(program, (str, Path)) else [str(a) for a in program]
    cmd = [*prefix, "--no-p4", "--device-id", str(config.device_id),
           *config.portmap.bmv2_interface_args()]
    if config.log:
        cmd.append("--log-console")
    # A CPU port with an interface is an ordinary port to the switch (-i above); --cpu-port
    # would hand its packets to P4Runtime instead.
    cpu = [] if config.portmap.cpu_interface else ["--cpu-port", str(config.portmap.cpu_port)]
    return cmd + ["--", "--grpc-server-addr", config.grpc_addr, *cpu]


# ---- processes -------------------------------------------------------------------------------
def _is_switch_cmdline(argv: Sequence[str]) -> bool:
    """True if `argv` runs any target's switch: simple_switch_grpc (also as a wrapper script run
    by its interpreter, `sh .../simple_switch_grpc`) or `python -m softnic`."""
    return targets.is_switch_cmdline(argv)


SWITCH = ProcessKind("switch", _is_switch_cmdline, SwitchError)


def _process(state_dir: Path) -> ManagedProcess:
    """The switch whose pid file and log are in `state_dir`."""
    return ManagedProcess(SWITCH, state_dir / SWITCH_PID, state_dir / SWITCH_LOG)


def is_switch_process(pid: int) -> bool:
    """True if `pid` is a live switch of any target (guards against a reused PID)."""
    return _is_switch_cmdline(cmdline(pid))


def process_name(pid: int) -> str:
    """What `pid` is called in messages: its target's process name, or `switch`."""
    target = targets.of_cmdline(cmdline(pid))
    return target.process if target is not None else "switch"


def terminate(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM `pid`, SIGKILL it after `grace` seconds; raise SwitchError if it survives."""
    SWITCH.terminate(pid, grace)


def read_pid(state_dir: Path) -> int | None:
    """The PID recorded in the state dir, or None."""
    return _process(state_dir).read_pid()


def running_pid(state_dir: Path) -> int | None:
    """The recorded PID if that process really is a running switch (of any target)."""
    return _process(state_dir).running_pid()


def find_switches_on(prefix: str) -> list[int]:
    """PIDs of any switch (simple_switch_grpc, softnic) bound to interfaces of `prefix` (say, a
    lost state dir's)."""
    pattern = interface_pattern(prefix)

    def on_prefix(pid: int) -> bool:
        argv = cmdline(pid)
        ifaces = [a.split("@", 1)[1] for a in argv if "@" in a]
        return _is_switch_cmdline(argv) and any(pattern.fullmatch(name) for name in ifaces)
    return find_pids(on_prefix)


# ---- start / stop ------------------------------------------------------------------------------
def unix_path(grpc_addr: str) -> Path | None:
    """The socket path of a unix:PATH address, None for host:port."""
    return Path(grpc_addr[len(UNIX_SCHEME):]) if grpc_addr.startswith(UNIX_SCHEME) else None


def grpc_reachable(grpc_addr: str) -> bool:
    """True if something accepts connections at `grpc_addr` (unix:PATH or host:port)."""
    path = unix_path(grpc_addr)
    try:
        if path is not None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(str(path))
        else:
            host, port = grpc_addr.rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=0.5):
                pass
        return True
    except (OSError, ValueError):
        return False


def start(config: SwitchConfig, program: Path | Sequence[str] | None = None,
          timeout: float = DEFAULT_START_TIMEOUT) -> int:
    """Start the switch in the background, wait for its gRPC port, return its PID.

    `program`: the binary or command prefix (build_command); by default the one of
    config.target (ToolNotFound if it is not there).
    """
    target = config.target_info
    program = program or target.command_prefix()
    if grpc_reachable(config.grpc_addr):
        raise SwitchError(f"{config.grpc_addr} is already in use (another switch? "
                          f"`make clean-env`, or choose another --prefix or --grpc-port)")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    socket_path = unix_path(config.grpc_addr)
    if socket_path is not None:
        socket_path.unlink(missing_ok=True)   # a dead switch's socket: nobody answers on it
    cmd = build_command(program, config)
    log.info("starting %s: %s", target.name, " ".join(cmd))
    process = _process(config.state_dir)
    # Its P4Runtime socket is created 0700 (no authentication: only its user may connect).
    proc = process.spawn(cmd, cwd=target.cwd, umask=0o077)
    try:
        _wait_for_grpc(process, proc, config, timeout)
    except SwitchError:
        stop(config.state_dir)
        raise
    return proc.pid


def _wait_for_grpc(process: ManagedProcess, proc: subprocess.Popen[bytes], config: SwitchConfig,
                   timeout: float) -> None:
    """Return once the switch accepts gRPC connections; SwitchError with its log if it does not."""
    name = config.target_info.process

    def exited(code: int) -> str:
        return (f"{name} exited with code {code} before its gRPC server came up on "
                f"{config.grpc_addr}")
    silent = f"{name} did not accept gRPC connections on {config.grpc_addr} within {timeout:g} s"
    process.wait_ready(proc, lambda: True if grpc_reachable(config.grpc_addr) else None,
                       timeout, exited, silent, poll=0.1)


def stop(state_dir: Path, grace: float = STOP_GRACE) -> int | None:
    """Stop the switch whose PID is in `state_dir`, remove the pid file; return the PID stopped."""
    return _process(state_dir).stop(grace)
