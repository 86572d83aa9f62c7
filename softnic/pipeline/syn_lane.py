"""A short way through the pipeline for what a SYN flood is made of: a well-formed SYN from a
wire port (IPv4 without options or fragmentation, of SYN, ACK, RST and FIN only SYN, lengths
and both checksums right). For such a frame the parser, the checksum verification, Exceptions
and Verdict with SynCookie come down to: the SYN punt meter, then a PacketIn, our SYN-ACK with
a cookie (syn_cookie.p4) or a PUNT_LIMITED drop, and no egress control changes anything.
SynLane does just that on the frame's bytes, without header objects; any other frame (None)
goes the long way. tests/unit/test_softnic_syn_lane.py holds both ways to the same outputs,
counters and meter state."""

from __future__ import annotations

import struct
import time

from nic_contract.checksum import internet_checksum
from nic_contract.syn_cookie import make_cookie

from .constants import (ACK_TTL, CPU_PORT, DROP_PUNT_LIMITED, ETHERTYPE_IPV4, HOST_PORT,
                        IP_PROTO_TCP, IPV4_FLAGS_DF, IPV4_HDR_BYTES, METER_RED, REASON_SYN,
                        TCP_ACK, TCP_DATA_OFFSET_MSS, TCP_FIN, TCP_HDR_BYTES,
                        TCP_MSS_OPT_BYTES, TCP_MSS_OPT_PREFIX, TCP_OPT_MSS, TCP_OPT_MSS_LEN,
                        TCP_RST, TCP_SYN, TS_TICK_SHIFT)
from .headers import PacketIn
from .packet_io import VerdictState
from .syn_cookie import ANSWER_WITH_COOKIE, DEFAULT_PEER_MSS

M32 = 0xFFFFFFFF
TCP_AT, FLAGS_AT, OPTIONS_AT = 34, 47, 54       # offsets in an Ethernet/IPv4 frame, no options
SYN_FLAGS_MASK = TCP_SYN | TCP_ACK | TCP_RST | TCP_FIN
_IPV4_TCP = struct.Struct("!2xHxxHxxxxIIHHI")   # total_len, frag, src, dst, ports, seq
_PSEUDO = struct.Struct("!IIBBH")
_SYN_ACK_IP = struct.Struct("!BBHHHBBHII")
_SYN_ACK_TCP = struct.Struct("!HHIIBBHHHBBH")   # with the MSS option
_ETH_IPV4 = ETHERTYPE_IPV4.to_bytes(2, "big")
_MSS_PREFIX = TCP_MSS_OPT_PREFIX.to_bytes(2, "big")
SYN_ACK_IP_LEN = IPV4_HDR_BYTES + TCP_HDR_BYTES + TCP_MSS_OPT_BYTES
NOT_WIRE = (CPU_PORT, HOST_PORT)


def maybe_syn(port: int, frame: bytes) -> bool:
    """The cheap first look (every packet gets it): a wire frame with SYN of SYN/ACK/RST/FIN."""
    return (len(frame) > OPTIONS_AT and frame[FLAGS_AT] & SYN_FLAGS_MASK == TCP_SYN
            and port not in NOT_WIRE)


