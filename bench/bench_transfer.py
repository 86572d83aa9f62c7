"""Data transfer through p4tas against Linux TCP, bmv2's own ceiling and the rings, in one run.

(a) bulk goodput: a Linux client (peer namespace) -> a host_lib sink, and a host_lib client -> a
    Linux sink in the peer namespace, through TARGET's switch + the runtime's DMA bridge;
    against the same client and sink on two namespaces joined by one veth pair (Linux to
    Linux, as bench_conn).
    A transfer is connect, send N bytes, SHUT_WR, and the sink's byte count back; goodput is
    N / (connected .. count received). --repeat runs, the median is reported.
(b) RPC: 64-byte requests echoed, one outstanding per connection (closed loop), 1 and 16
    connections from a Linux client to a host_lib echo server, and Linux to Linux: requests
    per second and the p50/p99 request latency.
(c) bmv2's forwarding ceiling: bench/fwd.p4 (port 1 <-> port 2, nothing else), compiled with
    p4c into a temporary folder, on a simple_switch_grpc of its own (the same binary); MSS-sized
    frames (1514 bytes) blasted into port 1 from a raw socket for --fwd-seconds, the frames that
    come out of port 2 counted (the interface's rx_packets). p4tas goodput is then reported as a
    fraction of the payload bmv2 itself moves (frames/s x 1448 bytes). Skipped without p4c.
(d) host_lib's SPSC byte ring (host_lib.rings, a /dev/shm segment) between two processes, 64 KiB
    messages, against a Linux loopback TCP connection between two processes.

p4tas has no loss recovery yet: a dropped segment stalls a connection. Every client therefore
has a per-operation timeout and a deadline; a run that misses them is reported as "stalled"
(in the text and the JSON), never waited for. Everything created (the p4tas environment with
prefix p4bt, namespaces, veths, processes, temporary folders, /dev/shm/p4tas-* segments of this
run) is removed at the end, also on failure or Ctrl-C. Without root, a target or the compiled
pipeline the benchmark is skipped (exit 0). The last line of the output is one JSON object.

--profile DIR: after the measured runs of (a), one more transfer each way with py-spy sampling
the runtime daemon (the DMA bridge runs in it) and the host_lib application; the raw stacks go
to DIR and the top hot spots (self time, file:line) are printed and put in the JSON.

    .venv/bin/python bench/bench_transfer.py [--p4tas-bytes N] [--profile DIR]
                                                            # or: make bench-transfer
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from benchlib import (  # noqa: E402  (also puts the repository on sys.path)
    PYTHON,
    READY_TIMEOUT,
    REPO,
    BenchError,
    LinuxPair,
    P4tasSide,
    _free_port,
    _int_range,
    _interrupt,
    _last_json,
    _readline,
    _signals,
    _stop,
    _track,
    describe_target,
    skip_reason,
    stop_tracked,
)
from bmv2_env import switch, topology  # noqa: E402
from bmv2_env.peers import popen_in  # noqa: E402
from bmv2_env.state import STATE_DIR_ENV  # noqa: E402
from bmv2_env.toolchain import ToolNotFound, find_simple_switch_grpc, find_tool  # noqa: E402
from host_lib.shm_layout import SHM_DIR, Layout, Segment  # noqa: E402

PEER = BENCH / "transfer_peer.py"
FWD_P4 = BENCH / "fwd.p4"
PREFIX = "p4bt"  # the p4tas environment of this benchmark (tests: p4e2e, p4ptf; make run: p4t)
RUNTIME_ARGS = ["--time-wait", "0.5"]
MSS = 1448  # payload per segment with the timestamps option (MTU 1500)
FRAME_BYTES = 1514  # Ethernet + IPv4 + TCP with timestamps + MSS
BULK_PORT, RPC_PORT = 5101, 5102
CONTROL_SOCKET_ENV = "P4TAS_CONTROL_SOCKET"


# ---- processes of transfer_peer.py -------------------------------------------------------------
def _peer_env(control_socket: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if control_socket is not None:
        env[CONTROL_SOCKET_ENV] = str(control_socket)
    return env


def spawn(argv: Sequence[str], netns: str | None, control_socket: Path | None = None,
          stdin=subprocess.DEVNULL) -> subprocess.Popen:
    """transfer_peer.py with `argv`, in `netns` (None: here), tracked for cleanup."""
    cmd = [PYTHON, str(PEER), *map(str, argv)]
    kwargs = dict(stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                  env=_peer_env(control_socket))
    return _track(popen_in(netns, cmd, **kwargs) if netns else
                  subprocess.Popen(cmd, cwd=REPO, **kwargs))


def start_server(argv: Sequence[str], netns: str | None, what: str,
                 control_socket: Path | None = None) -> subprocess.Popen:
    proc = spawn(argv, netns, control_socket)
    line = _readline(proc, READY_TIMEOUT, what)
    if line != "listening":
        raise BenchError(f"{what}: said {line!r} instead of listening")
    return proc


def stop_server(proc: subprocess.Popen, what: str) -> dict:
    out, err = _stop(proc)
    try:
        return _last_json(out, what)
    except BenchError:
        return {"error": err.strip()[-500:] or "no result"}


def finish(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """The JSON a client printed; a client still running after `timeout` is killed and reported
    as stalled (never waited for)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, timeout=2)
        return {"status": f"stalled (killed after {timeout:g} s)"}
    if proc.returncode != 0:
        return {"status": f"error: {what} exited with code {proc.returncode}: "
                          f"{err.strip()[-500:]}"}
    return _last_json(out, what)


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


