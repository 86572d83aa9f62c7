/* p4tas: the TCP fast path for bmv2's v1model (simple_switch_grpc).
 * One control per concern, each in its own file; this file only wires them together. */
#include <core.p4>
#include <v1model.p4>

#include "../shared/headers.p4"
#include "bmv2_constants.p4"
#include "parser.p4"
#include "checksums.p4"
#include "flow_state_regs.p4"
#include "exceptions.p4"
#include "flow_lookup.p4"
#include "segment_check.p4"
#include "timestamps.p4"
#include "ecn_echo.p4"
#include "rtt_probe.p4"
#include "ack_processing.p4"
#include "receive.p4"
#include "host_notify.p4"
#include "rate_limit.p4"
#include "transmit.p4"
#include "host_messages.p4"
#include "syn_cookie.p4"
#include "packet_io.p4"
#include "ack_egress.p4"
#include "host_backpressure.p4"

control P4tasIngress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    Exceptions() exceptions;
    FlowLookup() flow_lookup;
    FlowState() flow_state;
    LoadFlowState() load_flow_state;
    StoreFlowState() store_flow_state;
    SegmentCheck() segment_check;
    TimestampCheck() timestamp_check;
    EcnEcho() ecn_echo;
    RttProbeSample() rtt_probe_sample;
    RttProbeStart() rtt_probe_start;
    AckProcessing() ack_processing;
    Receive() receive;
    HostNotify() host_notify;
    HostMessages() host_messages;
    ReturnRxSpace() return_rx_space;
    Transmit() transmit;
    HostBackpressure() host_backpressure;
    HostFrameCount() host_frame_count;
    PacketOut() send_packet_out;
    Verdict() verdict;

    apply {
        /* Nothing leaves unless a control below chooses a port: no accidental port 0. */
        mark_to_drop(sm);
        meta.in_port = sm.ingress_port;
        if (hdr.packet_out.isValid() && hdr.packet_out.reinject == 1) {
            meta.in_port = hdr.packet_out.egress_port;
            meta.reinjected = true;
            hdr.packet_out.setInvalid();
        } else if (hdr.packet_out.isValid()) {
            send_packet_out.apply(hdr, sm);
            return;
        }
        bool from_host = meta.in_port == HOST_PORT;
        if (from_host) {
            host_messages.apply(hdr, meta);
        } else {
            exceptions.apply(hdr, meta, sm);
            if (meta.punt_reason == 0 && meta.drop_reason == 0) {
                flow_lookup.apply(hdr, meta);
            }
        }
        if (meta.punt_reason == 0 && meta.drop_reason == 0 && (from_host || meta.flow_found)) {
            flow_state.apply(meta);
        }
        if (meta.punt_reason == 0 && meta.drop_reason == 0) {
            if (!meta.flow_found && from_host) {
                meta.drop_reason = DROP_STALE_HOST_MESSAGE;   /* flow already removed */
            } else if (!meta.flow_found) {
                meta.punt_reason = REASON_UNKNOWN_FLOW;
            } else {
                load_flow_state.apply(meta);
                if (!from_host) {
                    host_backpressure.apply(meta);
                    segment_check.apply(hdr, meta);
                    timestamp_check.apply(hdr, meta, sm);
                    if (!meta.paws_rejected) {
                        ecn_echo.apply(hdr, meta);
                    }
                    if (meta.seq_acceptable && !meta.ack_unacceptable && !meta.paws_rejected) {
                        ack_processing.apply(hdr, meta, sm);
                        rtt_probe_sample.apply(meta, sm);
                    }
                    receive.apply(hdr, meta, sm);
                    host_notify.apply(hdr, meta, sm);
                } else if (hdr.nic_host.opcode == NIC_HOST_OP_RX_CONSUMED) {
                    return_rx_space.apply(hdr, meta);
                    if (meta.window_reopened) {
                        transmit.apply(hdr, meta, sm);   /* the window update */
                    }
                } else {
                    transmit.apply(hdr, meta, sm);
                    rtt_probe_start.apply(meta, sm);
                }
                store_flow_state.apply(meta);
            }
        }
        verdict.apply(hdr, meta, sm);
        host_frame_count.apply(meta, sm);
    }
}

control P4tasEgress(inout headers_t hdr, inout metadata_t meta, inout standard_metadata_t sm) {
    AckEgress() ack_egress;
    TrimHostFrames() trim_host_frames;
    HostQueueWatch() host_queue_watch;

    apply {
        host_queue_watch.apply(sm);
        ack_egress.apply(hdr, meta, sm);
        trim_host_frames.apply(hdr, sm);
    }
}

V1Switch(P4tasParser(), P4tasVerifyChecksum(), P4tasIngress(), P4tasEgress(),
         P4tasComputeChecksum(), P4tasDeparser()) main;
