"""What p4tas-env prints: the port and peer tables, what `up`, `run` and `status` show, and the
commands to try a running stack."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import echo_proc, env, runtime_proc, targets
from ..echo_proc import EchoInfo
from ..peers import Peer, PeerSet
from ..portmap import DEFAULT_PREFIX, ROLE_CPU, PortMap
from ..routed import RoutedHost
from ..state import SWITCH_LOG
from nic_contract.constants import ack_clone_sessions
from nic_contract.pipeline import PipelineFiles


def port_table(portmap: PortMap) -> str:
    """The port map as a text table: bmv2 port, switch iface, peer iface, role."""
    rows = [("bmv2 port", "switch iface", "peer iface", "role")]
    rows += [(str(l.port), l.switch_iface, l.peer_iface,
              f"{ROLE_CPU} (PacketIn/PacketOut, controller header in front)"
              if l.role == ROLE_CPU else l.role) for l in portmap.links()]
    if portmap.cpu_link is None:
        rows.append((str(portmap.cpu_port), "-", "-", f"{ROLE_CPU} (P4Runtime PacketIn/PacketOut)"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
                     for r in rows)


def peer_table(peer_set: PeerSet) -> str:
    """The Linux peers as a text table: wire port, namespace, iface, both ends' IP and MAC."""
    rows = [("wire port", "namespace", "iface", "peer ip", "peer mac", "p4tas ip", "p4tas mac")]
    rows += [(str(p.wire_port), p.netns, p.ifname, p.peer_ip, p.peer_mac, p.local_ip, p.local_mac)
             for p in peer_set]
    return _table(rows)


def routed_lines(hosts: Sequence[RoutedHost]) -> list[str]:
    """The routed hosts (up --routed) as a text table, after a blank line and a title."""
    if not hosts:
        return []
    rows = [("wire port", "namespace", "iface", "host ip", "p4tas route")]
    rows += [(str(h.wire_port), h.netns, h.ifname, h.ip, f"{h.subnet} via {h.gateway}")
             for h in hosts]
    return ["", "Linux hosts behind the peers (the peers route; the runtime has a route to each):",
            _table(rows)]


def _table(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns, the first row the heading."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip()
                     for r in rows)


def status_hint(prefix: str) -> str:
    """The command that shows the environment of `prefix`."""
    if prefix == DEFAULT_PREFIX:
        return "make status"
    return f"python -m bmv2_env --prefix {prefix} status"


def stop_hint(prefix: str) -> str:
    """The command that tears down the environment of `prefix`."""
    if prefix == DEFAULT_PREFIX:
        return "make clean-env"
    return f"python -m bmv2_env --prefix {prefix} down"


def _switch_lines(result: env.UpResult) -> list[str]:
    """The switch, gRPC and pipeline lines of `up` and `run`."""
    record = result.record
    name = targets.get(record.target).process
    if record.pipeline:
        sessions = ", ".join(
            f"{s}->{p}" for s, p in ack_clone_sessions(record.portmap.wire_ports).items())
        how = "loaded" if result.pipeline_loaded else "already loaded"
        pipe = f"{PipelineFiles().device_config.name} {how}; ACK clone sessions {sessions}"
    else:
        pipe = "not pushed (--no-pipeline)"
    log_note = "packet log on" if record.log else "packet log off"
    return [
        f"  {name:<19} pid {result.pid}, {log_note}, "
        f"output in {result.state_dir / SWITCH_LOG}",
        f"  P4Runtime (gRPC)    {record.grpc_addr}, device id 0",
        f"  pipeline            {pipe}",
    ]


def describe_up(result: env.UpResult) -> str:
    """What `up` prints: switch, gRPC, pipeline, port table, how to stop."""
    record = result.record
    return "\n".join([
        f"p4tas {record.target} environment '{record.portmap.prefix}' is up",
        *_switch_lines(result),
        f"  state dir           {result.state_dir}",
        "",
        port_table(record.portmap),
        *(["", peer_table(result.peers)] if result.peers is not None else []),
        *routed_lines(result.routed),
        "",
        f"Stop it with: {stop_hint(record.portmap.prefix)}",
    ])


EXAMPLE_PORT, EXAMPLE_LINUX_PORT = 5001, 6001


