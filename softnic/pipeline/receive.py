"""receive.p4: the receive fast path (Receive): in-order delivery as RX_DATA (a segment
overlapping rcv_nxt flagged TRIM), one out-of-order interval per flow (TAS 3.1), PAWS drops,
and an ACK (echoing TS.Recent, ECE while owed) for every segment with payload."""

from __future__ import annotations

import time

from softnic.state import Meter, Register

from .constants import (ACK_SESSION_BASE, DROP_BAD_ACK, DROP_HOST_BUSY, DROP_NO_RX_SPACE,
                        DROP_OLD_DATA, DROP_OUT_OF_ORDER, DROP_PAWS, DROP_PURE_ACK, ECN_CE,
                        ETHERTYPE_NIC_HOST, HOST_PORT, METER_RED, NIC_HOST_FLAG_CE,
                        NIC_HOST_FLAG_ECE_ECHO, NIC_HOST_FLAG_OOO, NIC_HOST_FLAG_PSH,
                        NIC_HOST_FLAG_TRIM, NIC_HOST_OP_RX_DATA, TCP_ACK, TCP_ECE, TCP_PSH,
                        TS_TICK_SHIFT)
from .flow_state_regs import advertised_window
from .headers import Headers, Metadata, NicHost, StandardMetadata

M32 = 0xFFFFFFFF


def to_host(hdr: Headers, meta: Metadata, sm: StandardMetadata, flags: int, seq: int) -> None:
    """Payload at `seq` to the host port as RX_DATA at its RX ring offset."""
    msg = hdr.nic_host = NicHost()
    msg.opcode = NIC_HOST_OP_RX_DATA
    msg.flags = flags
    msg.gen = meta.flow.gen
    msg.flow_id = meta.flow_id
    msg.offset = (seq - meta.flow.rx_start_seq) & (meta.flow.rx_ring_size - 1) & M32
    msg.length = meta.payload_len
    hdr.ethernet.ether_type = ETHERTYPE_NIC_HOST
    hdr.drop_tcp()
    sm.egress_spec = HOST_PORT
    meta.delivered = True
    meta.to_host = True


def deliver_in_order(hdr: Headers, meta: Metadata, sm: StandardMetadata, flags: int, seq: int,
                     fresh: int) -> None:
    """The segment at `seq` whose last `fresh` bytes are the next in order."""
    to_host(hdr, meta, sm, flags, seq)
    meta.dyn.rcv_nxt = (meta.dyn.rcv_nxt + fresh) & M32
    meta.dyn.rx_free = (meta.dyn.rx_free - fresh) & M32


def send_ack(meta: Metadata, sm: StandardMetadata, flags: int) -> None:
    """The ACK is an ingress-to-egress clone rewritten by AckEgress; these fields survive."""
    meta.ack_window = meta.adv_window
    meta.ack_seq = meta.dyn.snd_nxt
    meta.ack_ack = meta.dyn.rcv_nxt
    meta.ack_flags = flags
    meta.ack_tsval = (sm.ingress_global_timestamp >> TS_TICK_SHIFT) & M32
    meta.ack_tsecr = meta.dyn.ts_recent
    sm.clone_session = ACK_SESSION_BASE + meta.in_port


