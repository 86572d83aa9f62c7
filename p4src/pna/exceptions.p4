/* p4tas PNA: as v1model/exceptions.p4, except three checks PNA on DPDK cannot make: truncated
 * headers (no parser errors), a frame shorter than its IPv4 length (no packet length) and the
 * TCP checksum (InternetChecksum sums header fields only, not payload; the port's RX checksum
 * verification is trusted, as a NIC's RX checksum offload is). The IPv4 header checksum is
 * verified here with InternetChecksum where v1model uses hash(csum16).
 * p4tas: classify wire packets the fast path does not handle (ARCHITECTURE.md 1,
 * "Exceptions"). Sets meta.punt_reason (to the CPU) or meta.drop_reason (counted and dropped);
 * a packet with neither is a common-case TCP segment and gets meta.payload_len. */

control Exceptions(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    InternetChecksum() ipv4_checksum;
    bit<16> ipv4_residue;

    action punt(bit<8> reason) { meta.punt_reason = reason; }
    action drop(bit<8> reason) { meta.drop_reason = reason; }

    /* The ones'-complement sum of a correct header, checksum included, complements to 0,
     * which DPDK's checksum instruction returns as 0xFFFF (it never yields 0, as UDP wants;
     * IPV4_CHECKSUM_OK). Summed in 16-bit words: the instruction takes each item as whole
     * words. */
    action check_ipv4_checksum() {
        ipv4_checksum.clear();
        ipv4_checksum.add({ hdr.ipv4.version ++ hdr.ipv4.ihl ++ hdr.ipv4.dscp ++ hdr.ipv4.ecn,
                            hdr.ipv4.total_len, hdr.ipv4.identification,
                            hdr.ipv4.flags ++ hdr.ipv4.frag_offset,
                            hdr.ipv4.ttl ++ hdr.ipv4.protocol, hdr.ipv4.hdr_checksum,
                            hdr.ipv4.src_addr, hdr.ipv4.dst_addr });
        ipv4_residue = ipv4_checksum.get();
    }

    apply {
        bit<16> tcp_hdr_len = ((bit<16>)hdr.tcp.data_offset) << 2;
        /* Which options were parsed, as flags set in ifs: p4c-dpdk cannot negate isValid()
         * inside a logical expression (it substitutes the expression's other operand, see
         * docs/ARCHITECTURE.md, "PNA / DPDK target"), and would propagate a plain copy back. */
        bool ts_parsed = false;
        if (hdr.tcp_ts.isValid()) {
            ts_parsed = true;
        }
        bool sack_parsed = false;
        if (hdr.tcp_sack.isValid()) {
            sack_parsed = true;
        }
        if (hdr.ethernet.ether_type == ETHERTYPE_ARP) {
            punt(REASON_ARP);
        } else if (!hdr.ipv4.isValid()) {
            drop(DROP_NOT_IP);
        } else if (hdr.ipv4.version != 4) {
            drop(DROP_NOT_IP);
        } else if (hdr.ipv4.ihl != 5) {
            punt(REASON_IPV4_OPTIONS);
        } else if (hdr.ipv4.flags[0:0] == 1 || hdr.ipv4.frag_offset != 0) {
            punt(REASON_IPV4_FRAGMENT);
        } else if (hdr.ipv4.protocol != IP_PROTO_TCP) {
            drop(DROP_NOT_TCP);
        } else {
            check_ipv4_checksum();
            if (hdr.ipv4.total_len < IPV4_HDR_BYTES + tcp_hdr_len) {
                punt(REASON_BAD_LENGTH);
            } else if (ipv4_residue != IPV4_CHECKSUM_OK) {
                punt(REASON_BAD_IPV4_CHECKSUM);
            } else if ((hdr.tcp.flags & (TCP_SYN | TCP_ACK)) == (TCP_SYN | TCP_ACK)) {
                punt(REASON_SYN_ACK);
            } else if ((hdr.tcp.flags & TCP_SYN) != 0) {
                punt(REASON_SYN);
            } else if ((hdr.tcp.flags & TCP_RST) != 0) {
                punt(REASON_RST);
            } else if ((hdr.tcp.flags & TCP_FIN) != 0) {
                punt(REASON_FIN);
            } else if ((hdr.tcp.flags & ~TCP_FASTPATH_FLAGS) != 0 || (hdr.tcp.flags & TCP_ACK) == 0) {
                punt(REASON_TCP_FLAGS);
            } else if (hdr.tcp.data_offset != TCP_DATA_OFFSET_PLAIN && !ts_parsed) {
                punt(REASON_TCP_OPTIONS);
            } else if (hdr.tcp.data_offset != TCP_DATA_OFFSET_PLAIN
                       && hdr.tcp.data_offset != TCP_DATA_OFFSET_TS && !sack_parsed) {
                punt(REASON_TCP_OPTIONS);   /* timestamps, then options other than SACK */
            } else {
                meta.payload_len = meta.l4_len - tcp_hdr_len;
            }
        }
    }
}
