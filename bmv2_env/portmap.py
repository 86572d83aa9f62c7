"""The bmv2 port model: wire ports 1..N, the host port and the CPU port, and their veth names.

Every port with an interface is a veth pair: the switch side is given to simple_switch_grpc,
the peer side to whoever plays the other end (PTF, a namespace with a Linux TCP peer, the
runtime's host-port bridge). The CPU port is P4Runtime PacketIn/PacketOut, or, with
`cpu_interface`, a veth pair too (as Tofino's CPU PCIe port and many SmartNICs' exception paths
are network interfaces): its frames carry the packet_in/packet_out header in front, and the
runtime reads and writes them there instead of over gRPC (ARCHITECTURE.md 2).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from nic_contract.constants import CPU_PORT, HOST_PORT

MIN_WIRE_PORTS = 1
MAX_WIRE_PORTS = 16
MAX_IFNAME_LEN = 15  # Linux IFNAMSIZ - 1
DEFAULT_PREFIX = "p4t"
DEFAULT_WIRE_PORTS = 2
_PREFIX_RE = re.compile(r"[a-z0-9]{1,6}")
# bmv2 port numbers outside 1..510: 0 is avoided, 511 is v1model's drop port.
_MAX_BMV2_PORT = 510

ROLE_WIRE = "wire"
ROLE_HOST = "host"
ROLE_CPU = "cpu"


@dataclass(frozen=True)
class PortLink:
    """One bmv2 port backed by a veth pair."""

    port: int
    switch_iface: str
    peer_iface: str
    role: str


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is 1-6 characters of [a-z0-9]; raise ValueError otherwise."""
    if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"interface prefix {prefix!r} must be 1 to 6 characters of [a-z0-9]")
    return prefix


@dataclass(frozen=True)
class PortMap:
    """N wire ports (bmv2 ports 1..N), the host port, the CPU port; veth names from a prefix."""

    num_wire_ports: int = DEFAULT_WIRE_PORTS
    prefix: str = DEFAULT_PREFIX
    host_port: int = HOST_PORT
    cpu_port: int = CPU_PORT
    cpu_interface: bool = False   # the CPU port is a veth pair, not P4Runtime packet I/O

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)
        self._validate_ports()
        for link in self.links():
            for name in (link.switch_iface, link.peer_iface):
                if len(name) > MAX_IFNAME_LEN:
                    raise ValueError(f"interface name {name!r} is longer than "
                                     f"{MAX_IFNAME_LEN} characters")

    def _validate_ports(self) -> None:
        n = self.num_wire_ports
        if not _is_int(n) or not MIN_WIRE_PORTS <= n <= MAX_WIRE_PORTS:
            raise ValueError(f"number of wire ports must be an integer from {MIN_WIRE_PORTS} to "
                             f"{MAX_WIRE_PORTS}, got {n!r}")
        for name in ("host_port", "cpu_port"):
            value = getattr(self, name)
            if not _is_int(value) or not n < value <= _MAX_BMV2_PORT:
                raise ValueError(f"{name} must be an integer above the wire ports (1..{n}) "
                                 f"and at most {_MAX_BMV2_PORT}, got {value!r}")
        if self.host_port == self.cpu_port:
            raise ValueError(f"host_port and cpu_port must differ, both are {self.host_port}")

    # ---- names ----------------------------------------------------------------------------
    @property
    def wire_ports(self) -> list[int]:
        """The bmv2 port numbers of the wire ports, 1..N."""
        return list(range(1, self.num_wire_ports + 1))

    def wire_link(self, port: int) -> PortLink:
        """The veth pair of wire port `port`."""
        if port not in self.wire_ports:
            raise ValueError(f"wire port {port} is not in 1..{self.num_wire_ports}")
        return PortLink(port, f"{self.prefix}w{port}", f"{self.prefix}w{port}p", ROLE_WIRE)

    @property
    def host_link(self) -> PortLink:
        """The veth pair of the host port."""
        return PortLink(self.host_port, f"{self.prefix}h", f"{self.prefix}hp", ROLE_HOST)

    @property
    def cpu_link(self) -> PortLink | None:
        """The veth pair of the CPU port (None: P4Runtime carries its packets)."""
        if not self.cpu_interface:
            return None
        return PortLink(self.cpu_port, f"{self.prefix}c", f"{self.prefix}cp", ROLE_CPU)

    def links(self) -> list[PortLink]:
        """All veth-backed ports: the wire ports in order, the host port, the CPU port's if
        it has one."""
        cpu = [self.cpu_link] if self.cpu_link is not None else []
        return [self.wire_link(p) for p in self.wire_ports] + [self.host_link] + cpu

    def netns_name(self, port: int) -> str:
        """Namespace for wire port `port`'s peer side in end-to-end tests (`down` deletes it)."""
        self.wire_link(port)  # validates `port`
        return f"{self.prefix}n{port}"

    def routed_names(self, port: int) -> tuple[str, str, str]:
        """Wire port `port`'s routed host (bmv2_env.routed): its namespace, the veth end in the
        router (the port's peer namespace) and the end in the host's namespace."""
        self.wire_link(port)  # validates `port`
        return f"{self.prefix}r{port}", f"{self.prefix}b{port}", f"{self.prefix}b{port}p"

    def interface_names(self) -> list[str]:
        """Every interface name of this map, switch and peer sides."""
        return [name for link in self.links() for name in (link.switch_iface, link.peer_iface)]

    # ---- command-line arguments -----------------------------------------------------------
    def bmv2_interface_args(self) -> list[str]:
        """simple_switch_grpc arguments binding the switch sides: -i 1@p4tw1 ... -i 254@p4th."""
        return [arg for link in self.links() for arg in ("-i", f"{link.port}@{link.switch_iface}")]

    def ptf_interface_args(self) -> list[str]:
        """ptf arguments binding the peer sides: --interface 1@p4tw1p ... --interface 254@p4thp."""
        return [arg for link in self.links()
                for arg in ("--interface", f"{link.port}@{link.peer_iface}")]

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `ports` lists every port with its interfaces for readers."""
        ports = [vars(link).copy() for link in self.links()]
        if self.cpu_link is None:
            ports.append({"port": self.cpu_port, "switch_iface": None, "peer_iface": None,
                          "role": ROLE_CPU})
        return {
            "prefix": self.prefix,
            "num_wire_ports": self.num_wire_ports,
            "host_port": self.host_port,
            "cpu_port": self.cpu_port,
            "cpu_interface": self.cpu_interface,
            "ports": ports,
        }

    def to_json(self) -> str:
        """Serialize to JSON text (see to_dict)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> PortMap:
        """Build from a dict made by to_dict; raise ValueError if it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"port map must be a JSON object, got {type(data).__name__}")
        missing = [k for k in ("prefix", "num_wire_ports") if k not in data]
        if missing:
            raise ValueError(f"port map JSON lacks {', '.join(missing)}")
        return cls(
            num_wire_ports=data["num_wire_ports"],
            prefix=data["prefix"],
            host_port=data.get("host_port", HOST_PORT),
            cpu_port=data.get("cpu_port", CPU_PORT),
            cpu_interface=bool(data.get("cpu_interface", False)),
        )

    @classmethod
    def from_json(cls, text: str) -> PortMap:
        """Parse JSON text made by to_json; raise ValueError on bad input."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"port map is not valid JSON: {exc}") from None
        return cls.from_dict(data)
