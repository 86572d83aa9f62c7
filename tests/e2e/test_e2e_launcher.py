"""End to end: unmodified Python programs on p4tas through the launcher (python -m host_lib.run).

The standard library's http.server, run as an ordinary user, serves a multi-megabyte file to
curl and to urllib/http.client in the Linux peer's namespace (keep-alive and Connection: close);
an aiohttp server (a PyPI asyncio framework) answers the peer; and a launched client program
reaches a Linux HTTP and echo server through urllib, selectors and asyncio while its loopback,
UNIX and UDP sockets stay on the kernel. The kernel of this namespace has no route to the peer
and no p4tas address, so none of it works unless the launcher put the sockets on p4tas; the
runtime's flow count says so too. Closes are FIN both ways, no RST, on the wire.
"""

from __future__ import annotations

import errno
import json
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bmv2_env import system_deps
from bmv2_env.peers import popen_in
from tests.support.e2e_helpers import (CONTROL_SOCKET_ENV, MIB, WireCapture, assert_fins_no_rst,
                                       expect_line, finish, host_lib_stack, json_result,
                                       linux_echo_server, sha, stats, world_readable_host_lib)
from tests.support.stack import REPO, Stack

NOBODY, NOGROUP = "nobody", "nogroup"
SYSTEM_PYTHON = "/usr/bin/python3"
FILE_SIZE = 3 * MIB

# In the peer's namespace: two GETs on one keep-alive connection (http.client), then urllib with
# Connection: close. One JSON line: the digests and whether the connection was reused.
LINUX_URLLIB_CLIENT = """
import hashlib, http.client, json, sys, urllib.request
host, port = sys.argv[1], int(sys.argv[2])
conn = http.client.HTTPConnection(host, port, timeout=60)
digests = []
for _ in range(2):
    conn.request("GET", "/big.bin")
    response = conn.getresponse()
    digests.append(hashlib.sha256(response.read()).hexdigest())
    if _ == 0:
        first_sock = conn.sock
reused = conn.sock is first_sock and response.getheader("Connection", "").lower() != "close"
conn.close()
request = urllib.request.Request(f"http://{host}:{port}/big.bin", headers={"Connection": "close"})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(request, timeout=60) as response:
    digests.append(hashlib.sha256(response.read()).hexdigest())
print(json.dumps({"digests": digests, "reused": reused}), flush=True)
"""

# An aiohttp application: GET / says hello, POST /sha answers the body's SHA-256, GET /file
# sends a file (FileResponse: loop.sendfile, which falls back to send() on p4tas).
AIOHTTP_APP = """
import hashlib, sys
from aiohttp import web
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
async def hello(request):
    return web.Response(text="hello from aiohttp")
async def digest(request):
    return web.Response(text=hashlib.sha256(await request.read()).hexdigest())
async def send_file(request):
    return web.FileResponse(path)
app = web.Application(client_max_size=64 << 20)
app.add_routes([web.get("/", hello), web.post("/sha", digest), web.get("/file", send_file)])
web.run_app(app, host=host, port=port, print=lambda *args: print("serving", flush=True))
"""

