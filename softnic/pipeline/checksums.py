"""checksums.p4: P4tasVerifyChecksum and P4tasComputeChecksum (csum16 is RFC 1071)."""

from __future__ import annotations

import struct

from nic_contract.checksum import internet_checksum

from .constants import TCP_HDR_BYTES, TCP_MSS_OPT_BYTES, TCP_SACK_OPT_BYTES, TCP_TS_OPT_BYTES
from .headers import Headers, Metadata, StandardMetadata

_PSEUDO = struct.Struct("!IIBBH")


def _tcp_fields(hdr: Headers, l4_len: int) -> bytes:
    """The field list of every TCP checksum here: pseudo header, TCP header without its
    checksum, and the option headers that are valid (timestamps, SACK blocks, MSS)."""
    ip, raw = hdr.ipv4, hdr.tcp.pack()
    fields = _PSEUDO.pack(ip.src_addr, ip.dst_addr, 0, ip.protocol, l4_len) + raw[:16] + raw[18:]
    for option in (hdr.tcp_ts, hdr.tcp_sack, hdr.tcp_sack_b2, hdr.tcp_sack_b3, hdr.tcp_mss):
        if option is not None:
            fields += option.pack()
    return fields


def p4tas_verify_checksum(hdr: Headers, meta: Metadata, sm: StandardMetadata,
                          payload: bytes) -> None:
    """The unparsed rest of the frame (options, data, Ethernet padding) is the payload."""
    if hdr.tcp is None:
        return
    if internet_checksum(_tcp_fields(hdr, meta.l4_len) + payload) != hdr.tcp.checksum:
        sm.checksum_error = 1


def p4tas_compute_checksum(hdr: Headers, meta: Metadata, payload: bytes) -> None:
    if not (meta.ack_rewrite or meta.tx_build or meta.syn_cookie):
        return
    ip = hdr.ipv4
    ip.hdr_checksum = 0
    ip.hdr_checksum = internet_checksum(ip.pack())
    if meta.syn_cookie:
        # A SYN-ACK with a cookie: headers and the MSS option, cut after them.
        hdr.tcp.checksum = internet_checksum(_tcp_fields(hdr, TCP_HDR_BYTES + TCP_MSS_OPT_BYTES))
    elif meta.ack_rewrite:
        # ACKs are cut to their headers: the TCP length is the header's, payload not summed.
        tcp_len = (TCP_HDR_BYTES + (TCP_TS_OPT_BYTES if hdr.tcp_ts is not None else 0)
                   + (TCP_SACK_OPT_BYTES if hdr.tcp_sack is not None else 0))
        hdr.tcp.checksum = internet_checksum(_tcp_fields(hdr, tcp_len))
    else:
        hdr.tcp.checksum = internet_checksum(_tcp_fields(hdr, meta.l4_len) + payload)
