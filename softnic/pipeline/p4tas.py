"""p4tas.p4: P4tasIngress and P4tasEgress wired from the controls, and what bmv2's
simple_switch does around them for one packet: parse, verify, ingress, the I2E clone,
egress, checksums, deparse and truncation."""

from __future__ import annotations

from softnic.state import SwitchState

from .ack_egress import ack_egress
from .ack_processing import AckCounters, ack_processing
from .checksums import p4tas_compute_checksum, p4tas_verify_checksum
from .constants import (DROP_PORT, DROP_STALE_HOST_MESSAGE, HOST_PORT,
                        INSTANCE_TYPE_INGRESS_CLONE, NIC_HOST_OP_RX_CONSUMED,
                        REASON_UNKNOWN_FLOW)
from .exceptions import exceptions
from .flow_lookup import FLOW_LOOKUP, FLOW_STATE, flow_lookup, flow_state
from .ecn_echo import ecn_echo
from .flow_state_regs import load_flow_state, store_flow_state
from .headers import Headers, Metadata, StandardMetadata
from .host_backpressure import host_backpressure, host_frame_count, host_queue_watch
from .host_messages import host_messages, return_rx_space
from .host_notify import host_notify, trim_host_frames
from .packet_io import VerdictState, packet_out, verdict
from .parser import p4tas_deparser, p4tas_parser
from .receive import receive
from .rtt_probe import rtt_probe_sample, rtt_probe_start
from .segment_check import segment_check
from .syn_cookie import SYN_COOKIE_LISTENERS, SYN_COOKIES_SENT
from .syn_lane import SynLane, maybe_syn
from .timestamps import timestamp_check
from .transmit import transmit

INGRESS = "P4tasIngress."


