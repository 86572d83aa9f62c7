"""transmit.p4: TX_DATA from the host becomes a segment on the wire (Transmit); an
RX_CONSUMED that reopened the window becomes a window update."""

from __future__ import annotations

from softnic.state import Meter

from .constants import (ACK_TTL, DROP_OLD_DATA, DROP_STALE_HOST_MESSAGE, ETH_HDR_BYTES,
                        ETHERTYPE_IPV4, HOST_PORT, IP_PROTO_TCP, IPV4_FLAGS_DF,
                        IPV4_HDR_BYTES, NIC_HOST_FLAG_CWR, NIC_HOST_FLAG_FIN, NIC_HOST_FLAG_PROBE,
                        NIC_HOST_FLAG_PSH,
                        NIC_HOST_FLAG_RTO, NIC_HOST_HDR_BYTES, NIC_HOST_OP_RX_CONSUMED,
                        NIC_HOST_OP_TX_ACKED, REASON_BAD_HOST_MESSAGE, TCP_ACK, TCP_HDR_BYTES,
                        ECN_ECT0, TCP_CWR, TCP_ECE, TCP_FIN, TCP_OPT_NOP, TCP_OPT_TIMESTAMPS, TCP_OPT_TIMESTAMPS_LEN, TCP_PSH,
                        TCP_TS_OPT_BYTES, TS_TICK_SHIFT)
from .flow_state_regs import advertised_window
from .headers import Headers, Ipv4, Metadata, StandardMetadata, Tcp, TcpTs
from .rate_limit import tx_rate_limit

M32 = 0xFFFFFFFF


def build_segment(hdr: Headers, meta: Metadata, sm: StandardMetadata, tcp_hdr_len: int,
                  tcp_flags: int) -> None:
    flow = meta.flow
    eth = hdr.ethernet
    eth.dst_addr, eth.src_addr, eth.ether_type = flow.peer_mac, flow.local_mac, ETHERTYPE_IPV4

    ip = hdr.ipv4 = Ipv4()
    ip.version, ip.ihl, ip.dscp, ip.ecn = 4, 5, 0, 0
    ip.total_len = (IPV4_HDR_BYTES + tcp_hdr_len + hdr.nic_host.length) & 0xFFFF
    ip.identification, ip.flags, ip.frag_offset = 0, IPV4_FLAGS_DF, 0
    ip.ttl, ip.protocol, ip.hdr_checksum = ACK_TTL, IP_PROTO_TCP, 0
    ip.src_addr, ip.dst_addr = flow.local_ip, flow.peer_ip

    tcp = hdr.tcp = Tcp()
    tcp.src_port, tcp.dst_port = flow.local_port, flow.peer_port
    tcp.seq_no = (flow.tx_start_seq + hdr.nic_host.aux) & M32
    tcp.ack_no = meta.dyn.rcv_nxt
    tcp.data_offset, tcp.res, tcp.flags = tcp_hdr_len >> 2, 0, tcp_flags
    tcp.window, tcp.checksum, tcp.urgent_ptr = meta.adv_window, 0, 0

    meta.l4_len = (tcp_hdr_len + hdr.nic_host.length) & 0xFFFF
    sm.egress_spec = flow.wire_port
    meta.tx_build = True


