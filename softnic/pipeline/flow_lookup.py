"""flow_lookup.p4: connection -> flow id (FlowLookup), flow id -> static state (FlowState)."""

from __future__ import annotations

from softnic.state import ExactTable

from .headers import FlowStatic, Headers, Metadata

FLOW_LOOKUP = "P4tasIngress.flow_lookup.flow_lookup"
FLOW_STATE = "P4tasIngress.flow_state.flow_state"
SET_FLOW_ID = "P4tasIngress.flow_lookup.set_flow_id"
SET_FLOW_STATE = "P4tasIngress.flow_state.set_flow_state"


def flow_lookup(table: ExactTable, hdr: Headers, meta: Metadata) -> None:
    ip, tcp = hdr.ipv4, hdr.tcp
    action, params = table.lookup((ip.src_addr, ip.dst_addr, tcp.src_port, tcp.dst_port))
    if action == SET_FLOW_ID:
        meta.flow_id = params[0]
        meta.flow_found = True
    else:                                                    # unknown_flow
        meta.flow_found = False


def flow_state(table: ExactTable, meta: Metadata) -> None:
    action, params = table.lookup((meta.flow_id,))
    if action == SET_FLOW_STATE:
        flow = meta.flow = FlowStatic()
        (flow.gen, local_mac, peer_mac, flow.local_ip, flow.peer_ip, flow.local_port,
         flow.peer_port, flow.wire_port, flow.rx_ring_size, flow.rx_start_seq,
         flow.tx_start_seq, flow.rx_window_shift, flow.timestamps, flow.peer_window,
         flow.ecn, flow.sack, flow.peer_window_shift) = params
        flow.local_mac, flow.peer_mac = local_mac.to_bytes(6, "big"), peer_mac.to_bytes(6, "big")
        meta.flow_found = True
    else:                                                    # no_flow_state
        meta.flow_found = False
