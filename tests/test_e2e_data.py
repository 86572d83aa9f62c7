"""End to end: payload both ways between applications on host_lib sockets and the real Linux
TCP stack, through bmv2 (receive and transmit fast paths), the DMA bridge and the rings."""

from __future__ import annotations

import hashlib
import importlib
import os
import threading

import pytest

import host_lib
from tests.stack import Stack, stack_fixture

PORT = 7001
RUNTIME_ARGS = ["--time-wait", "0.5"]

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
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("listening", flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
conn.settimeout(20)
total = 0
while True:
    chunk = conn.recv(65536)
    if not chunk:
        break
    conn.sendall(chunk)
    total += len(chunk)
conn.close()
print("echoed", total, flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    gen = stack_fixture(tmp_path_factory, RUNTIME_ARGS)
    stack = next(gen)
    os.environ["P4TAS_CONTROL_SOCKET"] = str(stack.socket_path)
    try:
        yield stack
    finally:
        importlib.import_module("host_lib.socket").close_session()
        os.environ.pop("P4TAS_CONTROL_SOCKET", None)
        next(gen, None)


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


@pytest.mark.parametrize("size", [1, 1448, 100_000])
def test_linux_client_to_p4tas_echo_server(stack: Stack, size: int) -> None:
    with host_lib.socket() as listener:
        listener.settimeout(20)
        listener.bind((stack.peer.local_ip, PORT))
        listener.listen(8)
        result: dict[str, int] = {}
        server = threading.Thread(target=lambda: result.update(n=echo_once(listener)))
        server.start()
        client = stack.linux(LINUX_CLIENT_ECHO, stack.peer.local_ip, str(PORT), str(size))
        out, err = client.communicate(timeout=60)
        server.join(timeout=30)
        assert out.split() == [str(size), "True"], (out, err)
        assert result.get("n") == size


def test_p4tas_client_to_linux_echo_server(stack: Stack) -> None:
    server = stack.linux(LINUX_ECHO_SERVER, stack.peer.peer_ip, "7002")
    assert server.stdout.readline().strip() == "listening"
    data = os.urandom(200_000)
    with host_lib.socket() as s:
        s.settimeout(30)
        s.connect((stack.peer.peer_ip, 7002))
        sender = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(1)))
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        sender.join(timeout=30)
    out, err = server.communicate(timeout=30)
    assert out.split() == ["echoed", str(len(data))], (out, err)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
