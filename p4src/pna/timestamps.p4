/* p4tas PNA: as v1model/timestamps.p4; the clock is clock_us (clock.p4), read into meta.now_us. */
/* p4tas: RFC 7323 timestamps of an arriving segment: PAWS and TS.Recent.
 * Applied after SegmentCheck and before the ACK field or payload is used (RFC 7323 5.3: R1
 * PAWS, R2 the sequence check, R3 TS.Recent).
 * - PAWS (R1): a segment whose TSval is older than TS.Recent is a duplicate from an earlier
 *   wrap of the sequence space: dropped and answered with an ACK (Receive, DROP_PAWS).
 *   RSTs never reach here (exceptions.p4 punts them).
 * - TS.Recent (RFC 7323 4.3): taken from a segment with SEG.TSval >= TS.Recent and
 *   SEG.SEQ <= Last.ACK.sent that is acceptable. Last.ACK.sent is rcv_nxt as this segment
 *   finds it: the fast path acknowledges every segment with payload at once, and each segment
 *   we send acknowledges rcv_nxt. ACKs echo TS.Recent, not the arriving TSval, so a
 *   segment ahead of rcv_nxt (a hole) does not shorten the peer's RTT measurement.
 * - RFC 7323 5.5: TS.Recent is invalid after 24 days without an update (TS_EPOCH_SHIFT); an
 *   invalid TS.Recent (also a new connection's) takes any TSval and rejects none.
 * - A reinjected segment (held by the slow path while its flow was being installed) may be
 *   older than segments that reached the fast path meanwhile: it is exempt from PAWS, and
 *   an older TSval of it does not move TS.Recent back. */

control TimestampCheck(in pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        if (!hdr.tcp_ts.isValid()) {
            return;
        }
        bit<13> epoch = meta.now_us[47:TS_EPOCH_SHIFT];
        if (meta.dyn.ts_recent_valid == 1) {   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
            if (epoch - meta.dyn.ts_recent_epoch > TS_RECENT_MAX_IDLE_EPOCHS) {
                meta.dyn.ts_recent_valid = 0;
            }
        }
        bit<32> tsval = hdr.tcp_ts.tsval;
        /* "Older" in wrapping 32-bit space: 0 < TS.Recent - TSval < 2^31. */
        /* (Assigned in ifs: p4c-dpdk cannot negate a propagated `a && b` below, and
         * miscompiles < inside &&.) */
        bool older = false;
        if (meta.dyn.ts_recent_valid == 1) {
            if (meta.dyn.ts_recent - tsval - 1 < 0x7FFFFFFF) {
                older = true;
            }
        }
        if (older && !meta.reinjected) {
            meta.paws_rejected = true;
            return;
        }
        /* SEG.SEQ <= Last.ACK.sent (= rcv_nxt), wrap-safe: rcv_nxt - SEG.SEQ < 2^31. */
        bool not_beyond_last_ack = false;   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
        if (meta.dyn.rcv_nxt - hdr.tcp.seq_no < 0x80000000) {
            not_beyond_last_ack = true;
        }
        if (meta.seq_acceptable && !older && !meta.ack_unacceptable && not_beyond_last_ack) {
            meta.dyn.ts_recent = tsval;
            meta.dyn.ts_recent_valid = 1;
            meta.dyn.ts_recent_epoch = epoch;
        }
    }
}
