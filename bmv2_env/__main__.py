"""p4tas-env: bring the development environment up and down on the selected fast-path target
(TARGET=bmv2|soft, bmv2_env.targets), and run the PTF suite on it."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from . import echo_proc, env, ptf_runner, runtime_proc, switch, system_deps, targets
from .echo_proc import EchoInfo, EchoProcError
from .peers import Peer, PeerError, PeerSet
from nic_contract.constants import ack_clone_sessions

from nic_contract.pipeline import PipelineError, PipelineFiles
from .portmap import (DEFAULT_PREFIX, DEFAULT_WIRE_PORTS, MAX_WIRE_PORTS, MIN_WIRE_PORTS, ROLE_CPU,
                      PortMap, validate_prefix)
from .ptf_runner import PtfCounts, PtfError
from .runtime_proc import RuntimeProcError
from .shell import CommandError
from .state import PTF_LOG, RUNTIME_LOG, STATE_DIR_ENV, SWITCH_LOG, EnvRecord
from .switch import DEFAULT_GRPC_PORT, SwitchError
from .targets import TARGET_ENV, Selection, Target
from .toolchain import SIMPLE_SWITCH_GRPC_ENV, ToolNotFound

EXIT_OK, EXIT_FAIL, EXIT_INTERRUPTED = 0, 1, 130
ENV_ERRORS = (ToolNotFound, CommandError, SwitchError, PipelineError, PtfError, PeerError,
              RuntimeProcError, EchoProcError, ValueError, OSError)

DESCRIPTION = """\
Bring up the p4tas development environment: veth pairs for the switch ports, the switch of the
selected target (bmv2: simple_switch_grpc; soft: python -m softnic, the software fast path)
with P4Runtime on loopback, the committed pipeline (p4src/build/) and the ACK clone sessions;
run the whole stack (`run`: Linux peers and the runtime daemon too); run the PTF suite against
it; tear it all down. Every command but `down` prints the target it uses. `python -m bmv2_env`
is the same command."""

EPILOG = f"""\
ports (see bmv2_env/README.md):
  1..N  wire ports     veth <prefix>w<i> (switch) <-> <prefix>w<i>p (peer: PTF or a TCP peer)
  254   host port      veth <prefix>h (switch) <-> <prefix>hp (the runtime's NIC<->host channel)
  255   CPU port       no veth: P4Runtime PacketIn/PacketOut on the gRPC connection
  up --peers: wire port i's peer side goes into namespace <prefix>n<i> with a Linux TCP peer,
        10.99.<i>.2/24; the p4tas side is 10.99.<i>.1, MAC 02:00:0a:63:<i hex>:01

targets (see bmv2_env/README.md):
  bmv2  simple_switch_grpc, the P4 reference switch (the default when it is found)
  soft  softnic, this repository's software fast path (python -m softnic; the default without
        simple_switch_grpc)

environment variables:
  {TARGET_ENV:<21}bmv2 or soft; unset: bmv2 if simple_switch_grpc is found, else soft
  {SIMPLE_SWITCH_GRPC_ENV:<21}path of simple_switch_grpc (else PATH, else /opt/p4/bin)
  {STATE_DIR_ENV:<21}state dir for PID, logs, port map (default /tmp/p4tas-<prefix>)
  {ptf_runner.REPORT_ENV:<21}file that `ptf` appends its one-line result to (set by `make test`)

examples:
  p4tas-env run                    # the whole stack in the foreground (make run): up --peers, the
                                   # runtime daemon, examples/echo_server.py; Ctrl-C stops it all
  p4tas-env run --background       # up --peers + the runtime daemon, left running (make clean-env)
  p4tas-env run -- --time-wait 0.5 # arguments after -- go to the runtime (python -m runtime)
  p4tas-env up                     # 2 wire ports, gRPC on 127.0.0.1:{DEFAULT_GRPC_PORT}
  p4tas-env --ports 4 --log up     # 4 wire ports, the switch's packet log in {SWITCH_LOG}
  TARGET=soft p4tas-env up         # the same on the software fast path (softnic)
  p4tas-env targets                # which targets are there, which one is used
  p4tas-env up --peers --no-pipeline   # Linux peers in namespaces p4tn1, p4tn2
  p4tas-env status
  p4tas-env down                   # or: make clean-env
  p4tas-env ptf -- --test-case-timeout 60 test_receive   # extra arguments after -- go to ptf
