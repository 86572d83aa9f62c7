"""What the end-to-end suites share: the Linux-side scripts (run in the peer namespace by
`Stack.linux`, each printing its result, mostly one JSON line) and the helpers that drive
host_lib sockets and collect results. Every stream is checked by SHA-256 on both ends."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import host_lib
from bmv2_env.peers import popen_in
from host_lib.control_channel import ControlChannel
from nic_contract.constants import DropReason
from host_lib.sessions import close_session
from tests.support.stack import REPO, Stack, stack_fixture

PORT = 7001
CONTROL_SOCKET_ENV = "P4TAS_CONTROL_SOCKET"
MIB = 1 << 20
SETTLE_TIMEOUT = 10.0


# ============================================================================ Linux-side scripts

def accept_one(timeout: float, first_conn_timeout: float | None = None) -> str:
    """Script lines: listen on (host, port) (variables the script set first), print
    "listening", accept one connection `conn`; both sockets time out after `timeout`."""
    conn_timeout = timeout if first_conn_timeout is None else first_conn_timeout
    return f"""srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((host, port))
srv.listen()
print("listening", flush=True)
srv.settimeout({timeout})
conn, _ = srv.accept()
conn.settimeout({conn_timeout})
"""


LINUX_CLIENT_ECHO = """
import hashlib, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes((i * 7 + 3) % 251 for i in range(size))
s = socket.create_connection((host, port), timeout=20)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got = bytearray()
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    got += chunk
print(len(got), hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest(), flush=True)
"""

LINUX_ECHO_SERVER = """
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
""" + accept_one(20) + """total = 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    conn.sendall(chunk)
    total += len(chunk)
conn.close()
print("echoed", total, flush=True)
"""

# Linux peers send their FIN only once their data has left (drain), so that the FIN never
# carries data (module notes).
DRAIN = """
import fcntl, termios, time
SIOCOUTQNSD = 0x894B  # bytes not sent yet (TIOCOUTQ: not acknowledged yet)
def drain(sock, timeout=10.0, unsent_only=False):
    deadline = time.monotonic() + timeout
    buf = bytearray(4)
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), SIOCOUTQNSD if unsent_only else termios.TIOCOUTQ, buf)
        except OSError:
            return
        if int.from_bytes(buf, "little") == 0:
            return
        time.sleep(0.005)
"""

# Linux client: writes `total` seeded bytes in `msg`-byte sendall calls, then SHUT_WR, while a
# thread reads until EOF. Prints one JSON line: what it sent and what it got.
LINUX_STREAM_CLIENT = DRAIN + """
import hashlib, json, random, socket, sys, threading
host, port, total, msg, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
data = random.Random(seed).randbytes(total)
s = socket.create_connection((host, port), timeout=30)
got, errors = bytearray(), []
def reader():
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got.extend(chunk)
    except OSError as exc:
        errors.append(repr(exc))
thread = threading.Thread(target=reader)
thread.start()
view = memoryview(data)
for off in range(0, total, msg):
    s.sendall(view[off:off + msg])
drain(s, unsent_only=True)
s.shutdown(socket.SHUT_WR)
thread.join(60)
s.close()
print(json.dumps({"sent": total, "sent_sha": hashlib.sha256(data).hexdigest(), "got": len(got),
                  "got_sha": hashlib.sha256(got).hexdigest(), "errors": errors}), flush=True)
"""

# Linux echo server for `n` connections (a thread each). Prints "listening", then one JSON
# object: peer port -> [bytes echoed, their SHA-256, error or null].
LINUX_ECHO_SERVER_N = DRAIN + """
import hashlib, json, socket, sys, threading
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
n = int(sys.argv[3])
srv.listen(max(n, 8))
print("listening", flush=True)
srv.settimeout(30)
report = {}
def serve(conn, port):
    digest, total, error = hashlib.sha256(), 0, None
    conn.settimeout(30)
    try:
        while True:
            chunk = conn.recv(1 << 20)
            if not chunk:
                break
            digest.update(chunk)
            conn.sendall(chunk)
            total += len(chunk)
    except OSError as exc:
        error = repr(exc)
    drain(conn)
    conn.close()
    report[port] = [total, digest.hexdigest(), error]
threads = []
for _ in range(n):
    conn, peer = srv.accept()
    thread = threading.Thread(target=serve, args=(conn, peer[1]))
    thread.start()
    threads.append(thread)
for thread in threads:
    thread.join(60)
