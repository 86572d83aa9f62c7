"""What the benchmarks share: the target's description (bmv2's build, or softnic), the skip check,
the processes they start (tracked, so that cleanup stops them all), the p4tas environment of a
run (the switch of the selected target + runtime) and the Linux-to-Linux namespace pair, signal
handling (`guarded`: the body of a run, then its cleanup) and argument parsing helpers.

The target is TARGET (bmv2 or soft), else bmv2 when simple_switch_grpc is found, else soft
(bmv2_env.targets); skip_reason() prints it as the benchmark's first line.

Used by the bench_*.py scripts and their modules (run as scripts: bench/ is on sys.path).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import select
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bmv2_env.state import STATE_DIR_ENV  # noqa: E402
from bmv2_env import env, runtime_proc, targets, topology  # noqa: E402
from bmv2_env.peers import TCP_SYSCTLS, popen_in  # noqa: E402
from nic_contract.pipeline import PipelineError, PipelineFiles  # noqa: E402
from bmv2_env.shell import run  # noqa: E402
from bmv2_env.toolchain import ToolNotFound, find_simple_switch_grpc  # noqa: E402

PYTHON = sys.executable
LINUX_NET = "10.98"
READY_TIMEOUT = 20.0
LOG_MACRO_STRING = b"Processing packet received on port"  # a BMLOG_DEBUG_PKT format string


class BenchError(RuntimeError):
    """The benchmark could not run as planned; the message says what broke."""


# ---- the bmv2 build ----------------------------------------------------------------------------
def _config_log_cxxflags(binary: Path) -> str | None:
    """CXXFLAGS of the bmv2 build, from its configure log if one can be found."""
    prefix = binary.resolve().parent.parent
    candidates = [os.environ.get("BMV2_CONFIG_LOG", ""),
                  f"{prefix}-src/bmv2/config.log", f"{prefix}/src/bmv2/config.log"]
    for name in filter(None, candidates):
        try:
            text = Path(name).read_text(errors="replace")
        except OSError:
            continue
        found = re.search(r"^CXXFLAGS='([^']*)'", text, re.M)
        if found:
            return found.group(1)
    return None


def describe_target() -> str:
    """What runs the fast path on the selected target (TARGET): bmv2's build (describe_bmv2),
    or softnic and the Python running it."""
    try:
        target = targets.select().target
    except (ToolNotFound, ValueError) as exc:
        return f"no usable target: {exc}"
    if target.name == targets.BMV2:
        return describe_bmv2()
    return (f"{target.process} ({target.description}: {' '.join(target.command_prefix())}, "
            f"Python {platform.python_version()})")


def describe_bmv2() -> str:
    """simple_switch_grpc's version, whether logging macros are compiled in, its CXXFLAGS."""
    binary = find_simple_switch_grpc()
    version = run([str(binary), "--version"]).strip() or "unknown version"
    try:
        compiled_in = LOG_MACRO_STRING in binary.read_bytes()
    except OSError:
        compiled_in = None
    config_h = binary.resolve().parent.parent / "include" / "bm" / "config.h"
    if compiled_in is None and config_h.is_file():
        compiled_in = "#define BM_LOG_DEBUG_ON" in config_h.read_text(errors="replace")
    logging = {True: "logging macros compiled in (off at run time: no --log-console)",
               False: "logging macros compiled out",
               None: "logging macros unknown"}[compiled_in]
    flags = _config_log_cxxflags(binary)
    flags_text = f"CXXFLAGS {flags}" if flags else "CXXFLAGS unknown (no bmv2 config.log found)"
    return f"simple_switch_grpc {version} ({binary}), {logging}, {flags_text}"


