"""End to end: connection control between the p4tas stack (bmv2 + runtime) and the real Linux
TCP stack in a network namespace."""

from __future__ import annotations

import errno
import time
from pathlib import Path

import pytest

from bmv2_env.portmap import PortMap
from host_lib import control_protocol as cp
from tests.support.stack import PREFIX, Stack, stack_fixture

LISTEN_PORT = 5001
RUNTIME_ARGS = ["--time-wait", "0.5", "--syn-retries", "2", "--syn-rto", "0.3"]

# Linux client: connect, report, wait for our FIN (EOF), close.
CONNECT_UNTIL_EOF = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", s.getsockname()[1], flush=True)
print("eof" if s.recv(1) == b"" else "data", flush=True)
s.close()
"""

# Linux client: connect and close at once (the peer closes first).
CONNECT_AND_CLOSE = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
s.close()
"""

# Linux client: connect to a port nobody listens on.
CONNECT_EXPECT_REFUSED = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    print("connected")
except ConnectionRefusedError:
    print("refused")
except OSError as exc:
    print("other", exc)
"""

# Linux server: accept one connection, wait for EOF, close.
ACCEPT_UNTIL_EOF = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen()
print("listening", flush=True)
srv.settimeout(15)
conn, addr = srv.accept()
print("accepted", addr[0], flush=True)
print("eof" if conn.recv(1) == b"" else "data", flush=True)
conn.close()
"""

# Linux client loop: N connections, each closed by p4tas (EOF) then by Linux.
CONNECT_LOOP = """
import socket, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    assert s.recv(1) == b""
    s.close()
print("done", n, flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    # This module keeps PacketIn/PacketOut on P4Runtime (a target whose CPU port is no
    # network interface); the others use the CPU port's veth (tests.support.stack).
    yield from stack_fixture(tmp_path_factory, RUNTIME_ARGS, cpu_interface=False)


def local_ip(stack: Stack) -> str:
    return stack.peer.local_ip


def wait_until(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_linux_connects_to_p4tas_listener_and_p4tas_closes(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, LISTEN_PORT)
        client = stack.linux(CONNECT_UNTIL_EOF, local_ip(stack), str(LISTEN_PORT))
        incoming = ch.accept(timeout=10)
        assert incoming.listener_id == listening.listener_id
        assert (incoming.peer_ip, incoming.local_port) == (stack.peer.peer_ip, LISTEN_PORT)
        entries = stack.flow_entries()
        assert len(entries) == 1, "the flow must be in the fast path once established"
        ch.close_connection(incoming.conn_id)
        out, err = client.communicate(timeout=15)
        assert out.split("\n")[1] == "eof", (out, err)
        ch.wait_for(cp.Closed, conn_id=incoming.conn_id, timeout=10)
        wait_until(lambda: not stack.flow_entries(), what="flow entries removed")
        ch.close_listener(listening.listener_id)


def test_packet_ins_come_over_p4runtime_here(stack: Stack) -> None:
    """No CPU veth: the handshake's PacketIns reach the runtime on the P4Runtime stream."""
    cpu_link = PortMap(1, PREFIX, cpu_interface=True).cpu_link
    assert not Path(f"/sys/class/net/{cpu_link.peer_iface}").exists()
    assert "--cpu-interface" not in Path(f"/proc/{stack.runtime.pid}/cmdline").read_text()


def test_linux_closes_first(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, LISTEN_PORT)
        client = stack.linux(CONNECT_AND_CLOSE, local_ip(stack), str(LISTEN_PORT))
        incoming = ch.accept(timeout=10)
        ch.wait_for(cp.PeerClosed, conn_id=incoming.conn_id, timeout=10)
        ch.close_connection(incoming.conn_id)
        ch.wait_for(cp.Closed, conn_id=incoming.conn_id, timeout=10)
        assert client.wait(timeout=10) == 0
        wait_until(lambda: not stack.flow_entries(), what="flow entries removed")
        ch.close_listener(listening.listener_id)


