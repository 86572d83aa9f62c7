/* p4tas PNA: dynamic per-flow state, indexed by flow id, loaded into meta.dyn once per packet
 * and stored once; the data plane re-initializes a flow's slot itself when the generation in
 * the flow_state entry differs from the one stored here, as on v1model
 * (v1model/flow_state_regs.p4, whose two 128-bit registers hold the same fields).
 * DPDK's registers hold at most 64 bits, so the state is split into one array per concern,
 * each named after what it holds (bit layouts below; unused low bits are zero):
 *   flow_gen_flags        [31:16] generation  [15] fin_sent  [14] ooo_active  [13] ece_echo
 *                         [12] rtt_pending  [11] ack_ts (PNA's own: whether the last segment
 *                         that owed an ACK carried timestamps, for that ACK in pass 2,
 *                         ack_loopback.p4; not in v1model's state, whose ACK is the segment's clone)
 *   flow_rcv_window       [63:32] rcv_nxt  [31:0] rx_free
 *   flow_snd_seq          [63:32] snd_nxt  [31:0] snd_una
 *   flow_ts_recent        [63:32] ts_recent  [31:19] ts_recent_epoch  [18] ts_recent_valid
 *   flow_ack_state        [63:32] recover  [31:16] peer_window  [15:8] dupacks
 * A register access is a plain array access on DPDK (no pipeline step of its own as on bmv2),
 * so five arrays cost little more than two. */
Register<bit<32>, flow_id_t>(MAX_FLOWS) flow_gen_flags;
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_rcv_window;
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_snd_seq;
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_ts_recent;
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_ack_state;

control LoadFlowState(inout pna_metadata_t meta) {
    apply {
        /* Each register is unpacked right after it is read: p4c-dpdk keeps every local in
         * metadata, which DPDK addresses in 256 bytes only (dpdk_spec_fixups.py), so only
         * one 64-bit word is live at a time. */
        bit<32> gen_flags = flow_gen_flags.read(meta.flow_id);
        meta.dyn.gen = gen_flags[31:16];
        meta.dyn.fin_sent = gen_flags[15:15];
        meta.dyn.ooo_active = gen_flags[14:14];
        meta.dyn.ece_echo = gen_flags[13:13];
        meta.dyn.rtt_pending = gen_flags[12:12];
        meta.ack_ts = gen_flags[11:11];
        bit<64> rcv = flow_rcv_window.read(meta.flow_id);
        meta.dyn.rcv_nxt = rcv[63:32];
        meta.dyn.rx_free = rcv[31:0];
        bit<64> snd = flow_snd_seq.read(meta.flow_id);
        meta.dyn.snd_nxt = snd[63:32];
        meta.dyn.snd_una = snd[31:0];
        bit<64> ts = flow_ts_recent.read(meta.flow_id);
        meta.dyn.ts_recent = ts[63:32];
        meta.dyn.ts_recent_epoch = ts[31:19];
        meta.dyn.ts_recent_valid = ts[18:18];
        bit<64> ack = flow_ack_state.read(meta.flow_id);
        meta.dyn.recover = ack[63:32];
        meta.dyn.peer_window = ack[31:16];
        meta.dyn.dupacks = ack[15:8];
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
            meta.ack_ts = 0;
            /* Just before the first byte: the first loss may be fast-retransmitted. */
            meta.dyn.recover = meta.flow.tx_start_seq - 1;
            meta.dyn_fresh = true;
        }
    }
}

control StoreFlowState(inout pna_metadata_t meta) {
    apply {
        flow_gen_flags.write(meta.flow_id, meta.dyn.gen ++ meta.dyn.fin_sent
                                           ++ meta.dyn.ooo_active ++ meta.dyn.ece_echo
                                           ++ meta.dyn.rtt_pending ++ meta.ack_ts ++ 11w0);
        flow_rcv_window.write(meta.flow_id, meta.dyn.rcv_nxt ++ meta.dyn.rx_free);
        flow_snd_seq.write(meta.flow_id, meta.dyn.snd_nxt ++ meta.dyn.snd_una);
        flow_ts_recent.write(meta.flow_id, meta.dyn.ts_recent ++ meta.dyn.ts_recent_epoch
                                           ++ meta.dyn.ts_recent_valid ++ 18w0);
        flow_ack_state.write(meta.flow_id, meta.dyn.recover ++ meta.dyn.peer_window
                                           ++ meta.dyn.dupacks ++ 8w0);
    }
}

/* Our receive window as the peer sees it: free ring space, scaled, capped at 16 bits. */
control AdvertisedWindow(inout pna_metadata_t meta) {
    apply {
        bit<32> window = meta.dyn.rx_free >> meta.flow.rx_window_shift;
        if (window > TCP_MAX_WINDOW) {
            window = TCP_MAX_WINDOW;
        }
        meta.adv_window = window[15:0];
    }
}