def skip_reason() -> str | None:
    """Why the benchmark cannot run here, or None; prints the target it uses (`target: ...`).

    An unusable TARGET (unknown, or bmv2 without simple_switch_grpc) is an error: the message
    on stderr, exit status 1.
    """
    try:
        selection = targets.select()
    except (ToolNotFound, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    print(selection.line, flush=True)
    if os.geteuid() != 0:
        return "needs root (veths and network namespaces)"
    missing = selection.target.missing()
    if missing:
        return f"target {selection.name} not available: {missing}"
    try:
        PipelineFiles().check()
    except PipelineError as exc:
        return str(exc)
    return None


# ---- processes ---------------------------------------------------------------------------------
_procs: list[subprocess.Popen] = []  # everything we started, stopped in cleanup()


def skipped(bench: str) -> bool:
    """If the benchmark cannot run here: say so, print its JSON line, and return True (the
    caller exits 0). Also claims this process's environment: no inherited state dir."""
    reason = skip_reason()
    if reason:
        print(f"bench-{bench}: SKIPPED: {reason}")
        print(json.dumps({"bench": bench, "skipped": reason}))
        return True
    os.environ.pop(STATE_DIR_ENV, None)  # our environment's state dir is ours alone
    return False


def _track(proc: subprocess.Popen) -> subprocess.Popen:
    _procs.append(proc)
    return proc


def spawn_script(script: Path, argv: Sequence[object], netns: str | None,
                 **kwargs: object) -> subprocess.Popen:
    """`script` with `argv` under this Python, in `netns` (None: here, in the repository),
    tracked for cleanup; `kwargs` go to subprocess.Popen."""
    cmd = [PYTHON, str(script), *map(str, argv)]
    return _track(popen_in(netns, cmd, **kwargs) if netns else
                  subprocess.Popen(cmd, cwd=REPO, **kwargs))


def wait_listening(proc: subprocess.Popen, what: str) -> subprocess.Popen:
    """`proc` once its first line says `listening` (else BenchError)."""
    line = _readline(proc, READY_TIMEOUT, what)
    if line != "listening":
        raise BenchError(f"{what}: said {line!r} instead of listening")
    return proc


def _readline(proc: subprocess.Popen, timeout: float, what: str) -> str:
    """One line of `proc`'s stdout within `timeout` s (the process prints nothing else before)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise BenchError(f"{what}: nothing within {timeout:g} s")
    line = proc.stdout.readline()
    if not line:
        err = proc.stderr.read() if proc.poll() is not None else ""
        raise BenchError(f"{what}: exited with code {proc.poll()}: {err.strip()[-2000:]}")
    return line.strip()


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> tuple[str, str]:
    """SIGTERM (then SIGKILL) `proc`; return its remaining stdout and stderr."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out or "", err or ""


def _last_json(text: str, what: str) -> dict:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"{what}: no JSON result in its output: {text.strip()[-2000:]!r}")
    return json.loads(lines[-1])


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds; None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out



@dataclass
class P4tasSide:
    """The environment (switch of the selected target) + runtime of this run (prefix unique to
    this process)."""

    prefix: str = field(default_factory=lambda: f"b{_base36(os.getpid())}"[:6])
    up: bool = False

    def start(self, runtime_args: Sequence[str]) -> tuple[env.UpResult, runtime_proc.RuntimeInfo]:
        self.up = True  # from here on, cleanup() runs env.down
        result = env.up(env.EnvOptions(ports=1, prefix=self.prefix, peers=True,
                                       cpu_interface=True, target=targets.select().name))
        info = runtime_proc.start(result.state_dir, result.record.grpc_addr, runtime_args)
        return result, info

    def cleanup(self) -> None:
        if self.up:
            env.down(self.prefix)
            self.up = False