# ---- (a) bulk goodput --------------------------------------------------------------------------
@dataclass
class Bulk:
    """--repeat transfers of one direction."""

    name: str
    nbytes: int
    runs: list[dict] = field(default_factory=list)
    sink: list[dict] = field(default_factory=list)  # the sink's connections that were not ok

    @property
    def ok_runs(self) -> list[dict]:
        return [r for r in self.runs if r.get("status") == "ok"]

    @property
    def stalls(self) -> int:
        return sum(1 for r in self.runs if str(r.get("status", "")).startswith("stalled"))

    @property
    def mbps(self) -> float | None:
        """Median goodput of the runs that completed, Mbit/s."""
        return _median([r["bytes"] * 8 / r["seconds"] / 1e6 for r in self.ok_runs
                        if r["seconds"] > 0])

    def status(self) -> str:
        bad = [r["status"] for r in self.runs if r.get("status") != "ok"]
        return "ok" if not bad else f"{len(bad)}/{len(self.runs)} not ok: {bad[0]}"

    def line(self) -> str:
        rates = ", ".join(f"{r['bytes'] * 8 / r['seconds'] / 1e6:.1f}" if r.get("status") == "ok"
                          and r["seconds"] > 0 else "STALL" if str(r.get("status", "")).
                          startswith("stalled") else "ERR" for r in self.runs)
        median = f"{self.mbps:9.2f} Mbit/s" if self.mbps is not None else "   no completed run"
        sink = f"; sink saw {self.sink}" if self.sink else ""
        return (f"  {self.name:<26} {self.nbytes / 2**20:6.2f} MiB x {len(self.runs)}: {median} "
                f"(runs: {rates}){'' if self.status() == 'ok' else '  ' + self.status()}{sink}")

    def figures(self) -> dict:
        return {"mbit_per_s": None if self.mbps is None else round(self.mbps, 2),
                "bytes": self.nbytes, "stalls": self.stalls, "status": self.status(),
                "sink_not_ok": self.sink,
                "runs_mbit_per_s": [round(r["bytes"] * 8 / r["seconds"] / 1e6, 2)
                                    if r.get("status") == "ok" and r["seconds"] > 0 else
                                    r.get("status") for r in self.runs]}


def bulk(name: str, sink: tuple[list, str | None, Path | None],
         source: tuple[list, str | None, Path | None], nbytes: int, repeat: int,
         args: argparse.Namespace) -> Bulk:
    """A sink server, then `repeat` source clients one after another."""
    sink_argv, sink_ns, sink_sock = sink
    server = start_server(["sink", *sink_argv, "--timeout", args.timeout], sink_ns,
                          f"{name}: sink", sink_sock)
    result = Bulk(name, nbytes)
    src_argv, src_ns, src_sock = source
    for _ in range(repeat):
        client = spawn(["source", *src_argv, "--bytes", nbytes, "--timeout", args.timeout,
                        "--deadline", args.deadline], src_ns, src_sock)
        run = finish(client, args.deadline + args.timeout + 10, f"{name}: source")
        result.runs.append(run)
    sink_result = stop_server(server, f"{name}: sink")
    result.sink = [c for c in sink_result.get("connections", []) if c.get("status") != "ok"] \
        or ([sink_result] if "error" in sink_result else [])
    return result