"""


# ---- argument parsing --------------------------------------------------------------------------
def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"must be an integer from {low} to {high}, got {text!r}")
        return value
    return parse


def _prefix(text: str) -> str:
    try:
        return validate_prefix(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_common(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The options every command takes (accepted before or after the command)."""
    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value
    parser.add_argument("--ports", type=_int_in(MIN_WIRE_PORTS, MAX_WIRE_PORTS),
                        default=default(DEFAULT_WIRE_PORTS), metavar="N",
                        help=f"number of wire ports, {MIN_WIRE_PORTS}..{MAX_WIRE_PORTS} "
                             f"(bmv2 ports 1..N; default {DEFAULT_WIRE_PORTS})")
    parser.add_argument("--prefix", type=_prefix, default=default(DEFAULT_PREFIX),
                        help=f"interface name prefix, 1-6 of [a-z0-9] (default "
                             f"{DEFAULT_PREFIX!r}); environments with different prefixes "
                             "are independent")
    parser.add_argument("--grpc-port", type=_int_in(1, 65535),
                        default=default(DEFAULT_GRPC_PORT), metavar="PORT",
                        help=f"P4Runtime gRPC port on 127.0.0.1 (default {DEFAULT_GRPC_PORT})")
    parser.add_argument("--log", action="store_true", default=default(False),
                        help=f"turn on the switch's packet log (--log-console, into the state "
                             f"dir's {SWITCH_LOG}); off by default because it slows the switch "
                             "down")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="log what is done (-vv: debug)")


