/* p4tas PNA: as v1model/syn_cookie.p4, except that the SYN-ACK made from the SYN drops the SYN's
 * other options and its payload (TCP Fast Open) by invalidating them (the parser took the
 * whole option area, tcp_syn_opts, and the payload, tcp_syn_data) where v1model truncates: a
 * PNA control cannot truncate. A SYN whose payload the parser did not take (beyond
 * tcp_syn_data's 2047 bytes) is not answered with a cookie.
 * p4c-dpdk compiles HalfSipHash as it is (32-bit add, shift, or, xor).
 * p4tas: SYN cookies in the data plane (RFC 4987 3.6; AccelTCP offloads the same).
 * The slow path answers SYNs as long as the punt meter lets them through (full options). A
 * SYN beyond that budget, to an address and port the slow path listens on, is answered here:
 * the SYN itself becomes our SYN-ACK, its ISN a cookie, and nothing is kept; the peer's ACK
 * returns the cookie to the slow path (an unknown flow), which checks it and opens the
 * connection. So a SYN flood costs the slow path no more than its budget, and legitimate SYNs
 * beyond it are answered instead of dropped. Cookie format and key: constants.p4 and
 * nic_contract/syn_cookie.py (the slow path's twin of the hash below). */

/* HalfSipHash-2-4 (32-bit tag) on 32-bit words: add, rotate, xor, which a NIC pipeline does
 * at line rate. A CRC, the hash targets offer natively, is affine: one observed cookie would
 * give the key away. The state lives in metadata (meta.sip, the message word in
 * meta.sip_word), and every step of a round is an action of its own, called from the apply
 * block: within an action p4c propagates each assignment into the next expression, and
 * p4c-dpdk's expression unroller visits a subexpression shared that way only once, silently
 * reusing a stale temporary (v1model's two rounds per action made a wrong hash here). Actions
 * are not propagated into one another. */
#define SIP_ROUND_CALLS \
    sip_round_1(); sip_round_2(); sip_round_3(); sip_round_4(); sip_round_5(); \
    sip_round_6(); sip_round_7(); sip_round_8(); sip_round_9(); sip_round_10();

/* One message word (the reference reads words little-endian; ours are defined as words). */
#define SIP_COMPRESS_CALLS \
    sip_absorb(); \
    SIP_ROUND_CALLS \
    SIP_ROUND_CALLS \
    sip_release();

/* The peer's MSS as the cookie's 2-bit index, rounded down to the table. */
bit<2> cookie_mss_index(in bit<16> mss) {
    if (mss >= COOKIE_MSS_3) {
        return 3;
    } else if (mss >= COOKIE_MSS_2) {
        return 2;
    } else if (mss >= COOKIE_MSS_1) {
        return 1;
    }
    return 0;
}

