/* p4tas: header and metadata definitions shared by every architecture. */
#ifndef P4TAS_HEADERS_P4
#define P4TAS_HEADERS_P4

#include "constants.p4"

/* Controller headers: P4Runtime PacketIn/PacketOut metadata on the CPU port. */
@controller_header("packet_in")
header packet_in_h {
    port_t ingress_port;
    bit<7> _pad;
    bit<8> reason;          /* REASON_* */
    /* The switch clock in TSval ticks (see TS_TICK_SHIFT): the slow path stamps the segments
     * it sends (SYN-ACK, FIN) from this clock, so a peer never sees our TSval go backwards
     * between them and the ACKs the data plane generates (PAWS would drop those). */
    bit<32> tsval;
}

/* reinject = 0: the frame leaves on egress_port as it is. reinject = 1: the frame is a wire
 * segment handed back to the fast path as if it had just arrived on wire port egress_port
 * (the slow path held it while the segment's flow was being installed); the fast path
 * handles it like any other, except that the slow path sends the ACK. */
@controller_header("packet_out")
header packet_out_h {
    port_t egress_port;
    bit<1> reinject;
    bit<6> _pad;
}

header ethernet_h {
    bit<48> dst_addr;
    bit<48> src_addr;
    bit<16> ether_type;
}

header ipv4_h {
    bit<4> version;
    bit<4> ihl;
    bit<6> dscp;
    bit<2> ecn;
    bit<16> total_len;
    bit<16> identification;
    bit<3> flags;            /* reserved, DF, MF */
    bit<13> frag_offset;
    bit<8> ttl;
    bit<8> protocol;
    bit<16> hdr_checksum;
    bit<32> src_addr;
    bit<32> dst_addr;
}

