/* p4tas v1model: the receive fast path for data segments of known flows.
 * In order and fitting the RX ring: deliver to the host port as RX_DATA and ACK. Out of order
 * (TAS 3.1): one interval per flow is kept; a segment that starts it, or extends it at either
 * end, is written to its place in the RX ring (RX_DATA flagged OOO: placed, not readable),
 * and when the in-order segment reaches the interval, its RX_DATA (flagged MERGED) makes the
 * whole interval readable at once. A segment that starts below rcv_nxt and ends beyond it (a
 * peer resending with other segmentation) is delivered too: flagged TRIM, at the ring offset
 * of its first byte, and the host skips the part it holds already (the NIC cannot cut
 * payload). Anything else with payload is dropped and answered with an ACK for what we
 * expect (which the peer counts as a duplicate ACK), as are old data and data that does not
 * fit the ring (the ACK's window tells the peer), and zero-window probes. So is a segment
 * older than TS.Recent (PAWS, timestamps.p4). Every ACK echoes TS.Recent (RFC 7323 4.3) and
 * carries ECE while the flow owes the peer one (ecn_echo.p4). */

/* The out-of-order interval, with the generation it belongs to (a flow id's next connection
 * must not inherit it): [79:64] generation  [63:32] start sequence  [31:0] length. */
register<bit<80>>(MAX_FLOWS) flow_ooo_state;