def try_it(peer: Peer, control_socket: Path, python: str = sys.executable) -> list[str]:
    """Commands to try a running stack: Linux <-> p4tas through the switch, and host_lib's API."""
    sock, ns, ip, lip = str(control_socket), peer.netns, peer.local_ip, peer.peer_ip
    channel = ("from host_lib.control_channel import ControlChannel; "
               "from host_lib import control_protocol as cp; "
               f'ch = ControlChannel("{sock}"); ctx = ch.create_context(); ')
    return [
        f"  # 1. an application accepts one connection on p4tas {ip}:{EXAMPLE_PORT} and closes "
        "it (host_lib.control_channel:",
        "  #    listen, wait for the IncomingConnection event, close); it waits up to 60 s:",
        f"  {python} -c '{channel}ch.listen(ctx, {EXAMPLE_PORT}); "
        "inc = ch.wait_for(cp.IncomingConnection, timeout=60); "
        'print("accepted", inc.peer_ip, inc.peer_port); ch.close_connection(inc.conn_id); '
        "ch.wait_for(cp.Closed, conn_id=inc.conn_id); ch.close()'",
        f"  # 2. meanwhile, in another terminal: the Linux peer in {ns} connects to it and sees "
        "EOF when p4tas closes",
        "  #    (with no p4tas listener on the port, the connect is refused: the runtime "
        "answers the SYN with a RST):",
        f"  ip netns exec {ns} python3 -c 'import socket; "
        f's = socket.create_connection(("{ip}", {EXAMPLE_PORT}), timeout=5); '
        'print("connected from", s.getsockname()); '
        'print("eof" if s.recv(1) == b"" else "data"); s.close()' + "'",
        f"  # 3. p4tas connects out to a Linux listener in {ns}:",
        f"  ip netns exec {ns} python3 -c 'import socket; "
        f'srv = socket.create_server(("{lip}", {EXAMPLE_LINUX_PORT})); c, a = srv.accept(); '
        'print("accepted", a); c.close()' + "' &",
        f"  {python} -c '{channel}"
        f'cid = ch.connect(ctx, "{lip}", {EXAMPLE_LINUX_PORT}); '
        "print(ch.wait_for((cp.Connected, cp.ConnectFailed), conn_id=cid)); "
        "ch.close_connection(cid); ch.wait_for(cp.Closed, conn_id=cid); ch.close()'",
        "  # the runtime's counters:",
        f"  {python} -c 'from host_lib.control_channel import ControlChannel; "
        f'print(ControlChannel("{sock}").stats())' + "'",
    ]


def describe_run(result: env.UpResult, info: runtime_proc.RuntimeInfo) -> str:
    """What `run` prints: what runs, the peers, commands to try it, how to stop it."""
    record = result.record
    prefix = record.portmap.prefix
    peers = result.peers
    lines = [
        f"p4tas is running (environment '{prefix}')",
        *_switch_lines(result),
        f"  runtime             pid {info.pid}, log in {info.log_path}",
        f"  control socket      {info.control_socket} (applications: "
        f"host_lib.control_channel.ControlChannel(path))",
        f"  state dir           {result.state_dir}",
        "",
        port_table(record.portmap),
    ]
    if peers is not None and len(peers):
        lines += ["", "Linux TCP peers (each in its namespace) and the p4tas address facing them:",
                  peer_table(peers), *routed_lines(result.routed), "", "Try it (as root):",
                  *try_it(peers.peers[0], info.control_socket)]
    lines += ["", f"Status: {status_hint(prefix)}",
              f"Stop it with: {stop_hint(prefix)}"]
    return "\n".join(lines)


def talk_command(echo: EchoInfo) -> list[str]:
    """Ready-to-paste commands that talk to the echo server from the peer namespace."""
    ns, host, port = echo.netns, echo.host, echo.port
    lines = []
    if shutil.which("nc"):
        lines.append(f"  ip netns exec {ns} nc {host} {port}")
    # Each line typed (or piped) in is sent, and what comes back is printed; Ctrl-D ends it.
    lines.append(
        f"  ip netns exec {ns} python3 -c 'import socket, sys; "
        f's = socket.create_connection(("{host}", {port}), timeout=10); '
        '[print(s.sendall(line.encode()) or s.recv(65536).decode(), end="", flush=True) '
        "for line in sys.stdin]'")
    return lines


