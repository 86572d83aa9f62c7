/* p4tas PNA: the headers and metadata of the PNA program. The header types are the shared ones
 * (shared/headers.p4); the structs differ from v1model's where the architecture does:
 *  - tcp_syn_opts: a SYN's options after the MSS option, parsed so that a SYN-ACK made from the
 *    SYN (syn_cookie.p4) can drop them: a PNA control cannot truncate a packet.
 *  - tcp_syn_data: the payload of a SYN (TCP Fast Open), parsed so that the SYN-ACK made from
 *    it can drop it, for the same reason;
 *  - arp: the fixed part of an ARP header, so that the byte counters can tell an ARP frame's
 *    length (PNA on DPDK has no packet length, packet_io.p4);
 *  - no @field_list ack_* fields: the ACK is built in a second pass from the flow's state
 *    (ack_loopback.p4), not in egress from fields preserved into a clone;
 *  - no host_busy: bmv2's host-port queue watch does not apply (see p4tas.p4);
 *  - what PNA adds: the clock, the output port, what the ACK and the TX checksum need. */

/* The rest of a SYN's option area (up to 40 bytes). */
header tcp_syn_opts_h {
    varbit<320> bytes;
}

/* The payload of a SYN, up to SYN_DATA_MAX_BYTES (a 1500-byte frame carries 1460 at most). */
header tcp_syn_data_h {
    varbit<16376> bytes;
}

/* ARP's fixed part (RFC 826); the addresses that follow are 2 * (hlen + plen) bytes. */
header arp_h {
    bit<16> htype;
    bit<16> ptype;
    bit<8> hlen;
    bit<8> plen;
    bit<16> oper;
}

struct pna_headers_t {
    packet_out_h packet_out;
    packet_in_h packet_in;
    ethernet_h ethernet;
    arp_h arp;
    nic_host_h nic_host;
    ipv4_h ipv4;
    tcp_h tcp;
    tcp_ts_h tcp_ts;
    tcp_mss_h tcp_mss;
    tcp_syn_opts_h tcp_syn_opts;
    tcp_syn_data_h tcp_syn_data;
    tcp_sack_h tcp_sack;
    tcp_sack_block_h tcp_sack_b2;
    tcp_sack_block_h tcp_sack_b3;
}

struct pna_metadata_t {
    bit<8> punt_reason;      /* REASON_*, 0 = none */
    bit<8> drop_reason;      /* DROP_*, 0 = none */
    bit<16> l4_len;          /* IPv4 total length minus the IPv4 header */
    bit<16> payload_len;
    bit<16> syn_data_len;    /* PNA: a SYN's payload (parser.p4) */
    bool flow_found;
    flow_id_t flow_id;
    flow_static_t flow;
    flow_dyn_t dyn;
    bool dyn_fresh;          /* the dynamic state was (re)initialized by this packet */
    bit<16> adv_window;      /* our receive window as advertised (scaled) */

    /* What this segment's ACK field told us, for the host (ack_processing.p4). */
    bit<32> acked_bytes;
    bool window_update;
    bit<32> rtt_sample;
    bool ack_ece;
    bool fast_retransmit;
    bool dupack;
    bool fin_acked;
    bool seq_acceptable;
    bool ack_unacceptable;
    bool window_reopened;
    bit<32> ooo_merged;
    bool paws_rejected;
    bool tx_new_data;
    bool tx_resend;

    bool delivered;          /* payload went to the host as RX_DATA */
    bool to_host;            /* the packet itself became a host-port frame */
    port_t in_port;          /* the port the packet arrived on (a reinjected one's wire port) */
    bool reinjected;
    bool ack_build;          /* pass 2 turned an ACK request into an ACK: fix its checksums */
    bool tx_build;           /* a TX_DATA became a wire segment: fix its checksums */
    bool syn_cookie;         /* a SYN became our SYN-ACK with a cookie: fix its checksums */
    sip_state_t sip;
    bit<32> sip_word;        /* the HalfSipHash message word being compressed (syn_cookie.p4) */

    /* ---- PNA only ---- */
    bit<64> now_us;          /* clock_us: the runner's microsecond clock (clock.p4) */
    bit<32> out_port;        /* where the packet leaves (output_port table, forwarding.p4) */
    bool ack_pass;           /* pass 2: an ACK request from ACK_LOOPBACK_PORT */
    bool ack_owed;           /* pass 1: the segment is answered with an ACK (receive.p4) */
    bool ack_with_sack;      /* ... which may report the out-of-order interval */
    bit<1> ack_ts;           /* the last segment owed an ACK carried timestamps (flow_gen_flags) */
    bit<16> tx_payload_sum;  /* TX_DATA: the payload's one's-complement sum from the host */
    bit<32> frame_bytes;     /* the frame's length as its headers tell (packet_io.p4 counters) */
    bit<32> packet_unit;     /* METER_PACKET_UNIT, the length packet meters are executed with */
}
