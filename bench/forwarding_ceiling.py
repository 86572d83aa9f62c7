"""bench_transfer's (c): bmv2's own forwarding ceiling, bench/fwd.p4 on a simple_switch_grpc of
its own with MSS-sized frames blasted through it."""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchlib import READY_TIMEOUT, BenchError, _stop, _track
from bmv2_env import switch, topology
from bmv2_env.toolchain import ToolNotFound, find_simple_switch_grpc, find_tool

FWD_P4 = Path(__file__).resolve().parent / "fwd.p4"
MSS = 1448  # payload per segment with the timestamps option (MTU 1500)
FRAME_BYTES = 1514  # Ethernet + IPv4 + TCP with timestamps + MSS


@dataclass
class Forwarder:
    """bench/fwd.p4 on a simple_switch_grpc of its own, on two veth pairs."""

    tag: str = field(default_factory=lambda: f"p4bf{os.getpid() % 100000}")
    links: list[str] = field(default_factory=list)
    tmp: Path | None = None
    proc: subprocess.Popen | None = None

    def iface(self, port: int, peer: bool = False) -> str:
        """Port `port`'s switch-side veth (peer=True: the other end)."""
        return f"{self.tag}{port}{'p' if peer else ''}"

    def cleanup(self) -> None:
        """Stop the switch, delete the veths and the temporary folder; idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            _stop(self.proc, timeout=5)
        for name in self.links:
            topology.delete_link(name)
        self.links.clear()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _rx_packets(ifname: str) -> int:
    """Packets `ifname` received so far (sysfs)."""
    return int((topology.SYS_NET / ifname / "statistics" / "rx_packets").read_text())


def _blast(ifname: str, stop: threading.Event, sent: list[int], rate: float) -> None:
    """MSS-sized frames into `ifname`: `rate` frames/s in bursts of 32, or (0) as fast as a raw
    socket takes them."""
    dst, src = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
    frame = dst + src + b"\x08\x00" + bytes(FRAME_BYTES - 14)
    burst = 32
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((ifname, 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        count, start = 0, time.monotonic()
        while not stop.is_set():
            for _ in range(burst):
                try:
                    sock.send(frame)
                    count += 1
                except OSError:  # ENOBUFS: the device queue is full
                    time.sleep(0.0001)
                    break
            if rate:
                ahead = count / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)
        sent.append(count)


def bench_forwarding(args: argparse.Namespace, fwd: Forwarder) -> dict:
    """Compile fwd.p4, start its switch, step through the offered rates; the best step."""
    try:
        p4c = find_tool("p4c", "P4C")
    except ToolNotFound as exc:
        return {"skipped": f"p4c not found: {exc}"}
    try:
        switch_binary = find_simple_switch_grpc()  # bmv2's own ceiling, whatever TARGET runs
    except ToolNotFound as exc:
        return {"skipped": f"simple_switch_grpc not found: {exc}"}
    fwd.tmp = Path(tempfile.mkdtemp(prefix="p4bt-fwd-"))
    compiled = subprocess.run([str(p4c), "--target", "bmv2", "--arch", "v1model", "-o",
                               str(fwd.tmp), str(FWD_P4)], capture_output=True, text=True,
                              timeout=120)
    program = fwd.tmp / "fwd.json"
    if compiled.returncode != 0 or not program.is_file():
        raise BenchError(f"p4c failed on {FWD_P4}: {compiled.stderr.strip()[-1000:]}")
    for port in (1, 2):
        fwd.links.append(fwd.iface(port))
        topology.create_pair(fwd.iface(port), fwd.iface(port, peer=True))
    grpc_addr = f"{switch.UNIX_SCHEME}{fwd.tmp / 'p4runtime.sock'}"
    cmd = [str(switch_binary), "--device-id", "0",
           "-i", f"1@{fwd.iface(1)}", "-i", f"2@{fwd.iface(2)}", str(program),
           "--", "--grpc-server-addr", grpc_addr]
    fwd.proc = _track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True))
    limit = time.monotonic() + READY_TIMEOUT
    while not switch.grpc_reachable(grpc_addr):
        if fwd.proc.poll() is not None or time.monotonic() > limit:
            raise BenchError(f"forwarder switch did not come up: {fwd.proc.stderr.read()[-500:]}")
        time.sleep(0.1)
    out = fwd.iface(2, peer=True)
    curve = []
    for rate in args.fwd_offered:
        stop, sent = threading.Event(), []
        blaster = threading.Thread(target=_blast, args=(fwd.iface(1, peer=True), stop, sent,
                                                        rate), daemon=True)
        blaster.start()
        time.sleep(args.fwd_warmup)
        before, t0 = _rx_packets(out), time.monotonic()
        time.sleep(args.fwd_seconds)
        after, t1 = _rx_packets(out), time.monotonic()
        stop.set()
        blaster.join(timeout=5)
        offered = sent[0] / (args.fwd_warmup + args.fwd_seconds) if sent else None
        curve.append({"offered_frames_per_s": None if offered is None else round(offered),
                      "frames_per_s": round((after - before) / (t1 - t0), 1)})
        time.sleep(0.2)  # let bmv2's queues drain before the next step
    fwd.cleanup()
    pps = max(step["frames_per_s"] for step in curve)
    return {"frames_per_s": pps, "frame_bytes": FRAME_BYTES,
            "payload_mbit_per_s": round(pps * MSS * 8 / 1e6, 2),
            "wire_mbit_per_s": round(pps * FRAME_BYTES * 8 / 1e6, 2),
            "curve": curve, "seconds_per_step": args.fwd_seconds}
