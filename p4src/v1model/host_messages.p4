/* p4tas v1model: messages from the host on the host port (the NIC<->host channel). */

control HostMessages(inout headers_t hdr, inout metadata_t meta) {
    apply {
        if (!hdr.nic_host.isValid() || hdr.nic_host.opcode != NIC_HOST_OP_RX_CONSUMED) {
            meta.punt_reason = REASON_BAD_HOST_MESSAGE;
        } else {
            meta.flow_id = hdr.nic_host.flow_id;
        }
    }
}

/* RX_CONSUMED: the application freed RX ring space; the advertised window follows it.
 * A message for an older generation of the flow (the connection ended and the flow id was
 * reused) must not touch the new connection's window. */
control ReturnRxSpace(inout headers_t hdr, inout metadata_t meta) {
    apply {
        bit<128> packed;
        flow_rx_state.read(packed, meta.flow_id);
        if (hdr.nic_host.gen != meta.flow.gen || packed[127:112] != meta.flow.gen) {
            meta.drop_reason = DROP_STALE_HOST_MESSAGE;
        } else {
            bit<32> rx_free = packed[63:32] + hdr.nic_host.count;
            /* A confused host must not open the window beyond the ring. */
            if (rx_free > meta.flow.rx_ring_size) {
                rx_free = meta.flow.rx_ring_size;
            }
            flow_rx_state.write(meta.flow_id, packed[127:64] ++ rx_free ++ packed[31:0]);
        }
    }
}
