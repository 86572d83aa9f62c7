/* p4tas v1model: dynamic per-flow state, indexed by flow id, loaded into meta.dyn once per
 * packet and stored once.
 * bmv2 cannot read or write registers over P4Runtime (ARCHITECTURE.md 5), so the data plane owns
 * this state and re-initializes a flow's slot itself when the generation in the flow_state
 * entry differs from the one stored here (a new connection reusing the flow id).
 * bmv2 turns every register access into a pipeline step of its own, so the state is packed
 * into two wide registers: two reads and two writes per packet.
 *   flow_rx_state: [127:112] generation  [111] ts_recent_valid  [110:98] ts_recent_epoch
 *                  [97] fin_sent  [96] ooo_active
 *                  [95:64] rcv_nxt
 *                  [63:32] rx_free
 *                  [31:0] snd_nxt
 *   flow_tx_state: [127:96] snd_una  [95:64] ts_recent  [63:48] peer_window  [47:40] dupacks
 *                  [39:8] recover  [7] ece_echo  [6] rtt_pending  [5:0] zero */
register<bit<128>>(MAX_FLOWS) flow_rx_state;
register<bit<128>>(MAX_FLOWS) flow_tx_state;

control LoadFlowState(inout metadata_t meta) {
    apply {
        bit<128> rx;
        bit<128> tx;
        flow_rx_state.read(rx, meta.flow_id);
        flow_tx_state.read(tx, meta.flow_id);
        meta.dyn.gen = rx[127:112];
        meta.dyn.ooo_active = rx[96:96];
        meta.dyn.fin_sent = rx[97:97];
        meta.dyn.ts_recent_valid = rx[111:111];
        meta.dyn.ts_recent_epoch = rx[110:98];
        meta.dyn.rcv_nxt = rx[95:64];
        meta.dyn.rx_free = rx[63:32];
        meta.dyn.snd_nxt = rx[31:0];
        meta.dyn.snd_una = tx[127:96];
        meta.dyn.ts_recent = tx[95:64];
        meta.dyn.peer_window = tx[63:48];
        meta.dyn.dupacks = tx[47:40];
        meta.dyn.recover = tx[39:8];
        meta.dyn.ece_echo = tx[7:7];
        meta.dyn.rtt_pending = tx[6:6];
        meta.dyn_fresh = false;
        /* First packet of this generation: the slot still holds a previous connection's. */
        if (meta.dyn.gen != meta.flow.gen) {
            meta.dyn.gen = meta.flow.gen;
            meta.dyn.rcv_nxt = meta.flow.rx_start_seq;
            meta.dyn.rx_free = meta.flow.rx_ring_size;
            meta.dyn.snd_nxt = meta.flow.tx_start_seq;
            meta.dyn.snd_una = meta.flow.tx_start_seq;
            meta.dyn.ts_recent = 0;
            meta.dyn.peer_window = meta.flow.peer_window;
            meta.dyn.dupacks = 0;
            meta.dyn.ooo_active = 0;
            meta.dyn.fin_sent = 0;
            meta.dyn.ts_recent_valid = 0;
            meta.dyn.ts_recent_epoch = 0;
            meta.dyn.ece_echo = 0;
            meta.dyn.rtt_pending = 0;
            /* Just before the first byte: the first loss may be fast-retransmitted. */
            meta.dyn.recover = meta.flow.tx_start_seq - 1;
            meta.dyn_fresh = true;
        }
    }
}

control StoreFlowState(inout metadata_t meta) {
    apply {
        flow_rx_state.write(meta.flow_id, meta.dyn.gen ++ meta.dyn.ts_recent_valid
                                          ++ meta.dyn.ts_recent_epoch ++ meta.dyn.fin_sent
                                          ++ meta.dyn.ooo_active
                                          ++ meta.dyn.rcv_nxt
                                          ++ meta.dyn.rx_free ++ meta.dyn.snd_nxt);
        flow_tx_state.write(meta.flow_id, meta.dyn.snd_una ++ meta.dyn.ts_recent
                                          ++ meta.dyn.peer_window ++ meta.dyn.dupacks
                                          ++ meta.dyn.recover ++ meta.dyn.ece_echo
                                          ++ meta.dyn.rtt_pending ++ 6w0);
    }
}

/* Our receive window as the peer sees it: free ring space, scaled, capped at 16 bits. */
control AdvertisedWindow(inout metadata_t meta) {
    apply {
        bit<32> window = meta.dyn.rx_free >> meta.flow.rx_window_shift;
        if (window > TCP_MAX_WINDOW) {
            window = TCP_MAX_WINDOW;
        }
        meta.adv_window = window[15:0];
    }
}