def test_p4tas_connects_to_linux_listener(stack: Stack) -> None:
    server = stack.linux(ACCEPT_UNTIL_EOF, stack.peer.peer_ip, "6001")
    assert server.stdout.readline().strip() == "listening"
    with stack.channel() as ch:
        ctx = ch.create_context()
        conn_id = ch.connect(ctx, stack.peer.peer_ip, 6001, timeout_s=10)
        connected = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=10)
        assert isinstance(connected, cp.Connected), connected
        assert connected.peer_port == 6001 and connected.local_ip == local_ip(stack)
        assert len(stack.flow_entries()) == 1
        ch.close_connection(conn_id)
        out, err = server.communicate(timeout=15)
        assert out.split("\n")[:2] == [f"accepted {local_ip(stack)}", "eof"], (out, err)
        ch.wait_for(cp.Closed, conn_id=conn_id, timeout=10)
        wait_until(lambda: not stack.flow_entries(), what="flow entries removed")


def test_connect_to_closed_linux_port_is_refused(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        conn_id = ch.connect(ctx, stack.peer.peer_ip, 6999, timeout_s=10)
        failed = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=10)
        assert isinstance(failed, cp.ConnectFailed) and failed.errno == errno.ECONNREFUSED
        assert isinstance(failed.to_exception(), ConnectionRefusedError)


def test_connect_to_unreachable_host_fails_within_bound(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        start = time.monotonic()
        conn_id = ch.connect(ctx, "10.99.1.77", 80, timeout_s=2)
        failed = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=10)
        elapsed = time.monotonic() - start
        assert isinstance(failed, cp.ConnectFailed), failed
        assert failed.errno == errno.EHOSTUNREACH and "10.99.1.77" in failed.message
        assert elapsed < 4, f"took {elapsed:.1f} s for a 2 s bound"


def test_syn_to_closed_p4tas_port_gets_rst(stack: Stack) -> None:
    client = stack.linux(CONNECT_EXPECT_REFUSED, local_ip(stack), "5999")
    out, err = client.communicate(timeout=15)
    assert out.strip() == "refused", (out, err)


def test_arp_answered_for_our_address(stack: Stack) -> None:
    from bmv2_env.peers import run_in
    # The connections above needed ARP already; check the neighbour entry's MAC.
    client = stack.linux(CONNECT_EXPECT_REFUSED, local_ip(stack), "5999")
    client.communicate(timeout=15)
    out = run_in(stack.peer, ["ip", "neigh", "show", local_ip(stack)], capture_output=True,
                 text=True).stdout
    assert stack.peer.local_mac in out.lower(), out


def test_200_connections_leak_nothing(stack: Stack) -> None:
    n = 200
    with stack.channel() as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, LISTEN_PORT, backlog=64)
        client = stack.linux(CONNECT_LOOP, local_ip(stack), str(LISTEN_PORT), str(n))
        for _ in range(n):
            incoming = ch.accept(timeout=15)
            ch.close_connection(incoming.conn_id)
        out, err = client.communicate(timeout=120)
        assert out.strip() == f"done {n}", (out, err)
        ch.close_listener(listening.listener_id)

        def settled():
            stats = ch.stats()
            return stats if stats["connections"] == 0 else None
        stats = wait_until(settled, timeout=15, what="all connections gone")
        assert stats["flows_in_use"] == 0 and stats["listeners"] == 0
        assert stats["local_ports_in_use"] == 0
        assert stats.get("flows_installed", 0) >= n
        assert stats["flows_installed"] == stats["flows_removed"]
        assert not stack.flow_entries()


# Raw RST from the namespace with a sequence number far outside the window (a blind attack).
BLIND_RST = """
import sys
from scapy.all import IP, TCP, send
src, sport, dst, dport, seq = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
send(IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="R", seq=seq), verbose=False)
print("sent", flush=True)
"""


def test_blind_rst_with_wrong_sequence_is_ignored(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, LISTEN_PORT)
        client = stack.linux(CONNECT_UNTIL_EOF, local_ip(stack), str(LISTEN_PORT))
        incoming = ch.accept(timeout=10)
        before = ch.stats().get("blind_rsts_ignored", 0)
        attacker = stack.linux(BLIND_RST, stack.peer.peer_ip, str(incoming.peer_port),
                               local_ip(stack), str(LISTEN_PORT), str(0x7FFF0000))
        assert attacker.communicate(timeout=30)[0].strip() == "sent"
        wait_until(lambda: ch.stats().get("blind_rsts_ignored", 0) > before,
                   what="the runtime to see the RST")
        assert stack.flow_entries(), "a blind RST must not tear the connection down"
        ch.close_connection(incoming.conn_id)
        out, err = client.communicate(timeout=15)
        assert out.split("\n")[1] == "eof", (out, err)
        ch.wait_for(cp.Closed, conn_id=incoming.conn_id, timeout=10)
        ch.close_listener(listening.listener_id)


