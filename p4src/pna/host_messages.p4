/* p4tas PNA: as v1model/host_messages.p4 (PNA header and metadata types).
 * p4tas: messages from the host on the host port (the NIC<->host channel). */

control HostMessages(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        /* Two branches, not `!valid || ...`: p4c-dpdk cannot negate isValid() inside a
         * logical expression (see docs/ARCHITECTURE.md, "PNA / DPDK target"). */
        if (!hdr.nic_host.isValid()) {
            meta.punt_reason = REASON_BAD_HOST_MESSAGE;
        } else if (hdr.nic_host.opcode != NIC_HOST_OP_RX_CONSUMED
                   && hdr.nic_host.opcode != NIC_HOST_OP_TX_DATA) {
            meta.punt_reason = REASON_BAD_HOST_MESSAGE;
        } else {
            meta.flow_id = hdr.nic_host.flow_id;
        }
    }
}

/* RX_CONSUMED: the application freed RX ring space; the advertised window follows it.
 * A message for an older generation of the flow (the connection ended and the flow id was
 * reused), or for a flow that has not received anything yet, must not touch the window.
 * When the window had (nearly) closed and now reopens, the peer is told at once with a
 * window update once it is past min(half the ring, WINDOW_UPDATE_BYTES) (RFC 1122 4.2.3.3),
 * rather than when its persist timer next probes (hundreds of milliseconds, backing off). */
control ReturnRxSpace(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        if (hdr.nic_host.gen != meta.flow.gen || meta.dyn_fresh) {
            meta.drop_reason = DROP_STALE_HOST_MESSAGE;
        } else {
            bit<32> threshold = meta.flow.rx_ring_size >> 1;
            if (threshold > WINDOW_UPDATE_BYTES) {
                threshold = WINDOW_UPDATE_BYTES;
            }
            /* A flag, not a copy of rx_free: p4c-dpdk's copy propagation would read the
             * updated rx_free in the copy's place (p4c_dpdk_checks.py, defect 4). */
            bool was_closed = false;
            if (meta.dyn.rx_free < threshold) {
                was_closed = true;
            }
            meta.dyn.rx_free = meta.dyn.rx_free + hdr.nic_host.count;
            /* A confused host must not open the window beyond the ring. */
            if (meta.dyn.rx_free > meta.flow.rx_ring_size) {
                meta.dyn.rx_free = meta.flow.rx_ring_size;
            }
            meta.window_reopened = false;   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
            if (was_closed) {
                if (meta.dyn.rx_free >= threshold) {
                    meta.window_reopened = true;
                }
            }
        }
    }
}
