"""Kernel-like readiness of host_lib sockets (host_lib.doorbell, host_lib.event_thread): what
select/poll report follows Linux's tcp_poll, and changes while the application sleeps in them."""

from __future__ import annotations

import errno
import select
import socket as std_socket

import host_lib
from host_lib import control_protocol as cp
from host_lib.doorbell import Doorbell, Readiness, is_doorbell
from tests.support import host_lib_fake
from tests.support.host_lib_fake import LAYOUT, LOCAL, PEER, connected

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake

IN, OUT, RDHUP, HUP = select.POLLIN, select.POLLOUT, select.POLLRDHUP, select.POLLHUP


def poll_mask(fd: int, timeout_ms: int = 0) -> int:
    poller = select.poll()
    poller.register(fd, IN | OUT | RDHUP)
    events = poller.poll(timeout_ms)
    return events[0][1] if events else 0


def wait_mask(fd: int, want: int, timeout_ms: int = 5000) -> int:
    """Block in poll() until `want` shows (the event thread sets it meanwhile)."""
    poller = select.poll()
    poller.register(fd, want)
    events = poller.poll(timeout_ms)
    return events[0][1] if events else 0


def test_doorbell_reports_what_it_is_set_to() -> None:
    bell = Doorbell()
    fd = bell.fileno()
    assert poll_mask(fd) == OUT and is_doorbell(fd)
    bell.set(Readiness())
    assert poll_mask(fd) == 0
    bell.set(Readiness(readable=True))
    assert poll_mask(fd) == IN
    bell.set(Readiness(readable=True, writable=True))
    assert poll_mask(fd) == IN | OUT
    bell.set(Readiness(writable=True, rdhup=True))
    assert poll_mask(fd) == IN | OUT | RDHUP
    bell.set(Readiness(hup=True))  # hup implies the rest, and stays
    assert poll_mask(fd) & (IN | OUT | RDHUP | HUP) == IN | OUT | RDHUP | HUP
    bell.close()
    assert not is_doorbell(fd)


def test_writable_follows_tx_space(fake) -> None:
    s = connected(fake)
    s.setblocking(False)
    fd = s.fileno()
    assert poll_mask(fd) == OUT
    sent = 0
    while True:
        try:
            sent += s.send(b"x" * 1000)
        except BlockingIOError:
            break
    assert sent == LAYOUT.tx_ring_size and poll_mask(fd) == 0
    fake.take_tx(0)  # the NIC sent and the peer acknowledged: TX_ACKED frees the ring
    assert wait_mask(fd, OUT) == OUT  # set by the event thread while this thread sleeps
    s.close()


def test_readable_then_rdhup_after_the_peers_fin(fake) -> None:
    s = connected(fake)
    s.setblocking(False)
    fd = s.fileno()
    fake.deliver(0, b"abc")
    assert wait_mask(fd, IN) == IN
    assert s.recv(10) == b"abc"
    assert poll_mask(fd) == OUT
    fake.send(cp.PeerClosed(ctx_id=0, conn_id=101))
    assert wait_mask(fd, RDHUP) == RDHUP
    assert poll_mask(fd) == IN | OUT | RDHUP and s.recv(10) == b""
    s.close()


def test_a_reset_hangs_up(fake) -> None:
    s = connected(fake)
    fd = s.fileno()
    fake.send(cp.ConnectionReset(ctx_id=0, conn_id=101, message="reset by peer"))
    assert wait_mask(fd, RDHUP) & HUP  # the shutdown sets both, after POLLIN and POLLOUT
    assert poll_mask(fd) & (IN | OUT | RDHUP) == IN | OUT | RDHUP
    try:
        s.recv(1)
        raise AssertionError("no ECONNRESET")
    except ConnectionResetError:
        pass
    s.close()


def test_a_failed_nonblocking_connect_is_writable_with_so_error(fake) -> None:
    fake.connect_mode = "silent"
    s = host_lib.socket()
    s.setblocking(False)
    assert s.connect_ex(PEER) == errno.EINPROGRESS
    fd = s.fileno()
    assert poll_mask(fd) == 0
    fake.wait_for(cp.Connect)
    fake.send(cp.ConnectFailed(ctx_id=0, conn_id=101, errno=errno.ECONNREFUSED,
                               message="refused"))
    assert wait_mask(fd, OUT) & OUT
    assert s.getsockopt(std_socket.SOL_SOCKET, std_socket.SO_ERROR) == errno.ECONNREFUSED
    s.close()


def test_listener_readable_with_a_connection_to_accept(fake) -> None:
    srv = host_lib.socket()
    srv.bind(LOCAL)
    srv.listen()
    fd = srv.fileno()
    assert poll_mask(fd) == 0  # a listener is never writable
    fake.incoming()
    assert wait_mask(fd, IN) == IN
    conn, _ = srv.accept()
    assert poll_mask(fd) == 0
    conn.close()
    srv.close()
