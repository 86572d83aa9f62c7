"""`python -m runtime flows`: the runtime's connections, one per line, like `ss -ti`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from host_lib import control_protocol as cp
from host_lib.control_channel import ControlChannel, RuntimeUnavailable, default_socket_path

# `ss` spells some states shorter; either spelling filters.
STATE_ALIASES = {"ESTAB": "ESTABLISHED"}


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m runtime flows",
        description="List the p4tas runtime's connections (like `ss -ti`): state, addresses, "
                    "owning application, bytes, rate, RTT, retransmissions, ECN, out-of-order "
                    "data, ring fill and keepalive. Root or the daemon's user sees every "
                    "application's.")
    parser.add_argument("--control-socket", type=Path, default=None,
                        help="the daemon's control socket (default: $P4TAS_CONTROL_SOCKET or "
                             f"{cp.DEFAULT_CONTROL_SOCKET})")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--port", type=int, action="append", default=[],
                        help="only connections with this local or peer port (repeatable)")
    parser.add_argument("--state", action="append", default=[],
                        help="only connections in this TCP state, e.g. ESTABLISHED or estab, "
                             "TIME_WAIT (repeatable)")
    return parser.parse_args(list(argv))


def state_name(text: str) -> str:
    """A state as the runtime names it (upper case, '-' as '_', ss's ESTAB accepted)."""
    name = text.strip().upper().replace("-", "_")
    return STATE_ALIASES.get(name, name)


def selected(flow: cp.FlowInfo, ports: Sequence[int], states: Sequence[str]) -> bool:
    if ports and flow.local_port not in ports and flow.peer_port not in ports:
        return False
    return not states or flow.state in states


def _rate(bps: float | None) -> str:
    if bps is None:
        return "unlimited"
    for unit, scale in (("Gbps", 1e9), ("Mbps", 1e6), ("Kbps", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.1f}{unit}"
    return f"{bps:.0f}bps"


def _keepalive(flow: cp.FlowInfo) -> str:
    """idle,interval,count,probes unanswered,time since the peer was heard; or off."""
    if flow.keepalive_idle_s is None:
        return "off"
    return (f"{flow.keepalive_idle_s:g}s,{flow.keepalive_interval_s:g}s,{flow.keepalive_count},"
            f"probes={flow.keepalive_probes},heard={flow.keepalive_heard_s:.1f}s")


def format_flow(flow: cp.FlowInfo) -> str:
    """Two lines, as `ss -ti` prints them: the socket, then its TCP details indented."""
    local = f"{flow.local_ip}:{flow.local_port}"
    peer = f"{flow.peer_ip}:{flow.peer_port}"
    rtt = "-" if flow.rtt_us is None else f"{flow.rtt_us / 1000:.3f}ms"
    details = (f"cc:{flow.congestion or '-'} rate:{_rate(flow.rate_bps)} rtt:{rtt} "
               f"bytes_sent:{flow.bytes_sent} bytes_acked:{flow.bytes_acked} "
               f"bytes_received:{flow.bytes_received} "
               f"retrans:{flow.fast_retransmits}/{flow.rto_timeouts} "
               f"retrans_bytes:{flow.retransmitted_bytes} ece_bytes:{flow.ece_bytes} "
               f"ooo:{flow.ooo_bytes} rx_ring:{flow.rx_ring_fill}/{flow.rx_ring_size} "
               f"tx_ring:{flow.tx_ring_fill}/{flow.tx_ring_size} keepalive:{_keepalive(flow)}")
    return (f"{flow.state:<12} {local:<22} {peer:<22} #{flow.conn_id} {flow.app}\n"
            f"\t {details}")


HEADER = f"{'State':<12} {'Local Address:Port':<22} {'Peer Address:Port':<22} Id App"


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    states = [state_name(s) for s in args.state]
    try:
        with ControlChannel(args.control_socket or default_socket_path(),
                            app_name="p4tas-flows", monitor=True) as channel:
            flows = [f for f in channel.flows() if selected(f, args.port, states)]
    except (RuntimeUnavailable, OSError) as exc:
        print(f"p4tas flows: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for flow in flows:
            print(json.dumps(flow.to_dict(), separators=(",", ":")))
        return 0
    print(HEADER)
    for flow in flows:
        print(format_flow(flow))
    return 0
