"""flow_state_regs.p4: the dynamic per-flow state in two 128-bit registers, loaded into
meta.dyn once per packet (re-initialized for a new generation) and stored once."""

from __future__ import annotations

from softnic.state import Register

from .constants import TCP_MAX_WINDOW
from .headers import FlowDyn, Metadata

M32 = 0xFFFFFFFF


def load_flow_state(rx_reg: Register, tx_reg: Register, meta: Metadata) -> None:
    rx = rx_reg.cells[meta.flow_id]
    tx = tx_reg.cells[meta.flow_id]
    dyn = meta.dyn = FlowDyn()
    dyn.gen = rx >> 112
    dyn.ooo_active = (rx >> 96) & 1
    dyn.fin_sent = (rx >> 97) & 1
    dyn.ts_recent_valid = (rx >> 111) & 1
    dyn.ts_recent_epoch = (rx >> 98) & 0x1FFF
    dyn.rcv_nxt = (rx >> 64) & M32
    dyn.rx_free = (rx >> 32) & M32
    dyn.snd_nxt = rx & M32
    dyn.snd_una = tx >> 96
    dyn.ts_recent = (tx >> 64) & M32
    dyn.peer_window = (tx >> 48) & 0xFFFF
    dyn.dupacks = (tx >> 40) & 0xFF
    dyn.recover = (tx >> 8) & M32
    dyn.ece_echo = (tx >> 7) & 1
    dyn.rtt_pending = (tx >> 6) & 1
    meta.dyn_fresh = False
    flow = meta.flow
    if dyn.gen != flow.gen:   # first packet of this generation: a previous connection's slot
        dyn.gen = flow.gen
        dyn.rcv_nxt = flow.rx_start_seq
        dyn.rx_free = flow.rx_ring_size
        dyn.snd_nxt = flow.tx_start_seq
        dyn.snd_una = flow.tx_start_seq
        dyn.ts_recent = 0
        dyn.peer_window = flow.peer_window
        dyn.dupacks = 0
        dyn.ooo_active = 0
        dyn.fin_sent = 0
        dyn.ts_recent_valid = dyn.ts_recent_epoch = dyn.ece_echo = dyn.rtt_pending = 0
        dyn.recover = (flow.tx_start_seq - 1) & M32
        meta.dyn_fresh = True


def store_flow_state(rx_reg: Register, tx_reg: Register, meta: Metadata) -> None:
    dyn = meta.dyn
    rx_reg.cells[meta.flow_id] = ((dyn.gen << 112) | (dyn.ts_recent_valid << 111)
                                  | (dyn.ts_recent_epoch << 98)
                                  | (dyn.fin_sent << 97) | (dyn.ooo_active << 96)
                                  | (dyn.rcv_nxt << 64) | (dyn.rx_free << 32) | dyn.snd_nxt)
    tx_reg.cells[meta.flow_id] = ((dyn.snd_una << 96) | (dyn.ts_recent << 64)
                                  | (dyn.peer_window << 48) | (dyn.dupacks << 40)
                                  | (dyn.recover << 8) | (dyn.ece_echo << 7)
                                  | (dyn.rtt_pending << 6))


def advertised_window(meta: Metadata) -> None:
    """AdvertisedWindow: free ring space, scaled, capped at 16 bits."""
    window = meta.dyn.rx_free >> meta.flow.rx_window_shift
    meta.adv_window = min(window, TCP_MAX_WINDOW)