# ---- (b) RPC -----------------------------------------------------------------------------------
def rpc(name: str, server: tuple[list, str | None, Path | None], client_ns: str, host: str,
        args: argparse.Namespace) -> dict[int, dict]:
    argv, ns, sock = server
    proc = start_server(["echo", *argv], ns, f"{name}: echo server", sock)
    out = {}
    for conns in args.rpc_conns:
        client = spawn(["rpc", host, RPC_PORT, "--conns", conns, "--seconds", args.rpc_seconds,
                        "--timeout", args.timeout], client_ns)
        out[conns] = finish(client, args.rpc_seconds + 2 * args.timeout + 10, f"{name}: rpc")
    stop_server(proc, f"{name}: echo server")
    return out


def rpc_line(name: str, conns: int, r: dict) -> str:
    if r.get("status") != "ok" and not r.get("requests"):
        return f"  {name:<8} {conns:>2} conn: {r.get('status')}"
    tail = "" if r.get("status") == "ok" else f"  ({r['status']})"
    return (f"  {name:<8} {conns:>2} conn: {r['rate']:9.1f} req/s, p50 {r['p50_us']} us, "
            f"p99 {r['p99_us']} us ({r['requests']} requests in {r['seconds']:.2f} s){tail}")


# ---- (c) bmv2 forwarding ceiling ---------------------------------------------------------------
@dataclass
class Forwarder:
    """bench/fwd.p4 on a simple_switch_grpc of its own, on two veth pairs."""

    tag: str = field(default_factory=lambda: f"p4bf{os.getpid() % 100000}")
    links: list[str] = field(default_factory=list)
    tmp: Path | None = None
    proc: subprocess.Popen | None = None

    def iface(self, port: int, peer: bool = False) -> str:
        return f"{self.tag}{port}{'p' if peer else ''}"

    def cleanup(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            _stop(self.proc, timeout=5)
        for name in self.links:
            topology.delete_link(name)
        self.links.clear()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


def _rx_packets(ifname: str) -> int:
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
    grpc_port = _free_port()
    cmd = [str(switch_binary), "--device-id", "0",
           "-i", f"1@{fwd.iface(1)}", "-i", f"2@{fwd.iface(2)}", str(program),
           "--", "--grpc-server-addr", f"127.0.0.1:{grpc_port}"]
    fwd.proc = _track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True))
    limit = time.monotonic() + READY_TIMEOUT
    while not switch.grpc_reachable(grpc_port):
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


# ---- (d) rings vs loopback TCP -----------------------------------------------------------------
def ring_segment_name() -> str:
    return f"p4tas-{PREFIX}{os.getpid()}-ring"


def bench_rings(args: argparse.Namespace) -> dict:
    msgs, size = args.ring_msgs, args.msg_bytes
    common = ["--msgs", msgs, "--msg-bytes", size, "--timeout", args.timeout,
              "--deadline", args.deadline]
    ring_rates, tcp_rates, statuses = [], [], []
    name = ring_segment_name()
    layout = Layout(rx_ring_size=args.ring_bytes, tx_ring_size=16, max_connections=1,
                    max_contexts=1, queue_depth=2)
    for _ in range(args.repeat):
        seg = Segment.create(name, layout)
        try:
            consumer = spawn(["ring-consumer", name, *common], None)
            if _readline(consumer, READY_TIMEOUT, "ring consumer") != "ready":
                raise BenchError("ring consumer did not say ready")
            producer = spawn(["ring-producer", name, *common], None)
            prod = finish(producer, args.deadline + 10, "ring producer")
            cons = finish(consumer, args.deadline + 10, "ring consumer")
        finally:
            seg.close()
            seg.unlink()
        statuses.append(cons.get("status"))
        if cons.get("status") == "ok" and prod.get("status") == "ok" \
                and not cons["sequence_errors"]:
            ring_rates.append(msgs * size / (cons["end"] - prod["start"]))
        consumer = spawn(["tcp-consumer", *common], None)
        line = _readline(consumer, READY_TIMEOUT, "tcp consumer")
        producer = spawn(["tcp-producer", line.split()[1], *common], None)
        prod = finish(producer, args.deadline + 10, "tcp producer")
        cons = finish(consumer, args.deadline + 10, "tcp consumer")
        statuses.append(cons.get("status"))
        if cons.get("status") == "ok" and not cons["sequence_errors"]:
            tcp_rates.append(msgs * size / (cons["end"] - prod["start"]))
    ring, tcp = _median(ring_rates), _median(tcp_rates)
    return {"msg_bytes": size, "msgs": msgs, "ring_bytes": args.ring_bytes,
            "ring_mbyte_per_s": None if ring is None else round(ring / 1e6, 1),
            "tcp_loopback_mbyte_per_s": None if tcp is None else round(tcp / 1e6, 1),
            "ring_runs": [round(r / 1e6, 1) for r in ring_rates],
            "tcp_runs": [round(r / 1e6, 1) for r in tcp_rates],
            "ratio_ring_tcp": round(ring / tcp, 3) if ring and tcp else None,
            "status": "ok" if all(s == "ok" for s in statuses) else
            next(s for s in statuses if s != "ok")}


