"""ack_egress.p4: turn the ingress-to-egress clone of a data segment into its ACK
(AckEgress). The clone is the re-parsed original, so the peer's addresses are in it; the
TSecr (TS.Recent) comes with the preserved ack_* fields."""

from __future__ import annotations

from .constants import (ACK_TTL, ETH_HDR_BYTES, INSTANCE_TYPE_INGRESS_CLONE, IPV4_FLAGS_DF,
                        IPV4_HDR_BYTES, TCP_DATA_OFFSET_PLAIN, TCP_DATA_OFFSET_TS,
                        TCP_DATA_OFFSET_TS_SACK1, TCP_HDR_BYTES, TCP_OPT_NOP, TCP_OPT_SACK,
                        TCP_OPT_SACK1_LEN, TCP_SACK_OPT_BYTES, TCP_TS_OPT_BYTES)
from .headers import Headers, Metadata, StandardMetadata, TcpSack


def ack_egress(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    if sm.instance_type != INSTANCE_TYPE_INGRESS_CLONE:
        return
    meta.ack_rewrite = True
    eth, ip, tcp, ts = hdr.ethernet, hdr.ipv4, hdr.tcp, hdr.tcp_ts
    eth.dst_addr, eth.src_addr = eth.src_addr, eth.dst_addr
    ip.dst_addr, ip.src_addr = ip.src_addr, ip.dst_addr
    ip.ecn = 0                     # pure ACKs are not ECN-capable (RFC 3168)
    ip.identification, ip.flags, ip.frag_offset, ip.ttl = 0, IPV4_FLAGS_DF, 0, ACK_TTL
    tcp.dst_port, tcp.src_port = tcp.src_port, tcp.dst_port
    tcp.seq_no, tcp.ack_no, tcp.res = meta.ack_seq, meta.ack_ack, 0
    tcp.flags, tcp.window, tcp.urgent_ptr = meta.ack_flags, meta.ack_window, 0
    tcp_len = TCP_HDR_BYTES
    tcp.data_offset = TCP_DATA_OFFSET_PLAIN
    if ts is not None:
        ts.tsecr, ts.tsval = meta.ack_tsecr, meta.ack_tsval
        tcp_len = TCP_HDR_BYTES + TCP_TS_OPT_BYTES
        tcp.data_offset = TCP_DATA_OFFSET_TS
    # Our one block (the out-of-order interval) replaces any the clone carried.
    hdr.tcp_sack_b2 = hdr.tcp_sack_b3 = None
    if ts is not None and meta.ack_sack_left != meta.ack_sack_right:
        sack = hdr.tcp_sack = TcpSack()
        sack.nop1 = sack.nop2 = TCP_OPT_NOP
        sack.kind, sack.len = TCP_OPT_SACK, TCP_OPT_SACK1_LEN
        sack.left, sack.right = meta.ack_sack_left, meta.ack_sack_right
        tcp_len += TCP_SACK_OPT_BYTES
        tcp.data_offset = TCP_DATA_OFFSET_TS_SACK1
    else:
        hdr.tcp_sack = None
    ip.total_len = IPV4_HDR_BYTES + tcp_len
    sm.truncate_to = ETH_HDR_BYTES + IPV4_HDR_BYTES + tcp_len