def receive(ooo_reg: Register, challenge_ack_rate: Meter, hdr: Headers, meta: Metadata,
            sm: StandardMetadata) -> None:
    dyn, flow = meta.dyn, meta.flow
    ack_flags = TCP_ACK | TCP_ECE if dyn.ece_echo == 1 else TCP_ACK
    if meta.paws_rejected or meta.ack_unacceptable:
        # RFC 7323 5.3 R1: older than TS.Recent; RFC 5961 5.2: an ACK of data never sent.
        # Either discards the segment and is answered with an ACK, rate-limited device-wide
        # (RFC 5961 7; the meter reads its own clock, as bmv2's).
        meta.drop_reason = DROP_PAWS if meta.paws_rejected else DROP_BAD_ACK
        color = challenge_ack_rate.execute(0, sm.packet_length, time.monotonic_ns() // 1000)
        if not meta.reinjected and color != METER_RED:
            advertised_window(meta)
            send_ack(meta, sm, ack_flags)
        return
    if meta.payload_len == 0:
        meta.drop_reason = DROP_PURE_ACK
        # Below rcv_nxt: a zero-window probe, which must be answered (RFC 9293 3.10.7.4).
        if ((dyn.rcv_nxt - hdr.tcp.seq_no - 1) & M32) < 0x7FFFFFFF and not meta.reinjected:
            advertised_window(meta)
            send_ack(meta, sm, ack_flags)
        return
    ce = hdr.ipv4.ecn == ECN_CE
    flags = 0
    if hdr.tcp.flags & TCP_PSH:
        flags |= NIC_HOST_FLAG_PSH
    if ce:
        flags |= NIC_HOST_FLAG_CE
    if dyn.ece_echo == 1:
        flags |= NIC_HOST_FLAG_ECE_ECHO
    seq = hdr.tcp.seq_no
    length = meta.payload_len
    ahead = (seq - dyn.rcv_nxt) & M32   # sequence space wraps: "ahead" is below 2^31
    behind = (dyn.rcv_nxt - seq) & M32

    ooo_start = ooo_len = 0
    if dyn.ooo_active == 1 or ahead != 0:
        ooo = ooo_reg.cells[meta.flow_id]
        if ooo >> 64 == flow.gen:
            ooo_start, ooo_len = (ooo >> 32) & M32, ooo & M32
    ooo_changed = False
    # Starts below rcv_nxt, ends beyond it, and not into the out-of-order interval (one that
    # does stays dropped as old data): its last `length - behind` bytes are in order.
    overlap = (ahead >= 0x80000000 and behind < length
               and (ooo_len == 0 or ((ooo_start - seq - length) & M32) < 0x80000000))
    in_order = ahead == 0 or overlap
    fresh = length - behind if overlap else length

    if in_order and meta.host_busy:
        meta.drop_reason = DROP_HOST_BUSY
    elif in_order and fresh <= dyn.rx_free:
        deliver_in_order(hdr, meta, sm, flags | NIC_HOST_FLAG_TRIM if overlap else flags, seq,
                         fresh)
        # Reached (or overran) the interval: all of it is in order now.
        if ooo_len != 0 and ((dyn.rcv_nxt - ooo_start) & M32) < 0x80000000:
            rest = (ooo_start + ooo_len - dyn.rcv_nxt) & M32
            if rest >= 0x80000000:
                rest = 0   # this segment covered the whole interval
            dyn.rcv_nxt = (dyn.rcv_nxt + rest) & M32
            dyn.rx_free = (dyn.rx_free - rest) & M32
            meta.ooo_merged = rest
            ooo_len = 0
            ooo_changed = True
    elif in_order:
        meta.drop_reason = DROP_NO_RX_SPACE
    elif (ahead < 0x80000000 and not meta.host_busy and ((ahead + length) & M32) <= dyn.rx_free
          and (ooo_len == 0 or seq == (ooo_start + ooo_len) & M32
               or (seq + length) & M32 == ooo_start)):
        if ooo_len == 0 or (seq + length) & M32 == ooo_start:
            ooo_start = seq   # a new interval, or one that grows at its front
        ooo_len = (ooo_len + length) & M32
        ooo_changed = True
        to_host(hdr, meta, sm, flags | NIC_HOST_FLAG_OOO, seq)
    elif ahead < 0x80000000:
        meta.drop_reason = DROP_OUT_OF_ORDER
    else:
        meta.drop_reason = DROP_OLD_DATA
    if ooo_changed:
        ooo_reg.cells[meta.flow_id] = (flow.gen << 64) | (ooo_start << 32) | ooo_len
        dyn.ooo_active = 0 if ooo_len == 0 else 1
    # RFC 2018: a peer that negotiated SACK hears of the interval in every ACK.
    if flow.sack != 0 and ooo_len != 0:
        meta.ack_sack_left = ooo_start
        meta.ack_sack_right = (ooo_start + ooo_len) & M32
    # Every segment with payload is answered, after any delivery above.
    advertised_window(meta)
    if not meta.reinjected:   # the slow path that handed it back sends the ACK
        send_ack(meta, sm, ack_flags)
