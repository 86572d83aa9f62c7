/* p4tas v1model: turn the ingress-to-egress clone of a data segment into its ACK.
 * The clone is the re-parsed original segment, so the peer's addresses and ports are still in
 * its headers; what ingress decided arrives in the preserved ack_* fields, TSecr included
 * (TS.Recent, RFC 7323 4.3: not necessarily this segment's TSval). */

control AckEgress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    apply {
        if (sm.instance_type == INSTANCE_TYPE_INGRESS_CLONE) {
            meta.ack_rewrite = true;

            bit<48> mac = hdr.ethernet.dst_addr;
            hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
            hdr.ethernet.src_addr = mac;

            bit<32> addr = hdr.ipv4.dst_addr;
            hdr.ipv4.dst_addr = hdr.ipv4.src_addr;
            hdr.ipv4.src_addr = addr;
            hdr.ipv4.ecn = 0;                    /* pure ACKs are not ECN-capable (RFC 3168) */
            hdr.ipv4.identification = 0;
            hdr.ipv4.flags = 3w0b010;            /* DF */
            hdr.ipv4.frag_offset = 0;
            hdr.ipv4.ttl = ACK_TTL;

            bit<16> port = hdr.tcp.dst_port;
            hdr.tcp.dst_port = hdr.tcp.src_port;
            hdr.tcp.src_port = port;
            hdr.tcp.seq_no = meta.ack_seq;
            hdr.tcp.ack_no = meta.ack_ack;
            hdr.tcp.res = 0;
            hdr.tcp.flags = meta.ack_flags;
            hdr.tcp.window = meta.ack_window;
            hdr.tcp.urgent_ptr = 0;

            bit<16> tcp_len = TCP_HDR_BYTES;
            hdr.tcp.data_offset = TCP_DATA_OFFSET_PLAIN;
            if (hdr.tcp_ts.isValid()) {
                hdr.tcp_ts.tsecr = meta.ack_tsecr;
                hdr.tcp_ts.tsval = meta.ack_tsval;
                tcp_len = TCP_HDR_BYTES + TCP_TS_OPT_BYTES;
                hdr.tcp.data_offset = TCP_DATA_OFFSET_TS;
            }
            /* The clone may be a segment that carried SACK blocks of its own: ours replace
             * them. One block, our out-of-order interval (Receive), after the timestamps
             * (Linux's layout; a flow without timestamps reports none). */
            hdr.tcp_sack_b2.setInvalid();
            hdr.tcp_sack_b3.setInvalid();
            if (hdr.tcp_ts.isValid() && meta.ack_sack_left != meta.ack_sack_right) {
                hdr.tcp_sack.setValid();
                hdr.tcp_sack.nop1 = TCP_OPT_NOP;
                hdr.tcp_sack.nop2 = TCP_OPT_NOP;
                hdr.tcp_sack.kind = TCP_OPT_SACK;
                hdr.tcp_sack.len = TCP_OPT_SACK1_LEN;
                hdr.tcp_sack.left = meta.ack_sack_left;
                hdr.tcp_sack.right = meta.ack_sack_right;
                tcp_len = tcp_len + TCP_SACK_OPT_BYTES;
                hdr.tcp.data_offset = TCP_DATA_OFFSET_TS_SACK1;
            } else {
                hdr.tcp_sack.setInvalid();
            }
            hdr.ipv4.total_len = IPV4_HDR_BYTES + tcp_len;
            truncate((bit<32>)(ETH_HDR_BYTES + IPV4_HDR_BYTES + tcp_len));
        }
    }
}
