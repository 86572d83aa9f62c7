/* p4tas PNA: parser and deparser, as v1model's (v1model/parser.p4) except:
 *  - the loopback port (ACK requests, ack_loopback.p4) may speak the NIC<->host channel too;
 *  - a SYN's options are parsed to the end (tcp_syn_opts), and its payload (tcp_syn_data, TCP
 *    Fast Open), so that syn_cookie.p4 can drop them;
 *  - the fixed part of an ARP header (arp), for the byte counters (packet_io.p4);
 *  - no parser errors: DPDK's extract does not check the packet's length, so a truncated
 *    frame is not caught here (see docs/ARCHITECTURE.md, "PNA / DPDK target").
 * The parser never rejects: the exceptions control classifies what the fast path does not
 * handle. */

parser P4tasParser(packet_in pkt, out pna_headers_t hdr, inout pna_metadata_t meta,
                   in pna_main_parser_input_metadata_t istd) {
    /* DPDK's pipeline does not clear the metadata between packets (bmv2 zeroes it, and the
     * v1model program relies on that): every field that may be read before this packet
     * writes it starts here. (flow, dyn and sip are always written before they are read.) */
    state start {
        meta.punt_reason = 0;
        meta.drop_reason = 0;
        meta.l4_len = 0;
        meta.payload_len = 0;
        meta.syn_data_len = 0;
        meta.flow_found = false;
        meta.flow_id = 0;
        meta.dyn_fresh = false;
        meta.adv_window = 0;
        meta.acked_bytes = 0;
        meta.window_update = false;
        meta.rtt_sample = 0;
        meta.ack_ece = false;
        meta.fast_retransmit = false;
        meta.dupack = false;
        meta.fin_acked = false;
        meta.seq_acceptable = false;
        meta.ack_unacceptable = false;
        meta.window_reopened = false;
        meta.ooo_merged = 0;
        meta.paws_rejected = false;
        meta.tx_new_data = false;
        meta.tx_resend = false;
        meta.delivered = false;
        meta.to_host = false;
        meta.in_port = 0;
        meta.reinjected = false;
        meta.ack_build = false;
        meta.tx_build = false;
        meta.syn_cookie = false;
        meta.now_us = 0;
        meta.out_port = (bit<32>)DROP_PORT;
        meta.ack_pass = false;
        meta.ack_owed = false;
        meta.ack_with_sack = false;
        meta.ack_ts = 0;
        meta.tx_payload_sum = 0;
        meta.frame_bytes = 0;
        meta.packet_unit = METER_PACKET_UNIT;
        transition select((bit<32>)istd.input_port) {
            (bit<32>)CPU_PORT: parse_packet_out;
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
            ETHERTYPE_ARP: parse_arp;
            ETHERTYPE_NIC_HOST: parse_nic_host_if_trusted;
            default: accept;
        }
    }

    state parse_arp {
        pkt.extract(hdr.arp);
        transition accept;
    }

    /* Only the host port (and the loopback port, which carries the fast path's own ACK
     * requests) may speak the NIC<->host channel: the same EtherType from the wire must never
     * be able to forge host messages. */
    state parse_nic_host_if_trusted {
        transition select((bit<32>)istd.input_port) {
            (bit<32>)HOST_PORT: parse_nic_host;
            (bit<32>)ACK_LOOPBACK_PORT: parse_nic_host;
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
        /* Options, fragments and non-TCP stop here; the main control classifies them. */
        transition select(hdr.ipv4.version, hdr.ipv4.ihl, hdr.ipv4.flags[0:0],
                          hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (4, 5, 0, 0, IP_PROTO_TCP): parse_tcp;
            default: accept;
        }
    }

    /* A SYN (without ACK) with options: its MSS if it comes first, and the rest of its option
     * area. The masks match data offsets 8..15 and 6..7 (an option is there to look at).
     * Then, with or without options, its payload. */
    state parse_tcp {
        pkt.extract(hdr.tcp);
        transition select(hdr.tcp.data_offset, hdr.tcp.flags) {
            (0x8 &&& 0x8, TCP_SYN &&& (TCP_SYN | TCP_ACK)): parse_tcp_mss_if_first;
            (0x6 &&& 0xE, TCP_SYN &&& (TCP_SYN | TCP_ACK)): parse_tcp_mss_if_first;
            (0x5, TCP_SYN &&& (TCP_SYN | TCP_ACK)): parse_tcp_syn_data_if_any;
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
            default: parse_tcp_syn_opts_all;
        }
    }

    state parse_tcp_mss {
        pkt.extract(hdr.tcp_mss);
        /* The option bytes after the MSS option: (data offset - 6) words. */
        pkt.extract(hdr.tcp_syn_opts,
                    (bit<32>)(((bit<16>)hdr.tcp.data_offset << 5) - 16w192));
        transition parse_tcp_syn_data_if_any;
    }

    state parse_tcp_syn_opts_all {
        /* No MSS option first: all (data offset - 5) words of options. */
        pkt.extract(hdr.tcp_syn_opts,
                    (bit<32>)(((bit<16>)hdr.tcp.data_offset << 5) - 16w160));
        transition parse_tcp_syn_data_if_any;
    }

    /* A SYN's payload, 1..2047 bytes (tcp_syn_data's size; a frame that ends before its IPv4
     * length is read past its end, as every extract here is). Beyond that, or a length below
     * the TCP header (wrapped), it stays unparsed and the SYN gets no cookie. */
    state parse_tcp_syn_data_if_any {
        meta.syn_data_len = meta.l4_len - ((bit<16>)hdr.tcp.data_offset << 2);
        transition select(meta.syn_data_len) {
            0: accept;
            0 &&& 0xF800: parse_tcp_syn_data;
            default: accept;
        }
    }

    state parse_tcp_syn_data {
        pkt.extract(hdr.tcp_syn_data, (bit<32>)(meta.syn_data_len << 3));
        transition accept;
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

/* Emission order is the parse order; at most one of the option groups is ever valid. */
control P4tasDeparser(packet_out pkt, in pna_headers_t hdr, in pna_metadata_t meta,
                      in pna_main_output_metadata_t ostd) {
    apply {
        pkt.emit(hdr.packet_in);
        pkt.emit(hdr.ethernet);
        pkt.emit(hdr.arp);
        pkt.emit(hdr.nic_host);
        pkt.emit(hdr.ipv4);
        pkt.emit(hdr.tcp);
        pkt.emit(hdr.tcp_ts);
        pkt.emit(hdr.tcp_mss);
        pkt.emit(hdr.tcp_syn_opts);
        pkt.emit(hdr.tcp_syn_data);
        pkt.emit(hdr.tcp_sack);
        pkt.emit(hdr.tcp_sack_b2);
        pkt.emit(hdr.tcp_sack_b3);
    }
}
