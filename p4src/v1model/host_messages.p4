/* p4tas v1model: messages from the host on the host port (the NIC<->host channel). */

control HostMessages(inout headers_t hdr, inout metadata_t meta) {
    apply {
        if (!hdr.nic_host.isValid() || (hdr.nic_host.opcode != NIC_HOST_OP_RX_CONSUMED
                                        && hdr.nic_host.opcode != NIC_HOST_OP_TX_DATA)) {
            meta.punt_reason = REASON_BAD_HOST_MESSAGE;
        } else {
            meta.flow_id = hdr.nic_host.flow_id;
        }
    }
}

/* RX_CONSUMED: the application freed RX ring space; the advertised window follows it.
 * A message for an older generation of the flow (the connection ended and the flow id was
 * reused), or for a flow that has not received anything yet, must not touch the window. */
control ReturnRxSpace(inout headers_t hdr, inout metadata_t meta) {
    apply {
        if (hdr.nic_host.gen != meta.flow.gen || meta.dyn_fresh) {
            meta.drop_reason = DROP_STALE_HOST_MESSAGE;
        } else {
            meta.dyn.rx_free = meta.dyn.rx_free + hdr.nic_host.count;
            /* A confused host must not open the window beyond the ring. */
            if (meta.dyn.rx_free > meta.flow.rx_ring_size) {
                meta.dyn.rx_free = meta.flow.rx_ring_size;
            }
        }
    }
}
