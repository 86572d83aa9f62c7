/* p4tas PNA: the receive fast path for data segments of known flows, as v1model/receive.p4
 * except for how the ACK leaves (and no host backpressure, see p4tas.p4).
 * In order and fitting the RX ring: deliver to the host port as RX_DATA and ACK. Out of order
 * (TAS 3.1): one interval per flow is kept; a segment that starts it, or extends it at either
 * end, is written to its place in the RX ring (RX_DATA flagged OOO: placed, not readable),
 * and when the in-order segment reaches the interval, its RX_DATA (flagged MERGED) makes the
 * whole interval readable at once. A segment that starts below rcv_nxt and ends beyond it is
 * delivered too, flagged TRIM. Anything else with payload is dropped and answered with an ACK
 * for what we expect, as are old data and data that does not fit the ring, and zero-window
 * probes; so is a segment older than TS.Recent (PAWS, timestamps.p4).
 * The ACK: PNA on DPDK has no egress and a mirror copy is the packet as it leaves, so
 * send_ack only marks the segment (meta.ack_owed); forwarding.p4 mirrors the packet's host
 * frame header to the loopback port and ack_loopback.p4 builds the ACK from the flow's state
 * in a second pass: seq snd_nxt, ack rcv_nxt, our window, TS.Recent (RFC 7323 4.3), ECE while
 * the flow owes the peer one (ecn_echo.p4) and the out-of-order interval as a SACK block. */

/* The out-of-order interval: [63:32] start sequence  [31:0] length. Read only while the
 * flow's ooo_active bit is set (flow_state_regs.p4), which a new generation clears, so unlike
 * v1model's flow_ooo_state it needs no generation of its own. */
Register<bit<64>, flow_id_t>(MAX_FLOWS) flow_ooo;