def build_parser() -> argparse.ArgumentParser:
    """The p4tas-env argument parser."""
    top_common = argparse.ArgumentParser(add_help=False)
    _add_common(top_common, suppress=False)
    sub_common = argparse.ArgumentParser(add_help=False)
    _add_common(sub_common, suppress=True)
    parser = argparse.ArgumentParser(prog="p4tas-env", description=DESCRIPTION, epilog=EPILOG,
                                     parents=[top_common],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    up = sub.add_parser(
        "up", parents=[sub_common], help="bring the environment up (replacing a stale one)",
        description="Remove any environment of this prefix, create the veths, start the "
                    "switch of the selected target (TARGET), push the pipeline and the ACK clone "
                    "sessions, and print what runs. Stop it with `make clean-env` (or `down`).")
    up.add_argument("--no-pipeline", dest="pipeline", action="store_false",
                    help="start the switch without pushing p4src/build/ "
                         "(push a pipeline yourself over P4Runtime)")
    up.add_argument("--peers", action="store_true",
                    help="move each wire port's peer veth into namespace <prefix>n<i> with a "
                         "Linux TCP peer at 10.99.<i>.2/24 (the p4tas side is 10.99.<i>.1, MAC "
                         "02:00:0a:63:<i hex>:01), for end-to-end tests; the table goes to the "
                         "state dir's peers.json. Not for PTF, which needs the peer veths in "
                         "the root namespace")
    run = sub.add_parser(
        "run", parents=[sub_common],
        help="the whole stack in the foreground: up --peers, the runtime daemon and the example "
             "echo server, until Ctrl-C (make run)",
        usage="p4tas-env run [options] [-- RUNTIME_ARGS...]",
        description="`up --peers` (replacing any environment of this prefix), then start the "
                    "p4tas runtime daemon (python -m runtime) with its log "
                    f"({RUNTIME_LOG}), PID and control socket in the state dir, then the example "
                    "echo server (examples/echo_server.py, on host_lib sockets) on the p4tas "
                    "address of wire port 1, port 7. Once a Linux client in the peer namespace "
                    "got an echo back, print what runs, how to talk to the server, and one line "
                    "`READY ns=<peer namespace> addr=<ip>:<port>`; then wait for Ctrl-C "
                    "(SIGINT) or SIGTERM and tear everything down (exit status 0). If a part "
                    "does not come up, or dies while running, everything is torn down (logs "
                    "kept) and the exit status is 1. With --background: no echo server, and "
                    "the switch and runtime are left running (stop them with `make clean-env` "
                    "or `down`). Arguments after -- go to the runtime (see "
                    "`python -m runtime --help`).")
    run.add_argument("--background", action="store_true",
                     help="bring up the switch, peers and runtime daemon, print what runs and "
                          "exit, leaving them running (no echo server)")
    run.add_argument("--echo-port", type=_int_in(1, 65535), default=echo_proc.DEFAULT_PORT,
                     metavar="PORT", help="the echo server's TCP port (default %(default)s)")
    run.add_argument("--metrics-port", type=_int_in(0, 65535), default=DEFAULT_METRICS_PORT,
                     metavar="PORT", help="the runtime's Prometheus metrics on "
                                          "127.0.0.1:PORT/metrics; 0: off (default %(default)s)")
    run.add_argument("--runtime-timeout", type=float, default=runtime_proc.DEFAULT_READY_TIMEOUT,
                     metavar="S", help="seconds to wait for the runtime's READY line (default "
                                       "%(default)s)")
    sub.add_parser(
        "down", parents=[sub_common],
        help="stop the runtime and the switch, delete the veths and the state dir",
        description="Stop our runtime daemon and switch of any target (by PID, never a reused "
                    "one), stop the processes in our namespaces, delete the namespaces, our "
                    "veths and the state dir. Succeeds when nothing is there.")
    sub.add_parser("status", parents=[sub_common], help="show what is up",
                   description="Show the switch, gRPC address, pipeline, runtime daemon, veths "
                               "and Linux peers of this prefix. "
                               "Exit status 1 if the environment is only partly there.")
    sub.add_parser(
        "ptf", parents=[sub_common], help="up, run the PTF suite, down (always)",
        usage="p4tas-env ptf [options] [-- PTF_ARGS...]",
        description="Bring the environment up, run ptf on ptf_tests/ with the peer veths, tear "
                    "down even on failure or Ctrl-C, print `ptf: N passed, F failed, S skipped` "
                    f"and append it to ${ptf_runner.REPORT_ENV} (`ptf [<target>]: ...`). "
                    "Without root (or softnic's entry point) the suite is reported as skipped; "
                    "TARGET=bmv2 without simple_switch_grpc is an error. Arguments after -- go "
                    "to ptf (test names, --test-case-timeout ...).")
    targets_cmd = sub.add_parser(
        "targets", help="list the fast-path targets and say which one is used",
        description="List the targets (bmv2, soft), whether each is there, and the one that "
                    f"${TARGET_ENV} (or the default) selects.")
    targets_cmd.add_argument("--tested", action="store_true",
                             help="print only the names of the targets `make test` runs "
                                  "(space-separated): bmv2 when it is found, and soft")
    return parser


def split_extra(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split argv at the first `--`: (our arguments, arguments for ptf)."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the command line; `args.extra` holds what came after `--` (ptf and run only)."""
    parser = build_parser()
    ours, extra = split_extra(argv)
    args = parser.parse_args(ours)
    if extra and args.command not in ("ptf", "run"):
        parser.error(f"arguments after -- are only for `ptf` and `run`, not `{args.command}`: "
                     f"{' '.join(extra)}")
    args.extra = extra
    return args


def options(args: argparse.Namespace) -> env.EnvOptions:
    """EnvOptions from parsed arguments."""
    return env.EnvOptions(ports=args.ports, prefix=args.prefix, grpc_port=args.grpc_port,
                          log=args.log, pipeline=getattr(args, "pipeline", True),
                          peers=getattr(args, "peers", False))


# ---- output ------------------------------------------------------------------------------------
def port_table(portmap: PortMap) -> str:
    """The port map as a text table: bmv2 port, switch iface, peer iface, role."""
    rows = [("bmv2 port", "switch iface", "peer iface", "role")]
    rows += [(str(l.port), l.switch_iface, l.peer_iface, l.role) for l in portmap.links()]
    rows.append((str(portmap.cpu_port), "-", "-", f"{ROLE_CPU} (P4Runtime PacketIn/PacketOut)"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3]
                     for r in rows)


def peer_table(peer_set: PeerSet) -> str:
    """The Linux peers as a text table: wire port, namespace, iface, both ends' IP and MAC."""
    rows = [("wire port", "namespace", "iface", "peer ip", "peer mac", "p4tas ip", "p4tas mac")]
    rows += [(str(p.wire_port), p.netns, p.ifname, p.peer_ip, p.peer_mac, p.local_ip, p.local_mac)
             for p in peer_set]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths))).rstrip()
                     for r in rows)


