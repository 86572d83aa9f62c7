"""bench_transfer's two sides of (a) and (b): p4tas (TARGET's switch + the runtime, with what a
stall leaves to inspect) and the Linux-to-Linux baseline; and the cleanup of a whole run."""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

from benchlib import LinuxPair, P4tasSide, cleanup_steps
from bmv2_env import topology
from forwarding_ceiling import Forwarder
from host_lib.shm_layout import SHM_DIR
from transfer_profile import profile_bulk
from transfer_workloads import BULK_PORT, PREFIX, RPC_PORT, bulk, ring_segment_name, rpc, rpc_line

RUNTIME_ARGS = ["--time-wait", "0.5"]


def bench_p4tas(args: argparse.Namespace, side: P4tasSide, out: dict) -> None:
    """(a) and (b) through p4tas, into `out`; with a stall, the runtime's warnings and drop
    counters."""
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
    """(a) and (b) Linux to Linux over one veth pair, into `out`."""
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
    """The /dev/shm segment of the ring benchmark, if this run left it (the runtime's segments
    are anonymous memfds: they go with the processes that map them)."""
    path = Path(SHM_DIR) / ring_segment_name()
    if not path.exists():
        return []
    path.unlink(missing_ok=True)
    return [path.name]


def cleanup(side: P4tasSide, pair: LinuxPair, fwd: Forwarder, runtime_pid: int | None) -> list[str]:
    """Everything the run made, each step whatever the previous did; the problems met."""
    return cleanup_steps(side.cleanup, pair.destroy, fwd.cleanup,
                         lambda: remove_runtime_segments(runtime_pid))
