/* p4tas PNA: as v1model/flow_lookup.p4 (PNA header and metadata types). */
/* p4tas: connection -> flow id (flow_lookup), flow id -> static state (flow_state).
 * Two tables so the static state exists once and host messages, which carry only a flow id,
 * find it too. Both are exact match: O(1) per packet at any number of flows. */

control FlowLookup(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    action set_flow_id(flow_id_t flow_id) {
        meta.flow_id = flow_id;
        meta.flow_found = true;
    }

    action unknown_flow() {
        meta.flow_found = false;
    }

    table flow_lookup {
        key = {
            hdr.ipv4.src_addr: exact @name("peer_ip");
            hdr.ipv4.dst_addr: exact @name("local_ip");
            hdr.tcp.src_port: exact @name("peer_port");
            hdr.tcp.dst_port: exact @name("local_port");
        }
        actions = { set_flow_id; @defaultonly unknown_flow; }
        default_action = unknown_flow();
        size = MAX_FLOWS;
    }

    apply {
        flow_lookup.apply();
    }
}

control FlowState(inout pna_metadata_t meta) {
    action set_flow_state(flow_gen_t generation, bit<48> local_mac, bit<48> peer_mac,
                          bit<32> local_ip, bit<32> peer_ip, bit<16> local_port,
                          bit<16> peer_port, port_t wire_port, bit<32> rx_ring_size,
                          bit<32> rx_start_seq, bit<32> tx_start_seq, bit<8> rx_window_shift,
                          bit<8> timestamps, bit<16> peer_window, bit<8> ecn,
                          bit<8> sack, bit<8> peer_window_shift) {
        meta.flow.gen = generation;
        meta.flow.local_mac = local_mac;
        meta.flow.peer_mac = peer_mac;
        meta.flow.local_ip = local_ip;
        meta.flow.peer_ip = peer_ip;
        meta.flow.local_port = local_port;
        meta.flow.peer_port = peer_port;
        meta.flow.wire_port = wire_port;
        meta.flow.rx_ring_size = rx_ring_size;
        meta.flow.rx_start_seq = rx_start_seq;
        meta.flow.tx_start_seq = tx_start_seq;
        meta.flow.rx_window_shift = rx_window_shift;
        meta.flow.timestamps = timestamps;
        meta.flow.peer_window = peer_window;
        meta.flow.ecn = ecn;
        meta.flow.sack = sack;
        meta.flow.peer_window_shift = peer_window_shift;
        meta.flow_found = true;
    }

    action no_flow_state() {
        meta.flow_found = false;
    }

    table flow_state {
        key = { meta.flow_id: exact @name("flow_id"); }
        actions = { set_flow_state; @defaultonly no_flow_state; }
        default_action = no_flow_state();
        size = MAX_FLOWS;
    }

    apply {
        flow_state.apply();
    }
}
