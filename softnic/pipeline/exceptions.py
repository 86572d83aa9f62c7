"""exceptions.p4: classify wire packets the fast path does not handle (punt or drop); a
packet with neither is a common-case TCP segment and gets meta.payload_len."""

from __future__ import annotations

from nic_contract.checksum import internet_checksum

from .constants import (DROP_NOT_IP, DROP_NOT_TCP, ETH_HDR_BYTES, ETHERTYPE_ARP,
                        IP_PROTO_TCP, IPV4_HDR_BYTES, REASON_ARP, REASON_BAD_IPV4_CHECKSUM,
                        REASON_BAD_LENGTH, REASON_BAD_TCP_CHECKSUM, REASON_FIN,
                        REASON_IPV4_FRAGMENT, REASON_IPV4_OPTIONS, REASON_RST, REASON_SYN,
                        REASON_SYN_ACK, REASON_TCP_FLAGS, REASON_TCP_OPTIONS, TCP_ACK,
                        TCP_DATA_OFFSET_PLAIN, TCP_DATA_OFFSET_TS,
                        TCP_FASTPATH_FLAGS, TCP_FIN, TCP_RST, TCP_SYN)
from .headers import Headers, Metadata, StandardMetadata


def exceptions(hdr: Headers, meta: Metadata, sm: StandardMetadata) -> None:
    ip, tcp = hdr.ipv4, hdr.tcp
    if sm.parser_error:
        meta.punt_reason = REASON_BAD_LENGTH                 # truncated headers
    elif hdr.ethernet.ether_type == ETHERTYPE_ARP:
        meta.punt_reason = REASON_ARP
    elif ip is None or ip.version != 4:
        meta.drop_reason = DROP_NOT_IP
    elif ip.ihl != 5:
        meta.punt_reason = REASON_IPV4_OPTIONS
    elif ip.flags & 1 or ip.frag_offset != 0:
        meta.punt_reason = REASON_IPV4_FRAGMENT
    elif ip.protocol != IP_PROTO_TCP:
        meta.drop_reason = DROP_NOT_TCP
    else:
        tcp_hdr_len = tcp.data_offset << 2
        ipv4_residue = internet_checksum(ip.pack())          # check_ipv4_checksum
        # bit<16> arithmetic: ETH_HDR_BYTES + total_len wraps before the cast to bit<32>.
        if (ip.total_len < IPV4_HDR_BYTES + tcp_hdr_len
                or ((ETH_HDR_BYTES + ip.total_len) & 0xFFFF) > sm.packet_length):
            meta.punt_reason = REASON_BAD_LENGTH
        elif ipv4_residue != 0:
            meta.punt_reason = REASON_BAD_IPV4_CHECKSUM
        elif sm.checksum_error == 1:
            meta.punt_reason = REASON_BAD_TCP_CHECKSUM
        elif tcp.flags & (TCP_SYN | TCP_ACK) == (TCP_SYN | TCP_ACK):
            meta.punt_reason = REASON_SYN_ACK
        elif tcp.flags & TCP_SYN:
            meta.punt_reason = REASON_SYN
        elif tcp.flags & TCP_RST:
            meta.punt_reason = REASON_RST
        elif tcp.flags & TCP_FIN:
            meta.punt_reason = REASON_FIN
        elif tcp.flags & ~TCP_FASTPATH_FLAGS & 0xFF or not tcp.flags & TCP_ACK:
            meta.punt_reason = REASON_TCP_FLAGS
        elif tcp.data_offset != TCP_DATA_OFFSET_PLAIN and hdr.tcp_ts is None:
            meta.punt_reason = REASON_TCP_OPTIONS
        elif (tcp.data_offset not in (TCP_DATA_OFFSET_PLAIN, TCP_DATA_OFFSET_TS)
              and hdr.tcp_sack is None):
            meta.punt_reason = REASON_TCP_OPTIONS   # timestamps, then options other than SACK
        else:
            meta.payload_len = (meta.l4_len - tcp_hdr_len) & 0xFFFF
