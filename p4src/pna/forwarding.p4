/* p4tas PNA: where the packet leaves. p4c requires compile-time constants for send_to_port's
 * and mirror_packet's arguments (only a table action's parameters, set by the control plane,
 * count as such), so a port number known only at run time (a flow's wire port, a PacketOut's
 * egress port, the port a SYN came in on) goes through the output_port table: one entry per
 * port the target has, installed by the target when it loads the pipeline (port p ->
 * send(p)). Anything else, DROP_PORT (0) included, goes to the sink. */

control Forwarding(inout pna_headers_t hdr, inout pna_metadata_t meta) {
    action send(PortId_t port) {
        send_to_port(port);
    }

    action to_sink() {
        send_to_port((PortId_t)(bit<32>)DROP_PORT);
    }

    table output_port {
        key = { meta.out_port: exact @name("port"); }
        actions = { send; @defaultonly to_sink; }
        const default_action = to_sink();
        size = 256;
    }

    apply {
        output_port.apply();
    }
}