# A client program: urllib from a Linux http.server, a non-blocking selectors echo client and an
# asyncio echo client to a Linux echo server, and sockets that must stay on the kernel
# (loopback TCP, a UNIX pair, UDP). One JSON line.
LAUNCHED_CLIENT = """
import asyncio, hashlib, json, random, selectors, socket, sys, threading, urllib.request
peer, http_port, echo_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = random.Random(7).randbytes(1 << 20)

def fetch():
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://{peer}:{http_port}/big.bin", timeout=60) as response:
        return hashlib.sha256(response.read()).hexdigest()

def selectors_echo():
    s = socket.socket()
    s.setblocking(False)
    started = s.connect_ex((peer, echo_port))
    sel = selectors.DefaultSelector()
    sel.register(s, selectors.EVENT_WRITE)
    assert sel.select(30), "connect did not complete"
    assert s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    sel.modify(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    sent, got, shut = 0, bytearray(), False
    while True:
        events = sel.select(30)
        assert events, "no readiness for 30 s"
        mask = events[0][1]
        if mask & selectors.EVENT_WRITE and sent < len(data):
            sent += s.send(data[sent:sent + 65536])
            if sent == len(data):
                s.shutdown(socket.SHUT_WR)
                sel.modify(s, selectors.EVENT_READ)
        if mask & selectors.EVENT_READ:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    on_p4tas = s.on_p4tas
    sel.close()
    s.close()
    return started, on_p4tas, hashlib.sha256(got).hexdigest()

async def asyncio_echo():
    reader, writer = await asyncio.open_connection(peer, echo_port)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    got = await reader.read()
    writer.close()
    await writer.wait_closed()
    return hashlib.sha256(got).hexdigest()

def kernel_sockets():
    with socket.create_server(("127.0.0.1", 0)) as srv:
        threading.Thread(target=lambda: srv.accept()[0].sendall(b"kernel"), daemon=True).start()
        with socket.create_connection(srv.getsockname(), timeout=10) as c:
            loopback = (c.recv(10), c.on_p4tas)
    a, b = socket.socketpair()
    a.sendall(b"unix")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.sendto(b"udp", udp.getsockname())
    return [loopback[0].decode(), loopback[1], b.recv(10).decode(), udp.recv(10).decode()]

print(json.dumps({"urllib": fetch(), "selectors": selectors_echo(),
                  "asyncio": asyncio.run(asyncio_echo()), "kernel": kernel_sockets(),
                  "data": hashlib.sha256(data).hexdigest()}), flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5",
                                                 "--control-group", NOGROUP])


@pytest.fixture
def www():
    """A folder anyone may read with big.bin (FILE_SIZE seeded bytes) and a copy of host_lib."""
    path = Path(tempfile.mkdtemp(prefix="p4tas-www-"))
    (path / "big.bin").write_bytes(random.Random(17).randbytes(FILE_SIZE))
    world_readable_host_lib(path)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def launch(stack: Stack, args: list[str], cwd: Path, as_nobody: bool = False
           ) -> subprocess.Popen:
    """python -m host_lib.run ARGS, unbuffered, as root with this venv or as nobody with the
    system's Python and the world-readable host_lib copy in `cwd`."""
    env = {"PATH": "/usr/bin:/bin", CONTROL_SOCKET_ENV: str(stack.socket_path)}
    if as_nobody:
        env["PYTHONPATH"] = str(cwd)
        argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOGROUP}", "--clear-groups",
                SYSTEM_PYTHON]
    else:
        env["PYTHONPATH"] = str(REPO)
        argv = [sys.executable]
    return subprocess.Popen([*argv, "-u", "-m", "host_lib.run", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen) -> tuple[bytes, bytes]:
    """Ctrl-C for a launched server, and its output."""
    proc.send_signal(signal.SIGINT)
    try:
        return proc.communicate(timeout=20)
    finally:
        proc.kill()


def expect_bytes_line(proc: subprocess.Popen, prefix: bytes) -> None:
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"expected {prefix!r}, got {line!r}\n{out!r}\n{err.decode()}")