# ---- profiling ---------------------------------------------------------------------------------
def find_py_spy() -> Path | None:
    for candidate in (Path(PYTHON).parent / "py-spy", shutil.which("py-spy")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def start_py_spy(py_spy: Path, pid: int, out: Path, rate: int) -> subprocess.Popen:
    cmd = [str(py_spy), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw",
           "--output", str(out), "--nonblocking"]
    return _track(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True))


def stop_py_spy(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def hot_spots(raw: Path, top: int) -> dict:
    """Self time per frame (function + file:line) and inclusive time per function, from py-spy's
    collapsed stacks (`frame;frame;... count`, outermost first)."""
    self_time, inclusive, total = Counter(), Counter(), 0
    try:
        lines = raw.read_text(errors="replace").splitlines()
    except OSError:
        return {"error": f"no py-spy output in {raw}"}
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        frames = [f for f in frames if not f.startswith("process ") and not
                  f.startswith("thread ")] or frames
        self_time[_short(frames[-1])] += n
        for func in {_short(f, line_no=False) for f in frames}:
            inclusive[func] += n

    def rows(counter: Counter) -> list[list]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(top)]
    return {"samples": total, "self_pct": rows(self_time), "inclusive_pct": rows(inclusive)}


def _short(frame: str, line_no: bool = True) -> str:
    """`func (/abs/path/file.py:123)` -> `func (runtime/file.py:123)`."""
    func, _, where = frame.partition(" (")
    where = where.rstrip(")")
    path, _, line = where.rpartition(":")
    if not path:
        path, line = where, ""
    repo = str(REPO) + "/"
    if path.startswith(repo):
        path = path[len(repo):]
    elif "/lib/python" in path:
        path = "stdlib/" + path.split("/lib/python", 1)[1].split("/", 1)[-1]
    return f"{func} ({path}:{line})" if line_no and line else f"{func} ({path})"


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile_bulk(args: argparse.Namespace, runtime_pid: int, switch_pid: int, peer,
                 control: Path) -> dict:
    """One more transfer each way with py-spy on the runtime and on the host_lib application."""
    py_spy = find_py_spy()
    if py_spy is None:
        return {"skipped": "py-spy not found (pip install py-spy into the venv)"}
    out_dir = Path(args.profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = {}
    directions = {
        "linux_to_p4tas": (["p4tas", peer.local_ip, BULK_PORT], None, control,
                           ["linux", peer.local_ip, BULK_PORT], peer.netns, None, "sink"),
        "p4tas_to_linux": (["linux", peer.peer_ip, BULK_PORT], peer.netns, None,
                           ["p4tas", peer.peer_ip, BULK_PORT], None, control, "source"),
    }
    for name, (s_argv, s_ns, s_sock, c_argv, c_ns, c_sock, app_role) in directions.items():
        server = start_server(["sink", *s_argv, "--timeout", args.timeout], s_ns,
                              f"profile {name}: sink", s_sock)
        client = spawn(["source", *c_argv, "--bytes", args.p4tas_bytes, "--timeout",
                        args.timeout, "--deadline", args.deadline], c_ns, c_sock)
        app = server if app_role == "sink" else client
        pids = {"runtime": runtime_pid, "switch": switch_pid, "app": app.pid}
        spies = {"runtime": (start_py_spy(py_spy, runtime_pid, out_dir / f"{name}.runtime.txt",
                                          args.profile_rate), out_dir / f"{name}.runtime.txt"),
                 "app": (start_py_spy(py_spy, app.pid, out_dir / f"{name}.app.txt",
                                      args.profile_rate), out_dir / f"{name}.app.txt")}
        cpu0 = {who: _cpu_seconds(pid) for who, pid in pids.items()}
        w0 = time.monotonic()
        runs = [finish(client, args.deadline + args.timeout + 10, f"profile {name}: source")]
        for _ in range(args.profile_runs - 1):
            if app_role == "source":  # a new client process each run: sample the runtime only
                break
            client = spawn(["source", *c_argv, "--bytes", args.p4tas_bytes, "--timeout",
                            args.timeout, "--deadline", args.deadline], c_ns, c_sock)
            runs.append(finish(client, args.deadline + args.timeout + 10,
                               f"profile {name}: source"))
        wall = time.monotonic() - w0
        cpu1 = {who: _cpu_seconds(pid) for who, pid in pids.items()}
        cpu = {who: round(100 * (cpu1[who] - cpu0[who]) / wall, 1) for who in pids
               if cpu0[who] is not None and cpu1[who] is not None}  # an exited app: not known
        stop_server(server, f"profile {name}: sink")
        run = runs[-1]
        entry = {"transfer": [r.get("status") for r in runs], "cpu_pct": cpu,
                 "mbit_per_s": round(run["bytes"] * 8 / run["seconds"] / 1e6, 2)
                 if run.get("status") == "ok" else None}
        for who, (proc, path) in spies.items():
            err = stop_py_spy(proc)
            entry[who] = hot_spots(path, args.profile_top)
            entry[who]["raw"] = str(path)
            if "error" in entry[who]:
                entry[who]["py_spy_stderr"] = err.strip()[-300:]
        result[name] = entry
    return result


def print_profile(profile: dict) -> None:
    if "skipped" in profile:
        print(f"  profile skipped: {profile['skipped']}")
        return
    for name, entry in profile.items():
        print(f"  {name} (transfers {entry['transfer']}, last {entry['mbit_per_s']} Mbit/s while "
              f"sampled; CPU % of one core: {entry['cpu_pct']}):")
        for who in ("runtime", "app"):
            spots = entry[who]
            if "error" in spots:
                print(f"    {who}: {spots['error']} {spots.get('py_spy_stderr', '')}")
                continue
            print(f"    {who}: {spots['samples']} samples ({spots['raw']}); self time:")
            for frame, pct in spots["self_pct"]:
                print(f"      {pct:5.1f}%  {frame}")
            print(f"    {who}: inclusive:")
            for frame, pct in spots["inclusive_pct"]:
                print(f"      {pct:5.1f}%  {frame}")


# ---- the p4tas and Linux sides -----------------------------------------------------------------
def bench_p4tas(args: argparse.Namespace, side: P4tasSide, out: dict) -> None:
    result, info = side.start(RUNTIME_ARGS + args.runtime_arg)
    peer, control = result.peers.peer(1), info.control_socket
    out["runtime_pid"] = info.pid
    print(f"(a,b) p4tas: Linux peer in {peer.netns} ({peer.peer_ip}), p4tas {peer.local_ip}; "
          f"runtime pid {info.pid}, switch pid {result.pid}", flush=True)
    out["bulk_in"] = bulk("Linux -> p4tas (host_lib)",
                          (["p4tas", peer.local_ip, BULK_PORT], None, control),
                          (["linux", peer.local_ip, BULK_PORT], peer.netns, None),
                          args.p4tas_bytes, args.repeat, args)
    print(out["bulk_in"].line(), flush=True)
    out["bulk_out"] = bulk("p4tas (host_lib) -> Linux",
                           (["linux", peer.peer_ip, BULK_PORT], peer.netns, None),
                           (["p4tas", peer.peer_ip, BULK_PORT], None, control),
                           args.p4tas_bytes, args.repeat, args)
    print(out["bulk_out"].line(), flush=True)
    out["rpc"] = rpc("p4tas", (["p4tas", peer.local_ip, RPC_PORT], None, control), peer.netns,
                     peer.local_ip, args)
    for conns, r in out["rpc"].items():
        print(rpc_line("p4tas", conns, r), flush=True)
    if out["bulk_in"].stalls or out["bulk_out"].stalls or any(
            str(r.get("status", "")).startswith("stalled") for r in out["rpc"].values()):
        out["runtime_log"] = runtime_warnings(info.log_path)
        for line in out["runtime_log"]:
            print(f"  runtime log: {line}", flush=True)
        out["drops"] = interface_drops(peer)
        print(f"  interface drop counters after the stall: {out['drops']}", flush=True)
    if args.profile:
        print("profiling one more transfer each way (py-spy) ...", flush=True)
        out["profile"] = profile_bulk(args, info.pid, result.pid, peer, control)
    side.cleanup()
    remove_runtime_segments(info.pid)


def runtime_warnings(log_path: Path, keep: int = 8) -> list[str]:
    """The runtime's last warnings and errors (what it saw of a stall), and its drop counters."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    return [line[-300:] for line in lines
            if " WARNING " in line or " ERROR " in line or "drop" in line.lower()][-keep:]


def interface_drops(peer) -> dict[str, dict[str, int]]:
    """Non-zero drop/error counters of this environment's interfaces (where a segment was lost)."""
    keys = ("rx_dropped", "tx_dropped", "rx_errors", "tx_errors", "rx_missed_errors")
    out = {}
    for name in topology.existing_interfaces(PREFIX):
        stats = topology.SYS_NET / name / "statistics"
        found = {k: int((stats / k).read_text()) for k in keys if (stats / k).is_file()}
        out[name] = {k: v for k, v in found.items() if v}
    try:
        text = subprocess.run(["ip", "-n", peer.netns, "-s", "-j", "link", "show", peer.ifname],
                              capture_output=True, text=True, timeout=5).stdout
        stats = json.loads(text)[0]["stats64"]
        out[f"{peer.netns}/{peer.ifname}"] = {f"{d}_{k}": v for d in ("rx", "tx")
                                             for k, v in stats[d].items()
                                             if k in ("dropped", "errors") and v}
    except (OSError, ValueError, KeyError, IndexError, subprocess.SubprocessError):
        pass
    return {k: v for k, v in out.items() if v}


def bench_linux(args: argparse.Namespace, pair: LinuxPair, out: dict) -> None:
    pair.create()
    print(f"(a,b) Linux: client in {pair.client_ns} ({pair.client_ip}) -> server in "
          f"{pair.server_ns} ({pair.server_ip}), one veth pair", flush=True)
    out["bulk"] = bulk("Linux -> Linux",
                       (["linux", pair.server_ip, BULK_PORT], pair.server_ns, None),
                       (["linux", pair.server_ip, BULK_PORT], pair.client_ns, None),
                       args.linux_bytes, args.repeat, args)
    print(out["bulk"].line(), flush=True)
    out["rpc"] = rpc("Linux", (["linux", pair.server_ip, RPC_PORT], pair.server_ns, None),
                     pair.client_ns, pair.server_ip, args)
    for conns, r in out["rpc"].items():
        print(rpc_line("Linux", conns, r), flush=True)
    pair.destroy()


def remove_runtime_segments(runtime_pid: int | None) -> list[str]:
    """/dev/shm segments of this run: the ring benchmark's, and the runtime's if it left any."""
    names = [ring_segment_name()]
    if runtime_pid is not None and not Path(f"/proc/{runtime_pid}").exists():
        names += [p.name for p in Path(SHM_DIR).glob(f"p4tas-{runtime_pid}-app*")]
    removed = []
    for name in names:
        path = Path(SHM_DIR) / name
        if path.exists():
            path.unlink(missing_ok=True)
            removed.append(name)
    return removed


def cleanup(side: P4tasSide, pair: LinuxPair, fwd: Forwarder, runtime_pid: int | None) -> list[str]:
    problems = stop_tracked()
    for step in (side.cleanup, pair.destroy, fwd.cleanup,
                 lambda: remove_runtime_segments(runtime_pid)):
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - keep cleaning
            problems.append(f"{getattr(step, '__qualname__', 'cleanup')}: {exc}")
    return problems


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench_transfer.py", description=__doc__.split("\n\n")[0],
        epilog="Output: every figure with its ratios and the target (bmv2 build or softnic); "
               "the last line is JSON.")
    parser.add_argument("--p4tas-bytes", type=_int_range(1, 1 << 30), default=2 << 20,
                        help="bytes per p4tas bulk transfer (default %(default)s)")
    parser.add_argument("--linux-bytes", type=_int_range(1, 1 << 32), default=64 << 20,
                        help="bytes per Linux-to-Linux bulk transfer (default %(default)s)")
    parser.add_argument("--repeat", type=_int_range(1, 20), default=3,
                        help="runs of each bulk and ring figure; the median is reported "
                             "(default %(default)s)")
    parser.add_argument("--rpc-seconds", type=float, default=2.0,
                        help="measured seconds per RPC variant, after 0.5 s of warm-up "
                             "(default %(default)s)")
    parser.add_argument("--rpc-conns", type=lambda t: [int(x) for x in t.split(",")],
                        default=[1, 16], help="connection counts of the RPC variants "
                                              "(default 1,16)")
    parser.add_argument("--fwd-seconds", type=float, default=1.0,
                        help="measured seconds per offered rate of the forwarding ceiling "
                             "(default %(default)s)")
    parser.add_argument("--fwd-offered", default=[20000, 30000, 45000, 60000, 75000, 0],
                        type=lambda text: [float(x) for x in text.split(",")],
                        help="frames/s offered to the forwarder, one step each; the ceiling is "
                             "the most delivered by any step (0: as fast as one Python raw socket "
                             "sends, which takes a CPU from bmv2; bmv2 delivers less when "
                             "overloaded) (default 20000,30000,45000,60000,75000,0)")
    parser.add_argument("--fwd-warmup", type=float, default=0.3,
                        help="blasting before the count starts (default %(default)s)")
    parser.add_argument("--ring-msgs", type=_int_range(1, 1 << 20), default=32768,
                        help="messages per ring/loopback run (default %(default)s)")
    parser.add_argument("--msg-bytes", type=_int_range(8, 1 << 24), default=65536,
                        help="ring/loopback message size (default %(default)s)")
    parser.add_argument("--ring-bytes", type=_int_range(16, 1 << 30), default=1 << 18,
                        help="ring size, a power of two (default %(default)s: the runtime's "
                             "per-connection ring)")
    parser.add_argument("--timeout", type=float, default=4.0,
                        help="per socket operation: longer without progress is a stall "
                             "(default %(default)s s)")
    parser.add_argument("--deadline", type=float, default=30.0,
                        help="per transfer or ring run (default %(default)s s)")
    parser.add_argument("--only", default="a,b,c,d",
                        help="parts to run, e.g. a,b (default %(default)s)")
    parser.add_argument("--profile", metavar="DIR",
                        help="also sample the runtime and the host_lib application with py-spy "
                             "during one extra transfer each way; raw stacks go to DIR")
    parser.add_argument("--profile-rate", type=int, default=250,
                        help="py-spy samples per second (default %(default)s)")
    parser.add_argument("--profile-runs", type=int, default=4,
                        help="transfers sampled in the Linux -> p4tas direction (the host_lib "
                             "sink stays the same process) (default %(default)s)")
    parser.add_argument("--profile-top", type=int, default=12,
                        help="hot spots listed per process (default %(default)s)")
    parser.add_argument("--runtime-arg", action="append", default=[], metavar="ARG",
                        help="an extra argument for the runtime daemon (repeat)")
    args = parser.parse_args(argv)
    args.parts = set(args.only.split(","))
    if args.ring_bytes & (args.ring_bytes - 1):
        parser.error(f"--ring-bytes {args.ring_bytes} is not a power of two")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"bench-transfer: SKIPPED: {reason}")
        print(json.dumps({"bench": "transfer", "skipped": reason}))
        return 0
    os.environ.pop(STATE_DIR_ENV, None)  # our environment's state dir is ours alone
    started = time.monotonic()
    target = describe_target()
    print(f"bench-transfer: bulk {args.p4tas_bytes} B (p4tas) / {args.linux_bytes} B (Linux) x "
          f"{args.repeat}, RPC {args.rpc_conns} connections x {args.rpc_seconds:g} s, "
          f"forwarding {len(args.fwd_offered)} x {args.fwd_seconds:g} s, rings {args.ring_msgs} x {args.msg_bytes} B")
    print(f"fast path: {target}", flush=True)
    side, pair, fwd = P4tasSide(prefix=PREFIX), LinuxPair(tag=f"p4bt{os.getpid() % 10**7}"), \
        Forwarder()
    p4tas: dict = {}
    linux: dict = {}
    ring = forwarding = None
    error = None
    try:
        with _signals(_interrupt):
            if "d" in args.parts:
                print("(d) host_lib ring vs Linux loopback TCP, two processes", flush=True)
                ring = bench_rings(args)
                print(f"  ring {ring['ring_mbyte_per_s']} MB/s, loopback TCP "
                      f"{ring['tcp_loopback_mbyte_per_s']} MB/s ({ring['status']})", flush=True)
            if "c" in args.parts:
                print("(c) bmv2 forwarding ceiling (bench/fwd.p4, port 1 -> 2)", flush=True)
                forwarding = bench_forwarding(args, fwd)
                print(f"  ceiling {forwarding.get('frames_per_s')} frames/s "
                      f"{forwarding.get('skipped', '')}", flush=True)
            if args.parts & {"a", "b"}:
                bench_p4tas(args, side, p4tas)
                bench_linux(args, pair, linux)
    except KeyboardInterrupt as exc:
        error = f"interrupted ({exc})"
    except Exception as exc:  # noqa: BLE001 - reported, then cleaned up
        error = f"{type(exc).__name__}: {exc}"
    finally:
        with _signals(signal.SIG_IGN):
            problems = cleanup(side, pair, fwd, p4tas.get("runtime_pid"))
    if problems:
        print("bench-transfer: cleanup problems: " + "; ".join(problems), file=sys.stderr)
    if error:
        print(f"bench-transfer: FAILED: {error}", file=sys.stderr)
        print(json.dumps({"bench": "transfer", "error": error.splitlines()[0],
                          "cleanup_problems": problems, "target": target}))
        return 1
    return report(args, target, p4tas, linux, forwarding, ring, problems,
                  time.monotonic() - started)


