/* p4tas v1model: TCP checksum verification and the checksums of generated ACKs.
 * The IPv4 header checksum is verified in ingress (exceptions.p4) so that the two failures
 * get different reasons; v1model's checksum_error flag cannot tell them apart. */

control P4tasVerifyChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        /* Unparsed options count as payload here, so segments with any option layout are
         * verified correctly; Ethernet padding is zeros and does not change the sum. */
        verify_checksum_with_payload(hdr.tcp.isValid() && !hdr.tcp_ts.isValid()
                                         && !hdr.tcp_mss.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        verify_checksum_with_payload(hdr.tcp_ts.isValid() && !hdr.tcp_sack.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        verify_checksum_with_payload(hdr.tcp_mss.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr, hdr.tcp_mss.kind, hdr.tcp_mss.len, hdr.tcp_mss.mss },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        /* SACK blocks parsed (one, two or three): every option byte is a header field. */
        verify_checksum_with_payload(hdr.tcp_sack.isValid() && !hdr.tcp_sack_b2.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr,
              hdr.tcp_sack.nop1, hdr.tcp_sack.nop2, hdr.tcp_sack.kind, hdr.tcp_sack.len,
              hdr.tcp_sack.left, hdr.tcp_sack.right },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        verify_checksum_with_payload(hdr.tcp_sack_b2.isValid() && !hdr.tcp_sack_b3.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr,
              hdr.tcp_sack.nop1, hdr.tcp_sack.nop2, hdr.tcp_sack.kind, hdr.tcp_sack.len,
              hdr.tcp_sack.left, hdr.tcp_sack.right,
              hdr.tcp_sack_b2.left, hdr.tcp_sack_b2.right },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        verify_checksum_with_payload(hdr.tcp_sack_b3.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr,
              hdr.tcp_sack.nop1, hdr.tcp_sack.nop2, hdr.tcp_sack.kind, hdr.tcp_sack.len,
              hdr.tcp_sack.left, hdr.tcp_sack.right,
              hdr.tcp_sack_b2.left, hdr.tcp_sack_b2.right,
              hdr.tcp_sack_b3.left, hdr.tcp_sack_b3.right },
            hdr.tcp.checksum, HashAlgorithm.csum16);
    }
}

control P4tasComputeChecksum(inout headers_t hdr, inout metadata_t meta) {
    apply {
        update_checksum(meta.ack_rewrite || meta.tx_build || meta.syn_cookie,
            { hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.dscp, hdr.ipv4.ecn, hdr.ipv4.total_len,
              hdr.ipv4.identification, hdr.ipv4.flags, hdr.ipv4.frag_offset, hdr.ipv4.ttl,
              hdr.ipv4.protocol, hdr.ipv4.src_addr, hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum, HashAlgorithm.csum16);
        /* ACKs are truncated to their headers, and update_checksum_with_payload would still
         * sum the cut payload on bmv2 (ARCHITECTURE.md 5): sum the headers with the TCP length. */
        update_checksum(meta.ack_rewrite && !hdr.tcp_ts.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, TCP_HDR_BYTES,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        update_checksum(meta.ack_rewrite && hdr.tcp_ts.isValid() && !hdr.tcp_sack.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol,
              TCP_HDR_BYTES + TCP_TS_OPT_BYTES,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        /* A SYN-ACK with a cookie: headers and the MSS option, cut after them. */
        update_checksum(meta.syn_cookie,
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol,
              TCP_HDR_BYTES + TCP_MSS_OPT_BYTES,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr, hdr.tcp_mss.kind, hdr.tcp_mss.len, hdr.tcp_mss.mss },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        /* An ACK reporting our out-of-order interval: timestamps and one SACK block. */
        update_checksum(meta.ack_rewrite && hdr.tcp_ts.isValid() && hdr.tcp_sack.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol,
              TCP_HDR_BYTES + TCP_TS_OPT_BYTES + TCP_SACK_OPT_BYTES,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr,
              hdr.tcp_sack.nop1, hdr.tcp_sack.nop2, hdr.tcp_sack.kind, hdr.tcp_sack.len,
              hdr.tcp_sack.left, hdr.tcp_sack.right },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        /* Segments built from TX_DATA keep their payload: sum it. */
        update_checksum_with_payload(meta.tx_build && !hdr.tcp_ts.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
        update_checksum_with_payload(meta.tx_build && hdr.tcp_ts.isValid(),
            { hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0, hdr.ipv4.protocol, meta.l4_len,
              hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
              hdr.tcp.data_offset, hdr.tcp.res, hdr.tcp.flags, hdr.tcp.window,
              hdr.tcp.urgent_ptr,
              hdr.tcp_ts.nop1, hdr.tcp_ts.nop2, hdr.tcp_ts.kind, hdr.tcp_ts.len,
              hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr },
            hdr.tcp.checksum, HashAlgorithm.csum16);
    }
}
