"""ack_processing.p4: what a segment's ACK field tells us (AckProcessing)."""

from __future__ import annotations

from dataclasses import dataclass

from softnic.state import Counter

from .constants import DUPACK_THRESHOLD, MAX_DUPACKS, TCP_ECE
from .headers import Headers, Metadata, StandardMetadata

M32 = 0xFFFFFFFF


@dataclass
class AckCounters:
    """The control's per-flow packet counters."""

    new_ack: Counter
    ece_ack: Counter
    dupack: Counter
    fast_retransmit: Counter


def start_fast_retransmit(counters: AckCounters, meta: Metadata, length: int) -> None:
    """RFC 6582: one fast retransmit per window of data."""
    meta.fast_retransmit = True
    meta.dyn.recover = meta.dyn.snd_nxt
    counters.fast_retransmit.count(meta.flow_id, length)


def ack_processing(counters: AckCounters, hdr: Headers, meta: Metadata,
                   sm: StandardMetadata) -> None:
    if meta.host_busy:
        return   # the host could not be told: leave it to a later cumulative ACK
    tcp, dyn = hdr.tcp, meta.dyn
    acked = (tcp.ack_no - dyn.snd_una) & M32
    in_flight = (dyn.snd_nxt - dyn.snd_una) & M32
    if acked > in_flight:
        return   # acknowledges nothing we sent, or old
    length = sm.packet_length
    if acked != 0:
        dyn.snd_una = tcp.ack_no
        dyn.dupacks = 0
        if dyn.fin_sent == 1 and tcp.ack_no == dyn.snd_nxt:
            meta.fin_acked = True   # our FIN: a sequence number, no ring byte
            acked -= 1
        if ((dyn.snd_una - dyn.recover - 1) & M32) < 0x7FFFFFFF:
            dyn.recover = (dyn.snd_una - 1) & M32   # outside recovery: follow snd_una
        meta.acked_bytes = acked
        counters.new_ack.count(meta.flow_id, length)
        if tcp.flags & TCP_ECE:
            meta.ack_ece = True
            counters.ece_ack.count(meta.flow_id, length)
    elif meta.payload_len == 0 and in_flight != 0 and (
            tcp.window == dyn.peer_window
            or (hdr.tcp_sack is not None and meta.flow.sack != 0)):
        # RFC 5681: no data, no window change, data outstanding: a duplicate ACK; with SACK,
        # an ACK with SACK blocks is one whatever its window (RFC 6675 2).
        meta.dupack = True
        if dyn.dupacks != MAX_DUPACKS:
            dyn.dupacks += 1
        counters.dupack.count(meta.flow_id, length)
        if (dyn.dupacks == DUPACK_THRESHOLD
                and ((dyn.snd_una - dyn.recover - 1) & M32) < 0x7FFFFFFF):
            start_fast_retransmit(counters, meta, length)
    elif meta.payload_len == 0 and (tcp.window != dyn.peer_window or tcp.window == 0
                                    or in_flight == 0):
        meta.window_update = True   # reopened, or an answer to a window or keepalive probe
    dyn.peer_window = tcp.window
