/* p4tas PNA: as v1model/ack_processing.p4, without bmv2's host backpressure (p4tas.p4).
 * p4tas: what the ACK field of a segment from the peer tells us (ARCHITECTURE.md 1).
 * A new cumulative ACK advances snd_una and frees the host's TX ring (reported by HostNotify
 * with an RTT sample, rtt_probe.p4); duplicate ACKs are counted, and the third in a
 * row starts a fast retransmit (HostNotify tells the host to go back to snd_una); the peer's
 * window is tracked so the host can hold data back. Once our FIN is out (fin_sent) it is
 * snd_nxt - 1: an ACK of snd_nxt covers it, and the host hears so by flag, since the FIN has
 * a sequence number but no byte in the TX ring (half-close: the peer may keep sending). */

control AckProcessing(in pna_headers_t hdr, inout pna_metadata_t meta) {
    /* Per-flow packet counters for statistics (acknowledged *bytes* reach the host in
     * TX_ACKED, as on v1model). */
    Counter<bit<64>, flow_id_t>(MAX_FLOWS, PNA_CounterType_t.PACKETS) new_ack_counter;
    Counter<bit<64>, flow_id_t>(MAX_FLOWS, PNA_CounterType_t.PACKETS) ece_ack_counter;
    Counter<bit<64>, flow_id_t>(MAX_FLOWS, PNA_CounterType_t.PACKETS) dupack_counter;
    Counter<bit<64>, flow_id_t>(MAX_FLOWS, PNA_CounterType_t.PACKETS) fast_retransmit_counter;

    /* RFC 6582: one fast retransmit per window of data. Duplicates of a go-back-N resend
     * draw duplicate ACKs too; they must not start another until snd_una passes what had
     * been sent when this one started. */
    action start_fast_retransmit() {
        meta.fast_retransmit = true;
        meta.dyn.recover = meta.dyn.snd_nxt;
        fast_retransmit_counter.count(meta.flow_id);
    }

    apply {
        bit<32> acked = hdr.tcp.ack_no - meta.dyn.snd_una;
        bit<32> in_flight = meta.dyn.snd_nxt - meta.dyn.snd_una;
        if (acked > in_flight) {
            return;   /* acknowledges nothing we sent, or old: ignore the ACK field */
        }
        if (acked != 0) {
            meta.dyn.snd_una = hdr.tcp.ack_no;
            meta.dyn.dupacks = 0;
            if (meta.dyn.fin_sent == 1 && hdr.tcp.ack_no == meta.dyn.snd_nxt) {
                meta.fin_acked = true;
                acked = acked - 1;
            }
            /* Outside recovery, recover follows snd_una: compared in wrapping sequence space,
             * a recovery point left behind would read as "ahead" again after 2 GiB and keep
             * fast retransmit off for the 2 GiB after that. */
            if (meta.dyn.snd_una - meta.dyn.recover - 1 < 0x7FFFFFFF) {
                meta.dyn.recover = meta.dyn.snd_una - 1;
            }
            meta.acked_bytes = acked;
            new_ack_counter.count(meta.flow_id);
            if ((hdr.tcp.flags & TCP_ECE) != 0) {
                meta.ack_ece = true;
                ece_ack_counter.count(meta.flow_id);
            }
        } else if (meta.payload_len == 0 && in_flight != 0
                   && (hdr.tcp.window == meta.dyn.peer_window
                       || (hdr.tcp_sack.isValid() && meta.flow.sack != 0))) {
            /* RFC 5681: no data, no window change, data outstanding: a duplicate ACK. With
             * SACK, an ACK with SACK blocks is one whatever its window (RFC 6675 2): a Linux
             * receiver's window moves as its application reads while the hole is open. */
            meta.dupack = true;
            if (meta.dyn.dupacks != MAX_DUPACKS) {
                meta.dyn.dupacks = meta.dyn.dupacks + 1;
            }
            dupack_counter.count(meta.flow_id);
            /* snd_una after recover: 1 <= snd_una - recover < 2^31, wrap-safe. */
            if (meta.dyn.dupacks == DUPACK_THRESHOLD) {   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
                if (meta.dyn.snd_una - meta.dyn.recover - 1 < 0x7FFFFFFF) {
                    start_fast_retransmit();
                }
            }
        } else if (meta.payload_len == 0
                   && (hdr.tcp.window != meta.dyn.peer_window || hdr.tcp.window == 0
                       || in_flight == 0)) {
            /* The window changed (e.g. reopened), or stays closed: then this ACK answers the
             * host's window probe, and a peer that answers probes is alive (RFC 1122
             * 4.2.2.17: never give up on it), so the host hears of each one. With nothing
             * in flight it may answer a keepalive probe (RFC 1122 4.2.3.6): the host hears
             * of it too, since only the host knows whether it probed. */
            meta.window_update = true;
        }
        meta.dyn.peer_window = hdr.tcp.window;
    }
}