class P4tasPipeline:
    """One instance per loaded program; process() runs one packet through it (a SYN from the
    wire by SynLane, unless `syn_lane` is False: the tests that hold the two ways equal)."""

    def __init__(self, state: SwitchState, syn_lane: bool = True) -> None:
        self.state = state
        self.flow_lookup = state.tables[FLOW_LOOKUP]
        self.flow_state = state.tables[FLOW_STATE]
        regs = state.registers
        self.flow_rx_state, self.flow_tx_state = regs["flow_rx_state"], regs["flow_tx_state"]
        self.flow_ooo_state = regs["flow_ooo_state"]
        self.flow_rtt_probe = regs["flow_rtt_probe"]
        self.host_frames_enqueued = regs["host_frames_enqueued"]
        self.host_frames_dequeued = regs["host_frames_dequeued"]
        counters = state.counters
        self.ack_counters = AckCounters(
            *(counters[f"{INGRESS}ack_processing.{name}_counter"]
              for name in ("new_ack", "ece_ack", "dupack", "fast_retransmit")))
        self.verdict = VerdictState(
            counters[f"{INGRESS}verdict.exception_counter"],
            counters[f"{INGRESS}verdict.drop_counter"],
            state.meters[f"{INGRESS}verdict.punt_rate"],
            state.tables[SYN_COOKIE_LISTENERS], counters[SYN_COOKIES_SENT])
        self.syn_lane = SynLane(self.verdict) if syn_lane else None
        self.tx_rate = state.meters[f"{INGRESS}transmit.rate_limit.tx_rate"]
        self.challenge_ack_rate = state.meters[f"{INGRESS}receive.challenge_ack_rate"]

    def process(self, ingress_port: int, frame: bytes, now_us: int) -> list[tuple[int, bytes]]:
        """The frames this packet makes, as (egress port, bytes); CPU-port frames start
        with the packet_in header."""
        if self.syn_lane is not None and maybe_syn(ingress_port, frame):
            outputs = self.syn_lane.process(ingress_port, frame, now_us)
            if outputs is not None:
                return outputs
        hdr, meta = Headers(), Metadata()
        sm = StandardMetadata(ingress_port, len(frame), now_us)
        payload = frame[p4tas_parser(frame, hdr, meta, sm):]
        p4tas_verify_checksum(hdr, meta, sm, payload)
        self.ingress(hdr, meta, sm)
        outputs = []
        if sm.clone_session is not None:
            clone = self.ingress_clone(frame, meta, sm)
            if clone is not None:
                outputs.append(clone)
        if sm.egress_spec != DROP_PORT:
            sm.egress_port = sm.egress_spec
            outputs.append((sm.egress_port, self.egress_and_deparse(hdr, meta, sm, payload)))
        return outputs

    def ingress_clone(self, frame: bytes, meta: Metadata,
                      sm: StandardMetadata) -> tuple[int, bytes] | None:
        """clone_preserving_field_list(I2E, session, FL_ACK): the original frame parsed
        again, with only the ack_* fields of the metadata carried over."""
        port = self.state.clone_sessions.get(sm.clone_session)
        if port is None:
            return None   # bmv2 clones nothing for a session that is not programmed
        chdr, cmeta = Headers(), Metadata()
        cmeta.ack_seq, cmeta.ack_ack, cmeta.ack_window = meta.ack_seq, meta.ack_ack, meta.ack_window
        cmeta.ack_flags, cmeta.ack_tsval = meta.ack_flags, meta.ack_tsval
        cmeta.ack_tsecr = meta.ack_tsecr
        cmeta.ack_sack_left, cmeta.ack_sack_right = meta.ack_sack_left, meta.ack_sack_right
        csm = StandardMetadata(sm.ingress_port, sm.packet_length, sm.ingress_global_timestamp)
        cpayload = frame[p4tas_parser(frame, chdr, cmeta, csm):]
        csm.instance_type = INSTANCE_TYPE_INGRESS_CLONE
        csm.egress_port = port
        return port, self.egress_and_deparse(chdr, cmeta, csm, cpayload)

    def egress_and_deparse(self, hdr: Headers, meta: Metadata, sm: StandardMetadata,
                           payload: bytes) -> bytes:
        self.egress(hdr, meta, sm)
        p4tas_compute_checksum(hdr, meta, payload)
        out = p4tas_deparser(hdr) + payload
        if sm.truncate_to is not None and len(out) > sm.truncate_to:
            out = out[:sm.truncate_to]
        return out

    def ingress(self, hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
        """P4tasIngress.apply."""
        sm.egress_spec = DROP_PORT   # nothing leaves unless a control below chooses a port
        meta.in_port = sm.ingress_port
        if hdr.packet_out is not None and hdr.packet_out.reinject:
            meta.in_port = hdr.packet_out.egress_port   # a wire segment handed back
            meta.reinjected = True
            hdr.packet_out = None
        elif hdr.packet_out is not None:
            packet_out(hdr, sm)
            return
        from_host = meta.in_port == HOST_PORT
        if from_host:
            host_messages(hdr, meta)
        else:
            exceptions(hdr, meta, sm)
            if meta.punt_reason == 0 and meta.drop_reason == 0:
                flow_lookup(self.flow_lookup, hdr, meta)
        if meta.punt_reason == 0 and meta.drop_reason == 0 and (from_host or meta.flow_found):
            flow_state(self.flow_state, meta)
        if meta.punt_reason == 0 and meta.drop_reason == 0:
            if not meta.flow_found and from_host:
                meta.drop_reason = DROP_STALE_HOST_MESSAGE   # flow already removed
            elif not meta.flow_found:
                meta.punt_reason = REASON_UNKNOWN_FLOW
            else:
                self.known_flow(hdr, meta, sm, from_host)
        verdict(self.verdict, hdr, meta, sm)
        host_frame_count(self.host_frames_enqueued, sm)

    def known_flow(self, hdr: Headers, meta: Metadata, sm: StandardMetadata,
                   from_host: bool) -> None:
        load_flow_state(self.flow_rx_state, self.flow_tx_state, meta)
        if not from_host:
            host_backpressure(self.host_frames_enqueued, self.host_frames_dequeued, meta)
            segment_check(hdr, meta)
            timestamp_check(hdr, meta, sm)
            if not meta.paws_rejected:
                ecn_echo(hdr, meta)
            if meta.seq_acceptable and not meta.ack_unacceptable and not meta.paws_rejected:
                ack_processing(self.ack_counters, hdr, meta, sm)
                rtt_probe_sample(self.flow_rtt_probe, meta, sm)
            receive(self.flow_ooo_state, self.challenge_ack_rate, hdr, meta, sm)
            host_notify(hdr, meta, sm)
        elif hdr.nic_host.opcode == NIC_HOST_OP_RX_CONSUMED:
            return_rx_space(hdr, meta)
            if meta.window_reopened:
                transmit(self.tx_rate, hdr, meta, sm)   # the window update
        else:
            transmit(self.tx_rate, hdr, meta, sm)
            rtt_probe_start(self.flow_rtt_probe, meta, sm)
        store_flow_state(self.flow_rx_state, self.flow_tx_state, meta)

    def egress(self, hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
        """P4tasEgress.apply."""
        host_queue_watch(self.host_frames_enqueued, self.host_frames_dequeued, sm)
        ack_egress(hdr, meta, sm)
        trim_host_frames(hdr, sm)
