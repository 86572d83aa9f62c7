"""The launcher (host_lib.run) against the fake runtime: which sockets go to p4tas, that the
rest stays the kernel's, what is refused (naming the call), and its command line."""

from __future__ import annotations

import asyncio
import errno
import socket

import pytest

from host_lib.run import install
from host_lib.run.__main__ import parse
from host_lib.run.hybrid_socket import HybridSocket
from host_lib.run.placement import Placement, kernel_attached, kernel_local
from tests.support import host_lib_fake
from tests.support.host_lib_fake import LOCAL, PEER

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake


@pytest.fixture
def launched(fake, monkeypatch):
    """This process as a launched program (socket.socket and the loop policy restored after)."""
    monkeypatch.setattr(socket, "socket", socket.socket)
    policy = asyncio.get_event_loop_policy()
    install(Placement((LOCAL[0],)))
    yield fake
    asyncio.set_event_loop_policy(policy)


def test_placement() -> None:
    mine = Placement(("10.0.0.1",))
    assert mine.bind_host("") == "10.0.0.1" and mine.bind_host("10.0.0.1") == "10.0.0.1"
    assert mine.bind_host("127.0.0.1") is None and mine.bind_host("10.0.0.9") is None
    anywhere = Placement()
    assert anywhere.bind_host("0.0.0.0") == "0.0.0.0" and anywhere.bind_host("10.0.0.9")
    assert anywhere.bind_host("localhost") is None
    assert not anywhere.connects_via_p4tas("127.0.0.1") and anywhere.connects_via_p4tas(PEER[0])
    assert kernel_local("127.0.0.5") and not kernel_local("10.0.0.1")
    assert not kernel_attached("10.0.0.2")


def test_p4tas_sockets_and_kernel_sockets(launched) -> None:
    s = socket.socket()
    assert isinstance(s, HybridSocket) and not s.on_p4tas
    fd = s.fileno()
    s.settimeout(5)
    s.connect(PEER)
    assert s.on_p4tas and s.fileno() == fd  # the doorbell took the kernel socket's number
    assert s.getpeername() == PEER and s.gettimeout() == 5
    with pytest.raises(OSError, match=r"socket.fromfd\(\).*p4tas"):
        socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM)
    for call in (s.dup, s.detach, lambda: s.sendto(b"x", PEER),
                 lambda: s.sendmsg([b"x"], [(0, 0, b"")])):
        with pytest.raises(OSError) as info:
            call()
        assert info.value.errno == errno.EOPNOTSUPP and "p4tas socket" in str(info.value)
    assert s.sendmsg([b"ab", b"c"]) == 3
    s.close()
    for kernel in (socket.socket(socket.AF_INET6), socket.socket(type=socket.SOCK_DGRAM),
                   *socket.socketpair()):
        assert isinstance(kernel, HybridSocket) and not kernel.on_p4tas
        kernel.close()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        assert not srv.on_p4tas and srv.getsockname()[0] == "127.0.0.1"


def test_a_listener_and_so_reuseport(launched) -> None:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("", 8080))
    srv.listen()
    assert srv.on_p4tas and srv.getsockname() == (LOCAL[0], 8080)
    srv.close()
    with pytest.raises(OSError, match=r"SO_REUSEPORT"):
        socket.create_server(("", 8081), reuse_port=True)


def test_command_line() -> None:
    launch = parse(["--addr", "10.0.0.1", "-m", "http.server", "--bind", "10.0.0.1", "80"])
    assert launch.addrs == ["10.0.0.1"] and launch.module == "http.server"
    assert launch.argv == ["http.server", "--bind", "10.0.0.1", "80"]
    launch = parse(["--addr=10.0.0.3", "app.py", "-x"])
    assert launch.module is None and launch.argv == ["app.py", "-x"]
    for wrong in ([], ["--addr", "nowhere", "app.py"], ["--bogus", "app.py"]):
        with pytest.raises(SystemExit) as info:
            parse(wrong)
        assert info.value.code == 2
