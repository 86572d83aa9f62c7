"""Run the dpdk target with simple_switch_grpc's command line, so bmv2_env starts it like the
others: python -m dpdk_target --no-p4 [--device-id N] -i PORT@IFNAME ... [--log-console]
                              -- --grpc-server-addr ADDR [--cpu-port N]
The PNA program's committed spec runs in p4tas-swx (DPDK's SWX pipeline); this process is its
P4Runtime server."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from dpdk_target import toolchain
from dpdk_target.dataplane import DpdkDataplane
from dpdk_target.names import SpecNames
from dpdk_target.runner_control import Runner, RunnerError, RunnerPorts
from dpdk_target.switch_state import DpdkProgram
from nic_contract.constants import ACK_LOOPBACK_PORT
from nic_contract.pipeline import PNA_CONTEXT, PNA_P4INFO, PNA_SPEC
from softnic.__main__ import parse_args
from softnic.p4runtime.server import P4RuntimeServer, load_p4info

log = logging.getLogger("dpdk_target")
# The register the runner writes the time into (PNA's DPDK target fills no timestamp).
CLOCK_REGISTER = "clock_us"


def clock_register(names: SpecNames) -> str | None:
    """The spec name of the PNA program's clock register, if it has one."""
    return next((target for name, target in names.externs.items()
                 if name.rsplit(".", 1)[-1] == CLOCK_REGISTER), None)


def start_runner(interfaces: dict[int, str], cpu_port: int, names: SpecNames,
                 cpu_interface: str | None = None) -> Runner:
    """Build (when needed) and start the runner on the committed spec."""
    return Runner.start(toolchain.runner(), toolchain.pipeline_library(PNA_SPEC),
                        RunnerPorts(interfaces, cpu_port, ACK_LOOPBACK_PORT, cpu_interface),
                        clock_register(names))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dpdk %(message)s")
    interfaces = dict(args.interface)
    # -i CPU_PORT@IF: the CPU port is a network interface the runner serves itself.
    cpu_interface = interfaces.pop(args.cpu_port, None)
    spec = PNA_SPEC.read_bytes()
    names = SpecNames.parse(spec.decode(), PNA_CONTEXT.read_text(encoding="utf-8"))
    try:
        runner = start_runner(interfaces, args.cpu_port, names, cpu_interface)
    except (toolchain.DpdkUnavailable, RunnerError, OSError) as err:
        log.error("cannot start: %s", err)
        return 1
    program = DpdkProgram(load_p4info(PNA_P4INFO), names, runner, spec)
    dataplane = DpdkDataplane(runner, names, program.staged, runner.clock_register,
                              sorted(interfaces))
    if args.grpc_server_addr.startswith("unix:"):
        os.umask(0o077)   # P4Runtime has no authentication: only this user may connect
    server = P4RuntimeServer(args.grpc_server_addr, args.device_id, args.cpu_port, dataplane,
                             PNA_P4INFO, PNA_SPEC, program=program)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    pump = threading.Thread(target=dataplane.pump_packet_ins, args=(server.packet_in, stop),
                            name="packet-in", daemon=True)
    server.start()
    if runner.cpu is not None:
        pump.start()
    log.info("dpdk target: ports %s, P4Runtime on %s, device %d",
             ", ".join(f"{p}@{i}" for p, i in sorted(interfaces.items())),
             args.grpc_server_addr, args.device_id)
    try:
        while not stop.wait(0.5):
            if runner.process.poll() is not None or (runner.cpu is not None
                                                     and not pump.is_alive()):
                log.error("the runner exited (%s) or its PacketIn channel closed",
                          runner.process.returncode)
                return 1
    finally:
        server.stop()
        runner.stop()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