def metrics_lines(runtime_argv: Sequence[str]) -> list[str]:
    """Where the runtime serves its metrics, if it was asked to."""
    args = iter(runtime_argv)
    for arg in args:
        if arg == "--metrics-port" or arg.startswith("--metrics-port="):
            port = arg.partition("=")[2] or next(args, "")
            return [f"  metrics             http://127.0.0.1:{port}/metrics (Prometheus)"]
    return []


def describe_foreground(result: env.UpResult, info: runtime_proc.RuntimeInfo,
                        echo: EchoInfo) -> str:
    """What foreground `run` prints before its READY line."""
    record = result.record
    prefix = record.portmap.prefix
    lines = [
        f"p4tas is running (environment '{prefix}'); Ctrl-C stops everything",
        *_switch_lines(result),
        f"  runtime             pid {info.pid}, log in {info.log_path}",
        f"  control socket      {info.control_socket} (host_lib: "
        f"P4TAS_CONTROL_SOCKET={info.control_socket})",
        f"  connections         {sys.executable} -m runtime flows --control-socket "
        f"{info.control_socket}",
        *metrics_lines(info.command),
        f"  echo server         pid {echo.pid}, examples/echo_server.py on p4tas "
        f"{echo.host}:{echo.port}, log in {echo.log_path}",
        f"  state dir           {result.state_dir}",
        "",
        port_table(record.portmap),
    ]
    peers = result.peers
    if peers is not None and len(peers):
        lines += ["", "Linux TCP peers (each in its namespace) and the p4tas address facing them:",
                  peer_table(peers), *routed_lines(result.routed)]
    lines += ["", f"Talk to the echo server from the Linux peer in {echo.netns} (as root, in "
                  "another terminal; type lines, Ctrl-D ends):", *talk_command(echo)]
    if peers is not None and len(peers):
        lines += ["", "More to try (host_lib's control API, another port):",
                  *try_it(peers.peers[0], info.control_socket)]
    lines += ["", f"Status: {status_hint(prefix)}",
              "Stop: Ctrl-C here (or SIGTERM); if this process was killed, "
              f"{stop_hint(prefix)} removes what is left"]
    return "\n".join(lines)


def describe_status(st: env.Status) -> str:
    """What `status` prints."""
    if st.nothing:
        return f"environment '{st.prefix}': nothing is up"
    head = "up" if st.up else f"PARTLY up; clean it with: {stop_hint(st.prefix)}"
    lines = [f"environment '{st.prefix}': {head}"]
    lines.append(f"  {st.switch_name:<19} {f'pid {st.pid} running' if st.pid else 'not running'}")
    if st.record:
        lines.append(f"  target              {st.record.target} (as brought up)")
        reach = "accepting connections" if st.grpc_up else "NOT reachable"
        lines.append(f"  P4Runtime (gRPC)    {st.record.grpc_addr}, {reach}")
        pushed = "pushed by up" if st.record.pipeline else "not pushed (--no-pipeline)"
        lines.append(f"  pipeline            {pushed}")
        missing = sorted(set(st.expected_interfaces) - set(st.interfaces))
        if missing:
            lines.append(f"  missing veths       {' '.join(missing)}")
    lines.append(f"  veths present       {' '.join(st.interfaces) or 'none'}")
    if st.runtime_pid:
        lines.append(f"  runtime             pid {st.runtime_pid} running, control socket "
                     f"{runtime_proc.control_socket_path(st.state_dir)}")
    elif st.runtime_pid_file:
        lines.append(f"  runtime             NOT running (see "
                     f"{runtime_proc.log_path(st.state_dir)})")
    else:
        lines.append("  runtime             not started (`run` starts it)")
    if st.echo_pid:
        lines.append(f"  echo server         pid {st.echo_pid} running, log in "
                     f"{echo_proc.log_path(st.state_dir)}")
    if st.namespaces:
        lines.append(f"  namespaces          {' '.join(st.namespaces)}")
    if st.missing_peers:
        lines.append(f"  missing peers       {' '.join(st.missing_peers)}")
    elif st.record and st.record.peers and st.peers is None:
        lines.append("  missing peers       the peer table (peers.json) is unreadable")
    lines.append(f"  state dir           {st.state_dir}")
    if st.record:
        lines += ["", port_table(st.record.portmap)]
    if st.peers is not None:
        lines += ["", peer_table(st.peers)]
    return "\n".join(lines)
