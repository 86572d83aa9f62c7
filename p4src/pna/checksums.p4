/* p4tas PNA: checksums of the segments the fast path builds (pass-2 ACKs, TX_DATA segments,
 * SYN cookies). InternetChecksum on DPDK sums header fields only, never payload, so:
 *  - every item is whole 16-bit words in wire order (DPDK's ckadd takes each item as starting
 *    a word; an 8-bit item would be summed as the high byte of its own word), hence the
 *    concatenations below;
 *  - a TX_DATA segment's payload enters as the host's 16-bit one's-complement sum of it
 *    (meta.tx_payload_sum, from the TX_DATA header's `window`, see transmit.p4): the TCP
 *    checksum is the complement of pseudo-header + TCP header and options + that sum. The
 *    payload starts at an even offset of the segment, so its sum is the sum of its bytes as
 *    big-endian 16-bit words, an odd last byte padded with a zero byte.
 * RX: the TCP checksum is not verified (exceptions.p4). */

control ComputeChecksums(inout pna_headers_t hdr, in pna_metadata_t meta) {
    InternetChecksum() ipv4_checksum;
    InternetChecksum() tcp_checksum;

    apply {
        if (!(meta.ack_build || meta.tx_build || meta.syn_cookie)) {
            return;
        }
        hdr.ipv4.hdr_checksum = 0;
        ipv4_checksum.clear();
        ipv4_checksum.add({ hdr.ipv4.version ++ hdr.ipv4.ihl ++ hdr.ipv4.dscp ++ hdr.ipv4.ecn,
                            hdr.ipv4.total_len, hdr.ipv4.identification,
                            hdr.ipv4.flags ++ hdr.ipv4.frag_offset,
                            hdr.ipv4.ttl ++ hdr.ipv4.protocol,
                            hdr.ipv4.src_addr, hdr.ipv4.dst_addr });
        hdr.ipv4.hdr_checksum = ipv4_checksum.get();

        /* l4_len: the TCP header and options, plus the payload for TX_DATA segments. */
        bit<16> tcp_len = meta.syn_cookie ? TCP_HDR_BYTES + TCP_MSS_OPT_BYTES : meta.l4_len;
        hdr.tcp.checksum = 0;
        tcp_checksum.clear();
        tcp_checksum.add({ hdr.ipv4.src_addr, hdr.ipv4.dst_addr, 8w0 ++ hdr.ipv4.protocol,
                           tcp_len,
                           hdr.tcp.src_port, hdr.tcp.dst_port, hdr.tcp.seq_no, hdr.tcp.ack_no,
                           hdr.tcp.data_offset ++ hdr.tcp.res ++ hdr.tcp.flags, hdr.tcp.window,
                           hdr.tcp.urgent_ptr, meta.tx_payload_sum });
        if (hdr.tcp_ts.isValid()) {
            tcp_checksum.add({ hdr.tcp_ts.nop1 ++ hdr.tcp_ts.nop2,
                               hdr.tcp_ts.kind ++ hdr.tcp_ts.len,
                               hdr.tcp_ts.tsval, hdr.tcp_ts.tsecr });
        }
        if (hdr.tcp_sack.isValid()) {
            tcp_checksum.add({ hdr.tcp_sack.nop1 ++ hdr.tcp_sack.nop2,
                               hdr.tcp_sack.kind ++ hdr.tcp_sack.len,
                               hdr.tcp_sack.left, hdr.tcp_sack.right });
        }
        if (hdr.tcp_mss.isValid()) {
            tcp_checksum.add({ hdr.tcp_mss.kind ++ hdr.tcp_mss.len, hdr.tcp_mss.mss });
        }
        hdr.tcp.checksum = tcp_checksum.get();
    }
}