header tcp_h {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4> data_offset;
    bit<4> res;
    bit<8> flags;            /* TCP_* */
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

/* The only option layout the fast path takes: NOP, NOP, Timestamps (Linux's). */
header tcp_ts_h {
    bit<8> nop1;
    bit<8> nop2;
    bit<8> kind;
    bit<8> len;
    bit<32> tsval;
    bit<32> tsecr;
}

/* SACK (RFC 2018) after the timestamps, as Linux lays it out: NOP, NOP, kind 5, length
 * 2 + 8n, then n blocks. The first block travels in this header; blocks 2 and 3, when
 * present, in tcp_sack_block_h each (data offset 11, 13, 15 for n = 1, 2, 3). */
header tcp_sack_h {
    bit<8> nop1;
    bit<8> nop2;
    bit<8> kind;
    bit<8> len;
    bit<32> left;            /* first sequence number of the block */
    bit<32> right;           /* one past its last */
}

header tcp_sack_block_h {
    bit<32> left;
    bit<32> right;
}

/* NIC<->host channel header, after an Ethernet header with ETHERTYPE_NIC_HOST.
 * 24 bytes, big-endian; nic_contract/nic_host_header.py is the Python codec of the same layout.
 *   byte  0     opcode    NIC_HOST_OP_*
 *   byte  1     flags     NIC_HOST_FLAG_*
 *   bytes 2-3   gen       generation of the flow the message is about
 *   bytes 4-7   flow_id
 *   bytes 8-11  offset    ring offset of the first payload byte (RX_DATA, TX_DATA), or the
 *                         cumulative ACK sequence number (TX_ACKED, RETRANSMIT)
 *   bytes 12-13 length    payload bytes that follow this header (RX_DATA, TX_DATA)
 *   bytes 14-15 window    the peer's raw (unscaled) TCP window (TX_ACKED, RETRANSMIT); the
 *                         payload's 16-bit one's-complement sum (TX_DATA: for a target whose
 *                         checksum covers header fields only, PNA on DPDK; v1model ignores it)
 *   bytes 16-19 count     bytes the application consumed (RX_CONSUMED), bytes newly
 *                         acknowledged (TX_ACKED, RX_DATA)
 *   bytes 20-23 aux       RTT sample in microseconds, 0 = none (TX_ACKED, RX_DATA), or with flag
 *                         MERGED the out-of-order bytes now readable (RX_DATA); the TX stream
 *                         position of the first payload byte, mod 2^32 (TX_DATA: the
 *                         segment's sequence is tx_start_seq + aux, so a go-back-N resend
 *                         carries its own sequence); the TX stream position to resume
 *                         from (RETRANSMIT); SACK: `count` and `aux` are the first SACK
 *                         block's left and right edge as TX stream positions, mod 2^32
 * Payload (RX_DATA) follows; trust `length`, not the frame size (Ethernet may pad). */
header nic_host_h {
    bit<8> opcode;
    bit<8> flags;
    flow_gen_t gen;
    flow_id_t flow_id;
    bit<32> offset;
    bit<16> length;
    bit<16> window;
    bit<32> count;
    bit<32> aux;
}

/* A SYN's MSS option, parsed when it is the first option (the SYN cookie keeps its value). */
header tcp_mss_h {
    bit<8> kind;
    bit<8> len;
    bit<16> mss;
}

struct headers_t {
    packet_out_h packet_out;
    packet_in_h packet_in;
    ethernet_h ethernet;
    nic_host_h nic_host;
    ipv4_h ipv4;
    tcp_h tcp;
    tcp_ts_h tcp_ts;
    tcp_mss_h tcp_mss;
    tcp_sack_h tcp_sack;
    tcp_sack_block_h tcp_sack_b2;
    tcp_sack_block_h tcp_sack_b3;
}

/* Field list preserved into the ACK clone (clone_preserving_field_list). */
#define FL_ACK 1

/* Static per-flow state from the flow_state table's action data. */
struct flow_static_t {
    flow_gen_t gen;
    bit<48> local_mac;
    bit<48> peer_mac;
    bit<32> local_ip;
    bit<32> peer_ip;
    bit<16> local_port;
    bit<16> peer_port;
    port_t wire_port;        /* where the connection's segments leave */
    bit<32> rx_ring_size;    /* bytes, a power of two */
    bit<32> rx_start_seq;    /* peer's ISN + 1: maps to RX ring offset 0 */
    bit<32> tx_start_seq;    /* our ISN + 1: first send sequence */
    bit<8> rx_window_shift;  /* our window scale */
    bit<8> timestamps;       /* nonzero: the connection negotiated timestamps */
    bit<16> peer_window;     /* the peer's raw window when the connection was set up */
    bit<8> ecn;              /* nonzero: the connection negotiated ECN (RFC 3168) */
    bit<8> peer_window_shift;  /* the peer's window scale (0: none): bounds old ACKs */
    bit<8> sack;             /* nonzero: the connection negotiated SACK (RFC 2018) */
}

/* Dynamic per-flow state (flow_registers.p4), loaded once per packet and stored once. */
struct flow_dyn_t {
    flow_gen_t gen;
    bit<32> rcv_nxt;         /* next sequence expected from the peer */
    bit<32> rx_free;         /* free bytes in the RX ring */
    bit<32> snd_nxt;         /* our next sequence */
    bit<32> snd_una;         /* oldest sequence the peer has not acknowledged */
    bit<32> ts_recent;       /* the peer's latest TSval, echoed in our segments */
    bit<16> peer_window;     /* the peer's raw (unscaled) window */
    bit<8> dupacks;          /* consecutive duplicate ACKs */
    bit<32> recover;         /* RFC 6582: no new fast retransmit until snd_una passes it */
    bit<1> ooo_active;       /* an out-of-order interval exists (receive.p4 reads it then) */
    bit<1> fin_sent;         /* our FIN went out: it is snd_nxt - 1 (transmit.p4) */
    bit<1> ts_recent_valid;  /* ts_recent holds a TSval of this connection (timestamps.p4) */
    bit<13> ts_recent_epoch; /* when ts_recent was set, in TS_EPOCH_SHIFT epochs */
    bit<1> ece_echo;         /* a CE mark awaits the peer's CWR: ACKs carry ECE (ecn_echo.p4) */
    bit<1> rtt_pending;      /* a segment is being timed (rtt_probe.p4) */
}

/* HalfSipHash's state (syn_cookie.p4). */
struct sip_state_t {
    bit<32> v0;
    bit<32> v1;
    bit<32> v2;
    bit<32> v3;
}

struct metadata_t {
    /* What the ACK clone needs: computed in ingress, applied in egress. */
    @field_list(FL_ACK) bit<32> ack_seq;
    @field_list(FL_ACK) bit<32> ack_ack;
    @field_list(FL_ACK) bit<16> ack_window;
    @field_list(FL_ACK) bit<8> ack_flags;
    @field_list(FL_ACK) bit<32> ack_tsval;
    @field_list(FL_ACK) bit<32> ack_tsecr;
    /* The SACK block the ACK reports (our out-of-order interval); none if left == right. */
    @field_list(FL_ACK) bit<32> ack_sack_left;
    @field_list(FL_ACK) bit<32> ack_sack_right;

    bit<8> punt_reason;      /* REASON_*, 0 = none */
    bit<8> drop_reason;      /* DROP_*, 0 = none */
    bit<16> l4_len;          /* IPv4 total length minus the IPv4 header */
    bit<16> payload_len;
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
    bool fast_retransmit;    /* this duplicate ACK starts a fast retransmit */
    bool dupack;             /* this segment is a duplicate ACK (RFC 5681) */
    bool fin_acked;          /* this ACK covered our FIN (NIC_HOST_FLAG_FIN to the host) */
    bool host_busy;          /* the host port's queue is backed up (host_backpressure.p4) */
    bool seq_acceptable;     /* the segment overlaps the receive window (segment_check.p4) */
    bool ack_unacceptable;   /* its ACK is outside [snd_una - max window, snd_nxt]: discard it
                              * (segment_check.p4) */
    bool window_reopened;    /* RX_CONSUMED reopened a closed window: send a window update */
    bit<32> ooo_merged;      /* bytes of the out-of-order interval this segment made readable */
    bool paws_rejected;      /* TSval older than TS.Recent: drop, answer with an ACK (timestamps.p4) */
    bool tx_new_data;        /* TX_DATA sent payload beyond snd_nxt (transmit.p4) */
    bool tx_resend;          /* TX_DATA resent payload below snd_nxt (transmit.p4) */

    bool delivered;          /* payload went to the host as RX_DATA */
    bool to_host;            /* the packet itself became a host-port frame */
    port_t in_port;          /* the port the packet arrived on (a reinjected one's wire port) */
    bool reinjected;         /* a wire segment the slow path handed back (packet_out_h) */
    bool ack_rewrite;        /* egress turned this packet into an ACK: fix its checksums */
    bool tx_build;           /* a TX_DATA became a wire segment: fix its checksums */
    bool syn_cookie;         /* a SYN became our SYN-ACK with a cookie: fix its checksums */
    sip_state_t sip;
}

#endif