def _status_hint(prefix: str) -> str:
    """The command that shows the environment of `prefix`."""
    if prefix == DEFAULT_PREFIX:
        return "make status"
    return f"python -m bmv2_env --prefix {prefix} status"


def _stop_hint(prefix: str) -> str:
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
        pipe = f"{PipelineFiles().bmv2_json.name} {how}; ACK clone sessions {sessions}"
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
        "",
        f"Stop it with: {_stop_hint(record.portmap.prefix)}",
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
                  peer_table(peers), "", "Try it (as root):",
                  *try_it(peers.peers[0], info.control_socket)]
    lines += ["", f"Status: {_status_hint(prefix)}",
              f"Stop it with: {_stop_hint(prefix)}"]
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
                  peer_table(peers)]
    lines += ["", f"Talk to the echo server from the Linux peer in {echo.netns} (as root, in "
                  "another terminal; type lines, Ctrl-D ends):", *talk_command(echo)]
    if peers is not None and len(peers):
        lines += ["", "More to try (host_lib's control API, another port):",
                  *try_it(peers.peers[0], info.control_socket)]
    lines += ["", f"Status: {_status_hint(prefix)}",
              "Stop: Ctrl-C here (or SIGTERM); if this process was killed, "
              f"{_stop_hint(prefix)} removes what is left"]
    return "\n".join(lines)


def describe_status(st: env.Status) -> str:
    """What `status` prints."""
    if st.nothing:
        return f"environment '{st.prefix}': nothing is up"
    head = "up" if st.up else f"PARTLY up; clean it with: {_stop_hint(st.prefix)}"
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


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none)."""
    return (str(exc) or type(exc).__name__).splitlines()[0]


def _error(command: str, exc: BaseException) -> None:
    """One line on stderr naming the command and the error; details (a log tail) follow."""
    first, _, rest = str(exc).partition("\n")
    print(f"{command}: error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)


# ---- commands ----------------------------------------------------------------------------------
def _select() -> Selection:
    """The target of this command (TARGET, else the default); prints the `target:` line."""
    selection = targets.select()
    print(selection.line, flush=True)
    return selection


def cmd_up(args: argparse.Namespace) -> int:
    """`up`: see build_parser."""
    opts = dataclasses.replace(options(args), target=_select().name)
    with _signals_interrupt():  # Ctrl-C or SIGTERM mid-way: env.up removes what it made
        result = env.up(opts)
    print(describe_up(result))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: see build_parser."""
    opts = dataclasses.replace(options(args), peers=True, pipeline=True, target=_select().name)
    extra = runtime_extra(args)
    runtime_proc.build_command(opts.state_dir, "-", extra)  # bad extra arguments: fail now
    with _signals_interrupt():  # Ctrl-C or SIGTERM mid-way: tear down what was made
        result = env.up(opts)
        try:
            info = runtime_proc.start(result.state_dir, result.record.grpc_addr, extra,
                                      timeout=args.runtime_timeout)
            echo = None
            if not args.background:
                peer = result.peers.peer(1)  # type: ignore[union-attr]
                echo = echo_proc.start(result.state_dir, peer, args.echo_port)
        except (RuntimeProcError, EchoProcError) as exc:
            with _signals_ignored():
                _teardown_quietly(opts.prefix)
            _error("run", exc)
            print(f"run: everything torn down; logs kept in {opts.state_dir}", file=sys.stderr)
            return EXIT_FAIL
        except BaseException:
            with _signals_ignored():
                _teardown_quietly(opts.prefix)
            raise
    if echo is None:
        print(describe_run(result, info))
        return EXIT_OK
    return _foreground(result, info, echo)


def runtime_extra(args: argparse.Namespace) -> list[str]:
    """The runtime's extra arguments: the user's, plus the metrics port unless they set one."""
    extra = list(args.extra)
    if args.metrics_port and not any(a.split("=")[0] == "--metrics-port" for a in extra):
        extra += ["--metrics-port", str(args.metrics_port)]
    return extra


# The runtime's metrics port under `make run` (9464: the exporters' range of Prometheus's list).
DEFAULT_METRICS_PORT = 9464

# How often the foreground `run` checks that the switch, the runtime and the echo server live.
WATCH_INTERVAL = 1.0


