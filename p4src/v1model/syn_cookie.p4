/* p4tas v1model: SYN cookies in the data plane (RFC 4987 3.6; AccelTCP offloads the same).
 * The slow path answers SYNs as long as the punt meter lets them through (full options). A
 * SYN beyond that budget, to an address and port the slow path listens on, is answered here:
 * the SYN itself becomes our SYN-ACK, its ISN a cookie, and nothing is kept; the peer's ACK
 * returns the cookie to the slow path (an unknown flow), which checks it and opens the
 * connection. So a SYN flood costs the slow path no more than its budget, and legitimate SYNs
 * beyond it are answered instead of dropped. Cookie format and key: constants.p4 and
 * nic_contract/syn_cookie.py (the slow path's twin of the hash below). */

/* HalfSipHash-2-4 (32-bit tag) on 32-bit words: add, rotate, xor, which a NIC pipeline does
 * at line rate. A CRC, the hash targets offer natively, is affine: one observed cookie would
 * give the key away. The state lives in metadata (meta.sip), not in locals: p4c propagates
 * local copies into expressions, and over sixteen rounds those grow exponentially. */
#define SIP_ROUND(s) \
    s.v0 = s.v0 + s.v1; \
    s.v1 = ((s.v1 << 5) | (s.v1 >> 27)) ^ s.v0; \
    s.v0 = (s.v0 << 16) | (s.v0 >> 16); \
    s.v2 = s.v2 + s.v3; \
    s.v3 = ((s.v3 << 8) | (s.v3 >> 24)) ^ s.v2; \
    s.v0 = s.v0 + s.v3; \
    s.v3 = ((s.v3 << 7) | (s.v3 >> 25)) ^ s.v0; \
    s.v2 = s.v2 + s.v1; \
    s.v1 = ((s.v1 << 13) | (s.v1 >> 19)) ^ s.v2; \
    s.v2 = (s.v2 << 16) | (s.v2 >> 16);

/* One message word (the reference reads words little-endian; ours are defined as words). */
#define SIP_COMPRESS(s, m) \
    s.v3 = s.v3 ^ (m); \
    SIP_ROUND(s) \
    SIP_ROUND(s) \
    s.v0 = s.v0 ^ (m);

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

control SynCookie(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    counter(1, CounterType.packets) syn_cookies_sent;

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

    /* HalfSipHash of the connection and the epoch into meta.sip (the tag is v1 ^ v3), one
     * message word per action: within an action p4c propagates each assignment into the next
     * expression, and over more than two rounds those grow exponentially (and a hardware
     * target spreads the rounds over stages anyway). */
    action sip_init_and_local_ip() {
        meta.sip.v0 = key0;
        meta.sip.v1 = key1;
        meta.sip.v2 = SIPHASH_V2_INIT ^ key0;
        meta.sip.v3 = SIPHASH_V3_INIT ^ key1;
        SIP_COMPRESS(meta.sip, hdr.ipv4.dst_addr)
    }
    action sip_peer_ip() { SIP_COMPRESS(meta.sip, hdr.ipv4.src_addr) }
    action sip_ports() { SIP_COMPRESS(meta.sip, hdr.tcp.dst_port ++ hdr.tcp.src_port) }
    action sip_peer_isn() { SIP_COMPRESS(meta.sip, hdr.tcp.seq_no) }
    action sip_epoch() { SIP_COMPRESS(meta.sip, (bit<32>)key_epoch) }
    action sip_length() {
        SIP_COMPRESS(meta.sip, COOKIE_MESSAGE_BYTES << 24)   /* no tail: the length alone */
        meta.sip.v2 = meta.sip.v2 ^ 0xFF;
    }
    action sip_two_rounds() {
        SIP_ROUND(meta.sip)
        SIP_ROUND(meta.sip)
    }

    /* The SYN turns into our SYN-ACK in place: addresses and ports swapped, our MSS as the
     * only option (no window scaling, timestamps, SACK or ECN: the cookie has no room for the
     * peer's, as with the slow path's cookies), everything after it cut. */
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
        truncate((bit<32>)(ETH_HDR_BYTES + IPV4_HDR_BYTES + TCP_HDR_BYTES + TCP_MSS_OPT_BYTES));

        sm.egress_spec = meta.in_port;
        meta.syn_cookie = true;
        syn_cookies_sent.count(0);
    }

    apply {
        /* Only a plain SYN opens: with ACK, RST or FIN it is not one to answer. */
        if ((hdr.tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN)) != TCP_SYN
                || meta.reinjected) {
            return;
        }
        if (syn_cookie_listeners.apply().hit) {
            sip_init_and_local_ip();
            sip_peer_ip();
            sip_ports();
            sip_peer_isn();
            sip_epoch();
            sip_length();
            sip_two_rounds();
            sip_two_rounds();
            bit<16> peer_mss = hdr.tcp_mss.isValid() ? hdr.tcp_mss.mss : COOKIE_MSS_0;
            bit<32> tag = meta.sip.v1 ^ meta.sip.v3;
            become_syn_ack(key_epoch[4:0] ++ cookie_mss_index(peer_mss) ++ tag[24:0]);
        }
    }
}