control SynCookie(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    Counter<bit<64>, bit<32>>(1, PNA_CounterType_t.PACKETS) syn_cookies_sent;

    bit<32> key0 = 0;
    bit<32> key1 = 0;
    bit<16> key_epoch = 0;
    bit<16> offer_mss = 0;
    bit<16> offer_window = 0;

    /* The slow path writes one entry per listening address and port, with its key, the
     * current epoch, and the MSS and window our SYN-ACK offers. */
    action answer_with_cookie(bit<32> k0, bit<32> k1, bit<16> epoch, bit<16> local_mss,
                              bit<16> window) {
        key0 = k0;
        key1 = k1;
        key_epoch = epoch;
        offer_mss = local_mss;
        offer_window = window;
    }

    table syn_cookie_listeners {
        key = {
            hdr.ipv4.dst_addr: exact @name("local_ip");
            hdr.tcp.dst_port: exact @name("local_port");
        }
        actions = { answer_with_cookie; NoAction; }
        default_action = NoAction();
        size = MAX_COOKIE_LISTENERS;
    }

    /* HalfSipHash of the connection and the epoch into meta.sip (the tag is v1 ^ v3): each
     * message word is loaded into meta.sip_word by its own action, then compressed. */
    action sip_init_and_local_ip() {
        meta.sip.v0 = key0;
        meta.sip.v1 = key1;
        meta.sip.v2 = SIPHASH_V2_INIT ^ key0;
        meta.sip.v3 = SIPHASH_V3_INIT ^ key1;
        meta.sip_word = hdr.ipv4.dst_addr;
    }
    action sip_peer_ip() { meta.sip_word = hdr.ipv4.src_addr; }
    action sip_ports() { meta.sip_word = hdr.tcp.dst_port ++ hdr.tcp.src_port; }
    action sip_peer_isn() { meta.sip_word = hdr.tcp.seq_no; }
    action sip_epoch() { meta.sip_word = (bit<32>)key_epoch; }
    action sip_length() { meta.sip_word = COOKIE_MESSAGE_BYTES << 24; }  /* no tail: the length alone */
    action sip_finalize() { meta.sip.v2 = meta.sip.v2 ^ 0xFF; }
    action sip_absorb() { meta.sip.v3 = meta.sip.v3 ^ meta.sip_word; }
    action sip_release() { meta.sip.v0 = meta.sip.v0 ^ meta.sip_word; }
    /* SipRound, one statement per action. */
    action sip_round_1() { meta.sip.v0 = meta.sip.v0 + meta.sip.v1; }
    action sip_round_2() { meta.sip.v1 = ((meta.sip.v1 << 5) | (meta.sip.v1 >> 27)) ^ meta.sip.v0; }
    action sip_round_3() { meta.sip.v0 = (meta.sip.v0 << 16) | (meta.sip.v0 >> 16); }
    action sip_round_4() { meta.sip.v2 = meta.sip.v2 + meta.sip.v3; }
    action sip_round_5() { meta.sip.v3 = ((meta.sip.v3 << 8) | (meta.sip.v3 >> 24)) ^ meta.sip.v2; }
    action sip_round_6() { meta.sip.v0 = meta.sip.v0 + meta.sip.v3; }
    action sip_round_7() { meta.sip.v3 = ((meta.sip.v3 << 7) | (meta.sip.v3 >> 25)) ^ meta.sip.v0; }
    action sip_round_8() { meta.sip.v2 = meta.sip.v2 + meta.sip.v1; }
    action sip_round_9() { meta.sip.v1 = ((meta.sip.v1 << 13) | (meta.sip.v1 >> 19)) ^ meta.sip.v2; }
    action sip_round_10() { meta.sip.v2 = (meta.sip.v2 << 16) | (meta.sip.v2 >> 16); }

    /* The SYN turns into our SYN-ACK in place: addresses and ports swapped, our MSS as the
     * only option (no window scaling, timestamps, SACK or ECN: the cookie has no room for the
     * peer's, as with the slow path's cookies), the SYN's other options left out. */
    action become_syn_ack(bit<32> isn) {
        bit<48> mac = hdr.ethernet.dst_addr;
        hdr.ethernet.dst_addr = hdr.ethernet.src_addr;
        hdr.ethernet.src_addr = mac;

        bit<32> addr = hdr.ipv4.dst_addr;
        hdr.ipv4.dst_addr = hdr.ipv4.src_addr;
        hdr.ipv4.src_addr = addr;
        hdr.ipv4.dscp = 0;
        hdr.ipv4.ecn = 0;
        hdr.ipv4.total_len = IPV4_HDR_BYTES + TCP_HDR_BYTES + TCP_MSS_OPT_BYTES;
        hdr.ipv4.identification = 0;
        hdr.ipv4.flags = IPV4_FLAGS_DF;
        hdr.ipv4.frag_offset = 0;
        hdr.ipv4.ttl = ACK_TTL;

        bit<16> port = hdr.tcp.dst_port;
        hdr.tcp.dst_port = hdr.tcp.src_port;
        hdr.tcp.src_port = port;
        hdr.tcp.ack_no = hdr.tcp.seq_no + 1;
        hdr.tcp.seq_no = isn;
        hdr.tcp.data_offset = TCP_DATA_OFFSET_MSS;
        hdr.tcp.res = 0;
        hdr.tcp.flags = TCP_SYN | TCP_ACK;
        hdr.tcp.window = offer_window;
        hdr.tcp.urgent_ptr = 0;

        hdr.tcp_mss.setValid();
        hdr.tcp_mss.kind = TCP_OPT_MSS;
        hdr.tcp_mss.len = TCP_OPT_MSS_LEN;
        hdr.tcp_mss.mss = offer_mss;
        hdr.tcp_ts.setInvalid();
        hdr.tcp_syn_opts.setInvalid();
        hdr.tcp_syn_data.setInvalid();

        meta.out_port = (bit<32>)meta.in_port;
        meta.syn_cookie = true;
        syn_cookies_sent.count(0);
    }

    apply {
        /* Only a plain SYN opens: with ACK, RST or FIN it is not one to answer. */
        if ((hdr.tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != TCP_SYN
                || meta.reinjected) {
            return;
        }
        /* Data after the options (TCP Fast Open) that the parser did not take: PNA cannot
         * cut it off the SYN-ACK. (Nested: p4c-dpdk cannot negate isValid() inside &&.) */
        if (hdr.ipv4.total_len != IPV4_HDR_BYTES + (((bit<16>)hdr.tcp.data_offset) << 2)) {
            if (!hdr.tcp_syn_data.isValid()) {
                return;
            }
        }
        if (syn_cookie_listeners.apply().hit) {
            sip_init_and_local_ip();
            SIP_COMPRESS_CALLS
            sip_peer_ip();
            SIP_COMPRESS_CALLS
            sip_ports();
            SIP_COMPRESS_CALLS
            sip_peer_isn();
            SIP_COMPRESS_CALLS
            sip_epoch();
            SIP_COMPRESS_CALLS
            sip_length();
            SIP_COMPRESS_CALLS
            sip_finalize();
            SIP_ROUND_CALLS
            SIP_ROUND_CALLS
            SIP_ROUND_CALLS
            SIP_ROUND_CALLS
            bit<16> peer_mss = hdr.tcp_mss.isValid() ? hdr.tcp_mss.mss : COOKIE_MSS_0;
            bit<32> tag = meta.sip.v1 ^ meta.sip.v3;
            become_syn_ack(key_epoch[4:0] ++ cookie_mss_index(peer_mss) ++ tag[24:0]);
        }
    }
}
