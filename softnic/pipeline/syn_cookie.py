"""syn_cookie.p4: SynCookie. A SYN beyond the punt budget, to a listening address and port,
becomes our SYN-ACK whose ISN is a SYN cookie (nic_contract/syn_cookie.py: the same HalfSipHash
the P4 program computes round by round)."""

from __future__ import annotations

from nic_contract.syn_cookie import make_cookie
from softnic.state import Counter, ExactTable

from .constants import (ACK_TTL, ETH_HDR_BYTES, IPV4_FLAGS_DF, IPV4_HDR_BYTES, TCP_ACK,
                        TCP_DATA_OFFSET_MSS, TCP_FIN, TCP_HDR_BYTES, TCP_MSS_OPT_BYTES,
                        TCP_OPT_MSS, TCP_OPT_MSS_LEN, TCP_RST, TCP_SYN)
from .headers import Headers, Metadata, StandardMetadata, TcpMss

SYN_COOKIE_LISTENERS = "P4tasIngress.verdict.syn_cookie.syn_cookie_listeners"
ANSWER_WITH_COOKIE = "P4tasIngress.verdict.syn_cookie.answer_with_cookie"
SYN_COOKIES_SENT = "P4tasIngress.verdict.syn_cookie.syn_cookies_sent"
DEFAULT_PEER_MSS = 536   # RFC 9293's, when the SYN names none (COOKIE_MSS_0)
M32 = 0xFFFFFFFF


def syn_cookie(listeners: ExactTable, sent: Counter, hdr: Headers, meta: Metadata,
               sm: StandardMetadata) -> None:
    """SynCookie.apply."""
    tcp, ip = hdr.tcp, hdr.ipv4
    if tcp.flags & (TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN) != TCP_SYN or meta.reinjected:
        return
    action, params = listeners.lookup((ip.dst_addr, tcp.dst_port))
    if action != ANSWER_WITH_COOKIE:
        return
    k0, k1, epoch, local_mss, window = params
    peer_mss = hdr.tcp_mss.mss if hdr.tcp_mss is not None else DEFAULT_PEER_MSS
    isn = make_cookie(k0, k1, ip.dst_addr, ip.src_addr, tcp.dst_port, tcp.src_port, tcp.seq_no,
                      epoch, peer_mss)
    become_syn_ack(hdr, meta, sm, isn, local_mss, window)
    sent.count(0, sm.packet_length)


def become_syn_ack(hdr: Headers, meta: Metadata, sm: StandardMetadata, isn: int,
                   local_mss: int, window: int) -> None:
    """The SYN turns into our SYN-ACK in place, our MSS the only option, the rest cut."""
    eth, ip, tcp = hdr.ethernet, hdr.ipv4, hdr.tcp
    eth.dst_addr, eth.src_addr = eth.src_addr, eth.dst_addr
    ip.dst_addr, ip.src_addr = ip.src_addr, ip.dst_addr
    ip.dscp = ip.ecn = 0
    ip.total_len = IPV4_HDR_BYTES + TCP_HDR_BYTES + TCP_MSS_OPT_BYTES
    ip.identification = 0
    ip.flags = IPV4_FLAGS_DF
    ip.frag_offset = 0
    ip.ttl = ACK_TTL
    tcp.dst_port, tcp.src_port = tcp.src_port, tcp.dst_port
    tcp.ack_no = (tcp.seq_no + 1) & M32
    tcp.seq_no = isn
    tcp.data_offset = TCP_DATA_OFFSET_MSS
    tcp.res = 0
    tcp.flags = TCP_SYN | TCP_ACK
    tcp.window = window
    tcp.urgent_ptr = 0
    mss = hdr.tcp_mss = TcpMss()
    mss.kind, mss.len, mss.mss = TCP_OPT_MSS, TCP_OPT_MSS_LEN, local_mss
    hdr.tcp_ts = None
    sm.truncate_to = ETH_HDR_BYTES + IPV4_HDR_BYTES + TCP_HDR_BYTES + TCP_MSS_OPT_BYTES
    sm.egress_spec = meta.in_port
    meta.syn_cookie = True
