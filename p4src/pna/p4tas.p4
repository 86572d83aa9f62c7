/* p4tas: the TCP fast path for PNA (the Portable NIC Architecture), compiled by p4c's DPDK
 * backend (p4c-dpdk) to a DPDK SWX pipeline. The same fast path as v1model/p4tas.p4, with the
 * same table, action, counter, meter and controller-header names, sharing shared/headers.p4
 * and shared/constants.p4; where PNA on DPDK forces a difference, the file concerned says why
 * (and docs/ARCHITECTURE.md, "PNA / DPDK target", lists them all). One control per concern,
 * each in its own file as on v1model; this file only wires them together.
 * Left out: v1model/host_backpressure.p4 (bmv2's host-port queue watch: bmv2 drops on a full
 * 64-packet egress queue and reports queue depths, DPDK's SWX pipeline has neither queues
 * nor depths to read; the runner writes frames to the host port as they come). */
#include <core.p4>
#include <dpdk/pna.p4>

#include "../shared/headers.p4"
#include "pna_constants.p4"
#include "metadata.p4"
#include "clock.p4"
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
#include "ack_loopback.p4"
#include "forwarding.p4"

control P4tasPreControl(in pna_headers_t hdr, inout pna_metadata_t meta,
                        in pna_pre_input_metadata_t istd,
                        inout pna_pre_output_metadata_t ostd) {
    apply { }
}

/* Named as v1model's ingress, so that every table, action, counter and meter has the same
 * P4Runtime name (and id) on both programs. */
control P4tasIngress(inout pna_headers_t hdr, inout pna_metadata_t meta,
                     in pna_main_input_metadata_t istd, inout pna_main_output_metadata_t ostd) {
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
    PacketOut() send_packet_out;
    Verdict() verdict;
    AckLoopback() ack_loopback;
    ComputeChecksums() checksums;
    TrimHostFrames() trim_host_frames;
    AckMirror() ack_mirror;
    Forwarding() forwarding;

    apply {
        meta.now_us = clock_us.read(0);
        meta.in_port = (port_t)(bit<32>)istd.input_port;
        /* Pass 2 of an ACK (ack_loopback.p4): by the real input port, never a reinjection. */
        meta.ack_pass = (bit<32>)istd.input_port == (bit<32>)ACK_LOOPBACK_PORT;
        bool plain_packet_out = false;
        if (hdr.packet_out.isValid() && hdr.packet_out.reinject == 1) {
            meta.in_port = hdr.packet_out.egress_port;
            meta.reinjected = true;
            hdr.packet_out.setInvalid();
        } else if (hdr.packet_out.isValid()) {
            send_packet_out.apply(hdr, meta);
            plain_packet_out = true;
        }
        if (!plain_packet_out) {
            bool from_host = meta.in_port == HOST_PORT;
            if (meta.ack_pass) {
                if (hdr.nic_host.isValid()) {
                    meta.flow_id = hdr.nic_host.flow_id;
                }
            } else if (from_host) {
                host_messages.apply(hdr, meta);
            } else {
                exceptions.apply(hdr, meta);
                if (meta.punt_reason == 0 && meta.drop_reason == 0) {
                    flow_lookup.apply(hdr, meta);
                }
            }
            bool by_flow_id = from_host || (meta.ack_pass && hdr.nic_host.isValid());
            if (meta.punt_reason == 0 && meta.drop_reason == 0 && (by_flow_id || meta.flow_found)) {
                flow_state.apply(meta);
            }
            if (meta.ack_pass) {
                /* Only the ACK, from the state as it is now; the state is not written. */
                if (meta.flow_found) {
                    load_flow_state.apply(meta);
                    ack_loopback.apply(hdr, meta);
                }
            } else if (meta.punt_reason == 0 && meta.drop_reason == 0) {
                if (from_host && !meta.flow_found) {
                    meta.drop_reason = DROP_STALE_HOST_MESSAGE;   /* flow already removed */
                } else if (!meta.flow_found) {
                    meta.punt_reason = REASON_UNKNOWN_FLOW;
                } else {
                    load_flow_state.apply(meta);
                    if (!from_host) {
                        segment_check.apply(hdr, meta);
                        timestamp_check.apply(hdr, meta);
                        if (!meta.paws_rejected) {
                            ecn_echo.apply(hdr, meta);
                        }
                        if (meta.seq_acceptable && !meta.ack_unacceptable && !meta.paws_rejected) {
                            ack_processing.apply(hdr, meta);
                            rtt_probe_sample.apply(meta);
                        }
                        receive.apply(hdr, meta);
                        host_notify.apply(hdr, meta);
                    } else if (hdr.nic_host.opcode == NIC_HOST_OP_RX_CONSUMED) {
                        return_rx_space.apply(hdr, meta);
                        if (meta.window_reopened) {
                            transmit.apply(hdr, meta);   /* the window update */
                        }
                    } else {
                        transmit.apply(hdr, meta);
                        rtt_probe_start.apply(meta);
                    }
                    store_flow_state.apply(meta);
                }
            }
            if (!meta.ack_pass) {
                verdict.apply(hdr, meta);
            }
        }
        checksums.apply(hdr, meta);
        trim_host_frames.apply(hdr, meta);
        ack_mirror.apply(hdr, meta);
        forwarding.apply(hdr, meta);
    }
}

PNA_NIC(P4tasParser(), P4tasPreControl(), P4tasIngress(), P4tasDeparser()) main;