def _foreground(result: env.UpResult, info: runtime_proc.RuntimeInfo, echo: EchoInfo) -> int:
    """Print what runs and the READY line, wait for SIGINT/SIGTERM (or a part dying), tear down."""
    prefix, directory = result.record.portmap.prefix, result.state_dir
    stop = threading.Event()
    caught: list[str] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        caught.append(signal.Signals(signum).name)
        stop.set()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    died = None
    try:
        print(describe_foreground(result, info, echo), flush=True)
        print(echo.ready_line, flush=True)  # exactly one such line: scripts wait for it
        while not stop.wait(WATCH_INTERVAL):
            died = _what_died(directory)
            if died:
                break
    finally:
        for sig in previous:  # no second Ctrl-C may interrupt the teardown
            signal.signal(sig, signal.SIG_IGN)
    try:
        if died:
            print(f"run: error: {died}; tearing everything down (logs kept in {directory})",
                  file=sys.stderr, flush=True)
        else:
            print(f"run: {caught[0] if caught else 'stopping'}: tearing everything down",
                  flush=True)
        return _foreground_teardown(prefix, directory, keep_logs=bool(died),
                                    code=EXIT_FAIL if died else EXIT_OK)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _what_died(directory: Path) -> str | None:
    """Which part of a running stack is gone (None if all run)."""
    if not echo_proc.alive(directory):
        return f"the echo server exited (see {echo_proc.log_path(directory)})"
    if runtime_proc.running_pid(directory) is None:
        return f"the runtime exited (see {runtime_proc.log_path(directory)})"
    if switch.running_pid(directory) is None:
        record = EnvRecord.load(directory)
        name = targets.get(record.target).process if record else "the switch"
        return f"{name} exited (see {directory / SWITCH_LOG})"
    return None


def _foreground_teardown(prefix: str, directory: Path, keep_logs: bool, code: int) -> int:
    """Stop the echo server, then everything `down` stops; say what was stopped."""
    try:
        echo_pids = echo_proc.stop_all(directory)
        result = env.down(prefix, keep_logs=keep_logs)
    except ENV_ERRORS as exc:
        _error("run: teardown", exc)
        print(f"run: clean up with: {_stop_hint(prefix)}", file=sys.stderr)
        return EXIT_FAIL
    parts = []
    if echo_pids:
        parts.append(f"echo server pid {', '.join(map(str, echo_pids))}")
    if result.runtime_pids:
        parts.append(f"runtime pid {', '.join(map(str, result.runtime_pids))}")
    parts += result.switches_stopped()
    stopped = "; ".join(parts) or "nothing was running any more"
    removed = " ".join(result.removed) or "nothing"
    print(f"run: stopped {stopped}; deleted {removed}", flush=True)
    return code


def _teardown_quietly(prefix: str) -> None:
    """down (keeping logs) after a failure, without hiding the failure behind a cleanup error."""
    try:
        env.down(prefix, keep_logs=True)
    except ENV_ERRORS as exc:
        _error("run: teardown", exc)


def cmd_down(args: argparse.Namespace) -> int:
    """`down`: see build_parser."""
    result = env.down(args.prefix)
    if result.nothing:
        print(f"nothing to clean for '{args.prefix}'")
        return EXIT_OK
    parts = []
    if result.runtime_pids:
        parts.append(f"stopped runtime pid {', '.join(map(str, result.runtime_pids))}")
    parts += [f"stopped {item}" for item in result.switches_stopped()]
    if result.removed:
        parts.append(f"deleted {' '.join(result.removed)}")  # veths (both ends) and namespaces
    if result.state_files:
        parts.append(f"cleared {env.state_dir(args.prefix)}")
    print(f"down '{args.prefix}': " + "; ".join(parts))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """`status`: see build_parser."""
    _select()  # what `up` and `run` would use; the environment's own target is in the body
    st = env.status(args.prefix)
    print(describe_status(st))
    return EXIT_OK if st.up or st.nothing else EXIT_FAIL


def cmd_targets(args: argparse.Namespace) -> int:
    """`targets`: see build_parser."""
    if args.tested:
        print(" ".join(t.name for t in targets.tested_targets()))
        return EXIT_OK
    try:
        print(targets.select().line)
    except (ToolNotFound, ValueError) as exc:
        print(f"target: none: {_first_line(exc)}")
    for target in targets.TARGETS.values():
        missing = target.missing()
        where = f"NOT AVAILABLE: {missing}" if missing else " ".join(target.command_prefix())
        print(f"  {target.name:<5} {target.description}: {where}")
    print(f"make test runs: {' '.join(t.name for t in targets.tested_targets())}")
    return EXIT_OK


