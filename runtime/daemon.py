"""The p4tas runtime daemon: the slow path. `python -m runtime --help` lists its options."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.control_server import ControlServer, group_id
from host_lib.shm_layout import Layout
from runtime.cpu_interface import CpuInterface
from runtime.datapath import Datapath
from nic_contract.host_port import HostPort
from runtime.dma_bridge import DmaBridge
from runtime.flow_registry import FlowRegistry
from nic_contract.constants import PacketInReason
from nic_contract.pipeline import BMV2_JSON, P4INFO, PipelineError, PipelineFiles, install
from runtime.metrics import METRICS_ADDR, serve_metrics
from runtime.punt_budget import meter_rate_entries
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import P4RuntimeError
from nic_contract.p4rt.p4info import P4Info
from runtime.retransmission import RtoConfig
from runtime.routing import DEFAULT, Route, RoutingError
from runtime.congestion import CHOICES
from runtime.congestion.controller import ControlConfig, RateController

log = logging.getLogger("runtime")


class StartupError(RuntimeError):
    """The daemon cannot start; the message says what to check."""


def connect_switch(config: RuntimeConfig) -> P4RuntimeClient:
    """Become primary, load (or verify) the pipeline, program the ACK clone sessions."""
    files = PipelineFiles(config.p4info, config.device_config)
    try:
        files.check()
    except PipelineError as exc:
        raise StartupError(f"{exc}, or pass --p4info/--device-config") from None
    client = P4RuntimeClient(config.grpc_addr, config.device_id)
    try:
        client.connect()
        pushed = install(client, [i.port for i in config.interfaces], files)
        limit_punts(client, config.punt_rate_pps, config.syn_punt_rate_pps)
        limit_meter(client, "challenge_ack_rate", [0], config.challenge_ack_pps)
        stale = remove_stale_flows(client)
    except P4RuntimeError as exc:
        client.close()
        raise StartupError(f"switch at {config.grpc_addr}: {exc}") from None
    log.info("connected to %s as primary; pipeline %s; %d stale flow entries removed",
             config.grpc_addr, "loaded" if pushed else "already running", stale)
    return client


def limit_punts(client: P4RuntimeClient, pps: int, syn_pps: int) -> None:
    """Configure the fast path's punt_rate meter: `pps` PacketIns per second per reason, and
    `syn_pps` for SYNs."""
    limit_meter(client, "punt_rate", [r for r in PacketInReason if r is not PacketInReason.SYN],
                pps)
    limit_meter(client, "punt_rate", [PacketInReason.SYN], syn_pps)


def limit_meter(client: P4RuntimeClient, meter: str, indexes: list[int], pps: int) -> None:
    """Set a packets meter's indexes to `pps` per second (0: leave them unconfigured, which
    passes everything)."""
    if pps <= 0:
        return
    client.modify(meter_rate_entries(client.p4info, meter, indexes, pps))


def remove_stale_flows(client: P4RuntimeClient) -> int:
    """Delete flow entries a previous run left behind (it crashed or was killed): their
    connections are gone with it, and their flow ids would collide with ours."""
    stale = [entity.table_entry for table in ("flow_lookup", "flow_state")
             for entity in client.read([client.p4info.table_wildcard(table)])]
    if stale:
        client.delete(stale)
    return len(stale)


async def serve(config: RuntimeConfig) -> int:
    """Run until SIGINT/SIGTERM or until the switch goes away."""
    loop = asyncio.get_running_loop()
    client = await loop.run_in_executor(None, connect_switch, config)
    datapath = Datapath(client, open_cpu_interface(config, client.p4info))
    bridge = open_bridge(config, lambda channel: control.on_data_activity(channel),
                         lambda flow_id, cause: control.on_flow_error(flow_id, cause.value))
    flows = FlowRegistry(bridge) if bridge is not None else None
    rates = (RateController(flows, client.p4info, datapath.modify, config.control)
             if flows is not None else None)
    control = ConnectionControl(config, datapath, client.p4info, flows, rates)
    layout = app_layout(config) if bridge is not None else None
    metrics = None
    if config.metrics_port is not None:
        try:
            metrics, _thread = serve_metrics(config.metrics_port, loop, control, client)
        except OSError as exc:
            raise StartupError(f"metrics port {METRICS_ADDR}:{config.metrics_port}: {exc}") \
                from None
    server = ControlServer(config.control_socket, control, layout, config.control_group)
    await server.start()
    if bridge is not None:
        bridge.start()
        rates.start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    packets = loop.create_task(_dispatch(datapath, control))
    print(f"READY p4tas runtime: switch {config.grpc_addr}, control socket "
          f"{config.control_socket}, "
          + (f"metrics http://{METRICS_ADDR}:{config.metrics_port}/metrics, "
             if metrics is not None else "")
          + "interfaces "
          + ", ".join(f"port {i.port} {i.ip} {i.mac}" for i in config.interfaces)
          + "".join(f", route {route}" for route in config.routes), flush=True)
    stopped = loop.create_task(stop.wait())
    done, _ = await asyncio.wait({packets, stopped}, return_when=asyncio.FIRST_COMPLETED)
    status = 0
    if packets in done and packets.exception() is not None:
        log.error("lost the switch: %s", packets.exception())
        status = 1
    log.info("stopping: resetting %d connections", len(control.table.by_id))
    await control.shutdown_all()
    await server.close()
    if metrics is not None:
        metrics.shutdown()
    if bridge is not None:
        rates.stop()
        bridge.stop()
    packets.cancel()
    datapath.close()
    client.close()
    log.info("stopped; stats: %s", dict(control.stats.counts))
    return status


def open_bridge(config: RuntimeConfig, on_activity, on_flow_error) -> DmaBridge | None:
    """The data path on the host port, if one is configured."""
    if config.host_interface is None:
        log.warning("no host port interface: connections carry no data (control only)")
        return None
    try:
        link = HostPort(config.host_interface)
    except OSError as exc:
        raise StartupError(f"cannot open the host port {config.host_interface}: {exc}") from None
    return DmaBridge(link, on_flow_error=on_flow_error, on_activity=on_activity, rto=config.rto)


def open_cpu_interface(config: RuntimeConfig, p4info: P4Info) -> CpuInterface | None:
    """The CPU port's interface, if the target has one (else PacketIns come over gRPC)."""
    if config.cpu_interface is None:
        return None
    try:
        return CpuInterface(config.cpu_interface, p4info)
    except OSError as exc:
        raise StartupError(f"cannot open the CPU interface {config.cpu_interface}: "
                           f"{exc}") from None