def _well_formed(frame: bytes) -> int | None:
    """The peer's MSS as SynCookie takes it (its option, else DEFAULT_PEER_MSS) when the long
    way would classify `frame` as a SYN with nothing wrong, else None."""
    if (frame[12:14] != _ETH_IPV4 or frame[14] != 0x45 or frame[23] != IP_PROTO_TCP
            or frame[20] & 0x3F or frame[21]):
        return None                                    # not v4/ihl 5/TCP, or a fragment
    data_offset, end = frame[46] >> 4, len(frame)
    mss = DEFAULT_PEER_MSS
    if data_offset >= 6:                               # parse_tcp_mss_if_first
        if end < OPTIONS_AT + 2 or (frame[OPTIONS_AT:OPTIONS_AT + 2] == _MSS_PREFIX
                                    and end < OPTIONS_AT + TCP_MSS_OPT_BYTES):
            return None                                # truncated: BAD_LENGTH
        if frame[OPTIONS_AT:OPTIONS_AT + 2] == _MSS_PREFIX:
            mss = int.from_bytes(frame[OPTIONS_AT + 2:OPTIONS_AT + 4], "big")
    total_len = int.from_bytes(frame[16:18], "big")
    if (total_len < IPV4_HDR_BYTES + (data_offset << 2)
            or ((14 + total_len) & 0xFFFF) > end or internet_checksum(frame[14:34]) != 0):
        return None
    src, dst = frame[26:30], frame[30:34]
    pseudo = src + dst + bytes((0, IP_PROTO_TCP)) + ((total_len - IPV4_HDR_BYTES) & 0xFFFF
                                                      ).to_bytes(2, "big")
    if internet_checksum(pseudo + frame[TCP_AT:50] + frame[52:]) != \
            int.from_bytes(frame[50:52], "big"):
        return None
    return mss


class SynLane:
    """Verdict's state, for the SYNs it takes."""

    def __init__(self, verdict: VerdictState) -> None:
        self.v = verdict

    def process(self, port: int, frame: bytes, now_us: int) -> list[tuple[int, bytes]] | None:
        """What the pipeline outputs for `frame`, or None: not one for this lane."""
        mss = _well_formed(frame)
        if mss is None:
            return None
        v, length = self.v, len(frame)
        if v.punt_rate.execute(REASON_SYN, length, time.monotonic_ns() // 1000) != METER_RED:
            v.exception_counter.count(REASON_SYN, length)
            pin = PacketIn()
            pin.ingress_port, pin.reason = port, REASON_SYN
            pin.tsval = (now_us >> TS_TICK_SHIFT) & M32
            return [(CPU_PORT, pin.pack() + frame)]
        _, _, src, dst, sport, dport, seq = _IPV4_TCP.unpack_from(frame, 14)
        action, params = v.cookie_listeners.lookup((dst, dport))
        if action != ANSWER_WITH_COOKIE:
            v.drop_counter.count(DROP_PUNT_LIMITED, length)
            return []
        v.cookies_sent.count(0, length)
        return [(port, syn_ack(frame, src, dst, sport, dport, seq, mss, *params))]


def syn_ack(frame: bytes, src: int, dst: int, sport: int, dport: int, seq: int, peer_mss: int,
            k0: int, k1: int, epoch: int, local_mss: int, window: int) -> bytes:
    """become_syn_ack and the checksums, on bytes: our SYN-ACK with the cookie as its ISN."""
    isn = make_cookie(k0, k1, dst, src, dport, sport, seq, epoch, peer_mss)
    ip = _SYN_ACK_IP.pack(0x45, 0, SYN_ACK_IP_LEN, 0, IPV4_FLAGS_DF << 13, ACK_TTL,
                          IP_PROTO_TCP, 0, dst, src)
    ip = ip[:10] + internet_checksum(ip).to_bytes(2, "big") + ip[12:]
    fields = (dport, sport, isn, (seq + 1) & M32, TCP_DATA_OFFSET_MSS << 4, TCP_SYN | TCP_ACK,
              window)
    pseudo = _PSEUDO.pack(dst, src, 0, IP_PROTO_TCP, TCP_HDR_BYTES + TCP_MSS_OPT_BYTES)
    checksum = internet_checksum(pseudo + _SYN_ACK_TCP.pack(*fields, 0, 0, TCP_OPT_MSS,
                                                            TCP_OPT_MSS_LEN, local_mss))
    tcp = _SYN_ACK_TCP.pack(*fields, checksum, 0, TCP_OPT_MSS, TCP_OPT_MSS_LEN, local_mss)
    return frame[6:12] + frame[0:6] + _ETH_IPV4 + ip + tcp
