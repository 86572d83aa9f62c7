"""Run the software target with simple_switch_grpc's command line, so bmv2_env starts either:
python -m softnic --no-p4 [--device-id N] -i PORT@IFNAME ... [--log-console]
                  -- --grpc-server-addr HOST:PORT [--cpu-port N]"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from softnic.dataplane import Dataplane
from softnic.p4runtime.server import P4RuntimeServer
from softnic.pipeline.constants import CPU_PORT

log = logging.getLogger("softnic")


def _interface(text: str) -> tuple[int, str]:
    port, sep, ifname = text.partition("@")
    if not sep or not port.isdigit() or not ifname:
        raise argparse.ArgumentTypeError(f"expected PORT@IFNAME (like 1@veth0), got {text!r}")
    return int(port), ifname


def parse_args(argv: list[str]) -> argparse.Namespace:
    switch_args, target_args = argv, []
    if "--" in argv:
        cut = argv.index("--")
        switch_args, target_args = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="python -m softnic", description=__doc__.split("\n")[0])
    parser.add_argument("--no-p4", action="store_true",
                        help="start without a program (it comes over P4Runtime; always so)")
    parser.add_argument("--device-id", type=int, default=0)
    parser.add_argument("-i", "--interface", type=_interface, action="append", default=[],
                        help="PORT@IFNAME: a switch port on an interface")
    parser.add_argument("--log-console", action="store_true", help="log every packet")
    args = parser.parse_args(switch_args)
    target = argparse.ArgumentParser(prog="python -m softnic ... --")
    target.add_argument("--grpc-server-addr", default="127.0.0.1:9559",
                        help="host:port, or unix:PATH (a socket only this user can connect to)")
    target.add_argument("--cpu-port", type=int, default=CPU_PORT)
    args.__dict__.update(vars(target.parse_args(target_args)))
    if args.cpu_port != CPU_PORT:
        parser.error(f"--cpu-port must be {CPU_PORT}: p4tas's program sends PacketIns there")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s softnic %(message)s")
    interfaces = dict(args.interface)
    dataplane = Dataplane(interfaces, log_packets=args.log_console)
    if args.grpc_server_addr.startswith("unix:"):
        # P4Runtime has no authentication: the socket is created 0600 (as bmv2 does), so only
        # this user (root) can become controller. The umask covers the moment of the bind.
        os.umask(0o077)
    server = P4RuntimeServer(args.grpc_server_addr, args.device_id, args.cpu_port, dataplane)
    dataplane.packet_in_sink = server.packet_in
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    log.info("software target: ports %s, P4Runtime on %s, device %d",
             ", ".join(f"{p}@{i}" for p, i in sorted(interfaces.items())),
             args.grpc_server_addr, args.device_id)
    try:
        dataplane.run(stop)
    finally:
        server.stop()
        dataplane.close()
        log.info("stopped: %s", dict(dataplane.stats) or "no drops")
    return 0


if __name__ == "__main__":
    sys.exit(main())
