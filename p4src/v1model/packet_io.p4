/* p4tas v1model: the CPU port. PacketOut sends the controller's frame out of the port it
 * names; Verdict ends ingress by punting (PacketIn with a reason) or dropping, and counts.
 * Punts are metered per reason (punt_rate, packets/s set by the slow path at startup): a flood
 * of one kind (SYNs, junk) is cut here, counted as DROP_PUNT_LIMITED, and cannot starve
 * connection control or the host port of the CPU. An unconfigured index passes everything.
 * A SYN beyond the budget to a listening port is answered with a SYN cookie instead
 * (syn_cookie.p4). */

control PacketOut(inout headers_t hdr, inout standard_metadata_t sm) {
    apply {
        sm.egress_spec = hdr.packet_out.egress_port;
        hdr.packet_out.setInvalid();
    }
}

control Verdict(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    /* Readable over P4Runtime; indexed by REASON_* and DROP_*. */
    counter(NUM_REASONS, CounterType.packets_and_bytes) exception_counter;
    counter(NUM_DROP_REASONS, CounterType.packets_and_bytes) drop_counter;
    meter(NUM_REASONS, MeterType.packets) punt_rate;
    SynCookie() syn_cookie;

    apply {
        if (meta.punt_reason != 0) {
            bit<2> color;
            punt_rate.execute_meter((bit<32>)meta.punt_reason, color);
            if (color == METER_RED) {
                if (meta.punt_reason == REASON_SYN) {
                    syn_cookie.apply(hdr, meta, sm);
                }
                meta.punt_reason = 0;
                if (!meta.syn_cookie) {
                    meta.drop_reason = DROP_PUNT_LIMITED;
                }
            }
        }
        if (meta.punt_reason != 0) {
            exception_counter.count((bit<32>)meta.punt_reason);
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = meta.in_port;
            hdr.packet_in._pad = 0;
            hdr.packet_in.reason = meta.punt_reason;
            hdr.packet_in.tsval = (bit<32>)(sm.ingress_global_timestamp >> TS_TICK_SHIFT);
            sm.egress_spec = CPU_PORT;
        } else if (meta.drop_reason != 0) {
            drop_counter.count((bit<32>)meta.drop_reason);
            if (!meta.to_host) {
                mark_to_drop(sm);   /* unless the packet was reused to notify the host */
            }
        }
    }
}
