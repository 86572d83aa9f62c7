/* p4tas PNA: the CPU port, as v1model/packet_io.p4. PacketOut sends the controller's frame out
 * of the port it names; Verdict ends the first pass by punting (PacketIn with a reason) or
 * dropping, and counts. Punts are metered per reason (punt_rate, packets/s set by the slow
 * path at startup): a flood of one kind is cut here, counted as DROP_PUNT_LIMITED, and cannot
 * starve connection control or the host port of the CPU. An unconfigured index passes
 * everything. A SYN beyond the budget to a listening port is answered with a SYN cookie
 * instead (syn_cookie.p4). The counters count bytes as the frame's headers tell its length
 * (meta.frame_bytes): PNA on DPDK has no packet length. */

control PacketOut(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    apply {
        meta.out_port = (bit<32>)hdr.packet_out.egress_port;
        hdr.packet_out.setInvalid();
    }
}

control Verdict(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    /* Readable over P4Runtime; indexed by REASON_* and DROP_*. */
    Counter<bit<64>, bit<32>>(NUM_REASONS, PNA_CounterType_t.PACKETS_AND_BYTES) exception_counter;
    Counter<bit<64>, bit<32>>(NUM_DROP_REASONS, PNA_CounterType_t.PACKETS_AND_BYTES) drop_counter;
    Meter<bit<32>>(NUM_REASONS, PNA_MeterType_t.PACKETS) punt_rate;
    SynCookie() syn_cookie;

    apply {
        if (hdr.ipv4.isValid()) {
            meta.frame_bytes = (bit<32>)(ETH_HDR_BYTES + hdr.ipv4.total_len);
        } else if (hdr.nic_host.isValid()) {
            meta.frame_bytes = (bit<32>)(ETH_HDR_BYTES + NIC_HOST_HDR_BYTES + hdr.nic_host.length);
        } else if (hdr.arp.isValid()) {
            /* The fixed 8 bytes, then two hardware and two protocol addresses. */
            meta.frame_bytes = (bit<32>)hdr.arp.hlen + (bit<32>)hdr.arp.plen;
            meta.frame_bytes = (meta.frame_bytes << 1) + (bit<32>)(ETH_HDR_BYTES + 8);
        } else {
            meta.frame_bytes = (bit<32>)ETH_HDR_BYTES;
        }
        if (meta.punt_reason != 0) {
            PNA_MeterColor_t color = punt_rate.dpdk_execute((bit<32>)meta.punt_reason,
                                                            meta.packet_unit);
            if (color == METER_RED) {
                if (meta.punt_reason == REASON_SYN) {
                    syn_cookie.apply(hdr, meta);
                }
                meta.punt_reason = 0;
                if (!meta.syn_cookie) {
                    meta.drop_reason = DROP_PUNT_LIMITED;
                }
            }
        }
        if (meta.punt_reason != 0) {
            exception_counter.count((bit<32>)meta.punt_reason, meta.frame_bytes);
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = meta.in_port;
            hdr.packet_in._pad = 0;
            hdr.packet_in.reason = meta.punt_reason;
            hdr.packet_in.tsval = (bit<32>)(meta.now_us >> TS_TICK_SHIFT);
            meta.out_port = (bit<32>)CPU_PORT;
        } else if (meta.drop_reason != 0) {
            drop_counter.count((bit<32>)meta.drop_reason, meta.frame_bytes);
            if (!meta.to_host) {
                meta.out_port = (bit<32>)DROP_PORT;   /* unless it was reused to notify the host */
            }
        }
    }
}