@dataclass
class LinuxPair:
    """Two namespaces joined by a veth pair; names carry this process's PID."""

    tag: str = field(default_factory=lambda: f"p4bl{os.getpid()}")
    octet: int = field(default_factory=lambda: os.getpid() % 254 + 1)
    created: list[str] = field(default_factory=list)

    @property
    def client_ns(self) -> str:
        return f"{self.tag}a"

    @property
    def server_ns(self) -> str:
        return f"{self.tag}b"

    @property
    def server_ip(self) -> str:
        return f"{LINUX_NET}.{self.octet}.2"

    @property
    def client_ip(self) -> str:
        return f"{LINUX_NET}.{self.octet}.1"

    def create(self) -> None:
        va, vb = f"{self.tag}va", f"{self.tag}vb"
        for ns in (self.client_ns, self.server_ns):
            run(["ip", "netns", "add", ns])
            self.created.append(ns)
        run(["ip", "link", "add", "name", va, "mtu", str(topology.MTU), "type", "veth",
             "peer", "name", vb, "mtu", str(topology.MTU)])
        self.created.append(va)
        for ns, ifname, ip in ((self.client_ns, va, self.client_ip),
                               (self.server_ns, vb, self.server_ip)):
            run(["ip", "link", "set", "dev", ifname, "netns", ns])
            run(["ip", "-n", ns, "link", "set", "dev", "lo", "up"])
            sysctls = [*TCP_SYSCTLS]
            if topology.PROC_IPV6_CONF.is_dir():
                sysctls += [f"net.ipv6.conf.{k}.disable_ipv6=1" for k in ("all", "default")]
            run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *sysctls])
            run(["ip", "netns", "exec", ns, "ethtool", "-K", ifname, *topology.OFFLOADS_OFF])
            run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", ifname])
            run(["ip", "-n", ns, "link", "set", "dev", ifname, "up"])

    def destroy(self) -> list[str]:
        """Remove what create() made (processes inside the namespaces first); idempotent."""
        removed = []
        for name in reversed(self.created):
            if topology.netns_exists(name):
                topology.delete_netns(name)  # stops its processes; its veth end goes with it
                removed.append(name)
            elif topology.link_exists(name):
                topology.delete_link(name)
                removed.append(name)
        self.created.clear()
        return removed


@contextmanager
def _signals(handler) -> Iterator[None]:
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {s: signal.signal(s, handler) for s in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _int_range(low: int, high: int):
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low} to {high}, got {value}")
        return value
    return parse


def stop_tracked() -> list[str]:
    """Stop every process started through _track that still runs; return the problems met."""
    problems = []
    for proc in _procs:
        if proc.poll() is None:
            try:
                _stop(proc, timeout=5)
            except Exception as exc:  # noqa: BLE001 - keep cleaning
                problems.append(f"stopping pid {proc.pid}: {exc}")
    return problems


def cleanup_steps(*steps: Callable[[], object]) -> list[str]:
    """Stop every tracked process, then run each step whatever the previous one did; return
    the problems met."""
    problems = stop_tracked()
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep cleaning
            problems.append(f"{getattr(step, '__qualname__', 'cleanup')}: {exc}")
    return problems


def cleanup_sides(out: dict, side: P4tasSide, pair: LinuxPair) -> None:
    """Stop every tracked process, take the p4tas environment down and remove the Linux
    pair; the problems met go to out["cleanup"]."""
    problems = stop_tracked()
    side.cleanup()
    pair.destroy()
    if problems:
        out["cleanup"] = problems


@dataclass
class Outcome:
    """How the body of a run ended (`error`, None if it completed) and what its cleanup met."""

    error: str | None = None
    problems: list[str] = field(default_factory=list)

    def failed(self, name: str, head: dict, target: str) -> bool:
        """Print the cleanup problems and the error (stderr); with an error, also the JSON line
        (`head`, the error, the cleanup problems, the target). True if there was an error."""
        if self.problems:
            print(f"{name}: cleanup problems: " + "; ".join(self.problems), file=sys.stderr)
        if not self.error:
            return False
        print(f"{name}: FAILED: {self.error}", file=sys.stderr)
        print(json.dumps(head | {"error": self.error.splitlines()[0],
                                 "cleanup_problems": self.problems, "target": target}))
        return True


@contextmanager
def guarded(cleanup: Callable[[], list[str]]) -> Iterator[Outcome]:
    """Run the body with SIGINT, SIGTERM and SIGHUP as KeyboardInterrupt, then `cleanup` with
    them ignored; an exception of the body ends up in the Outcome, not raised."""
    outcome = Outcome()
    try:
        with _signals(_interrupt):
            yield outcome
    except KeyboardInterrupt as exc:
        outcome.error = f"interrupted ({exc})"
    except Exception as exc:  # noqa: BLE001 - reported, then cleaned up
        outcome.error = f"{type(exc).__name__}: {exc}"
    finally:
        with _signals(signal.SIG_IGN):
            outcome.problems = cleanup()
