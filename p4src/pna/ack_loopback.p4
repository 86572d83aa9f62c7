/* p4tas PNA: generating ACKs in the data plane, in two passes through the pipeline.
 * v1model clones the segment into egress and rewrites the clone there (v1model/ack_egress.p4).
 * PNA on DPDK has no egress, and a mirror copy is the packet exactly as it leaves (only
 * truncatable), so the ACK cannot be rewritten from a copy. Instead:
 *  - pass 1 (AckMirror, at the end of the segment's pass): when the segment owes an ACK
 *    (Receive's send_ack), the packet's first 38 bytes (Ethernet + nic_host_h) are mirrored
 *    to ACK_LOOPBACK_PORT (ACK_MIRROR_SESSION), which the runner wires back to its input. The
 *    packet goes on as what it became: an RX_DATA frame to the host (whose header the host gets
 *    as it is, so it stays a valid RX_DATA header), a TX_ACKED/SACK/RETRANSMIT notice, or, when
 *    nothing goes to the host, it is rewritten into an ACK_REQUEST frame and sent to the sink.
 *  - pass 2 (AckLoopback): a frame from ACK_LOOPBACK_PORT names a flow (flow_id, gen); the ACK
 *    is built from the flow's entry and state as Transmit builds segments from a flow id:
 *    addresses, ports and MACs from flow_state, seq snd_nxt, ack rcv_nxt, our window,
 *    TSval from the clock and TSecr TS.Recent, ECE while the flow owes the peer one, and the
 *    out-of-order interval as a SACK block. It leaves on the flow's wire port.
 * The only information pass 2 needs beyond the state is in the ACK_REQUEST flags (timestamps,
 * SACK allowed); for RX_DATA and notice frames, whose header is the host's, SACK is allowed
 * and whether the segment carried timestamps is a bit of the flow's state (ack_ts in
 * flow_gen_flags, written by pass 1), so the ACK echoes timestamps exactly when its segment
 * carried them, as on v1model. So the ACK reflects the flow's state when pass 2 runs: after
 * any segment of the same flow that was processed in between (it acknowledges more, never
 * less, and echoes timestamps if that one carried them), see docs/ARCHITECTURE.md
 * "PNA / DPDK target" for each ACK flavour. */

control AckMirror(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        if (!meta.ack_owed) {
            return;
        }
        if (!hdr.nic_host.isValid()) {
            /* Nothing goes to the host: the frame itself becomes the request. */
            bit<8> flags = 0;
            if (hdr.tcp_ts.isValid()) {
                flags = flags | ACK_REQUEST_FLAG_TIMESTAMPS;
            }
            if (meta.ack_with_sack) {
                flags = flags | ACK_REQUEST_FLAG_SACK;
            }
            hdr.nic_host.setValid();
            hdr.nic_host.opcode = NIC_HOST_OP_ACK_REQUEST;
            hdr.nic_host.flags = flags;
            hdr.nic_host.gen = meta.flow.gen;
            hdr.nic_host.flow_id = meta.flow_id;
            hdr.nic_host.offset = 0;
            hdr.nic_host.length = 0;
            hdr.nic_host.window = 0;
            hdr.nic_host.count = 0;
            hdr.nic_host.aux = 0;
            hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST;
            hdr.ipv4.setInvalid();
            hdr.tcp.setInvalid();
            hdr.tcp_ts.setInvalid();
            hdr.tcp_sack.setInvalid();
            hdr.tcp_sack_b2.setInvalid();
            hdr.tcp_sack_b3.setInvalid();
            meta.out_port = (bit<32>)DROP_PORT;
        }
        mirror_packet((MirrorSlotId_t)ACK_MIRROR_SLOT, (MirrorSessionId_t)ACK_MIRROR_SESSION);
    }
}

