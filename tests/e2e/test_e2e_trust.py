"""End to end: an untrusted application cannot disturb anyone else (ARCHITECTURE.md 6).

One application scribbles random bytes over every word of its own shared-memory segment (rings,
positions, event queues, the header) again and again while it keeps asking the runtime to send;
meanwhile another application moves 4 MiB to a Linux peer. That transfer arrives whole (SHA-256),
closes with FIN (no RST), the runtime stays up, and the scribbler's connection is reset.
"""

from __future__ import annotations

import grp
import os
import pwd
import random
import shutil
import socket as std_socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import host_lib
from bmv2_env import system_deps

from tests.support.e2e_helpers import (CONTROL_SOCKET_ENV, MIB, WireCapture, assert_fins_no_rst,
                                       expect_line, host_lib_stack, json_result, linux_sink,
                                       send_and_close, settled_stats, sink_got, stats,
                                       world_readable_host_lib)
from tests.support.stack import REPO, Stack

NOBODY, NOGROUP = "nobody", "nogroup"  # Debian's unprivileged user and group
SYSTEM_PYTHON = "/usr/bin/python3"      # the venv's interpreter may live where nobody can go

# Connects, sends a little, then for `seconds` overwrites its whole segment with random bytes
# every few milliseconds while it keeps calling send() (each a kick the runtime acts on).
SCRIBBLER = """
import os, sys, time
import host_lib
from host_lib.sessions import session
host, port, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = host_lib.socket()
s.settimeout(10)
s.connect((host, port))
s.sendall(b"x" * 100_000)
buf = session().segment.buf
print("scribbling", len(buf), flush=True)
s.setblocking(False)
end = time.monotonic() + seconds
while time.monotonic() < end:
    buf[:] = os.urandom(len(buf))
    try:
        s.send(b"y" * 4096)
    except Exception:  # it broke its own rings: its own calls fail, that is all
        pass
    time.sleep(0.002)
print("done", flush=True)
os._exit(0)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5", "--orphan-timeout", "5",
                                                 "--control-group", NOGROUP])


def test_a_scribbling_application_disturbs_no_other(stack: Stack) -> None:
    victim_port, scribbler_port = 7301, 7302
    data = random.Random(21).randbytes(4 * MIB)
    before = stats(stack)
    scribbler_sink = linux_sink(stack, scribbler_port)
    env = dict(os.environ, **{CONTROL_SOCKET_ENV: str(stack.socket_path)})
    scribbler = subprocess.Popen(
        [sys.executable, "-c", SCRIBBLER, stack.peer.peer_ip, str(scribbler_port), "4"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        expect_line(scribbler, "scribbling")
        sink = linux_sink(stack, victim_port)
        wire = WireCapture(stack, victim_port)
        send_and_close(stack, victim_port, data)
        assert json_result(sink, timeout=120) == sink_got(data)
        assert_fins_no_rst(wire.stop())
        out, err = scribbler.communicate(timeout=60)
        assert "done" in out, err
    finally:
        scribbler.kill()
    json_result(scribbler_sink, timeout=60)
    after = settled_stats(stack, timeout=20)
    assert after["connections"] == 0 and after["flows_in_use"] == 0, after
    assert after.get("internal_errors", 0) == before.get("internal_errors", 0), after
    broken = sum(after.get(k, 0) - before.get(k, 0)
                 for k in ("data_path_errors", "closed_with_unread_data", "resets",
                           "data_after_close"))
    assert broken >= 1, after


def test_applications_choose_congestion_control_only_from_the_allow_list(stack: Stack) -> None:
    """TCP_CONGESTION "none" (no rate limit) is refused with EPERM unless the operator allowed
    it (--allow-congestion); an allowed algorithm is taken."""
    port = 7303
    sink = linux_sink(stack, port)
    with host_lib.socket() as s:
        s.setsockopt(std_socket.IPPROTO_TCP, host_lib.TCP_CONGESTION, b"none")
        with pytest.raises(PermissionError, match="not allowed"):
            s.connect((stack.peer.peer_ip, port))
    with host_lib.socket() as s:
        s.settimeout(30)
        s.setsockopt(std_socket.IPPROTO_TCP, host_lib.TCP_CONGESTION, b"timely")
        s.connect((stack.peer.peer_ip, port))
        s.sendall(b"z" * 1000)
    assert json_result(sink, timeout=30) == sink_got(b"z" * 1000)


# Sends `size` seeded bytes to the peer and closes; prints who it ran as and the SHA-256.
UNPRIVILEGED_SENDER = """
import hashlib, os, random, sys
import host_lib
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(5).randbytes(size)
with host_lib.socket() as s:
    s.settimeout(60)
    s.connect((host, port))
    s.sendall(data)
print(os.getuid(), hashlib.sha256(data).hexdigest(), flush=True)
"""


@pytest.fixture
def world_readable_dir():
    """A temporary folder anyone may read (pytest's own are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="p4tas-user-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_application_runs_as_an_ordinary_user(stack: Stack, world_readable_dir: Path) -> None:
    """The control socket admits the --control-group (here nogroup); the application, running
    as nobody, gets its segment as a passed descriptor (nothing in /dev/shm anyone could open)
    and moves its data."""
    reason = system_deps.skip_reason(["setpriv", SYSTEM_PYTHON])
    if reason:
        pytest.skip(reason)
    port = 7304
    lib = world_readable_host_lib(world_readable_dir)
    sink = linux_sink(stack, port)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib),
           CONTROL_SOCKET_ENV: str(stack.socket_path)}
    done = subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups",
                           SYSTEM_PYTHON, "-c", UNPRIVILEGED_SENDER, stack.peer.peer_ip, str(port), str(MIB)],
                          cwd=lib, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    uid, digest = done.stdout.split()
    assert int(uid) == pwd.getpwnam(NOBODY).pw_uid
    assert json_result(sink, timeout=60) == {"bytes": MIB, "sha": digest, "error": None}
    assert not [n for n in os.listdir("/dev/shm") if n.startswith("p4tas-") and "app" in n]
    mode = stack.socket_path.stat()
    assert mode.st_mode & 0o777 == 0o660 and mode.st_gid == grp.getgrnam(NOGROUP).gr_gid