# Linux client: connect, then report how the connection ended.
CONNECT_UNTIL_END = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
print("connected", flush=True)
try:
    print("eof" if s.recv(1) == b"" else "data", flush=True)
except ConnectionResetError:
    print("reset", flush=True)
"""


def test_vanished_application_loses_listeners_and_closes_connections(stack: Stack) -> None:
    """As the kernel closes a dead process's sockets: its listeners go, an idle connection
    is closed with a FIN (no data waits unread), and everything is gone once the peer closes."""
    ch = stack.channel()
    ctx = ch.create_context()
    ch.listen(ctx, LISTEN_PORT)
    client = stack.linux(CONNECT_UNTIL_END, local_ip(stack), str(LISTEN_PORT))
    ch.accept(timeout=10)
    ch._sock.close()  # the application dies without a word
    out, err = client.communicate(timeout=15)
    assert out.split("\n")[1] == "eof", (out, err)
    with stack.channel() as other:
        wait_until(lambda: other.stats()["listeners"] == 0, what="listener removed")
        wait_until(lambda: other.stats()["connections"] == 0, what="connection reset")
        other.listen(other.create_context(), LISTEN_PORT)  # the port is free again
    wait_until(lambda: not stack.flow_entries(), what="flow entries removed")


def test_bad_messages_get_errors_and_the_daemon_survives(stack: Stack) -> None:
    import socket
    import struct
    with stack.channel() as ch:
        ctx = ch.create_context()
        with pytest.raises(OSError) as bad_ctx:
            ch.listen(ctx + 1000, LISTEN_PORT)
        assert "no context" in str(bad_ctx.value)
        with pytest.raises(OSError) as bad_conn:
            ch.close_connection(424242)
        assert "no connection 424242" in str(bad_conn.value)
        # Raw garbage on a fresh socket: an error reply, then the daemon still serves others.
        raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        raw.connect(str(stack.socket_path))
        payload = b"{not json"
        raw.sendall(struct.pack("!I", len(payload)) + payload)
        reply = cp.recv_message(raw)
        assert isinstance(reply, cp.Error) and "JSON" in reply.message
        raw.close()
        assert ch.stats()["listeners"] == 0


# Linux clients: open N connections at once, report how many got established.
CONNECT_MANY = """
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    socks.append(s)
print("started", flush=True)
time.sleep(0.5)
for s in socks:  # a byte each: a connection made by SYN cookie is retransmitted into existence
    try:
        s.send(b"x")
    except OSError:
        pass
time.sleep(float(sys.argv[4]))
for s in socks:
    s.close()