control Receive(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    AdvertisedWindow() adv_window;
    /* RFC 5961 7: challenge ACKs are rate-limited (packets/s, one bucket for the whole
     * device, set by the slow path), so that forged segments cannot make us flood the real
     * peers. An unconfigured meter passes everything. */
    meter(1, MeterType.packets) challenge_ack_rate;

    /* Payload at `seq` to the host port as RX_DATA at its RX ring offset. */
    action to_host(bit<8> flags, bit<32> seq) {
        hdr.nic_host.setValid();
        hdr.nic_host.opcode = NIC_HOST_OP_RX_DATA;
        hdr.nic_host.flags = flags;
        hdr.nic_host.gen = meta.flow.gen;
        hdr.nic_host.flow_id = meta.flow_id;
        /* Ring sizes are powers of two, so the ring offset is a mask, not a modulo. */
        hdr.nic_host.offset = (seq - meta.flow.rx_start_seq) & (meta.flow.rx_ring_size - 1);
        hdr.nic_host.length = meta.payload_len;
        hdr.nic_host.window = 0;
        hdr.nic_host.count = 0;
        hdr.nic_host.aux = 0;
        hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST;
        hdr.ipv4.setInvalid();
        hdr.tcp.setInvalid();
        hdr.tcp_ts.setInvalid();
        hdr.tcp_sack.setInvalid();
        hdr.tcp_sack_b2.setInvalid();
        hdr.tcp_sack_b3.setInvalid();
        sm.egress_spec = HOST_PORT;
        meta.delivered = true;
        meta.to_host = true;
    }

    /* The segment at `seq` whose last `fresh` bytes are the next in order. */
    action deliver_in_order(bit<8> flags, bit<32> seq, bit<32> fresh) {
        to_host(flags, seq);
        meta.dyn.rcv_nxt = meta.dyn.rcv_nxt + fresh;
        meta.dyn.rx_free = meta.dyn.rx_free - fresh;
    }

    /* The ACK is an ingress-to-egress clone rewritten by AckEgress; these fields survive. */
    action send_ack(bit<8> flags) {
        meta.ack_window = meta.adv_window;
        meta.ack_seq = meta.dyn.snd_nxt;
        meta.ack_ack = meta.dyn.rcv_nxt;
        meta.ack_flags = flags;
        meta.ack_tsval = (bit<32>)(sm.ingress_global_timestamp >> TS_TICK_SHIFT);
        meta.ack_tsecr = meta.dyn.ts_recent;
        clone_preserving_field_list(CloneType.I2E,
                                    ACK_SESSION_BASE + (bit<32>)meta.in_port, FL_ACK);
    }

    apply {
        bit<8> ack_flags = meta.dyn.ece_echo == 1 ? TCP_ACK | TCP_ECE : TCP_ACK;
        if (meta.paws_rejected || meta.ack_unacceptable) {
            /* RFC 7323 5.3 R1: a segment older than TS.Recent is dropped and acknowledged.
             * RFC 5961 5.2: an ACK of data never sent (SegmentCheck) discards the segment,
             * data and all; a challenge ACK tells a real peer where we are. Both answers
             * share one rate limit, so old or forged segments cannot make us flood. */
            meta.drop_reason = meta.paws_rejected ? DROP_PAWS : DROP_BAD_ACK;
            bit<2> color;
            challenge_ack_rate.execute_meter(32w0, color);
            if (!meta.reinjected && color != METER_RED) {
                adv_window.apply(meta);
                send_ack(ack_flags);
            }
        } else if (meta.payload_len == 0) {
            meta.drop_reason = DROP_PURE_ACK;
            /* Below rcv_nxt: a zero-window probe (Linux sends rcv_nxt - 1, no data). It must
             * be answered (RFC 9293 3.10.7.4), or the peer never learns that the window
             * reopened. */
            if (meta.dyn.rcv_nxt - hdr.tcp.seq_no - 1 < 0x7FFFFFFF && !meta.reinjected) {
                adv_window.apply(meta);
                send_ack(ack_flags);
            }
        } else {
            bool ce = hdr.ipv4.ecn == ECN_CE;
            bit<8> flags = 0;
            if ((hdr.tcp.flags & TCP_PSH) != 0) {
                flags = flags | NIC_HOST_FLAG_PSH;
            }
            if (ce) {
                flags = flags | NIC_HOST_FLAG_CE;
            }
            if (meta.dyn.ece_echo == 1) {
                flags = flags | NIC_HOST_FLAG_ECE_ECHO;
            }
            bit<32> seq = hdr.tcp.seq_no;
            bit<32> len = (bit<32>)meta.payload_len;
            /* Sequence space wraps: "ahead" means a difference below 2^31. */
            bit<32> ahead = seq - meta.dyn.rcv_nxt;
            bit<32> behind = meta.dyn.rcv_nxt - seq;

            /* The interval's register is read only when one exists or may start: an in-order
             * segment of a flow without one (the common case) costs no access. */
            bit<32> ooo_start = 0;
            bit<32> ooo_len = 0;
            if (meta.dyn.ooo_active == 1 || ahead != 0) {
                bit<80> ooo;
                flow_ooo_state.read(ooo, meta.flow_id);
                if (ooo[79:64] == meta.flow.gen) {
                    ooo_start = ooo[63:32];
                    ooo_len = ooo[31:0];
                }
            }
            bool ooo_changed = false;
            /* Starts below rcv_nxt, ends beyond it: its last `len - behind` bytes are in
             * order. Only if it ends at or before the out-of-order interval: one reaching
             * into the interval stays dropped as old data (and ACKed), so the host never
             * writes over placed bytes; the peer resends from rcv_nxt. */
            bool overlap = ahead >= 0x80000000 && behind < len
                           && (ooo_len == 0 || ooo_start - (seq + len) < 0x80000000);
            bool in_order = ahead == 0 || overlap;
            bit<32> fresh = overlap ? len - behind : len;

            if (in_order && meta.host_busy) {
                meta.drop_reason = DROP_HOST_BUSY;
            } else if (in_order && fresh <= meta.dyn.rx_free) {
                deliver_in_order(overlap ? flags | NIC_HOST_FLAG_TRIM : flags, seq, fresh);
                /* Reached (or overran) the interval: all of it is in order now. */
                if (ooo_len != 0 && meta.dyn.rcv_nxt - ooo_start < 0x80000000) {
                    bit<32> rest = ooo_start + ooo_len - meta.dyn.rcv_nxt;
                    if (rest >= 0x80000000) {
                        rest = 0;   /* this segment covered the whole interval */
                    }
                    meta.dyn.rcv_nxt = meta.dyn.rcv_nxt + rest;
                    meta.dyn.rx_free = meta.dyn.rx_free - rest;
                    meta.ooo_merged = rest;
                    ooo_len = 0;
                    ooo_changed = true;
                }
            } else if (in_order) {
                meta.drop_reason = DROP_NO_RX_SPACE;
            } else if (ahead < 0x80000000 && !meta.host_busy && ahead + len <= meta.dyn.rx_free
                       && (ooo_len == 0 || seq == ooo_start + ooo_len || seq + len == ooo_start)) {
                if (ooo_len == 0 || seq + len == ooo_start) {
                    ooo_start = seq;   /* a new interval, or one that grows at its front */
                }
                ooo_len = ooo_len + len;
                ooo_changed = true;
                to_host(flags | NIC_HOST_FLAG_OOO, seq);
            } else if (ahead < 0x80000000) {
                meta.drop_reason = DROP_OUT_OF_ORDER;
            } else {
                meta.drop_reason = DROP_OLD_DATA;
            }
            if (ooo_changed) {
                flow_ooo_state.write(meta.flow_id, meta.flow.gen ++ ooo_start ++ ooo_len);
                meta.dyn.ooo_active = ooo_len == 0 ? 1w0 : 1w1;
            }
            /* RFC 2018: a peer that negotiated SACK hears of the interval in every ACK (one
             * interval, one block, so it also holds the most recent segment when that one
             * was placed); AckEgress adds the option. */
            if (meta.flow.sack != 0 && ooo_len != 0) {
                meta.ack_sack_left = ooo_start;
                meta.ack_sack_right = ooo_start + ooo_len;
            }
            /* Every segment with payload is answered, after any delivery above. A reinjected
             * segment's original starts with the controller header, which the clone would
             * carry: the slow path that handed it back sends the ACK instead. */
            adv_window.apply(meta);
            if (!meta.reinjected) {
                send_ack(ack_flags);
            }
        }
    }
}