print(json.dumps(report), flush=True)
"""

# Linux clients for a p4tas echo server that greets each connection with one byte, GREETING
# (see the module notes): `n` connections opened at once; once all are up and greeted, each
# sends `rounds` messages of `msg` seeded bytes and waits for each echo; the last message is
# followed by SHUT_WR at once (before its echo: module notes), then the echo and EOF. One JSON
# object: local port -> [bytes sent, their SHA-256, bytes got, their SHA-256, EOF seen, error].
LINUX_PINGPONG_CLIENTS = DRAIN + """
import hashlib, json, random, socket, sys, threading
host, port, n, rounds, msg = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
barrier = threading.Barrier(n, timeout=30)
report = {}
def client(i):
    data = random.Random(i).randbytes(rounds * msg)
    got, eof, error, local = bytearray(), False, None, None
    try:
        s = socket.create_connection((host, port), timeout=30)
        local = s.getsockname()[1]
        if s.recv(1) != b"+":
            raise ValueError("no greeting")
        barrier.wait()
        for r in range(rounds):
            s.sendall(data[r * msg:(r + 1) * msg])
            if r == rounds - 1:
                drain(s, unsent_only=True)
                s.shutdown(socket.SHUT_WR)
            want = (r + 1) * msg
            while len(got) < want:
                chunk = s.recv(want - len(got))
                if not chunk:
                    raise EOFError(f"EOF after {len(got)} bytes")
                got += chunk
        eof = s.recv(1) == b""
        s.close()
    except Exception as exc:
        error = repr(exc)
    report[local if local is not None else f"unconnected-{i}"] = [
        len(data), hashlib.sha256(data).hexdigest(), len(got), hashlib.sha256(got).hexdigest(),
        eof, error]
threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(90)
print(json.dumps(report), flush=True)
"""


# =================================================================================== helpers

def sha(data) -> str:
    return hashlib.sha256(data).hexdigest()


def stats(stack: Stack) -> dict[str, int]:
    """The runtime's counters, through an operator's (monitor) session."""
    with ControlChannel(stack.socket_path, app_name="e2e-test", monitor=True) as ch:
        return ch.stats()


def settled_stats(stack: Stack, timeout: float = SETTLE_TIMEOUT) -> dict[str, int]:
    """GetStats once no connection is left (or the last answer after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        current = stats(stack)
        if current["connections"] == 0 and current["flows_in_use"] == 0 \
                or time.monotonic() > deadline:
            return current
        time.sleep(0.1)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    """The output of a Linux-side script; killed (and the test failed) if it overruns."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"Linux-side script still running after {timeout} s:\n"
                             f"stdout: {out[-2000:]}\nstderr: {err[-2000:]}") from None


def json_result(proc: subprocess.Popen, timeout: float = 60):
    out, err = finish(proc, timeout)
    lines = out.strip().splitlines()
    assert proc.returncode == 0 and lines, (out, err)
    return json.loads(lines[-1])


def expect_line(proc: subprocess.Popen, prefix: str) -> str:
    line = proc.stdout.readline().strip()
    if not line.startswith(prefix):
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"expected {prefix!r}, got {line!r}\n{out}\n{err}")
    return line


class Worker(threading.Thread):
    """A thread whose result (or exception) the test collects with result()."""

    def __init__(self, target, *args) -> None:
        super().__init__(daemon=True)
        self._call = (target, args)
        self._value = None
        self._error: BaseException | None = None

    def run(self) -> None:
        target, args = self._call
        try:
            self._value = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            self._error = exc

    def result(self, timeout: float = 60):
        self.join(timeout)
        assert not self.is_alive(), f"{self._call[0].__name__} still running after {timeout} s"
        if self._error is not None:
            raise self._error
        return self._value


def recv_until_eof(sock, bufsize: int = MIB) -> bytes:
    got = bytearray()
    while True:
        try:
            chunk = sock.recv(bufsize)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc} after {len(got)} bytes") from exc
        if not chunk:
            return bytes(got)
        got += chunk


def stall_report(stack: Stack, port: int, wire: WireCapture, linux: subprocess.Popen) -> str:
    """What a stalled exchange on `port` left: the runtime's rows for it and its counters,
    the wire's SYN/FIN/RST counts and the Linux side's output (it is killed)."""
    rows = [r for r in flows_json(stack, "--port", str(port))]
    linux.kill()
    try:
        out, err = linux.communicate(timeout=10)
    except ValueError:   # already read (finish() killed it)
        out, err = "", ""
    return (f"flows: {rows}\nruntime: {stats(stack)}\nfast path drops: {fast_path_drops(stack)}"
            f"\nwire: {wire.stop(settle=0)}\nlinux: {out!r} {err[-2000:]!r}")


def fast_path_drops(stack: Stack) -> dict[str, int]:
    """The fast path's drop counter by reason (packets), the reasons that counted any."""
    client = stack.observer()
    try:
        return {reason.name: packets for reason in DropReason
                if (packets := client.read_counter("drop_counter", int(reason))[0])}
    finally:
        client.close()


def recv_exactly(sock, count: int, bufsize: int = MIB) -> bytes:
    got = bytearray()
    while len(got) < count:
        chunk = sock.recv(min(bufsize, count - len(got)))
        if not chunk:
            raise EOFError(f"EOF after {len(got)} of {count} bytes")
        got += chunk
    return bytes(got)


def send_messages(sock, data: bytes, msg: int) -> None:
    view = memoryview(data)
    for off in range(0, len(data), msg):
        sock.sendall(view[off:off + msg])


def echo_once(listener) -> int:
    """Accept one connection and echo until EOF; returns the bytes echoed."""
    conn, _ = listener.accept()
    total = 0
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                break
            conn.sendall(data)
            total += len(data)
    return total


def p4tas_listener(stack: Stack, port: int = PORT, backlog: int = 64):
    listener = host_lib.socket()
    listener.settimeout(30)
    listener.bind((stack.peer.local_ip, port))
    listener.listen(backlog)
    return listener


def linux_with_stdin(stack: Stack, script: str, *args: str) -> subprocess.Popen:
    """Like Stack.linux, with a pipe to the script's stdin (tell() writes a line)."""
    return popen_in(stack.peer, [sys.executable, "-c", script, *args], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def tell(proc: subprocess.Popen, line: str) -> None:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def linux_echo_server(stack: Stack, port: int, n: int = 1) -> subprocess.Popen:
    server = stack.linux(LINUX_ECHO_SERVER_N, stack.peer.peer_ip, str(port), str(n))
    expect_line(server, "listening")
    return server

def p4tas_echo(conn, bufsize: int) -> tuple[int, str]:
    """Echo until EOF reading at most `bufsize` bytes per recv; the bytes and their SHA-256."""
    digest, total = hashlib.sha256(), 0
    with conn:
        conn.settimeout(30)
        while True:
            data = conn.recv(bufsize)
            if not data:
                break
            digest.update(data)
            conn.sendall(data)
            total += len(data)
    return total, digest.hexdigest()


def host_lib_stack(tmp_path_factory, runtime_args: list[str], routed: bool = False):
    """Body of a module fixture: the stack (tests.support.stack) with this process's host_lib session
    pointed at its runtime, closed again afterwards."""
    gen = stack_fixture(tmp_path_factory, runtime_args, routed)
    stack = next(gen)
    os.environ[CONTROL_SOCKET_ENV] = str(stack.socket_path)
    try:
        yield stack
    finally:
        close_session()
        os.environ.pop(CONTROL_SOCKET_ENV, None)
        next(gen, None)


# ============================================================================= wire capture

# Capture scripts run in the peer's namespace: an AF_PACKET socket on the peer's veth sees
# every TCP segment to or from `port` (either side) until told "stop" on stdin.
CAPTURE_SETUP = """
import json, select, socket, struct, sys, time
ifname, p4tas_ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
"""
# The capture loop: calls seen(side, ip, ihl) for each TCP segment of `port` (side
# "from_p4tas" or "to_p4tas", ip the IPv4 packet) until "stop" on stdin, then prints
# report() as JSON. A script is CAPTURE_SETUP + its own seen() and report() + CAPTURE_LOOP.
CAPTURE_LOOP = """
# ETH_P_ALL: outgoing frames reach only the taps of every protocol, not an ETH_P_IP socket.
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
s.bind((ifname, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
print("capturing", flush=True)
while True:
    ready, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if sys.stdin in ready:
        sys.stdin.readline()
        break
    if s not in ready:
        continue
    frame = s.recv(65536)
    if frame[12:14] != bytes((8, 0)):  # IPv4 only
        continue
    ip = frame[14:]
    if len(ip) < 40 or ip[9] != 6:
        continue
    ihl = (ip[0] & 15) * 4
    sport, dport = struct.unpack("!HH", ip[ihl:ihl + 4])
    if port not in (sport, dport):
        continue
    seen("from_p4tas" if socket.inet_ntoa(ip[12:16]) == p4tas_ip else "to_p4tas", ip, ihl)
print(json.dumps(report()), flush=True)
"""

# Counts, per direction, TCP segments, SYN, FIN, RST, ECE, CWR, SYN_ECE (ECN-setup SYNs), the
# ECN codepoints ECT and CE, and segments with the options SACK_PERMITTED and SACK (RFC 2018):
# {"from_p4tas": {...}, "to_p4tas": {...}}.
WIRE_CAPTURE = CAPTURE_SETUP + """
counts = {"from_p4tas": {}, "to_p4tas": {}}
def bump(side, name):
    counts[side][name] = counts[side].get(name, 0) + 1
def seen(side, ip, ihl):
    flags = ip[ihl + 13]
    bump(side, "segments")
    for bit, name in ((0x02, "SYN"), (0x01, "FIN"), (0x04, "RST"), (0x40, "ECE"),
                      (0x80, "CWR")):
        if flags & bit:
            bump(side, name)
    if flags & 0x02 and flags & 0x40:
        bump(side, "SYN_ECE")   # an ECN-setup SYN or SYN-ACK (RFC 3168 6.1.1)
    options, i = ip[ihl + 20:ihl + (ip[ihl + 12] >> 4) * 4], 0
    while i < len(options) and options[i] != 0:
        if options[i] == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        if options[i] in (4, 5):
            bump(side, "SACK_PERMITTED" if options[i] == 4 else "SACK")
        i += options[i + 1]
    codepoint = ip[1] & 3
    if codepoint in (1, 2):
        bump(side, "ECT")
    elif codepoint == 3:
        bump(side, "CE")
def report():
    return counts
""" + CAPTURE_LOOP


class WireCapture:
    """Counts SYN/FIN/RST on the peer's veth for one port, in both directions (the close is
    checked on the wire, not only by what the Linux socket reports); `script` may report
    more (CAPTURE_SETUP + its seen() and report() + CAPTURE_LOOP)."""

    def __init__(self, stack: Stack, port: int, script: str = WIRE_CAPTURE) -> None:
        self.proc = popen_in(stack.peer, [sys.executable, "-c", script,
                                          stack.peer.ifname, stack.peer.local_ip, str(port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        expect_line(self.proc, "capturing")

    def stop(self, settle: float = 0.5) -> dict[str, dict[str, int]]:
        """Stop after `settle` seconds more; {"from_p4tas": {...}, "to_p4tas": {...}}."""
        time.sleep(settle)
        tell(self.proc, "stop")
        return json_result(self.proc, timeout=10)


# A Linux sink: accepts one connection (with a receive buffer of `rcvbuf` bytes if not 0),
# reads nothing for `delay` seconds, then reads to EOF or an error; prints one JSON object:
# bytes, their SHA-256, and the error's type name (or null).
LINUX_SINK = """
import hashlib, json, socket, sys, time
host, port, delay, rcvbuf = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if rcvbuf:
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
srv.bind((host, port))
srv.listen()
print("listening", flush=True)
srv.settimeout(90)
conn, _ = srv.accept()
conn.settimeout(90)
time.sleep(delay)
digest, total, error = hashlib.sha256(), 0, None
try:
    while chunk := conn.recv(1 << 20):
        digest.update(chunk)
        total += len(chunk)
except OSError as exc:
    error = type(exc).__name__
conn.close()
print(json.dumps({"bytes": total, "sha": digest.hexdigest(), "error": error}), flush=True)
"""


def linux_sink(stack: Stack, port: int, delay: float = 0.0, rcvbuf: int = 0
               ) -> subprocess.Popen:
    """LINUX_SINK on the peer's address, listening once this returns."""
    sink = stack.linux(LINUX_SINK, stack.peer.peer_ip, str(port), str(delay), str(rcvbuf))
    expect_line(sink, "listening")
    return sink


def sink_got(data: bytes) -> dict:
    """What LINUX_SINK reports after receiving exactly `data` and the peer's FIN."""
    return {"bytes": len(data), "sha": sha(data), "error": None}


def send_and_close(stack: Stack, port: int, data: bytes, timeout: float = 60) -> None:
    """A host_lib client: connect to the peer's `port`, send `data`, close."""
    with host_lib.socket() as s:
        s.settimeout(timeout)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(data)


def assert_fins_no_rst(seen: dict, both_ways: bool = True) -> None:
    """The close on the wire: FIN from p4tas (and from the peer), no RST either way."""
    assert seen["from_p4tas"].get("FIN") and not seen["from_p4tas"].get("RST"), seen
    if both_ways:
        assert seen["to_p4tas"].get("FIN") and not seen["to_p4tas"].get("RST"), seen


def world_readable_host_lib(folder: Path) -> Path:
    """A copy of host_lib in `folder` that any user may read (an ordinary user's PYTHONPATH:
    host_lib needs only the standard library); returns `folder`."""
    shutil.copytree(REPO / "host_lib", folder / "host_lib")
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return folder


def run_flows(stack: Stack, *args: str) -> subprocess.CompletedProcess:
    """`python -m runtime flows` against the stack's runtime."""
    return subprocess.run([sys.executable, "-m", "runtime", "flows", "--control-socket",
                           str(stack.socket_path), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=30)


def flows_json(stack: Stack, *args: str) -> list[dict]:
    """The rows of `python -m runtime flows --json`."""
    done = run_flows(stack, "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def mapped_segments(pid: int) -> set[str]:
    """The application segments (memfds named p4tas-app*) process `pid` maps; empty once it
    has unmapped them or is gone."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return set()
    return {line.split("/memfd:", 1)[1].split()[0] for line in maps.splitlines()
            if "/memfd:p4tas-app" in line}
