"""What an operator sees of each connection (`python -m runtime flows`, the metrics).

Reads the slow path's own records only: the connection table, the bridge's per-flow channel
(counters, rings), the retransmission timers' RTT estimate and the rate controller's pacing
rate. The rings' positions live in application memory, which an application may scribble on:
a fill that cannot be read is reported as 0, never as an error."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace

from host_lib import control_protocol as cp
from host_lib.rings import ByteRing, RingCorruptedError
from runtime.connection_control import ConnectionControl
from runtime.connections import Connection
from runtime.keepalive import KeepaliveState

def flow_info(control: ConnectionControl, conn: Connection, app: str) -> cp.FlowInfo:
    """One connection's row."""
    t = conn.tuple
    info = cp.FlowInfo(conn_id=conn.conn_id, state=conn.state.name, local_ip=t.local_ip,
                       local_port=t.local_port, peer_ip=t.peer_ip, peer_port=t.peer_port,
                       app=app, congestion=conn.congestion or control.config.congestion)
    channel = conn.channel
    if channel is None:
        return info
    counters, flow_id = channel.counters, channel.flow_id
    rate = control.rates.paced_rate(flow_id) if control.rates is not None else None
    srtt = channel.timer.rtt.srtt_s
    return replace(
        info, bytes_sent=channel.tx_high - channel.tx_base,
        bytes_acked=counters.acked_bytes, bytes_received=counters.rx_bytes, rate_bps=rate,
        rtt_us=None if srtt is None else round(srtt * 1e6),
        fast_retransmits=counters.fast_retransmits, rto_timeouts=counters.timeouts,
        retransmitted_bytes=counters.retransmitted_bytes, ece_bytes=counters.ece_acked_bytes,
        ooo_bytes=max(channel.ooo_end - channel.rx_ring.head, 0) if channel.ooo_end else 0,
        rx_ring_fill=_fill(channel.rx_ring), rx_ring_size=channel.rx_ring.size,
        tx_ring_fill=_fill(channel.tx_ring), tx_ring_size=channel.tx_ring.size,
        **_keepalive(channel.keepalive, control.nic.clock()))


def _keepalive(state: KeepaliveState | None, now: float) -> dict[str, float | int]:
    """The keepalive columns of a row (none while keepalive is off)."""
    if state is None:
        return {}
    params = state.params
    return {"keepalive_idle_s": params.idle_s, "keepalive_interval_s": params.interval_s,
            "keepalive_count": params.count, "keepalive_probes": state.probes_out,
            "keepalive_heard_s": round(max(now - state.last_heard, 0.0), 3)}


def _fill(ring: ByteRing) -> int:
    """Bytes queued in a ring; 0 when the application left its positions unreadable."""
    try:
        return ring.readable()
    except RingCorruptedError:
        return 0


def list_flows(control: ConnectionControl, after_conn_id: int, limit: int,
               owner_of: Callable[[Connection], str], visible: Callable[[Connection], bool],
               ) -> tuple[list[cp.FlowInfo], bool]:
    """Up to `limit` rows of the connections with ids above `after_conn_id` that `visible`
    accepts, in id order; and whether more follow. `owner_of(conn)` names the application."""
    ids = sorted(i for i in control.table.by_id if i > after_conn_id)
    rows: list[cp.FlowInfo] = []
    for conn_id in ids:
        conn = control.table.by_id[conn_id]
        if not visible(conn):
            continue
        if len(rows) == limit:
            return rows, True
        rows.append(flow_info(control, conn, owner_of(conn)))
    return rows, False


def flows_by_state(control: ConnectionControl) -> Counter[str]:
    """How many connections are in each TCP state."""
    return Counter(conn.state.name for conn in control.table.by_id.values())
