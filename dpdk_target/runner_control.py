"""The runner process (p4tas-swx, dpdk_target/runner/) and its two sockets: the control
socket, one command line and one reply line each (runner/control.c), and the CPU port, one
PacketIn/PacketOut frame per datagram."""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

CPU_SOCKET_BUFFER = 4 << 20   # PacketIns queued for the server before the runner drops them
MAX_FRAME = 65536
START_TIMEOUT_S = 30.0


class RunnerError(RuntimeError):
    """The runner refused a command or is gone."""


@dataclass(frozen=True)
class RunnerPorts:
    """The ports of a run: P4Runtime port number -> interface, the CPU and loopback ports."""

    interfaces: dict[int, str]
    cpu_port: int
    loopback_port: int


@dataclass
class Runner:
    """A running p4tas-swx: send it commands (`command`, `batch`), PacketOuts (`packet_out`),
    and read its PacketIns (`packet_in`)."""

    process: subprocess.Popen
    control: socket.socket
    cpu: socket.socket
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pending: bytes = b""

    @classmethod
    def start(cls, binary: Path, library: Path, ports: RunnerPorts,
              clock_register: str | None) -> Runner:
        """Start the runner on the pipeline `library` and wait until it runs."""
        control, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        cpu, cpu_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        for sock in (cpu, cpu_child):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, CPU_SOCKET_BUFFER)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CPU_SOCKET_BUFFER)
        cpu_child.setblocking(False)
        cmd = [str(binary), "run", "--lib", str(library),
               "--control", str(control_child.fileno()),
               "--cpu", f"{ports.cpu_port}:{cpu_child.fileno()}",
               "--loopback", str(ports.loopback_port)]
        if clock_register:
            cmd += ["--clock", clock_register]
        for port, ifname in sorted(ports.interfaces.items()):
            cmd += ["-i", f"{port}@{ifname}"]
        process = subprocess.Popen(cmd, pass_fds=(control_child.fileno(), cpu_child.fileno()),
                                   stdout=subprocess.PIPE, text=True)
        control_child.close()
        cpu_child.close()
        runner = cls(process, control, cpu)
        runner._wait_running()
        return runner

    def _wait_running(self) -> None:
        line = self.process.stdout.readline() if self.process.stdout else ""
        if not line.startswith("p4tas-swx: running"):
            self.process.kill()
            raise RunnerError(f"the runner did not start (exit {self.process.wait()}): "
                              f"{line.strip() or 'no output'}")
        log.info("%s", line.strip())

    def batch(self, commands: list[str]) -> list[str]:
        """Send every command, then read one reply each (pipelined: one round trip)."""
        if not commands:
            return []
        with self._lock:
            try:
                self.control.sendall("".join(f"{c}\n" for c in commands).encode())
                return [self._reply() for _ in commands]
            except OSError as err:
                raise RunnerError(f"the runner is gone: {err}") from None

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
        self.cpu.send(frame)

    def packet_in(self) -> bytes:
        """The next frame the pipeline sent to the CPU port (blocks); b"" once stopped."""
        try:
            return self.cpu.recv(MAX_FRAME)
        except OSError:
            return b""

    def stop(self) -> None:
        """Stop the runner: closing the control socket ends its loop."""
        for sock in (self.control, self.cpu):
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
