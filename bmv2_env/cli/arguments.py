"""p4tas-env's command line: the argument parser, its help text and the EnvOptions it gives."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from .. import echo_proc, env, ptf_runner, runtime_proc
from ..portmap import (DEFAULT_PREFIX, DEFAULT_WIRE_PORTS, MAX_WIRE_PORTS, MIN_WIRE_PORTS,
                       validate_prefix)
from ..state import P4RUNTIME_SOCKET, RUNTIME_LOG, STATE_DIR_ENV, SWITCH_LOG
from ..targets import TARGET_ENV
from ..toolchain import SIMPLE_SWITCH_GRPC_ENV

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
  up --routed: the peers also route to hosts in namespaces <prefix>r<i>, 10.98.<i>.2/24
        (veth <prefix>b<i> in the peer <-> <prefix>b<i>p in the host)

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
  p4tas-env up                     # 2 wire ports, P4Runtime on the state dir's {P4RUNTIME_SOCKET}
  p4tas-env --ports 4 --log up     # 4 wire ports, the switch's packet log in {SWITCH_LOG}
  TARGET=soft p4tas-env up         # the same on the software fast path (softnic)
  p4tas-env targets                # which targets are there, which one is used
  p4tas-env up --peers --no-pipeline   # Linux peers in namespaces p4tn1, p4tn2
  p4tas-env run --routed           # ... and hosts behind them (p4tr1: 10.98.1.2 via 10.99.1.2)
  p4tas-env status
  p4tas-env down                   # or: make clean-env
  p4tas-env ptf -- --test-case-timeout 60 test_receive   # extra arguments after -- go to ptf
"""


# The runtime's metrics port under `make run` (9464: the exporters' range of Prometheus's list).
DEFAULT_METRICS_PORT = 9464


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
                        default=default(None), metavar="PORT",
                        help=f"serve P4Runtime on 127.0.0.1:PORT instead of the state dir's "
                             f"{P4RUNTIME_SOCKET}, which only its owner can use; P4Runtime has "
                             "no authentication: with a port any local user can take over the "
                             "fast path")
    parser.add_argument("--log", action="store_true", default=default(False),
                        help=f"turn on the switch's packet log (--log-console, into the state "
                             f"dir's {SWITCH_LOG}); off by default because it slows the switch "
                             "down")
    parser.add_argument("-v", "--verbose", action="count", default=default(0),
                        help="log what is done (-vv: debug)")


def _add_routed(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routed", action="store_true",
                        help="(implies --peers) each peer also routes (ip_forward=1) to a Linux "
                             "host in namespace <prefix>r<i> at 10.98.<i>.2/24; the runtime "
                             "gets --route 10.98.<i>.0/24 via 10.99.<i>.2; the table goes to "
                             "the state dir's routed.json")


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
    _add_routed(up)
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
    _add_routed(run)
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
    routed = getattr(args, "routed", False)
    return env.EnvOptions(ports=args.ports, prefix=args.prefix, grpc_port=args.grpc_port,
                          log=args.log, pipeline=getattr(args, "pipeline", True),
                          peers=getattr(args, "peers", False) or routed, routed=routed,
                          # an environment for the runtime: its PacketIns on the CPU veth
                          cpu_interface=getattr(args, "peers", False) or routed)
