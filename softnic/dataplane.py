"""The packet loop: frames from the ports (raw AF_PACKET sockets on the switch-side veths)
and PacketOuts from the controller run through the loaded pipeline, one at a time, and
their outputs go to ports or, from the CPU port, to the controller as PacketIns.

Connection requests wait behind everything else, as on a NIC with a queue of their own: a
wire frame that is a TCP SYN without ACK (looked at no further) goes to a bounded SYN queue,
served SYN_QUANTUM at a time between two polls of the ports, so a SYN flood, whatever its
sources, does not delay established flows' segments (each SYN a listener gets costs a SYN
cookie, some 25 us of Python, syn_cookie.p4); a full queue drops the SYN before the pipeline
(counted, `syn_queue_full`), as a NIC drops on a full RX queue. The same frames reach the
pipeline, only SYNs later: its semantics are the P4 program's."""

from __future__ import annotations

import logging
import os
import queue
import select
import selectors
import threading
import time
from collections import Counter as Tally
from collections import deque
from collections.abc import Callable

from nic_contract.host_port import HostPort
from softnic.pipeline.constants import (CPU_PORT, ETHERTYPE_IPV4, HOST_PORT, IP_PROTO_TCP,
                                       TCP_ACK, TCP_SYN)
from softnic.pipeline.p4tas import P4tasPipeline
from softnic.state import SwitchState

log = logging.getLogger(__name__)

ETH_P_ALL = 3
SEND_WAIT_SECONDS = 0.01   # a full socket buffer: wait this long for room, then drop
HOST_SEND_TRIES = 200      # the host port waits up to 2 s before it drops
SYN_QUEUE = 1024           # SYNs waiting for the pipeline (some 25 ms of cookies)
SYN_QUANTUM = 4            # SYNs handled between two polls of the ports
_ETH_IPV4 = ETHERTYPE_IPV4.to_bytes(2, "big")
_PACKET_OUTS = "packet-outs"   # the selector key of the P4Runtime server's PacketOut queue


def is_syn(frame: bytes) -> bool:
    """An Ethernet/IPv4 frame, not a fragment, whose TCP flags say SYN without ACK (nothing
    else checked; a fragment's bytes there need not be TCP's, and fragments keep their order)."""
    if (len(frame) < 34 or frame[12:14] != _ETH_IPV4 or frame[23] != IP_PROTO_TCP
            or frame[20] & 0x3F or frame[21]):
        return False
    flags_at = 14 + (frame[14] & 0xF) * 4 + 13
    return len(frame) > flags_at and frame[flags_at] & (TCP_SYN | TCP_ACK) == TCP_SYN


class Dataplane:
    """Owns the ports and the pipeline; run() is the packet loop (one thread)."""

    def __init__(self, interfaces: dict[int, str], log_packets: bool = False) -> None:
        self.ports = {port: HostPort(ifname, ethertype=ETH_P_ALL)
                      for port, ifname in interfaces.items()}
        self.pipeline: P4tasPipeline | None = None
        self.packet_in_sink: Callable[[bytes], None] | None = None
        self.log_packets = log_packets
        self.epoch_ns = time.monotonic_ns()
        self.stats: Tally[str] = Tally()
        self._packet_outs: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._syns: deque[tuple[int, bytes]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)

    # ---- called from the P4Runtime server's threads

    def load(self, state: SwitchState) -> None:
        """A pipeline was committed: packets from now on run through this state."""
        self.pipeline = P4tasPipeline(state)

    def packet_out(self, frame: bytes) -> None:
        """A PacketOut (packet_out header + frame) for the CPU port's ingress."""
        self._packet_outs.put(frame)
        os.write(self._wake_w, b"\0")

    # ---- the loop

    def run(self, stop: threading.Event) -> None:
        with selectors.DefaultSelector() as sel:
            for port, sock in self.ports.items():
                sel.register(sock, selectors.EVENT_READ, port)
            sel.register(self._wake_r, selectors.EVENT_READ, _PACKET_OUTS)
            while not stop.is_set():
                for key, _ in sel.select(timeout=0 if self._syns else 0.2):
                    if key.data == _PACKET_OUTS:
                        self._drain_packet_outs()
                    else:
                        self.receive(key.data)
                self.handle_syns()

    def receive(self, port: int) -> None:
        """The port's waiting frames: SYNs from the wire queued, the others handled (a CPU
        port with an interface brings PacketOuts: packet_out header + frame)."""
        for frame in self.ports[port].recv_batch():
            if port not in (HOST_PORT, CPU_PORT) and is_syn(frame):
                if len(self._syns) < SYN_QUEUE:
                    self._syns.append((port, frame))
                else:
                    self.stats["syn_queue_full"] += 1
            else:
                self.handle(port, frame)

    def handle_syns(self) -> None:
        """Up to SYN_QUANTUM queued SYNs, oldest first."""
        for _ in range(min(SYN_QUANTUM, len(self._syns))):
            self.handle(*self._syns.popleft())

    def _drain_packet_outs(self) -> None:
        try:
            os.read(self._wake_r, 4096)
        except BlockingIOError:
            pass
        while True:
            try:
                frame = self._packet_outs.get_nowait()
            except queue.Empty:
                return
            self.handle(CPU_PORT, frame)

    def now_us(self) -> int:
        """ingress_global_timestamp: microseconds since the switch started, like bmv2's."""
        return (time.monotonic_ns() - self.epoch_ns) // 1000

    def handle(self, port: int, frame: bytes) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            self.stats["no_pipeline"] += 1   # like simple_switch_grpc --no-p4 before a push
            return
        outputs = pipeline.process(port, frame, self.now_us())
        if self.log_packets:
            log.info("port %d: %d bytes -> %s", port, len(frame),
                     ", ".join(f"port {p}: {len(out)} bytes" for p, out in outputs) or "dropped")
        for out_port, out in outputs:
            self.emit(out_port, out)

    def emit(self, port: int, frame: bytes) -> None:
        if port == CPU_PORT and port not in self.ports:   # PacketIn over P4Runtime
            if self.packet_in_sink is not None:
                self.packet_in_sink(frame)
            return
        sock = self.ports.get(port)
        if sock is None:
            self.stats["no_such_port"] += 1
            return
        # The host port is not allowed to lose frames: RX_DATA was acknowledged to the peer
        # already (bmv2 gets the same from host_backpressure.p4). Wire ports wait briefly.
        tries = HOST_SEND_TRIES if port == HOST_PORT else 1
        for _ in range(tries + 1):
            if sock.send(frame):
                return
            select.select([], [sock], [], SEND_WAIT_SECONDS)   # full buffer: wait for room
        self.stats["send_dropped"] += 1

    def close(self) -> None:
        for sock in self.ports.values():
            sock.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
