"""The runner process (p4tas-swx, dpdk_target/runner/) and its two sockets: the control
socket, one command line and one reply line each (runner/control.c), and the CPU port, one
PacketIn/PacketOut frame per datagram (unless the CPU port is a network interface: then the
runner sends and takes its frames there, and this process never sees them)."""

from __future__ import annotations

import logging
import select
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CPU_SOCKET_BUFFER = 4 << 20   # PacketIns queued for the server before the runner drops them
SO_SNDBUFFORCE, SO_RCVBUFFORCE = 32, 33   # beyond net.core.wmem_max/rmem_max (we are root)
MAX_FRAME = 65536
START_TIMEOUT_S = 30.0
# Commands in flight at once: the runner writes each reply while its pipeline waits, so a
# client that sent thousands before reading any would fill both sockets and deadlock.
BATCH_CHUNK = 128


class RunnerError(RuntimeError):
    """The runner refused a command or is gone."""


@dataclass(frozen=True)
class RunnerPorts:
    """The ports of a run: P4Runtime port number -> interface, the CPU and loopback ports."""

    interfaces: dict[int, str]
    cpu_port: int
    loopback_port: int
    cpu_interface: str | None = None   # the CPU port's interface; None: a socket to us

    def __post_init__(self) -> None:
        ids = [*self.interfaces, self.cpu_port, self.loopback_port]
        if len(set(ids)) != len(ids) or not all(0 < i < 256 for i in ids):
            raise RunnerError(f"port ids must be distinct and within 1..255 (0 is the PNA "
                              f"program's sink): interfaces {sorted(self.interfaces)}, CPU "
                              f"{self.cpu_port}, loopback {self.loopback_port}")


def _cpu_sockets() -> tuple[socket.socket, socket.socket]:
    """The CPU port's datagram pair: ours, and the runner's (non-blocking)."""
    cpu, cpu_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for sock in (cpu, cpu_child):
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, CPU_SOCKET_BUFFER)
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CPU_SOCKET_BUFFER)
    cpu_child.setblocking(False)
    return cpu, cpu_child


@dataclass
class Runner:
    """A running p4tas-swx: send it commands (`command`, `batch`), PacketOuts (`packet_out`),
    and read its PacketIns (`packet_in`)."""

    process: subprocess.Popen
    control: socket.socket
    cpu: socket.socket | None   # None: the CPU port is a network interface
    clock_register: str | None = None   # the register the runner writes the time into
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: bytes = b""

    @classmethod
    def start(cls, binary: Path, library: Path, ports: RunnerPorts,
              clock_register: str | None) -> Runner:
        """Start the runner on the pipeline `library` and wait until it runs."""
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cpu, cpu_child = _cpu_sockets() if ports.cpu_interface is None else (None, None)
        cmd = [str(binary), "run", "--lib", str(library),
               "--control", str(control_child.fileno()),
               "--loopback", str(ports.loopback_port)]
        if cpu_child is not None:
            cmd += ["--cpu", f"{ports.cpu_port}:{cpu_child.fileno()}"]
        if clock_register:
            cmd += ["--clock", clock_register]
        interfaces = dict(ports.interfaces)
        if ports.cpu_interface is not None:
            interfaces[ports.cpu_port] = ports.cpu_interface
        for port, ifname in sorted(interfaces.items()):
            cmd += ["-i", f"{port}@{ifname}"]
        children = [s for s in (control_child, cpu_child) if s is not None]
        try:
            process = subprocess.Popen(cmd, pass_fds=[s.fileno() for s in children],
                                       stdout=subprocess.PIPE, text=True)
        except OSError:
            for sock in (control, cpu):
                if sock is not None:
                    sock.close()
            raise
        finally:
            for sock in children:
                sock.close()
        runner = cls(process, control, cpu, clock_register)
        try:
            runner._wait_running()
        except RunnerError:
            runner.stop()
            raise
        return runner

    def _wait_running(self) -> None:
        """Its first line says it runs; RunnerError if it does not within START_TIMEOUT_S."""
        out = self.process.stdout
        ready = out is not None and select.select([out], [], [], START_TIMEOUT_S)[0]
        line = out.readline() if ready and out is not None else ""
        if not line.startswith("p4tas-swx: running"):
            raise RunnerError(f"the runner did not start within {START_TIMEOUT_S:g} s: "
                              f"{line.strip() or 'no output'}")
        log.info("%s", line.strip())

    def batch(self, commands: list[str]) -> list[str]:
        """Send the commands and read one reply each, BATCH_CHUNK at a time (pipelined)."""
        replies: list[str] = []
        with self._lock:
            try:
                for first in range(0, len(commands), BATCH_CHUNK):
                    chunk = commands[first:first + BATCH_CHUNK]
                    self.control.sendall("".join(f"{c}\n" for c in chunk).encode())
                    replies += [self._reply() for _ in chunk]
            except OSError as err:
                raise RunnerError(f"the runner is gone: {err}") from None
        return replies

    def command(self, command: str) -> str:
        """One command; its reply's value part; RunnerError if the runner refused it."""
        reply = self.batch([command])[0]
        if not reply.startswith("ok"):
            raise RunnerError(f"{command.split(' ', 1)[0]}: {reply}")
        return reply[3:]

    def _reply(self) -> str:
        while b"\n" not in self._pending:
            data = self.control.recv(1 << 20)
            if not data:
                raise RunnerError("the runner closed its control socket")
            self._pending += data
        line, _, self._pending = self._pending.partition(b"\n")
        return line.decode()

    def packet_out(self, frame: bytes) -> None:
        """A frame (packet_out header first) into the pipeline from the CPU port."""
        if self.cpu is None:
            raise RunnerError("the CPU port is a network interface: PacketOuts go there")
        self.cpu.send(frame)

    def packet_in(self) -> bytes:
        """The next frame the pipeline sent to the CPU port (blocks); b"" once stopped (or
        at once when the CPU port is a network interface)."""
        if self.cpu is None:
            return b""
        try:
            return self.cpu.recv(MAX_FRAME)
        except OSError:
            return b""

    def stop(self) -> None:
        """Stop the runner: closing the control socket ends its loop."""
        for sock in (self.control, self.cpu):
            if sock is None:
                continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
