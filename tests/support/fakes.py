"""Test doubles of what connection control talks to: the switch (FakeDatapath), the NIC
(FakeNic, a NicInterface that records every call), an application context (App), and of the
bridge's host-port link (FakeLink)."""

from __future__ import annotations

import os
import socket
import sys
import textwrap

from host_lib import control_protocol as cp
from nic_contract.nic_host_header import NicHostMessage, decode
from runtime.app_memory import AppMemory
from runtime.datapath import SwitchClock
from runtime.flow_channel import FlowChannel
from runtime.nic_interface import NicStats
from runtime.tcp_segments import SegmentError, parse_segment


class FakeDatapath:
    """What ConnectionControl asks of the switch, recorded."""

    def __init__(self) -> None:
        self.sent: list = []
        self.other: list[bytes] = []
        self.reinjected: list = []
        self.inserts = self.deletes = 0
        self.writes: list[tuple[str, list]] = []   # (insert|delete|modify, entries)
        self.clock = SwitchClock()
        self.cpu = None   # PacketIns over P4Runtime (no CPU interface)

    async def insert(self, entries) -> None:
        self.inserts += 1
        self.writes.append(("insert", list(entries)))

    async def delete(self, entries) -> None:
        self.deletes += 1
        self.writes.append(("delete", list(entries)))

    async def modify(self, entities) -> None:
        self.writes.append(("modify", list(entities)))

    def send(self, frame: bytes, port: int) -> None:
        """PacketOuts: TCP segments are kept parsed in `sent`, others (ARP) in `other`."""
        try:
            self.sent.append(parse_segment(frame))
        except SegmentError:
            self.other.append(frame)

    def reinject(self, frame: bytes, port: int) -> None:
        self.reinjected.append(parse_segment(frame))


class FakeNic:
    """A NIC that moves no data: it records what the runtime asked of it."""

    def __init__(self) -> None:
        self.stats = NicStats()
        self.now = 100.0
        self.channels: dict[int, FlowChannel] = {}
        self.calls: list[tuple] = []
        self.active: list[FlowChannel] = []

    def clock(self) -> float:
        return self.now

    def register(self, channel: FlowChannel) -> None:
        if channel.flow_id in self.channels:
            raise ValueError(f"flow {channel.flow_id} is already registered")
        self.channels[channel.flow_id] = channel
        self.calls.append(("register", channel.flow_id))

    def unregister(self, flow_id: int) -> FlowChannel | None:
        self.calls.append(("unregister", flow_id))
        return self.channels.pop(flow_id, None)

    def channel(self, flow_id: int) -> FlowChannel | None:
        return self.channels.get(flow_id)

    def deliver(self, flow_id: int, payload: bytes) -> None:
        """As the NIC would: the payload lands in the RX ring."""
        ring = self.channels[flow_id].rx_ring
        ring.write_at(ring.head & (ring.size - 1), payload)
        ring.publish(len(payload))
        self.calls.append(("deliver", flow_id, payload))

    def kick(self, flow_id: int) -> int:
        self.calls.append(("kick", flow_id))
        return 0

    def send_rx_consumed(self, flow_id: int, count: int) -> None:
        self.calls.append(("rx_consumed", flow_id, count))

    def send_fin(self, flow_id: int) -> bool:
        self.calls.append(("fin", flow_id))
        return flow_id in self.channels

    def poll(self) -> None:
        self.calls.append(("poll",))

    def set_rate(self, flow_id: int, rate_bps: float | None) -> None:
        self.calls.append(("rate", flow_id, rate_bps))

    def take_active(self) -> list[FlowChannel]:
        active, self.active = self.active, []
        return active

    def set_keepalive(self, flow_id: int, params) -> None:
        self.calls.append(("keepalive", flow_id, params))

    def called(self, name: str) -> list[tuple]:
        return [c for c in self.calls if c[0] == name]


def app_memory(app_id: int, layout) -> AppMemory:
    """An application's memory as the runtime creates it (the passed descriptor closed)."""
    memory, fd = AppMemory.create(app_id, layout)
    os.close(fd)
    return memory


class App:
    """An application context: its shared memory and the events it was told."""

    def __init__(self, memory: AppMemory) -> None:
        self.ctx_id, self.memory, self.events = 0, memory, []

    def deliver(self, event: cp.Message) -> None:
        self.events.append(event)

    def told(self, kind: type) -> int:
        return sum(isinstance(e, kind) for e in self.events)


class FakeLink:
    """A FrameLink whose first `failures` sends fail; its descriptor is never readable."""

    max_payload = 1476

    def __init__(self, failures: int, delay: float | None) -> None:
        self.failures = failures
        self.delay = delay
        self.sent: list[NicHostMessage] = []
        self._sock, self._other = socket.socketpair()

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv_batch(self, limit: int) -> list[bytes]:
        return []

    def send(self, frame: bytes) -> bool:
        if self.failures:
            self.failures -= 1
            return False
        self.sent.append(decode(frame))
        return True

    def retry_delay(self) -> float | None:
        return self.delay

    def kernel_drops(self) -> int:
        return 0

    def close(self) -> None:
        self._sock.close()
        self._other.close()


# A stand-in for simple_switch_grpc: keeps argv[0] (exec -a) and listens on --grpc-server-addr.
FAKE_SWITCH = textwrap.dedent(f"""\
    #!/bin/bash
    exec -a "$0" {sys.executable} -c '
    import socket, sys, time
    args = sys.argv[1:]
    print("fake switch:", " ".join(args), flush=True)
    addr = args[args.index("--grpc-server-addr") + 1]
    if addr.startswith("unix:"):
        server = socket.socket(socket.AF_UNIX)
        server.bind(addr[len("unix:"):])
    else:
        host, port = addr.rsplit(":", 1)
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, int(port)))
    server.listen()
    while True:
        time.sleep(1)
    ' "$@"
    """)
