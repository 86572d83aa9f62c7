"""host_messages.p4: messages from the host port (HostMessages) and RX_CONSUMED
(ReturnRxSpace)."""

from __future__ import annotations

from .constants import (DROP_STALE_HOST_MESSAGE, NIC_HOST_OP_RX_CONSUMED, NIC_HOST_OP_TX_DATA,
                        REASON_BAD_HOST_MESSAGE, WINDOW_UPDATE_BYTES)
from .headers import Headers, Metadata

M32 = 0xFFFFFFFF


def host_messages(hdr: Headers, meta: Metadata) -> None:
    msg = hdr.nic_host
    if msg is None or msg.opcode not in (NIC_HOST_OP_RX_CONSUMED, NIC_HOST_OP_TX_DATA):
        meta.punt_reason = REASON_BAD_HOST_MESSAGE
    else:
        meta.flow_id = msg.flow_id


def return_rx_space(hdr: Headers, meta: Metadata) -> None:
    dyn, flow = meta.dyn, meta.flow
    if hdr.nic_host.gen != flow.gen or meta.dyn_fresh:
        meta.drop_reason = DROP_STALE_HOST_MESSAGE
        return
    before = dyn.rx_free
    dyn.rx_free = (dyn.rx_free + hdr.nic_host.count) & M32
    if dyn.rx_free > flow.rx_ring_size:   # a confused host must not open it beyond the ring
        dyn.rx_free = flow.rx_ring_size
    threshold = min(flow.rx_ring_size >> 1, WINDOW_UPDATE_BYTES)
    meta.window_reopened = before < threshold and dyn.rx_free >= threshold
