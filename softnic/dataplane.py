"""The packet loop: frames from the ports (raw AF_PACKET sockets on the switch-side veths)
and PacketOuts from the controller run through the loaded pipeline, one at a time, and
their outputs go to ports or, from the CPU port, to the controller as PacketIns."""

from __future__ import annotations

import logging
import os
import queue
import select
import selectors
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable

from nic_contract.host_port import HostPort
from softnic.pipeline.constants import CPU_PORT, HOST_PORT
from softnic.pipeline.p4tas import P4tasPipeline
from softnic.state import SwitchState

log = logging.getLogger(__name__)

ETH_P_ALL = 3
SEND_WAIT_SECONDS = 0.01   # a full socket buffer: wait this long for room, then drop
HOST_SEND_TRIES = 200      # the host port waits up to 2 s before it drops


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
            sel.register(self._wake_r, selectors.EVENT_READ, CPU_PORT)
            while not stop.is_set():
                for key, _ in sel.select(timeout=0.2):
                    if key.data == CPU_PORT:
                        self._drain_packet_outs()
                    else:
                        for frame in self.ports[key.data].recv_batch():
                            self.handle(key.data, frame)

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
        if port == CPU_PORT:
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
