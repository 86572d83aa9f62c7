"""Start and stop simple_switch_grpc on a PortMap's interfaces; PID and log go to the state dir."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .portmap import PortMap
from .state import SWITCH_LOG, SWITCH_PID
from .toolchain import SIMPLE_SWITCH_GRPC, find_simple_switch_grpc
from .topology import interface_pattern

log = logging.getLogger(__name__)

GRPC_HOST = "127.0.0.1"  # loopback only: P4Runtime has no authentication
DEFAULT_GRPC_PORT = 9559
DEFAULT_START_TIMEOUT = 20.0
STOP_GRACE = 5.0
_POLL = 0.05

# Switches started by this process, so that stop() can reap them (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen[bytes]] = {}


class SwitchError(RuntimeError):
    """simple_switch_grpc could not be started or stopped."""


@dataclass(frozen=True)
class SwitchConfig:
    """How to run one simple_switch_grpc."""

    portmap: PortMap
    state_dir: Path
    grpc_port: int = DEFAULT_GRPC_PORT
    log: bool = False
    device_id: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.grpc_port, bool) or not isinstance(self.grpc_port, int) \
                or not 1 <= self.grpc_port <= 65535:
            raise ValueError(f"gRPC port must be an integer from 1 to 65535, "
                             f"got {self.grpc_port!r}")

    @property
    def grpc_addr(self) -> str:
        """host:port of the P4Runtime server."""
        return f"{GRPC_HOST}:{self.grpc_port}"

    @property
    def log_path(self) -> Path:
        """The switch's stdout/stderr (and its packet log with `log`)."""
        return self.state_dir / SWITCH_LOG

    @property
    def pid_path(self) -> Path:
        """The file holding the switch's PID."""
        return self.state_dir / SWITCH_PID


def build_command(binary: Path, config: SwitchConfig) -> list[str]:
    """The simple_switch_grpc command line for `config` (no P4 program: pushed over P4Runtime)."""
    cmd = [str(binary), "--no-p4", "--device-id", str(config.device_id),
           *config.portmap.bmv2_interface_args()]
    if config.log:
        cmd.append("--log-console")
    return cmd + ["--", "--grpc-server-addr", config.grpc_addr,
                  "--cpu-port", str(config.portmap.cpu_port)]


# ---- processes -------------------------------------------------------------------------------
def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def is_switch_process(pid: int) -> bool:
    """True if `pid` is a live simple_switch_grpc (guards against a reused PID).

    argv[1] counts too, for a wrapper script run by its interpreter (`sh .../simple_switch_grpc`).
    """
    return any(os.path.basename(arg).endswith(SIMPLE_SWITCH_GRPC) for arg in _cmdline(pid)[:2])


def _alive(pid: int) -> bool:
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


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL)
    return True


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal `pid`, and its whole process group if it leads one (start() makes it a leader)."""
    try:
        leader = os.getpgid(pid) == pid
    except ProcessLookupError:
        return
    try:
        os.killpg(pid, sig) if leader else os.kill(pid, sig)
    except ProcessLookupError:
        pass


def terminate(pid: int, grace: float = STOP_GRACE) -> None:
    """SIGTERM `pid`, SIGKILL it after `grace` seconds; raise SwitchError if it survives."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        _signal(pid, sig)
        if _wait_gone(pid, wait):
            log.info("stopped simple_switch_grpc pid %d (%s)", pid, sig.name)
            return
    raise SwitchError(f"simple_switch_grpc pid {pid} survived SIGKILL")


def read_pid(state_dir: Path) -> int | None:
    """The PID recorded in the state dir, or None."""
    try:
        return int((state_dir / SWITCH_PID).read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(state_dir: Path) -> int | None:
    """The recorded PID if that process really is a running simple_switch_grpc."""
    pid = read_pid(state_dir)
    return pid if pid is not None and is_switch_process(pid) and _alive(pid) else None


def find_switches_on(prefix: str) -> list[int]:
    """PIDs of any simple_switch_grpc bound to interfaces of `prefix` (say, a lost state dir's)."""
    pattern = interface_pattern(prefix)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or not is_switch_process(int(entry.name)):
            continue
        ifaces = [a.split("@", 1)[1] for a in _cmdline(int(entry.name)) if "@" in a]
        if any(pattern.fullmatch(name) for name in ifaces):
            found.append(int(entry.name))
    return sorted(found)


# ---- start / stop ------------------------------------------------------------------------------
def grpc_reachable(port: int, host: str = GRPC_HOST) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def log_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _failure(message: str, config: SwitchConfig) -> SwitchError:
    tail = log_tail(config.log_path)
    if not tail:
        return SwitchError(f"{message} ({config.log_path} is empty)")
    detail = f"\n--- last lines of {config.log_path} ---\n{tail}"
    return SwitchError(message + detail)


def _wait_for_grpc(proc: subprocess.Popen[bytes], config: SwitchConfig, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not grpc_reachable(config.grpc_port):
        if proc.poll() is not None:
            raise _failure(f"simple_switch_grpc exited with code {proc.returncode} before its gRPC "
                           f"server came up on {config.grpc_addr}", config)
        if time.monotonic() >= deadline:
            raise _failure(f"simple_switch_grpc did not accept gRPC connections on "
                           f"{config.grpc_addr} within {timeout:g} s", config)
        time.sleep(0.1)


def start(config: SwitchConfig, binary: Path | None = None,
          timeout: float = DEFAULT_START_TIMEOUT) -> int:
    """Start the switch in the background, wait for its gRPC port, return its PID."""
    binary = binary or find_simple_switch_grpc()
    if grpc_reachable(config.grpc_port):
        raise SwitchError(f"{config.grpc_addr} is already in use (another switch? "
                          f"`make clean-env`, or choose another --grpc-port)")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    cmd = build_command(binary, config)
    log.info("starting: %s", " ".join(cmd))
    with open(config.log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, start_new_session=True)
    _children[proc.pid] = proc
    config.pid_path.write_text(f"{proc.pid}\n")
    try:
        _wait_for_grpc(proc, config, timeout)
    except SwitchError:
        stop(config.state_dir)
        raise
    return proc.pid


def stop(state_dir: Path, grace: float = STOP_GRACE) -> int | None:
    """Stop the switch whose PID is in `state_dir`, remove the pid file; return the PID stopped."""
    pid = read_pid(state_dir)
    if pid is None:
        return None
    stopped = None
    if is_switch_process(pid) and _alive(pid):
        terminate(pid, grace)
        stopped = pid
    else:
        log.info("pid file names %d, not a running simple_switch_grpc: not killing it", pid)
        child = _children.pop(pid, None)
        if child is not None:
            child.poll()  # reap it if it already exited
    (state_dir / SWITCH_PID).unlink(missing_ok=True)
    return stopped