def in_peer(stack: Stack, argv: list[str], timeout: float = 90) -> bytes:
    """Run argv in the peer's namespace; its stdout (bytes), asserting a clean exit."""
    proc = popen_in(stack.peer, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()
    return out


def test_http_server_serves_curl_and_urllib_as_an_ordinary_user(stack: Stack, www: Path) -> None:
    """Issue 17's "done when": http.server on p4tas, launched by nobody, to curl and urllib."""
    reason = system_deps.skip_reason(["setpriv", SYSTEM_PYTHON, "curl"])
    if reason:
        pytest.skip(reason)
    port, expected = 8000, sha((www / "big.bin").read_bytes())
    before = stats(stack)
    server = launch(stack, ["-m", "http.server", "--bind", stack.peer.local_ip,
                            "--protocol", "HTTP/1.1", str(port)], www, as_nobody=True)
    try:
        expect_bytes_line(server, b"Serving HTTP on " + stack.peer.local_ip.encode())
        wire = WireCapture(stack, port)
        url = f"http://{stack.peer.local_ip}:{port}/big.bin"
        assert sha(in_peer(stack, ["curl", "-sS", "--noproxy", "*", "--max-time", "60", url])) \
            == expected
        client = stack.linux(LINUX_URLLIB_CLIENT, stack.peer.local_ip, str(port))
        assert json_result(client, timeout=90) == {"digests": [expected] * 3, "reused": True}
        assert_fins_no_rst(wire.stop())
    finally:
        _, log = stop(server)
    assert log.count(b'"GET /big.bin HTTP/1.1" 200') == 4, log.decode()
    after = stats(stack)
    assert after["flows_installed"] - before.get("flows_installed", 0) == 3, after  # on p4tas


def test_an_aiohttp_server_on_p4tas(stack: Stack, tmp_path: Path) -> None:
    """aiohttp (asyncio's create_server, transports, loop.sendfile) answers the peer."""
    pytest.importorskip("aiohttp")
    reason = system_deps.skip_reason(["curl"])
    if reason:
        pytest.skip(reason)
    port = 8080
    app, blob, body = tmp_path / "app.py", tmp_path / "blob.bin", tmp_path / "body.bin"
    app.write_text(AIOHTTP_APP)
    blob.write_bytes(random.Random(23).randbytes(2 * MIB))
    body.write_bytes(random.Random(29).randbytes(MIB))
    server = launch(stack, [str(app), stack.peer.local_ip, str(port), str(blob)], tmp_path)
    base = f"http://{stack.peer.local_ip}:{port}"
    curl = ["curl", "-sS", "--noproxy", "*", "--max-time", "60"]
    try:
        expect_bytes_line(server, b"serving")
        wire = WireCapture(stack, port)
        assert in_peer(stack, [*curl, base + "/"]) == b"hello from aiohttp"
        assert in_peer(stack, [*curl, "--data-binary", f"@{body}", base + "/sha"]).decode() \
            == sha(body.read_bytes())
        assert sha(in_peer(stack, [*curl, base + "/file"])) == sha(blob.read_bytes())
        assert_fins_no_rst(wire.stop())
    finally:
        out, err = stop(server)
    assert b"Traceback" not in err, err.decode()


def test_stdlib_and_asyncio_clients_on_p4tas_reach_linux(stack: Stack, www: Path) -> None:
    """A launched client: urllib, selectors and asyncio over p4tas to Linux servers; loopback,
    UNIX and UDP sockets of the same program stay on the kernel."""
    http_port, echo_port = 8001, 8002
    linux_http = popen_in(stack.peer, ["python3", "-u", "-m", "http.server", "--bind",
                                       stack.peer.peer_ip, "-d", str(www), str(http_port)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        expect_line(linux_http, "Serving HTTP")
        echo = linux_echo_server(stack, echo_port, n=2)
        script = www / "client.py"
        script.write_text(LAUNCHED_CLIENT)
        client = launch(stack, [str(script), stack.peer.peer_ip, str(http_port),
                                str(echo_port)], www)
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err.decode()
        report = json.loads(out.decode().splitlines()[-1])
    finally:
        linux_http.kill()
        finish(linux_http)
    echoed = json_result(echo, timeout=60)
    data = report["data"]
    assert report["urllib"] == sha((www / "big.bin").read_bytes())
    assert report["selectors"] == [errno.EINPROGRESS, True, data]  # on p4tas, the echo
    assert report["asyncio"] == data
    assert report["kernel"] == ["kernel", False, "unix", "udp"]
    assert sorted(entry[1] for entry in echoed.values()) == [data, data], echoed
