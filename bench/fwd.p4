/* The bmv2 forwarding ceiling (bench_transfer.py, part c): the least a v1model program can do.
 * Every frame that enters on port 1 leaves on port 2 and the other way round; nothing is parsed
 * beyond Ethernet, nothing is looked up, so the measured rate is bmv2's own per-packet cost. */
#include <core.p4>
#include <v1model.p4>

header ethernet_t {
    bit<48> dst;
    bit<48> src;
    bit<16> ether_type;
}

struct headers_t { ethernet_t ethernet; }
struct meta_t { }

parser FwdParser(packet_in pkt, out headers_t hdr, inout meta_t meta,
                 inout standard_metadata_t std) {
    state start { pkt.extract(hdr.ethernet); transition accept; }
}

control FwdVerify(inout headers_t hdr, inout meta_t meta) { apply { } }

control FwdIngress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t std) {
    apply {
        if (std.ingress_port == 1) {
            std.egress_spec = 2;
        } else if (std.ingress_port == 2) {
            std.egress_spec = 1;
        } else {
            mark_to_drop(std);
        }
    }
}

control FwdEgress(inout headers_t hdr, inout meta_t meta, inout standard_metadata_t std) {
    apply { }
}

control FwdCompute(inout headers_t hdr, inout meta_t meta) { apply { } }

control FwdDeparser(packet_out pkt, in headers_t hdr) { apply { pkt.emit(hdr.ethernet); } }

V1Switch(FwdParser(), FwdVerify(), FwdIngress(), FwdEgress(), FwdCompute(), FwdDeparser()) main;