control Receive(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    AdvertisedWindow() adv_window;
    /* RFC 5961 7: challenge ACKs are rate-limited (packets/s, one bucket for the whole
     * device, set by the slow path), so that forged segments cannot make us flood the real
     * peers. An unconfigured meter passes everything. */
    Meter<bit<32>>(1, PNA_MeterType_t.PACKETS) challenge_ack_rate;
    /* The segment carried timestamps (taken before to_host invalidates its options). */
    bit<1> segment_ts = 0;

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
        meta.out_port = (bit<32>)HOST_PORT;
        meta.delivered = true;
        meta.to_host = true;
    }

    /* The segment at `seq` whose last `fresh` bytes are the next in order. */
    action deliver_in_order(bit<8> flags, bit<32> seq, bit<32> fresh) {
        to_host(flags, seq);
        meta.dyn.rcv_nxt = meta.dyn.rcv_nxt + fresh;
        meta.dyn.rx_free = meta.dyn.rx_free - fresh;
    }

    /* The segment is answered with an ACK (built in pass 2 from the state this packet leaves;
     * `with_sack`: it may report the out-of-order interval, as v1model's does for segments
     * with payload only). The ACK echoes timestamps when the segment carried them, as
     * v1model's (RFC 7323 3.2): pass 2 of an RX_DATA or notice copy finds that in the flow's
     * state (ack_ts, flow_gen_flags), the host's header having no bit to spare. */
    action send_ack(bool with_sack) {
        meta.ack_owed = true;
        meta.ack_with_sack = with_sack;
        meta.ack_ts = segment_ts;
    }

    apply {
        segment_ts = 0;
        if (hdr.tcp_ts.isValid()) {
            segment_ts = 1;
        }
        if (meta.paws_rejected || meta.ack_unacceptable) {
            /* RFC 7323 5.3 R1: a segment older than TS.Recent is dropped and acknowledged.
             * RFC 5961 5.2: an ACK of data never sent (SegmentCheck) discards the segment,
             * data and all; a challenge ACK tells a real peer where we are. Both answers
             * share one rate limit, so old or forged segments cannot make us flood. */
            meta.drop_reason = meta.paws_rejected ? DROP_PAWS : DROP_BAD_ACK;
            PNA_MeterColor_t color = challenge_ack_rate.dpdk_execute(32w0, meta.packet_unit);
            if (color != METER_RED && !meta.reinjected) {
                send_ack(false);
            }
        } else if (meta.payload_len == 0) {
            meta.drop_reason = DROP_PURE_ACK;
            /* Below rcv_nxt: a zero-window probe (Linux sends rcv_nxt - 1, no data). It must
             * be answered (RFC 9293 3.10.7.4), or the peer never learns that the window
             * reopened. */
            if (meta.dyn.rcv_nxt - hdr.tcp.seq_no - 1 < 0x7FFFFFFF) {   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
                if (!meta.reinjected) {
                    send_ack(false);
                }
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

            /* The interval's register is read only when one exists: an in-order segment of a
             * flow without one (the common case) costs no access. */
            bit<32> ooo_start = 0;
            bit<32> ooo_len = 0;
            if (meta.dyn.ooo_active == 1) {
                bit<64> ooo = flow_ooo.read(meta.flow_id);
                ooo_start = ooo[63:32];
                ooo_len = ooo[31:0];
            }
            bool ooo_changed = false;
            /* Starts below rcv_nxt, ends beyond it: its last `len - behind` bytes are in
             * order. Only if it ends at or before the out-of-order interval: one reaching
             * into the interval stays dropped as old data (and ACKed), so the host never
             * writes over placed bytes; the peer resends from rcv_nxt. */
            /* The conditions below are flags set in nested ifs: p4c-dpdk miscompiles < and >
             * inside && (p4c_dpdk_checks.py), and would propagate a boolean expression back. */
            bool ahead_of_rcv_nxt = false;
            if (ahead < 0x80000000) {
                ahead_of_rcv_nxt = true;
            }
            bool overlap = false;
            if (!ahead_of_rcv_nxt) {
                if (behind < len) {
                    if (ooo_len == 0 || ooo_start - (seq + len) < 0x80000000) {
                        overlap = true;
                    }
                }
            }
            bool in_order = overlap;
            if (ahead == 0) {
                in_order = true;
            }
            bit<32> fresh = overlap ? len - behind : len;

            if (in_order && fresh <= meta.dyn.rx_free) {
                deliver_in_order(overlap ? flags | NIC_HOST_FLAG_TRIM : flags, seq, fresh);
                /* Reached (or overran) the interval: all of it is in order now. */
                bool reached = false;   /* (nested: p4c-dpdk miscompiles < and > inside &&, p4c_dpdk_checks.py) */
                if (ooo_len != 0) {
                    if (meta.dyn.rcv_nxt - ooo_start < 0x80000000) {
                        reached = true;
                    }
                }
                if (reached) {
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
            } else if (ahead_of_rcv_nxt && ahead + len <= meta.dyn.rx_free
                       && (ooo_len == 0 || seq == ooo_start + ooo_len || seq + len == ooo_start)) {
                if (ooo_len == 0 || seq + len == ooo_start) {
                    ooo_start = seq;   /* a new interval, or one that grows at its front */
                }
                ooo_len = ooo_len + len;
                ooo_changed = true;
                to_host(flags | NIC_HOST_FLAG_OOO, seq);
            } else if (ahead_of_rcv_nxt) {
                meta.drop_reason = DROP_OUT_OF_ORDER;
            } else {
                meta.drop_reason = DROP_OLD_DATA;
            }
            if (ooo_changed) {
                flow_ooo.write(meta.flow_id, ooo_start ++ ooo_len);
                /* An if, not `ooo_len == 0 ? 1w0 : 1w1`: p4c-dpdk turns that into a
                 * subtraction from a bool and rejects it. */
                meta.dyn.ooo_active = 1;
                if (ooo_len == 0) {
                    meta.dyn.ooo_active = 0;
                }
            }
            /* Every segment with payload is answered, after any delivery above. A reinjected
             * segment's ACK is the slow path's (it handed the segment back). RFC 2018: a peer
             * that negotiated SACK hears of the interval in every such ACK (pass 2 adds it). */
            if (!meta.reinjected) {
                send_ack(true);
            }
        }
    }
}
