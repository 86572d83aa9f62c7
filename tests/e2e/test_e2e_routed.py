"""End to end through a router: p4tas is 10.99.1.1 on 10.99.1.0/24; a Linux host sits at
10.98.1.2 on 10.98.1.0/24 behind the peer namespace, which forwards between the two subnets
(ip_forward=1, bmv2_env.routed). The runtime reaches the host with `--route 10.98.1.0/24 via
10.99.1.2` and has a default route (`--gateway`) through an address nobody answers ARP for.

Nothing on the wire subnet answers ARP for 10.98.1.2 (the router does no proxy ARP), so a
connection to the host works only if p4tas ARPs for the gateway and sends to its MAC. Both
directions move data checked by SHA-256 on both ends, and the close is checked on the router's
wire-side veth: FIN both ways, no RST.
"""

from __future__ import annotations

import errno
import random
import subprocess
import sys

import pytest

import host_lib
from bmv2_env.peers import popen_in
from host_lib import control_protocol as cp
from tests.support.e2e_helpers import (LINUX_ECHO_SERVER_N, LINUX_STREAM_CLIENT, MIB, PORT,
                                       WireCapture, Worker, assert_fins_no_rst, expect_line,
                                       host_lib_stack, json_result, p4tas_echo, p4tas_listener,
                                       recv_exactly, send_messages, settled_stats, sha)
from tests.support.stack import Stack

DEAD_GATEWAY = "10.99.1.77"   # on our subnet, but no host there: the default route's gateway
UNROUTED_HOST = "10.97.1.2"   # reached only by the default route
RUNTIME_ARGS = ["--time-wait", "0.5", "--gateway", DEAD_GATEWAY]
TOTAL = 4 * MIB
MSG = 65536


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, RUNTIME_ARGS, routed=True)


@pytest.fixture(autouse=True)
def no_leaks(stack: Stack):
    """After each test: every connection gone, no flow id held."""
    yield
    after = settled_stats(stack)
    assert after["connections"] == 0 and after["flows_in_use"] == 0, after


def behind_router(stack: Stack, script: str, *args: str) -> subprocess.Popen:
    """Run a Python script on the routed host (its namespace, behind the router)."""
    return popen_in(stack.routed.netns, [sys.executable, "-c", script, *args],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_runtime_routes_to_the_host_through_the_peer(stack: Stack) -> None:
    host = stack.routed
    assert (host.subnet, host.gateway) == ("10.98.1.0/24", stack.peer.peer_ip)
    assert f"route 10.98.1.0/24 via {host.gateway}" in stack.runtime.ready_line
    assert f"route default via {DEAD_GATEWAY}" in stack.runtime.ready_line


def test_p4tas_client_to_a_linux_server_behind_the_router(stack: Stack) -> None:
    host = stack.routed
    server = behind_router(stack, LINUX_ECHO_SERVER_N, host.ip, str(PORT), "1")
    expect_line(server, "listening")
    capture = WireCapture(stack, PORT)
    data = random.Random(17).randbytes(TOTAL)
    with host_lib.socket() as s:
        s.settimeout(60)
        s.connect((host.ip, PORT))
        sender = Worker(send_messages, s, data, MSG)
        sender.start()
        got = recv_exactly(s, TOTAL)
        sender.result(timeout=60)
        s.shutdown(host_lib.SHUT_WR)   # once the echo is all in, as test_e2e_data does
        assert s.recv(1) == b""
        port = s.getsockname()[1]
    echoed, echoed_sha, error = json_result(server, timeout=90)[str(port)]
    seen = capture.stop()
    assert error is None and echoed == TOTAL
    assert echoed_sha == sha(data)   # p4tas -> Linux, through the router
    assert sha(got) == sha(data)     # Linux -> p4tas
    assert_fins_no_rst(seen)


def test_linux_client_behind_the_router_to_a_p4tas_server(stack: Stack) -> None:
    capture = WireCapture(stack, PORT)
    with p4tas_listener(stack) as listener:
        server = Worker(lambda: p4tas_echo(listener.accept()[0], MIB))
        server.start()
        client = behind_router(stack, LINUX_STREAM_CLIENT, stack.peer.local_ip, str(PORT),
                               str(TOTAL), str(MSG), "23")
        report = json_result(client, timeout=90)
        echoed, echoed_sha = server.result(timeout=30)
    seen = capture.stop()
    assert report["errors"] == [] and report["got"] == TOTAL, report
    assert echoed == TOTAL and echoed_sha == report["sent_sha"]   # Linux -> p4tas
    assert report["got_sha"] == report["sent_sha"]                # p4tas -> Linux
    assert_fins_no_rst(seen)


def test_a_closed_port_behind_the_router_refuses(stack: Stack) -> None:
    """The host's RST comes back through the router to the connection it answers."""
    with host_lib.socket() as s:
        s.settimeout(10)
        with pytest.raises(ConnectionRefusedError):
            s.connect((stack.routed.ip, PORT + 1))


def test_a_dead_default_gateway_fails_the_connect_with_ehostunreach(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        conn_id = ch.connect(ctx, UNROUTED_HOST, 80, timeout_s=2)
        failed = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=10)
    assert isinstance(failed, cp.ConnectFailed), failed
    assert failed.errno == errno.EHOSTUNREACH, failed
    assert DEAD_GATEWAY in failed.message and UNROUTED_HOST in failed.message