control AckLoopback(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    AdvertisedWindow() adv_window;

    apply {
        /* The flow was removed or its id reused since pass 1: its ACK is moot. */
        if (hdr.nic_host.gen != meta.flow.gen || meta.dyn_fresh) {
            return;
        }
        /* RX_DATA and notice copies: whether the segment carried timestamps is in the flow's
         * state (ack_ts, written by pass 1; their header is the host's, with no bit to spare). */
        bool timestamps = meta.ack_ts == 1;
        bool sack = true;
        if (hdr.nic_host.opcode == NIC_HOST_OP_ACK_REQUEST) {
            timestamps = (hdr.nic_host.flags & ACK_REQUEST_FLAG_TIMESTAMPS) != 0;
            sack = (hdr.nic_host.flags & ACK_REQUEST_FLAG_SACK) != 0;
        } else if (hdr.nic_host.opcode != NIC_HOST_OP_RX_DATA
                   && hdr.nic_host.opcode != NIC_HOST_OP_TX_ACKED
                   && hdr.nic_host.opcode != NIC_HOST_OP_SACK
                   && hdr.nic_host.opcode != NIC_HOST_OP_RETRANSMIT) {
            return;
        }
        adv_window.apply(meta);

        hdr.ethernet.dst_addr = meta.flow.peer_mac;
        hdr.ethernet.src_addr = meta.flow.local_mac;
        hdr.ethernet.ether_type = ETHERTYPE_IPV4;
        hdr.nic_host.setInvalid();

        hdr.ipv4.setValid();
        hdr.ipv4.version = 4;
        hdr.ipv4.ihl = 5;
        hdr.ipv4.dscp = 0;
        hdr.ipv4.ecn = 0;                    /* pure ACKs are not ECN-capable (RFC 3168) */
        hdr.ipv4.identification = 0;
        hdr.ipv4.flags = IPV4_FLAGS_DF;
        hdr.ipv4.frag_offset = 0;
        hdr.ipv4.ttl = ACK_TTL;
        hdr.ipv4.protocol = IP_PROTO_TCP;
        hdr.ipv4.hdr_checksum = 0;
        hdr.ipv4.src_addr = meta.flow.local_ip;
        hdr.ipv4.dst_addr = meta.flow.peer_ip;

        hdr.tcp.setValid();
        hdr.tcp.src_port = meta.flow.local_port;
        hdr.tcp.dst_port = meta.flow.peer_port;
        hdr.tcp.seq_no = meta.dyn.snd_nxt;
        hdr.tcp.ack_no = meta.dyn.rcv_nxt;
        hdr.tcp.res = 0;
        hdr.tcp.flags = meta.dyn.ece_echo == 1 ? TCP_ACK | TCP_ECE : TCP_ACK;
        hdr.tcp.window = meta.adv_window;
        hdr.tcp.checksum = 0;
        hdr.tcp.urgent_ptr = 0;

        bit<16> tcp_len = TCP_HDR_BYTES;
        hdr.tcp.data_offset = TCP_DATA_OFFSET_PLAIN;
        if (timestamps) {
            hdr.tcp_ts.setValid();
            hdr.tcp_ts.nop1 = TCP_OPT_NOP;
            hdr.tcp_ts.nop2 = TCP_OPT_NOP;
            hdr.tcp_ts.kind = TCP_OPT_TIMESTAMPS;
            hdr.tcp_ts.len = TCP_OPT_TIMESTAMPS_LEN;
            hdr.tcp_ts.tsval = (bit<32>)(meta.now_us >> TS_TICK_SHIFT);
            hdr.tcp_ts.tsecr = meta.dyn.ts_recent;
            tcp_len = TCP_HDR_BYTES + TCP_TS_OPT_BYTES;
            hdr.tcp.data_offset = TCP_DATA_OFFSET_TS;
            /* One block, our out-of-order interval (Receive), after the timestamps (Linux's
             * layout; a flow without timestamps reports none, as on v1model). */
            if (sack && meta.flow.sack != 0 && meta.dyn.ooo_active == 1) {
                bit<64> ooo = flow_ooo.read(meta.flow_id);
                hdr.tcp_sack.setValid();
                hdr.tcp_sack.nop1 = TCP_OPT_NOP;
                hdr.tcp_sack.nop2 = TCP_OPT_NOP;
                hdr.tcp_sack.kind = TCP_OPT_SACK;
                hdr.tcp_sack.len = TCP_OPT_SACK1_LEN;
                hdr.tcp_sack.left = ooo[63:32];
                hdr.tcp_sack.right = ooo[63:32] + ooo[31:0];
                tcp_len = tcp_len + TCP_SACK_OPT_BYTES;
                hdr.tcp.data_offset = TCP_DATA_OFFSET_TS_SACK1;
            }
        }
        hdr.ipv4.total_len = IPV4_HDR_BYTES + tcp_len;
        meta.l4_len = tcp_len;
        meta.tx_payload_sum = 0;
        meta.out_port = (bit<32>)meta.flow.wire_port;
        meta.ack_build = true;
    }
}
