"""SO_KEEPALIVE and TCP_KEEPIDLE/TCP_KEEPINTVL/TCP_KEEPCNT on host_lib sockets, as on Linux:
checked, readable back, sent to the runtime (SetKeepalive) for a connected socket, before
connect taken along once the connection exists, and inherited by accepted sockets."""

from __future__ import annotations

import errno
import json
import socket as std_socket

import pytest

import host_lib
from host_lib import control_protocol as cp
from tests.support import host_lib_fake
from tests.support.host_lib_fake import connected

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake

SOL, TCP = std_socket.SOL_SOCKET, std_socket.IPPROTO_TCP


def test_defaults_and_limits_are_linux_s(fake):
    s = host_lib.socket()
    assert s.getsockopt(SOL, std_socket.SO_KEEPALIVE) == 0
    assert s.getsockopt(TCP, std_socket.TCP_KEEPIDLE) == 7200
    assert s.getsockopt(TCP, std_socket.TCP_KEEPINTVL) == 75
    assert s.getsockopt(TCP, std_socket.TCP_KEEPCNT) == 9
    for option, bad in ((std_socket.TCP_KEEPIDLE, 0), (std_socket.TCP_KEEPIDLE, 32768),
                        (std_socket.TCP_KEEPINTVL, -1), (std_socket.TCP_KEEPCNT, 128)):
        with pytest.raises(OSError) as info:
            s.setsockopt(TCP, option, bad)
        assert info.value.errno == errno.EINVAL
    s.setsockopt(TCP, std_socket.TCP_KEEPCNT, (5).to_bytes(4, "little"))
    assert s.getsockopt(TCP, std_socket.TCP_KEEPCNT) == 5
    s.setsockopt(SOL, std_socket.SO_KEEPALIVE, 7)
    assert s.getsockopt(SOL, std_socket.SO_KEEPALIVE) == 1
    s.close()


def test_set_before_connect_reaches_the_runtime(fake):
    s = host_lib.socket()
    s.setsockopt(TCP, std_socket.TCP_KEEPIDLE, 30)
    s.setsockopt(SOL, std_socket.SO_KEEPALIVE, 1)
    s.connect(host_lib_fake.PEER)
    msg = fake.wait_for(cp.SetKeepalive)
    assert (msg.enabled, msg.idle_s, msg.interval_s, msg.count) == (True, 30, 75, 9)
    s.close()


def test_changes_on_a_connected_socket_are_sent(fake):
    s = connected(fake)
    s.setsockopt(TCP, std_socket.TCP_KEEPINTVL, 5)  # keepalive off: nothing to tell
    s.setsockopt(SOL, std_socket.SO_KEEPALIVE, 1)
    msg = fake.wait_for(cp.SetKeepalive)
    assert (msg.conn_id, msg.enabled, msg.interval_s) == (101, True, 5)
    s.setsockopt(TCP, std_socket.TCP_KEEPCNT, 2)
    assert fake.wait_for(cp.SetKeepalive).count == 2
    s.setsockopt(SOL, std_socket.SO_KEEPALIVE, 0)
    assert fake.wait_for(cp.SetKeepalive).enabled is False
    s.close()


def test_accepted_sockets_inherit_the_listener_s_keepalive(fake):
    srv = host_lib.socket()
    srv.setsockopt(SOL, std_socket.SO_KEEPALIVE, 1)
    srv.setsockopt(TCP, std_socket.TCP_KEEPIDLE, 11)
    srv.bind(("", 8080))
    srv.listen()
    conn_id, _ = fake.incoming()
    conn, _ = srv.accept()
    msg = fake.wait_for(cp.SetKeepalive)
    assert (msg.conn_id, msg.enabled, msg.idle_s) == (conn_id, True, 11)
    assert conn.getsockopt(TCP, std_socket.TCP_KEEPIDLE) == 11
    conn.close()
    srv.close()


def test_the_message_is_validated_on_decode():
    good = cp.SetKeepalive(req_id=1, conn_id=3, enabled=True, idle_s=1, interval_s=1, count=1)
    assert cp.decode(cp.encode(good)[4:]) == good
    for field, bad in (("idle_s", 0), ("interval_s", 32768), ("count", 128), ("enabled", 1)):
        with pytest.raises(cp.ProtocolError):
            cp.decode(json.dumps({**good.to_dict(), field: bad}).encode())