def add_timestamps(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    ts = hdr.tcp_ts = TcpTs()
    ts.nop1, ts.nop2, ts.kind, ts.len = TCP_OPT_NOP, TCP_OPT_NOP, TCP_OPT_TIMESTAMPS, \
        TCP_OPT_TIMESTAMPS_LEN
    ts.tsval = (sm.ingress_global_timestamp >> TS_TICK_SHIFT) & M32
    ts.tsecr = meta.dyn.ts_recent


def remind_host(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    msg = hdr.nic_host
    msg.opcode, msg.flags, msg.offset, msg.length = NIC_HOST_OP_TX_ACKED, 0, meta.dyn.snd_una, 0
    if meta.dyn.fin_sent == 1 and meta.dyn.snd_una == meta.dyn.snd_nxt:
        msg.flags = NIC_HOST_FLAG_FIN   # snd_una is past our FIN
    msg.window, msg.count, msg.aux = meta.dyn.peer_window, 0, 0
    sm.egress_spec = HOST_PORT
    meta.to_host = True
    meta.drop_reason = DROP_OLD_DATA


def _segment(hdr: Headers, meta: Metadata, sm: StandardMetadata, tcp_flags: int) -> None:
    if meta.flow.timestamps != 0:
        build_segment(hdr, meta, sm, TCP_HDR_BYTES + TCP_TS_OPT_BYTES, tcp_flags)
        add_timestamps(hdr, meta, sm)
    else:
        build_segment(hdr, meta, sm, TCP_HDR_BYTES, tcp_flags)


def transmit(tx_rate: Meter, hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    msg, dyn, flow = hdr.nic_host, meta.dyn, meta.flow
    ack_flags = TCP_ACK | TCP_ECE if dyn.ece_echo == 1 else TCP_ACK   # RFC 3168 6.1.3
    if msg.opcode == NIC_HOST_OP_RX_CONSUMED:
        # A window update (ReturnRxSpace decided): a pure ACK at snd_nxt.
        msg.length = 0
        advertised_window(meta)
        _segment(hdr, meta, sm, ack_flags)
        hdr.tcp.seq_no = dyn.snd_nxt
        hdr.nic_host = None
        return
    fin = bool(msg.flags & NIC_HOST_FLAG_FIN)
    fin_len = 1 if fin else 0
    if msg.gen != flow.gen:
        meta.drop_reason = DROP_STALE_HOST_MESSAGE
    elif (msg.length == 0 and not fin) or sm.packet_length != ETH_HDR_BYTES + NIC_HOST_HDR_BYTES + msg.length:
        meta.punt_reason = REASON_BAD_HOST_MESSAGE   # the checksum covers exactly `length`
    elif (not msg.flags & NIC_HOST_FLAG_PROBE
          and ((flow.tx_start_seq + msg.aux + msg.length + fin_len - dyn.snd_una - 1) & M32)
          >= 0x7FFFFFFF):
        remind_host(hdr, meta, sm)   # a resend of acknowledged data: the host missed a TX_ACKED
    else:
        tx_rate_limit(tx_rate, meta, sm)
    if meta.punt_reason == 0 and meta.drop_reason == 0:
        if msg.flags & NIC_HOST_FLAG_RTO:
            dyn.recover = dyn.snd_nxt   # see NIC_HOST_FLAG_RTO
        advertised_window(meta)
        tcp_flags = ack_flags | TCP_PSH if msg.flags & NIC_HOST_FLAG_PSH else ack_flags
        if fin:
            tcp_flags |= TCP_FIN
            dyn.fin_sent = 1
        if msg.flags & NIC_HOST_FLAG_CWR:
            tcp_flags |= TCP_CWR
        _segment(hdr, meta, sm, tcp_flags)
        # snd_nxt = max(snd_nxt, end of this segment) in wrapping sequence space.
        end = (hdr.tcp.seq_no + msg.length + fin_len) & M32
        end_ahead = (end - dyn.snd_una) & M32
        if end_ahead < 0x80000000 and end_ahead > ((dyn.snd_nxt - dyn.snd_una) & M32):
            dyn.snd_nxt = end
            meta.tx_new_data = msg.length != 0
            # New data is ECN-capable once negotiated; retransmissions, pure ACKs, a FIN
            # alone and probes are not (RFC 3168 6.1.4-6.1.6).
            if flow.ecn != 0 and msg.length != 0:
                hdr.ipv4.ecn = ECN_ECT0
        elif msg.length != 0 and not msg.flags & NIC_HOST_FLAG_PROBE:
            meta.tx_resend = True   # for RttProbeStart (Karn)
        hdr.nic_host = None
