"""rtt_probe.p4: one timed segment per flow gives microsecond RTT samples (RttProbeStart,
RttProbeSample; Karn's rule: a retransmission cancels the probe)."""

from __future__ import annotations

from softnic.state import Register

from .headers import Metadata, StandardMetadata

M32 = 0xFFFFFFFF


def rtt_probe_start(probe_reg: Register, meta: Metadata, sm: StandardMetadata) -> None:
    dyn = meta.dyn
    if meta.tx_resend:
        dyn.rtt_pending = 0   # Karn: the ACK may be for either copy
    elif meta.tx_new_data and dyn.rtt_pending == 0:
        probe_reg.cells[meta.flow_id] = (dyn.snd_nxt << 32) | (sm.ingress_global_timestamp & M32)
        dyn.rtt_pending = 1


def rtt_probe_sample(probe_reg: Register, meta: Metadata, sm: StandardMetadata) -> None:
    dyn = meta.dyn
    if meta.fast_retransmit:
        dyn.rtt_pending = 0   # Karn: a resend follows
    elif dyn.rtt_pending == 1 and (meta.acked_bytes != 0 or meta.fin_acked):
        probe = probe_reg.cells[meta.flow_id]
        if ((dyn.snd_una - (probe >> 32)) & M32) < 0x80000000:
            rtt = ((sm.ingress_global_timestamp & M32) - (probe & M32)) & M32
            meta.rtt_sample = rtt or 1   # 0 says "no sample" to the host
            dyn.rtt_pending = 0
