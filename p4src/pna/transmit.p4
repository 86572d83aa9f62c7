/* p4tas PNA: as v1model/transmit.p4, except for the TCP checksum over the payload: PNA on DPDK
 * sums header fields only, so the host puts the payload's 16-bit one's-complement sum in the
 * TX_DATA header's `window` field (unused by TX_DATA otherwise; see ComputeChecksums), and the
 * frame's length cannot be checked against `length` (PNA on DPDK has no packet length).
 * p4tas: TX_DATA from the host becomes a segment on the wire. The host sends only
 * payload; the NIC owns the headers: addresses from the flow's static state, ack and window
 * from the receive state, timestamps from its own clock. The sequence number is the TX
 * stream position the host gives (aux) plus tx_start_seq, so a go-back-N resend needs no
 * extra message and a frame still queued from before a rewind cannot be sent under the
 * wrong sequence; snd_nxt keeps the highest sequence sent (what ACKs are checked against).
 * With NIC_HOST_FLAG_FIN the segment also carries our FIN, after its payload (which may be
 * empty): the FIN takes the sequence number after the data, and the ACKs we generate from
 * then on carry seq = snd_nxt past it, as the peer expects after a half-close. Every segment
 * carries ECE while the flow owes the peer one (RFC 3168 6.1.3, ecn_echo.p4), and tells
 * RttProbeStart whether it sent new data or resent old (tx_new_data, tx_resend). */

