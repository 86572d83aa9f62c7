/* p4tas PNA: per-flow rate enforcement on the transmit path (TAS 3.2), as
 * v1model/rate_limit.p4. The slow path's congestion control sets each flow's rate in the
 * tx_rate meter (bytes/s); the host paces to that rate, and the meter makes sure a host that
 * does not cannot exceed it. An unconfigured meter entry is green (DPDK's default profile
 * colours every packet green). The meter sees the host frame's length as its header tells it
 * (Ethernet and channel headers plus `length`): PNA on DPDK has no packet length. */

control TxRateLimit(in pna_headers_t hdr, inout pna_metadata_t meta) {
    Meter<flow_id_t>(MAX_FLOWS, PNA_MeterType_t.BYTES) tx_rate;

    apply {
        PNA_MeterColor_t color = tx_rate.dpdk_execute(meta.flow_id,
            (bit<32>)(ETH_HDR_BYTES + NIC_HOST_HDR_BYTES + hdr.nic_host.length));
        /* Yellow (between the committed and peak rates) still passes: the slow path sets
         * both to the flow's rate, the bursts to what pacing granularity needs. */
        if (color == METER_RED) {
            meta.drop_reason = DROP_RATE_LIMITED;
        }
    }
}