def _ptf_skip_reason(target: Target) -> tuple[str, str] | None:
    """(short, full) reason to skip the PTF suite on `target`, or None to run it."""
    missing = target.missing()
    if missing:  # only the soft target can get here: TARGET=bmv2 without bmv2 is an error
        return missing.partition(": ")[0], missing
    if os.geteuid() != 0:
        return "needs root", "creating veths and running ptf needs root (run as root or with sudo)"
    lacking = system_deps.skip_reason()
    if lacking is not None:
        return lacking.partition(":")[0], lacking
    return None


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Turn SIGINT and SIGTERM into KeyboardInterrupt, so that `finally` tears down."""
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT and SIGTERM (a second Ctrl-C must not interrupt the teardown)."""
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _run_suite(opts: env.EnvOptions, extra: Sequence[str],
               stage: str) -> tuple[PtfCounts, str | None]:
    """up, then ptf; return the counts and a note for the report line."""
    result = env.up(opts)
    record = result.record
    print(f"{stage}: environment up: {targets.get(record.target).process} pid {result.pid}, "
          f"gRPC {record.grpc_addr}, {record.portmap.num_wire_ports} wire ports + host port",
          flush=True)
    cmd = ptf_runner.build_command(record.portmap, record.grpc_addr, result.state_dir,
                                   PipelineFiles(), extra)
    code, output = ptf_runner.run(cmd)
    counts = ptf_runner.parse_output(output)
    if counts is None:
        return PtfCounts(failed=1), f"ptf exited with code {code} before its test summary"
    if code != 0 and counts.ok:
        return PtfCounts(counts.passed, 1, counts.skipped), f"ptf exited with code {code}"
    return counts, None


def cmd_ptf(args: argparse.Namespace) -> int:
    """`ptf`: see build_parser."""
    try:
        selection = _select()
    except (ToolNotFound, ValueError) as exc:  # TARGET=bmv2 without bmv2, or TARGET=nonsense
        stage = ptf_runner.stage_name(targets.selected_name())
        _error("ptf", exc)
        line = PtfCounts(failed=1).line(f"error: {_first_line(exc)}", stage)
        print(line)
        ptf_runner.append_report(line)
        return EXIT_FAIL
    stage = ptf_runner.stage_name(selection.name)
    skip = _ptf_skip_reason(selection.target)
    if skip is not None:
        print(f"{stage}: SKIPPED: {skip[1]}")
        ptf_runner.append_report(PtfCounts(skipped=ptf_runner.count_tests()).line(skip[0], stage))
        return EXIT_OK
    opts = dataclasses.replace(options(args), target=selection.name)
    exit_code = EXIT_FAIL
    try:
        with _signals_interrupt():
            counts, note = _run_suite(opts, args.extra, stage)
            exit_code = EXIT_OK if counts.ok else EXIT_FAIL
    except KeyboardInterrupt:
        counts, note, exit_code = PtfCounts(failed=1), "interrupted", EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - whatever broke, the report must say so
        _error("ptf", exc)
        counts, note = PtfCounts(failed=1), f"error: {_first_line(exc)}"
    finally:
        with _signals_ignored():
            exit_code = _teardown(opts.prefix, exit_code)
    line = counts.line(note, stage)
    print(line)
    kept = [name for name in (PTF_LOG, "ptf.pcap", SWITCH_LOG) if (opts.state_dir / name).exists()]
    if kept:
        print(f"{stage}: logs kept in {opts.state_dir}: {', '.join(kept)}")
    ptf_runner.append_report(line)
    return exit_code


def _teardown(prefix: str, exit_code: int) -> int:
    """down (keeping logs); a failing teardown turns the exit code into a failure."""
    try:
        env.down(prefix, keep_logs=True)
    except ENV_ERRORS as exc:
        _error("ptf: teardown", exc)
        return exit_code or EXIT_FAIL
    return exit_code


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up, "run": cmd_run, "down": cmd_down, "status": cmd_status, "ptf": cmd_ptf,
    "targets": cmd_targets,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `p4tas-env` and `python -m bmv2_env`; returns the exit status."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"{args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ENV_ERRORS as exc:
        _error(args.command, exc)
        return EXIT_FAIL


if __name__ == "__main__":
    sys.exit(main())
