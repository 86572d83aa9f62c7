"""The runtime daemon's configuration: where the switch is, our interfaces and routes, TCP
parameters."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from host_lib import control_protocol as cp
from nic_contract.pipeline import BMV2_JSON, P4INFO
from runtime.congestion.controller import ControlConfig
from runtime.retransmission import RtoConfig
from runtime.routing import Route, RoutingTable


@dataclass(frozen=True)
class Interface:
    """One wire port of the NIC with the address p4tas owns on it."""

    port: int
    ip: str
    mac: str
    prefix_len: int = 24

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{self.ip}/{self.prefix_len}", strict=False)

    @classmethod
    def parse(cls, text: str) -> "Interface":
        """PORT=IP[/LEN],MAC, e.g. 1=10.99.1.1/24,02:00:0a:63:01:01."""
        try:
            port, rest = text.split("=", 1)
            addr, mac = rest.split(",", 1)
            ip, _, plen = addr.partition("/")
            iface = cls(int(port), str(ipaddress.IPv4Address(ip)), mac.lower(),
                        int(plen) if plen else 24)
        except ValueError as exc:
            raise ValueError(f"bad interface {text!r}: expected PORT=IP[/LEN],MAC ({exc})") from None
        if len(bytes.fromhex(iface.mac.replace(":", ""))) != 6:
            raise ValueError(f"bad MAC in interface {text!r}")
        return iface


@dataclass(frozen=True)
class TcpParams:
    """TCP parameters of connections the slow path sets up."""

    mss: int = 1460
    rx_ring_size: int = 1 << 18
    tx_ring_size: int = 1 << 18
    max_app_connections: int = 64   # ring slots per application
    max_app_contexts: int = 8
    max_app_listeners: int = 64     # listening sockets per application
    event_queue_depth: int = 1024
    syn_retries: int = 3
    syn_rto_s: float = 1.0
    time_wait_s: float = 2.0
    fin_retries: int = 3
    arp_timeout_s: float = 3.0
    # A connection whose application exited or closed it lives on as an orphan until its data
    # is acknowledged and FIN exchanged; it is reset after this long without progress (Linux's
    # tcp_fin_timeout is 60 s too), and beyond max_orphans new ones are reset at once.
    orphan_timeout_s: float = 60.0
    max_orphans: int = 4096


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything `python -m runtime` is told on its command line."""

    grpc_addr: str = "127.0.0.1:9559"
    device_id: int = 0
    p4info: Path = P4INFO
    device_config: Path = BMV2_JSON
    interfaces: tuple[Interface, ...] = ()
    routes: tuple[Route, ...] = ()  # static routes through gateways on our subnets
    control_socket: Path = Path(cp.DEFAULT_CONTROL_SOCKET)
    tcp: TcpParams = field(default_factory=TcpParams)
    host_interface: str | None = None  # the host port's veth: the data path (DMA bridge)
    cpu_interface: str | None = None   # the CPU port's veth: PacketIn/Out (else P4Runtime's)
    rto: RtoConfig = field(default_factory=RtoConfig)
    congestion: str = "dctcp"      # for connections that do not choose (runtime.congestion)
    control: ControlConfig = field(default_factory=ControlConfig)
    metrics_port: int | None = None  # Prometheus metrics on 127.0.0.1:port; None: off
    ecn: bool = True  # negotiate ECN (RFC 3168) in both handshakes
    sack: bool = True  # negotiate SACK (RFC 2018) in both handshakes (with timestamps)
    # What an application may choose with TCP_CONGESTION (as Linux's
    # tcp_allowed_congestion_control): "none" (no rate limit) only if the operator says so.
    allowed_congestion: tuple[str, ...] = ("dctcp", "timely")
    # Users of this group may connect applications (mode 0660); None: root and the daemon's
    # own user only (0600).
    control_group: str | None = None
    # PacketIns per second and reason the fast path lets through (its punt_rate meter); a flood
    # beyond it is dropped and counted there (0: unlimited).
    punt_rate_pps: int = 2500   # below what the Python slow path handles (make bench-flood)
    # ... for SYNs: the full-option handshakes the slow path takes per second. Beyond it the
    # fast path answers SYNs to our listeners with SYN cookies (syn_cookie.p4), so a flood
    # costs the slow path this much and no more (make bench-flood: at 500/s, 5,000 SYN/s of
    # flood leave connections and a transfer 90 % of their calm rates on soft; at 2,500/s 15 %
    # and 45 %).
    syn_punt_rate_pps: int = 500
    # ... while a listen backlog overflows (runtime/punt_budget.py: the slow path would answer
    # with cookies only; 0: keep syn_punt_rate_pps).
    syn_flood_punt_rate_pps: int = 50
    # Challenge ACKs per second (RFC 5961 7), in the fast path and the slow path each (0: off).
    challenge_ack_pps: int = 1000

    def interface_for_port(self, port: int) -> Interface | None:
        return next((i for i in self.interfaces if i.port == port), None)

    def interface_for_ip(self, ip: str) -> Interface | None:
        return next((i for i in self.interfaces if i.ip == ip), None)

    @cached_property
    def routing(self) -> RoutingTable:
        """Our subnets and `routes`; RoutingError if a route cannot be used."""
        return RoutingTable(self.interfaces, self.routes)