def app_layout(config: RuntimeConfig) -> Layout:
    """Each application's shared memory; RX rings match what the NIC is told per flow."""
    tcp = config.tcp
    return Layout(rx_ring_size=tcp.rx_ring_size, tx_ring_size=tcp.tx_ring_size,
                  max_connections=tcp.max_app_connections, max_contexts=tcp.max_app_contexts,
                  queue_depth=tcp.event_queue_depth)


async def _dispatch(datapath: Datapath, control: ConnectionControl) -> None:
    async for pin in datapath.packet_ins():
        control.on_packet_in(pin)


def parse_args(argv: list[str] | None = None) -> tuple[RuntimeConfig, str]:
    parser = argparse.ArgumentParser(
        prog="python -m runtime",
        description="The p4tas slow path: connection control over P4Runtime and the control "
                    "API for applications (host_lib).")
    parser.add_argument("--grpc-addr", default="127.0.0.1:9559",
                        help="P4Runtime address of the switch: host:port, or unix:PATH (what "
                             "bmv2_env uses: only root can connect) (default %(default)s)")
    parser.add_argument("--device-id", type=int, default=0, help="P4Runtime device id")
    parser.add_argument("--p4info", type=Path, default=P4INFO,
                        help="p4info (text format) of the pipeline (default: the committed one)")
    parser.add_argument("--device-config", "--bmv2-json", type=Path, default=BMV2_JSON,
                        help="the target's device config: the bmv2 JSON (default: the committed "
                             "one), or the PNA spec on dpdk")
    parser.add_argument("--interface", action="append", default=[], metavar="PORT=IP/LEN,MAC",
                        help="a wire port and the address we own on it; repeat per port")
    parser.add_argument("--route", action="append", default=[], nargs=3,
                        metavar=("PREFIX", "via", "GATEWAY"),
                        help="reach PREFIX (a.b.c.d/len, or 'default') through GATEWAY, an "
                             "address on one of the interfaces' subnets; repeat per route; "
                             "the longest prefix wins")
    parser.add_argument("--gateway", metavar="IP",
                        help="the default gateway: the same as --route default via IP")
    parser.add_argument("--host-interface", metavar="IFNAME",
                        help="the host port's veth (the NIC<->host channel); without it "
                             "connections carry no data")
    parser.add_argument("--cpu-interface", metavar="IFNAME",
                        help="the CPU port's veth, when the target has one: PacketIn/PacketOut "
                             "as frames with the controller header in front, not over gRPC")
    parser.add_argument("--control-group", metavar="GROUP",
                        help="users of GROUP may run applications (control socket mode 0660); "
                             "default: root and the daemon's user only (0600)")
    parser.add_argument("--control-socket", type=Path, default=RuntimeConfig.control_socket,
                        help="UNIX socket for applications (default %(default)s)")
    parser.add_argument("--rx-ring-size", type=int, default=TcpParams.rx_ring_size,
                        help="per-connection RX ring bytes, a power of two (default %(default)s)")
    parser.add_argument("--max-app-connections", type=int,
                        default=TcpParams.max_app_connections,
                        help="connections (ring slots) per application (default %(default)s)")
    parser.add_argument("--max-app-listeners", type=int, default=TcpParams.max_app_listeners,
                        help="listening sockets per application (default %(default)s)")
    parser.add_argument("--time-wait", type=float, default=TcpParams.time_wait_s,
                        help="TIME_WAIT seconds (default %(default)s)")
    parser.add_argument("--orphan-timeout", type=float, default=TcpParams.orphan_timeout_s,
                        help="reset a connection its application has left (closed, or exited) "
                             "after this many seconds without progress (default %(default)s)")
    parser.add_argument("--max-orphans", type=int, default=TcpParams.max_orphans,
                        help="orphaned connections at most; beyond, they are reset "
                             "(default %(default)s)")
    parser.add_argument("--syn-retries", type=int, default=TcpParams.syn_retries,
                        help="SYN retransmissions before giving up (default %(default)s)")
    parser.add_argument("--syn-rto", type=float, default=TcpParams.syn_rto_s,
                        help="first SYN retransmission timeout, doubling (default %(default)s s)")
    parser.add_argument("--min-rto", type=float, default=RtoConfig.min_rto_s,
                        help="smallest data retransmission timeout (default %(default)s s)")
    parser.add_argument("--give-up", type=float, default=RtoConfig.give_up_s,
                        help="reset a connection whose peer acknowledges nothing for this long "
                             "(default %(default)s s)")
    parser.add_argument("--congestion", choices=CHOICES, default=RuntimeConfig.congestion,
                        help="congestion control of connections that do not choose one "
                             "(TCP_CONGESTION); 'none': no rate limit (default %(default)s)")
    parser.add_argument("--allow-congestion", default=",".join(RuntimeConfig.allowed_congestion),
                        metavar="LIST",
                        help="congestion controls applications may choose with TCP_CONGESTION, "
                             "comma-separated, from " + ", ".join(CHOICES)
                             + " (default %(default)s: 'none' only if listed)")
    parser.add_argument("--cc-interval-rtts", type=float, default=ControlConfig.interval_rtts,
                        help="control interval in RTTs (TAS tau; default %(default)s)")
    parser.add_argument("--ecn", choices=("on", "off"), default="on",
                        help="negotiate ECN (RFC 3168) with peers: data goes out ECT(0) and "
                             "DCTCP reacts to the peer's ECE (default %(default)s)")
    parser.add_argument("--sack", choices=("on", "off"), default="on",
                        help="negotiate SACK (RFC 2018) with peers that also do timestamps: "
                             "loss recovery resends only the holes (RFC 6675); off: go-back-N "
                             "(default %(default)s)")
    parser.add_argument("--punt-rate", type=int, default=RuntimeConfig.punt_rate_pps,
                        metavar="PPS",
                        help="PacketIns per second and reason the fast path lets through to "
                             "the slow path; a flood beyond is dropped there (0: unlimited; "
                             "default %(default)s)")
    parser.add_argument("--syn-punt-rate", type=int, default=RuntimeConfig.syn_punt_rate_pps,
                        metavar="PPS",
                        help="SYNs per second the slow path answers (full options); beyond "
                             "it the fast path answers SYNs to our listeners with SYN cookies "
                             "(0: unlimited; default %(default)s)")
    parser.add_argument("--syn-flood-punt-rate", type=int,
                        default=RuntimeConfig.syn_flood_punt_rate_pps, metavar="PPS",
                        help="the SYN budget while a listen backlog overflows (a SYN flood: "
                             "the slow path would only answer with cookies the fast path "
                             "makes too), until none has for 10 s (0: keep --syn-punt-rate; "
                             "default %(default)s)")
    parser.add_argument("--challenge-ack-rate", type=int,
                        default=RuntimeConfig.challenge_ack_pps, metavar="PPS",
                        help="challenge ACKs per second (RFC 5961 7) from the fast path and "
                             "from the slow path (0: unlimited; default %(default)s)")
    parser.add_argument("--metrics-port", type=int, metavar="PORT",
                        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (default: off)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    try:
        interfaces = tuple(Interface.parse(text) for text in args.interface)
    except ValueError as exc:
        parser.error(str(exc))
    if not interfaces:
        parser.error("no interfaces: pass --interface PORT=IP/LEN,MAC (one per wire port)")
    try:
        routes = parse_routes(args.route, args.gateway)
    except RoutingError as exc:
        parser.error(str(exc))
    size = args.rx_ring_size
    if size < 2 or size & (size - 1):
        parser.error(f"--rx-ring-size {size} is not a power of two")
    if args.max_app_listeners < 0:
        parser.error(f"--max-app-listeners must not be negative, got {args.max_app_listeners}")
    if args.max_app_connections < 1:
        parser.error(f"--max-app-connections must be at least 1, got {args.max_app_connections}")
    if args.orphan_timeout <= 0 or args.max_orphans < 0:
        parser.error("--orphan-timeout must be positive and --max-orphans not negative")
    tcp = TcpParams(rx_ring_size=size, time_wait_s=args.time_wait, syn_retries=args.syn_retries,
                    orphan_timeout_s=args.orphan_timeout, max_orphans=args.max_orphans,
                    syn_rto_s=args.syn_rto, max_app_connections=args.max_app_connections,
                    max_app_listeners=args.max_app_listeners)
    if not 0 < args.min_rto < args.give_up:
        parser.error(f"need 0 < --min-rto ({args.min_rto}) < --give-up ({args.give_up})")
    rto = RtoConfig(min_rto_s=args.min_rto, give_up_s=args.give_up)
    if args.control_group is not None:
        try:
            group_id(args.control_group)
        except OSError as exc:
            parser.error(exc.strerror)
    allowed = tuple(name for name in args.allow_congestion.split(",") if name)
    unknown = [name for name in allowed if name not in CHOICES]
    if unknown:
        parser.error(f"--allow-congestion: unknown {', '.join(unknown)} (choose from "
                     f"{', '.join(CHOICES)})")
    if args.cc_interval_rtts <= 0:
        parser.error(f"--cc-interval-rtts must be positive, got {args.cc_interval_rtts}")
    control = ControlConfig(interval_rtts=args.cc_interval_rtts)
    if args.metrics_port is not None and not 0 < args.metrics_port < 65536:
        parser.error(f"--metrics-port must be 1..65535, got {args.metrics_port}")
    config = RuntimeConfig(
        grpc_addr=args.grpc_addr, device_id=args.device_id, p4info=args.p4info,
        device_config=args.device_config, interfaces=interfaces, routes=routes,
        control_socket=args.control_socket,
        tcp=tcp, host_interface=args.host_interface, cpu_interface=args.cpu_interface,
        rto=rto, congestion=args.congestion,
        control=control, metrics_port=args.metrics_port, ecn=args.ecn == "on",
        sack=args.sack == "on",
        allowed_congestion=allowed, control_group=args.control_group,
        punt_rate_pps=args.punt_rate, syn_punt_rate_pps=args.syn_punt_rate,
        syn_flood_punt_rate_pps=args.syn_flood_punt_rate,
        challenge_ack_pps=args.challenge_ack_rate)
    try:
        config.routing  # every gateway on one of our subnets, no prefix twice
    except RoutingError as exc:
        parser.error(str(exc))
    return config, args.log_level


def parse_routes(triples: list[list[str]], gateway: str | None) -> tuple[Route, ...]:
    """`--route PREFIX via GATEWAY` triples and `--gateway IP` as Routes."""
    if gateway is not None:
        triples = [*triples, [DEFAULT, "via", gateway]]
    bad = [" ".join(t) for t in triples if t[1] != "via"]
    if bad:
        raise RoutingError(f"--route {bad[0]}: expected PREFIX via GATEWAY")
    return tuple(Route.parse(prefix, gw) for prefix, _, gw in triples)


def main(argv: list[str] | None = None) -> int:
    config, level = parse_args(argv)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        return asyncio.run(serve(config))
    except StartupError as exc:
        print(f"p4tas runtime: {exc}", file=sys.stderr)
        return 1
