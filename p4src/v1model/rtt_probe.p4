/* p4tas v1model: RTT samples in microseconds for the host's RTO (RFC 6298) and TIMELY.
 * TSvals tick in milliseconds (RFC 7323 5.4), too coarse for datacenter RTTs, so the NIC
 * times one segment per flow, as BSD and early Linux did without timestamps: new data sent
 * while none is timed starts a probe (the sequence its segment ends at and the send time);
 * the first ACK that covers it ends the probe with a sample. Karn's rule (RFC 6298 3): any
 * retransmission while a probe runs (a resend below snd_nxt, a fast retransmit) cancels it,
 * so no sample ever comes from an ambiguous ACK. The flow's rtt_pending bit
 * (flow_state_regs.p4) says whether the register holds a probe; a new generation clears the
 * bit, so the register needs no generation of its own. A new ACK reads the register only
 * while a probe runs, TX_DATA writes it only to start one, and a cancel costs no access.
 * Times are the low 32 bits of the microsecond clock: samples up to 71 minutes. */

/* [63:32] the sequence the timed segment ends at  [31:0] its send time (us) */
register<bit<64>>(MAX_FLOWS) flow_rtt_probe;

control RttProbeStart(inout metadata_t meta, in standard_metadata_t sm) {
    apply {
        if (meta.tx_resend) {
            meta.dyn.rtt_pending = 0;   /* Karn: the ACK may be for either copy */
        } else if (meta.tx_new_data && meta.dyn.rtt_pending == 0) {
            flow_rtt_probe.write(meta.flow_id,
                                 meta.dyn.snd_nxt ++ sm.ingress_global_timestamp[31:0]);
            meta.dyn.rtt_pending = 1;
        }
    }
}

control RttProbeSample(inout metadata_t meta, in standard_metadata_t sm) {
    apply {
        if (meta.fast_retransmit) {
            meta.dyn.rtt_pending = 0;   /* Karn: a resend follows */
        } else if (meta.dyn.rtt_pending == 1 && (meta.acked_bytes != 0 || meta.fin_acked)) {
            bit<64> probe;
            flow_rtt_probe.read(probe, meta.flow_id);
            /* snd_una at or past the timed segment's end, wrap-safe. */
            if (meta.dyn.snd_una - probe[63:32] < 0x80000000) {
                bit<32> rtt = sm.ingress_global_timestamp[31:0] - probe[31:0];
                if (rtt == 0) {
                    rtt = 1;   /* 0 says "no sample" to the host */
                }
                meta.rtt_sample = rtt;
                meta.dyn.rtt_pending = 0;
            }
        }
    }
}
