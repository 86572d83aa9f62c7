/* p4tas PNA: as v1model/rtt_probe.p4 (one timed segment per flow, Karn's rule), with the
 * clock from clock_us (meta.now_us) and PNA's Register extern.
 * RTT samples in microseconds for the host's RTO (RFC 6298) and TIMELY. TSvals tick in
 * milliseconds (RFC 7323 5.4), too coarse for datacenter RTTs, so the NIC times one segment
 * per flow: new data sent while none is timed starts a probe (the sequence its segment ends at
 * and the send time); the first ACK that covers it ends the probe with a sample. Any
 * retransmission while a probe runs cancels it, so no sample ever comes from an ambiguous ACK.
 * The flow's rtt_pending bit (flow_state_regs.p4) says whether the register holds a probe; a
 * new generation clears the bit, so the register needs no generation of its own. Times are the
 * low 32 bits of the microsecond clock: samples up to 71 minutes. */

/* [63:32] the sequence the timed segment ends at  [31:0] its send time (us) */
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_rtt_probe;

control RttProbeStart(inout pna_metadata_t meta) {
    apply {
        if (meta.tx_resend) {
            meta.dyn.rtt_pending = 0;   /* Karn: the ACK may be for either copy */
        } else if (meta.tx_new_data && meta.dyn.rtt_pending == 0) {
            flow_rtt_probe.write(meta.flow_id, meta.dyn.snd_nxt ++ meta.now_us[31:0]);
            meta.dyn.rtt_pending = 1;
        }
    }
}

control RttProbeSample(inout pna_metadata_t meta) {
    apply {
        if (meta.fast_retransmit) {
            meta.dyn.rtt_pending = 0;   /* Karn: a resend follows */
        } else if (meta.dyn.rtt_pending == 1 && (meta.acked_bytes != 0 || meta.fin_acked)) {
            bit<64> probe = flow_rtt_probe.read(meta.flow_id);
            /* snd_una at or past the timed segment's end, wrap-safe. */
            if (meta.dyn.snd_una - probe[63:32] < 0x80000000) {
                bit<32> rtt = meta.now_us[31:0] - probe[31:0];
                if (rtt == 0) {
                    rtt = 1;   /* 0 says "no sample" to the host */
                }
                meta.rtt_sample = rtt;
                meta.dyn.rtt_pending = 0;
            }
        }
    }
}