control Transmit(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    AdvertisedWindow() adv_window;
    TxRateLimit() rate_limit;

    action build_segment(bit<16> tcp_hdr_len, bit<8> tcp_flags) {
        hdr.ethernet.dst_addr = meta.flow.peer_mac;
        hdr.ethernet.src_addr = meta.flow.local_mac;
        hdr.ethernet.ether_type = ETHERTYPE_IPV4;

        hdr.ipv4.setValid();
        hdr.ipv4.version = 4;
        hdr.ipv4.ihl = 5;
        hdr.ipv4.dscp = 0;
        hdr.ipv4.ecn = 0;
        hdr.ipv4.total_len = IPV4_HDR_BYTES + tcp_hdr_len + hdr.nic_host.length;
        hdr.ipv4.identification = 0;
        hdr.ipv4.flags = IPV4_FLAGS_DF;
        hdr.ipv4.frag_offset = 0;
        hdr.ipv4.ttl = ACK_TTL;
        hdr.ipv4.protocol = IP_PROTO_TCP;
        hdr.ipv4.src_addr = meta.flow.local_ip;
        hdr.ipv4.dst_addr = meta.flow.peer_ip;

        hdr.tcp.setValid();
        hdr.tcp.src_port = meta.flow.local_port;
        hdr.tcp.dst_port = meta.flow.peer_port;
        hdr.tcp.seq_no = meta.flow.tx_start_seq + hdr.nic_host.aux;
        hdr.tcp.ack_no = meta.dyn.rcv_nxt;
        hdr.tcp.data_offset = (bit<4>)(tcp_hdr_len >> 2);
        hdr.tcp.res = 0;
        hdr.tcp.flags = tcp_flags;
        hdr.tcp.window = meta.adv_window;
        hdr.tcp.checksum = 0;
        hdr.tcp.urgent_ptr = 0;

        meta.l4_len = tcp_hdr_len + hdr.nic_host.length;
        meta.out_port = (bit<32>)meta.flow.wire_port;
        meta.tx_build = true;
    }

    action add_timestamps() {
        hdr.tcp_ts.setValid();
        hdr.tcp_ts.nop1 = TCP_OPT_NOP;
        hdr.tcp_ts.nop2 = TCP_OPT_NOP;
        hdr.tcp_ts.kind = TCP_OPT_TIMESTAMPS;
        hdr.tcp_ts.len = TCP_OPT_TIMESTAMPS_LEN;
        hdr.tcp_ts.tsval = (bit<32>)(meta.now_us >> TS_TICK_SHIFT);
        hdr.tcp_ts.tsecr = meta.dyn.ts_recent;
    }

    action remind_host() {
        hdr.nic_host.opcode = NIC_HOST_OP_TX_ACKED;
        hdr.nic_host.flags = 0;
        if (meta.dyn.fin_sent == 1 && meta.dyn.snd_una == meta.dyn.snd_nxt) {
            hdr.nic_host.flags = NIC_HOST_FLAG_FIN;   /* snd_una is past our FIN */
        }
        hdr.nic_host.offset = meta.dyn.snd_una;
        hdr.nic_host.length = 0;
        hdr.nic_host.window = meta.dyn.peer_window;
        hdr.nic_host.count = 0;
        hdr.nic_host.aux = 0;
        meta.out_port = (bit<32>)HOST_PORT;
        meta.to_host = true;
        meta.drop_reason = DROP_OLD_DATA;
    }

    apply {
        bit<8> ack_flags = meta.dyn.ece_echo == 1 ? TCP_ACK | TCP_ECE : TCP_ACK;
        if (hdr.nic_host.opcode == NIC_HOST_OP_RX_CONSUMED) {
            /* A window update (ReturnRxSpace decided): a pure ACK at snd_nxt. */
            hdr.nic_host.length = 0;
            adv_window.apply(meta);
            if (meta.flow.timestamps != 0) {
                build_segment(TCP_HDR_BYTES + TCP_TS_OPT_BYTES, ack_flags);
                add_timestamps();
            } else {
                build_segment(TCP_HDR_BYTES, ack_flags);
            }
            hdr.tcp.seq_no = meta.dyn.snd_nxt;
            meta.tx_payload_sum = 0;
            hdr.nic_host.setInvalid();
            return;
        }
        bool fin = (hdr.nic_host.flags & NIC_HOST_FLAG_FIN) != 0;
        /* An if, not `fin ? 32w1 : 32w0`: p4c-dpdk turns that into a subtraction from a
         * bool and rejects it. */
        bit<32> fin_len = 0;
        if (fin) {
            fin_len = 1;
        }
        if (hdr.nic_host.gen != meta.flow.gen) {
            meta.drop_reason = DROP_STALE_HOST_MESSAGE;
        } else if (hdr.nic_host.length == 0 && !fin) {
            /* Nothing to send. (v1model also punts a frame whose payload is not exactly
             * `length` bytes; PNA on DPDK has no packet length to compare with.) */
            meta.punt_reason = REASON_BAD_HOST_MESSAGE;
        } else if ((hdr.nic_host.flags & NIC_HOST_FLAG_PROBE) == 0
                   && meta.flow.tx_start_seq + hdr.nic_host.aux + (bit<32>)hdr.nic_host.length
                      + fin_len - meta.dyn.snd_una - 1 >= 0x7FFFFFFF) {
            /* Ends at or below snd_una: a resend of data already acknowledged, so the host
             * missed a TX_ACKED (bmv2 dropped it). Remind it of snd_una instead. */
            remind_host();
        } else {
            rate_limit.apply(hdr, meta);
        }
        if (meta.punt_reason == 0 && meta.drop_reason == 0) {
            if ((hdr.nic_host.flags & NIC_HOST_FLAG_RTO) != 0) {
                meta.dyn.recover = meta.dyn.snd_nxt;   /* see NIC_HOST_FLAG_RTO */
            }
            adv_window.apply(meta);
            bit<8> tcp_flags = ack_flags;
            if ((hdr.nic_host.flags & NIC_HOST_FLAG_PSH) != 0) {
                tcp_flags = tcp_flags | TCP_PSH;
            }
            if (fin) {
                tcp_flags = tcp_flags | TCP_FIN;
                meta.dyn.fin_sent = 1;
            }
            if ((hdr.nic_host.flags & NIC_HOST_FLAG_CWR) != 0) {
                tcp_flags = tcp_flags | TCP_CWR;
            }
            if (meta.flow.timestamps != 0) {
                build_segment(TCP_HDR_BYTES + TCP_TS_OPT_BYTES, tcp_flags);
                add_timestamps();
            } else {
                build_segment(TCP_HDR_BYTES, tcp_flags);
            }
            /* snd_nxt = max(snd_nxt, end of this segment) in wrapping sequence space; a
             * resend below snd_una (acknowledged meanwhile) moves nothing. */
            bit<32> end = hdr.tcp.seq_no + (bit<32>)hdr.nic_host.length + fin_len;
            bit<32> end_ahead = end - meta.dyn.snd_una;
            bool beyond_snd_nxt = false;   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
            if (end_ahead < 0x80000000) {
                if (end_ahead > meta.dyn.snd_nxt - meta.dyn.snd_una) {
                    beyond_snd_nxt = true;
                }
            }
            if (beyond_snd_nxt) {
                meta.dyn.snd_nxt = end;
                meta.tx_new_data = hdr.nic_host.length != 0;
                /* New data is ECN-capable once negotiated; retransmissions, pure ACKs, a FIN
                 * alone and window probes are not (RFC 3168 6.1.4-6.1.6). */
                if (meta.flow.ecn != 0 && hdr.nic_host.length != 0) {
                    hdr.ipv4.ecn = ECN_ECT0;
                }
            } else if (hdr.nic_host.length != 0 && (hdr.nic_host.flags & NIC_HOST_FLAG_PROBE) == 0) {
                meta.tx_resend = true;
            }
            /* The host's sum of the payload, for the TCP checksum (ComputeChecksums). */
            meta.tx_payload_sum = hdr.nic_host.window;
            hdr.nic_host.setInvalid();
        }
    }
}
