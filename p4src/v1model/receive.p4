/* p4tas v1model: the receive fast path for data segments of known flows.
 * In order and fitting the RX ring: deliver to the host port as RX_DATA and ACK. Anything
 * else with payload is dropped and answered with an ACK for what we expect (out of order,
 * old data, or no ring space, which the ACK's window tells the peer). */

control Receive(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    AdvertisedWindow() adv_window;

    action deliver_to_host(bit<8> flags) {
        hdr.nic_host.setValid();
        hdr.nic_host.opcode = NIC_HOST_OP_RX_DATA;
        hdr.nic_host.flags = flags;
        hdr.nic_host.gen = meta.flow.gen;
        hdr.nic_host.flow_id = meta.flow_id;
        /* Ring sizes are powers of two, so the ring offset is a mask, not a modulo. */
        hdr.nic_host.offset = (meta.dyn.rcv_nxt - meta.flow.rx_start_seq)
                              & (meta.flow.rx_ring_size - 1);
        hdr.nic_host.length = meta.payload_len;
        hdr.nic_host.window = 0;
        hdr.nic_host.count = 0;
        hdr.nic_host.aux = 0;
        hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST;
        hdr.ipv4.setInvalid();
        hdr.tcp.setInvalid();
        hdr.tcp_ts.setInvalid();
        sm.egress_spec = HOST_PORT;
        meta.delivered = true;
        meta.to_host = true;
        meta.dyn.rcv_nxt = meta.dyn.rcv_nxt + (bit<32>)meta.payload_len;
        meta.dyn.rx_free = meta.dyn.rx_free - (bit<32>)meta.payload_len;
    }

    /* The ACK is an ingress-to-egress clone rewritten by AckEgress; these fields survive. */
    action send_ack(bit<8> flags) {
        meta.ack_window = meta.adv_window;
        meta.ack_seq = meta.dyn.snd_nxt;
        meta.ack_ack = meta.dyn.rcv_nxt;
        meta.ack_flags = flags;
        meta.ack_tsval = (bit<32>)(sm.ingress_global_timestamp >> TS_TICK_SHIFT);
        clone_preserving_field_list(CloneType.I2E,
                                    ACK_SESSION_BASE + (bit<32>)sm.ingress_port, FL_ACK);
    }

    apply {
        if (meta.payload_len == 0) {
            meta.drop_reason = DROP_PURE_ACK;
        } else {
            bool ce = hdr.ipv4.ecn == ECN_CE;
            /* Sequence space wraps: "ahead" means a difference below 2^31. */
            bit<32> ahead = hdr.tcp.seq_no - meta.dyn.rcv_nxt;
            if (ahead == 0 && meta.host_busy) {
                meta.drop_reason = DROP_HOST_BUSY;
            } else if (ahead == 0 && (bit<32>)meta.payload_len <= meta.dyn.rx_free) {
                bit<8> flags = 0;
                if ((hdr.tcp.flags & TCP_PSH) != 0) {
                    flags = flags | NIC_HOST_FLAG_PSH;
                }
                if (ce) {
                    flags = flags | NIC_HOST_FLAG_CE;
                }
                deliver_to_host(flags);
            } else if (ahead == 0) {
                meta.drop_reason = DROP_NO_RX_SPACE;
            } else if (ahead < 0x80000000) {
                meta.drop_reason = DROP_OUT_OF_ORDER;
            } else {
                meta.drop_reason = DROP_OLD_DATA;
            }
            /* Every segment with payload is answered, after any delivery above. */
            adv_window.apply(meta);
            send_ack(ce ? TCP_ACK | TCP_ECE : TCP_ACK);
        }
    }
}
