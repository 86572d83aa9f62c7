/* p4tas v1model: tell the host what a segment's ACK field said. A delivered segment carries
 * it in its RX_DATA frame; otherwise the segment itself becomes a TX_ACKED frame (payload
 * cut off in egress), so every new ACK reaches the host exactly once and per-ACK feedback
 * never needs counter sweeps (ARCHITECTURE.md 5). The duplicate ACK that starts a fast retransmit
 * becomes a RETRANSMIT frame: the host goes back to the TX stream position of snd_una. On a
 * flow that negotiated SACK, every duplicate ACK with SACK blocks becomes a SACK frame with
 * its first block instead (RFC 2018 4: the most recent data; the others were reported by
 * earlier ACKs), flagged FAST_RETRANSMIT when it is the third: the host keeps the
 * scoreboard and resends only the holes (RFC 6675). O(1): one block per frame. */

control HostNotify(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    action fill_ack_fields(bit<8> ece_flag) {
        hdr.nic_host.flags = hdr.nic_host.flags | ece_flag;
        hdr.nic_host.window = meta.dyn.peer_window;
        hdr.nic_host.count = meta.acked_bytes;
        hdr.nic_host.aux = meta.rtt_sample;
    }

    action make_notice(bit<8> opcode) {
        hdr.nic_host.setValid();
        hdr.nic_host.opcode = opcode;
        hdr.nic_host.flags = 0;
        hdr.nic_host.gen = meta.flow.gen;
        hdr.nic_host.flow_id = meta.flow_id;
        hdr.nic_host.offset = meta.dyn.snd_una;
        hdr.nic_host.length = 0;
        hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST;
        hdr.ipv4.setInvalid();
        hdr.tcp.setInvalid();
        hdr.tcp_ts.setInvalid();
        hdr.tcp_sack.setInvalid();
        hdr.tcp_sack_b2.setInvalid();
        hdr.tcp_sack_b3.setInvalid();
        sm.egress_spec = HOST_PORT;
        meta.to_host = true;
    }

    apply {
        bit<8> ece_flag = meta.ack_ece ? NIC_HOST_FLAG_ECE : 8w0;
        if (meta.fin_acked) {
            ece_flag = ece_flag | NIC_HOST_FLAG_FIN;
        }
        if (meta.delivered) {
            fill_ack_fields(ece_flag);
            if (meta.ooo_merged != 0) {
                /* aux says how much of the interval became readable; this ACK's RTT sample
                 * gives way (the next ACK brings another). */
                hdr.nic_host.flags = hdr.nic_host.flags | NIC_HOST_FLAG_MERGED;
                hdr.nic_host.aux = meta.ooo_merged;
            }
        } else if (meta.acked_bytes != 0 || meta.fin_acked || meta.window_update) {
            make_notice(NIC_HOST_OP_TX_ACKED);
            fill_ack_fields(ece_flag);
        } else if (meta.dupack && hdr.tcp_sack.isValid() && meta.flow.sack != 0) {
            /* The block as TX stream positions, read before make_notice drops the TCP
             * headers. */
            bit<32> left = hdr.tcp_sack.left - meta.flow.tx_start_seq;
            bit<32> right = hdr.tcp_sack.right - meta.flow.tx_start_seq;
            make_notice(NIC_HOST_OP_SACK);
            fill_ack_fields(ece_flag);
            if (meta.fast_retransmit) {
                hdr.nic_host.flags = hdr.nic_host.flags | NIC_HOST_FLAG_FAST_RETRANSMIT;
            }
            hdr.nic_host.count = left;
            hdr.nic_host.aux = right;
        } else if (meta.fast_retransmit) {
            make_notice(NIC_HOST_OP_RETRANSMIT);
            fill_ack_fields(ece_flag);
            hdr.nic_host.aux = meta.dyn.snd_una - meta.flow.tx_start_seq;
        }
    }
}

/* TX_ACKED, RETRANSMIT and SACK frames are the original segment: drop its payload, the header
 * says it all. Only on the host port: a host message punted to the CPU (a host sent a NIC->host
 * opcode) goes whole, as the controller should see what came. */
control TrimHostFrames(inout headers_t hdr, in standard_metadata_t sm) {
    apply {
        if (sm.instance_type == INSTANCE_TYPE_NORMAL && sm.egress_port == HOST_PORT
                && hdr.nic_host.isValid()
                && (hdr.nic_host.opcode == NIC_HOST_OP_TX_ACKED
                    || hdr.nic_host.opcode == NIC_HOST_OP_RETRANSMIT
                    || hdr.nic_host.opcode == NIC_HOST_OP_SACK)) {
            truncate((bit<32>)(ETH_HDR_BYTES + NIC_HOST_HDR_BYTES));
        }
    }
}