def _ratio(a: float | None, b: float | None, digits: int = 4) -> float | None:
    return round(a / b, digits) if a is not None and b else None


def report(args: argparse.Namespace, target: str, p4tas: dict, linux: dict,
           forwarding: dict | None, ring: dict | None, problems: list[str],
           elapsed: float) -> int:
    print("")
    figures: dict = {"bench": "transfer", "target": target, "python": platform.python_version(),
                     "cpus": os.cpu_count(), "repeat": args.repeat}
    stalls = 0
    ceiling = forwarding.get("payload_mbit_per_s") if forwarding else None
    if "bulk_in" in p4tas:
        lin = linux["bulk"].mbps if "bulk" in linux else None
        bulk_fig = {"linux_to_linux": linux["bulk"].figures() if "bulk" in linux else None}
        for key, label in (("bulk_in", "linux_to_p4tas"), ("bulk_out", "p4tas_to_linux")):
            b = p4tas[key]
            stalls += b.stalls
            fig = b.figures() | {"ratio_to_linux": _ratio(b.mbps, lin),
                                 "fraction_of_bmv2_ceiling": _ratio(b.mbps, ceiling)}
            bulk_fig[label] = fig
            print(f"(a) {b.name}: {b.mbps and round(b.mbps, 2)} Mbit/s = "
                  f"{fig['ratio_to_linux']} x Linux-to-Linux ({lin and round(lin, 1)} Mbit/s), "
                  f"{fig['fraction_of_bmv2_ceiling']} of the bmv2 forwarding ceiling "
                  f"({ceiling} Mbit/s payload)" + (f"; {b.stalls} STALLED" if b.stalls else ""))
        figures["bulk"] = bulk_fig
    if "rpc" in p4tas:
        rpc_fig = {}
        for conns, r in p4tas["rpc"].items():
            lr = linux.get("rpc", {}).get(conns, {})
            if str(r.get("status", "")).startswith("stalled"):
                stalls += 1
            rate_ratio = _ratio(r.get("rate"), lr.get("rate"))
            p50_ratio = _ratio(r.get("p50_us"), lr.get("p50_us"), 2)
            rpc_fig[f"{conns}_conn"] = {"p4tas": r, "linux": lr, "rate_ratio": rate_ratio,
                                        "p50_latency_ratio": p50_ratio,
                                        "p99_latency_ratio": _ratio(r.get("p99_us"),
                                                                    lr.get("p99_us"), 2)}
            print(f"(b) RPC 64 B, {conns} conn: p4tas {r.get('rate')} req/s (p50 "
                  f"{r.get('p50_us')} us, p99 {r.get('p99_us')} us), Linux {lr.get('rate')} "
                  f"req/s (p50 {lr.get('p50_us')} us, p99 {lr.get('p99_us')} us): rate ratio "
                  f"{rate_ratio}, p50 latency x{p50_ratio}"
                  + ("" if r.get("status") == "ok" else f"; p4tas {r.get('status')}"))
        figures["rpc"] = rpc_fig
    if forwarding is not None:
        figures["bmv2_forwarding"] = forwarding
        if "skipped" in forwarding:
            print(f"(c) bmv2 forwarding ceiling: SKIPPED: {forwarding['skipped']}")
        else:
            curve = ", ".join(f"{s['offered_frames_per_s']} -> {s['frames_per_s']:.0f}"
                              for s in forwarding["curve"])
            print(f"(c) bmv2 forwarding ceiling: {forwarding['frames_per_s']} frames/s of "
                  f"{FRAME_BYTES} B = {ceiling} Mbit/s of MSS payload (best step; offered -> "
                  f"delivered frames/s: {curve})")
    if ring is not None:
        figures["rings"] = ring
        print(f"(d) host_lib ring {ring['ring_mbyte_per_s']} MB/s vs loopback TCP "
              f"{ring['tcp_loopback_mbyte_per_s']} MB/s for {ring['msg_bytes']} B messages: "
              f"ratio {ring['ratio_ring_tcp']}")
    if "profile" in p4tas:
        print("profile of the runtime (DMA bridge) and the host_lib application during (a):")
        print_profile(p4tas["profile"])
        figures["profile"] = p4tas["profile"]
    figures |= {"stalls": stalls, "seconds": round(elapsed, 1),
                "runtime_args": RUNTIME_ARGS + args.runtime_arg}
    if problems:
        figures["cleanup_problems"] = problems
    if stalls:
        print(f"bench-transfer: {stalls} p4tas measurement(s) STALLED (no loss recovery yet)",
              file=sys.stderr)
    print(f"fast path: {target}; {elapsed:.0f} s in all")
    print(json.dumps(figures))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