"""


def test_full_backlog_drops_syns_until_the_application_accepts(stack: Stack) -> None:
    with stack.channel() as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, LISTEN_PORT, backlog=2)
        before = ch.stats().get("syn_backlog_drops", 0)
        clients = stack.linux(CONNECT_MANY, local_ip(stack), str(LISTEN_PORT), "3", "4")
        first = ch.wait_for(cp.IncomingConnection, timeout=10)
        second = ch.wait_for(cp.IncomingConnection, timeout=10)
        # The third SYN gets a SYN cookie (the half-open slots are taken); its ACK and data
        # are dropped while the accept queue is full.
        wait_until(lambda: ch.stats().get("syn_backlog_drops", 0) > before,
                   what="the third handshake to be held back")
        assert ch.next_event(timeout=0.3) is None, "no third connection while the queue is full"
        for incoming in (first, second):
            ch._request(lambda r, c=incoming.conn_id: cp.Accept(req_id=r, conn_id=c))
        # Linux retransmits its byte (with the cookie's ACK); now there is room.
        third = ch.wait_for(cp.IncomingConnection, timeout=10)
        assert third.conn_id not in (first.conn_id, second.conn_id)
        clients.communicate(timeout=15)
        for incoming in (first, second, third):
            ch.close_connection(incoming.conn_id)
        ch.close_listener(listening.listener_id)
        try:
            wait_until(lambda: ch.stats()["connections"] == 0, what="connections gone")
        except AssertionError:
            raise AssertionError(f"connections left: {ch.stats()}") from None


def test_connect_times_out_when_the_peer_never_answers(stack: Stack) -> None:
    """ARP is resolved, then the peer is cut off: the SYN retries run out."""
    from bmv2_env.peers import run_in
    with stack.channel() as ch:
        ctx = ch.create_context()
        server = stack.linux(ACCEPT_UNTIL_EOF, stack.peer.peer_ip, "6002")
        assert server.stdout.readline().strip() == "listening"  # ARP is resolved by now too
        first = ch.connect(ctx, stack.peer.peer_ip, 6002, timeout_s=10)
        assert isinstance(ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=first), cp.Connected)
        ch.close_connection(first)
        server.communicate(timeout=15)
        # This kernel has no netem; a peer whose link is down loses everything just as well.
        link = ["ip", "link", "set", "dev", stack.peer.ifname]
        run_in(stack.peer, [*link, "down"], check=True)
        try:
            start = time.monotonic()
            conn_id = ch.connect(ctx, stack.peer.peer_ip, 6003, timeout_s=10)
            failed = ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=conn_id, timeout=15)
            elapsed = time.monotonic() - start
        finally:
            run_in(stack.peer, [*link, "up"], check=True)
        assert isinstance(failed, cp.ConnectFailed) and failed.errno == errno.ETIMEDOUT, failed
        # --syn-rto 0.3 with 2 retries: 0.3 + 0.6 + 1.2 s.
        assert 2.0 < elapsed < 4.0, elapsed


def test_restarted_runtime_removes_flows_of_a_killed_one(stack: Stack) -> None:
    """A daemon killed with SIGKILL leaves its flows in the switch; the next one cleans up."""
    import os
    import signal
    from bmv2_env import runtime_proc
    ch = stack.channel()
    ctx = ch.create_context()
    ch.listen(ctx, LISTEN_PORT)
    client = stack.linux(CONNECT_UNTIL_END, local_ip(stack), str(LISTEN_PORT))
    ch.accept(timeout=10)
    assert len(stack.flow_entries()) == 1
    os.kill(stack.runtime.pid, signal.SIGKILL)
    wait_until(lambda: not runtime_proc.is_runtime_process(stack.runtime.pid,
                                                           stack.runtime.state_dir),
               what="the killed daemon to be gone")
    assert len(stack.flow_entries()) == 1, "nobody removed the flow: the daemon was killed"
    runtime_proc.stop(stack.runtime.state_dir)  # only clears the pid file now
    killed = stack.runtime.pid
    stack.runtime = runtime_proc.start(stack.runtime.state_dir, extra=RUNTIME_ARGS)
    assert not stack.flow_entries(), "the new daemon must remove the stale flow"
    assert not list(Path("/dev/shm").glob(f"p4tas-{killed}-app*")), "stale shared memory"
    client.kill()
    client.communicate()


def test_runtime_stop_resets_connections_and_removes_flows(stack: Stack) -> None:
    """Last in this module: it stops the daemon (the fixture's teardown copes)."""
    from bmv2_env import runtime_proc
    ch = stack.channel()
    ctx = ch.create_context()
    ch.listen(ctx, LISTEN_PORT)
    client = stack.linux(CONNECT_UNTIL_END, local_ip(stack), str(LISTEN_PORT))
    incoming = ch.accept(timeout=10)
    assert len(stack.flow_entries()) == 1
    runtime_proc.terminate(stack.runtime.pid, stack.runtime.log_path.parent, 20)
    reset = ch.wait_for(cp.ConnectionReset, conn_id=incoming.conn_id, timeout=10)
    assert "stopping" in reset.message
    out, err = client.communicate(timeout=15)
    assert out.split("\n")[1] == "reset", (out, err)
    assert not stack.flow_entries(), "the daemon must remove what it installed"
    assert any("stopped; stats" in line for line in stack.runtime_log)
