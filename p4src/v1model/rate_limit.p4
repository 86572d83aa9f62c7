/* p4tas v1model: per-flow rate enforcement on the transmit path (TAS 3.2). The slow path's
 * congestion control sets each flow's rate in the tx_rate meter (P4Runtime MeterEntry); the
 * host paces to that rate, and the meter makes sure a host that does not cannot exceed it.
 * An unconfigured meter entry is green: "unlimited". The meter sees the host frame (payload
 * plus the 38-byte Ethernet and channel headers), close to the segment's 66-byte headers. */

control TxRateLimit(inout metadata_t meta) {
    meter(MAX_FLOWS, MeterType.bytes) tx_rate;

    apply {
        bit<2> color;
        tx_rate.execute_meter(meta.flow_id, color);
        /* Yellow (between the committed and peak rates) still passes: the slow path sets
         * both to the flow's rate, the bursts to what pacing granularity needs. */
        if (color == METER_RED) {
            meta.drop_reason = DROP_RATE_LIMITED;
        }
    }
}
