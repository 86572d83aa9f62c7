/* p4tas v1model: parser and deparser. The parser never rejects: anything the fast path does
 * not handle is left for the exceptions control to classify, so it reaches the CPU with a
 * reason or is dropped and counted. */

parser P4tasParser(packet_in pkt, out headers_t hdr, inout metadata_t meta,
                   inout standard_metadata_t sm) {
    state start {
        transition select(sm.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    /* A PacketOut is opaque after its controller header (the controller built the frame),
     * unless it is a wire segment handed back to the fast path (reinject). */
    state parse_packet_out {
        pkt.extract(hdr.packet_out);
        transition select(hdr.packet_out.reinject) {
            1: parse_ethernet;
            default: accept;
        }
    }

    state parse_ethernet {
        pkt.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_NIC_HOST: parse_nic_host_if_trusted;
            default: accept;
        }
    }

    /* Only the host port may speak the NIC<->host channel: the same EtherType from the wire
     * must never be able to forge host messages. */
    state parse_nic_host_if_trusted {
        transition select(sm.ingress_port) {
            HOST_PORT: parse_nic_host;
            default: accept;
        }
    }

    state parse_nic_host {
        pkt.extract(hdr.nic_host);
        transition accept;
    }

    state parse_ipv4 {
        pkt.extract(hdr.ipv4);
        meta.l4_len = hdr.ipv4.total_len - IPV4_HDR_BYTES;
        /* Options, fragments and non-TCP stop here; ingress classifies them. */
        transition select(hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.flags[0:0],
                          hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (4, 5, 0, 0, IP_PROTO_TCP): parse_tcp;
            default: accept;
        }
    }

    /* A SYN (without ACK) with options: its MSS, for a SYN cookie (syn_cookie.p4). The masks
     * match data offsets 8..15 and 6..7 (an option is there to look at). */
    state parse_tcp {
        pkt.extract(hdr.tcp);
        transition select(hdr.tcp.data_offset, hdr.tcp.flags) {
            (0x8 &&& 0x8, TCP_SYN &&& (TCP_SYN | TCP_ACK)): parse_tcp_mss_if_first;
            (0x6 &&& 0xE, TCP_SYN &&& (TCP_SYN | TCP_ACK)): parse_tcp_mss_if_first;
            (TCP_DATA_OFFSET_TS, _): parse_tcp_ts_if_linux_layout;
            (TCP_DATA_OFFSET_TS_SACK1, _): parse_tcp_ts_sack_if_linux_layout;
            (TCP_DATA_OFFSET_TS_SACK2, _): parse_tcp_ts_sack_if_linux_layout;
            (TCP_DATA_OFFSET_TS_SACK3, _): parse_tcp_ts_sack_if_linux_layout;
            default: accept;
        }
    }

    state parse_tcp_mss_if_first {
        transition select(pkt.lookahead<bit<16>>()) {
            TCP_MSS_OPT_PREFIX: parse_tcp_mss;
            default: accept;
        }
    }

    /* Timestamps then SACK blocks (RFC 2018), Linux's layout: every option byte is then
     * parsed, so no option is left to be mistaken for payload. Anything else with this data
     * offset stops here and is punted (Exceptions). */
    state parse_tcp_ts_sack_if_linux_layout {
        transition select(pkt.lookahead<bit<32>>()) {
            TCP_TS_OPT_PREFIX: parse_tcp_ts_then_sack;
            default: accept;
        }
    }

    state parse_tcp_mss {
        pkt.extract(hdr.tcp_mss);
        transition accept;
    }

    state parse_tcp_ts_then_sack {
        pkt.extract(hdr.tcp_ts);
        transition select(hdr.tcp.data_offset, pkt.lookahead<bit<32>>()) {
            (TCP_DATA_OFFSET_TS_SACK1, TCP_SACK1_OPT_PREFIX): parse_tcp_sack;
            (TCP_DATA_OFFSET_TS_SACK2, TCP_SACK2_OPT_PREFIX): parse_tcp_sack;
            (TCP_DATA_OFFSET_TS_SACK3, TCP_SACK3_OPT_PREFIX): parse_tcp_sack;
            default: accept;
        }
    }

    state parse_tcp_sack {
        pkt.extract(hdr.tcp_sack);
        transition select(hdr.tcp_sack.len) {
            TCP_OPT_SACK1_LEN: accept;
            default: parse_tcp_sack_b2;
        }
    }

    state parse_tcp_sack_b2 {
        pkt.extract(hdr.tcp_sack_b2);
        transition select(hdr.tcp.data_offset) {
            TCP_DATA_OFFSET_TS_SACK3: parse_tcp_sack_b3;
            default: accept;
        }
    }

    state parse_tcp_sack_b3 {
        pkt.extract(hdr.tcp_sack_b3);
        transition accept;
    }

    state parse_tcp_ts_if_linux_layout {
        transition select(pkt.lookahead<bit<32>>()) {
            TCP_TS_OPT_PREFIX: parse_tcp_ts;
            default: accept;
        }
    }

    state parse_tcp_ts {
        pkt.extract(hdr.tcp_ts);
        transition accept;
    }
}

control P4tasDeparser(packet_out pkt, in headers_t hdr) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.nic_host);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.tcp_ts);
        pkt.emit(hdr.tcp_mss);
        pkt.emit(hdr.tcp_sack);
        pkt.emit(hdr.tcp_sack_b2);
        pkt.emit(hdr.tcp_sack_b3);
    }
}
