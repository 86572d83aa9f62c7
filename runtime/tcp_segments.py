"""Parse and build Ethernet/IPv4/TCP frames for the slow path (handshakes, RST, FIN, exceptions).

Hot path code: `struct` and memoryview only, no scapy. MAC addresses come out as lowercase
"aa:bb:cc:dd:ee:ff" strings and go in as such strings or 6 raw bytes; IPv4 addresses are dotted
quads. Sequence, acknowledgement and timestamp values are taken modulo 2**32 when building.

Options are built in the layout Linux uses, so that our SYN/SYN-ACK looks like a Linux one:
  SYN:     MSS(4) | SACK_PERM(2) TS(10)  or  NOP NOP TS(10)  or  NOP NOP SACK_PERM(2) | NOP WS(3)
  non-SYN: NOP NOP TS(10)   (MSS, window scale and SACK-permitted are SYN-only options)
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass
from enum import IntFlag

from nic_contract.checksum import internet_checksum
from nic_contract.constants import ETHERTYPE_IPV4

log = logging.getLogger(__name__)

ETH_HEADER = struct.Struct("!6s6sH")
IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
TCP_HEADER = struct.Struct("!HHIIBBHHH")
PSEUDO_HEADER = struct.Struct("!4s4sBBH")
ETH_BYTES = ETH_HEADER.size
IPV4_MIN_BYTES = IPV4_HEADER.size
TCP_MIN_BYTES = TCP_HEADER.size
IPPROTO_TCP = 6
IPV4_MAX_TOTAL_LENGTH = 0xFFFF
TCP_MAX_OPTION_BYTES = 40

IP_FLAG_DF = 0x4000
IP_FLAG_MF = 0x2000
IP_FRAGMENT_OFFSET_MASK = 0x1FFF

OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2
OPT_WINDOW_SCALE = 3
OPT_SACK_PERMITTED = 4
OPT_TIMESTAMPS = 8
_OPTION_LENGTHS = {OPT_MSS: 4, OPT_WINDOW_SCALE: 3, OPT_SACK_PERMITTED: 2, OPT_TIMESTAMPS: 10}
_OPTION_NAMES = {
    OPT_MSS: "MSS", OPT_WINDOW_SCALE: "window scale", OPT_SACK_PERMITTED: "SACK-permitted",
    OPT_TIMESTAMPS: "timestamps",
}
_MSS_OPTION = struct.Struct("!BBH")
_WS_OPTION = struct.Struct("!BBBB")  # NOP, kind, len, shift
_TS_OPTION = struct.Struct("!BBII")
_NOP_NOP_TS = struct.Struct("!BBBBII")
_U32 = 0xFFFFFFFF


class TcpFlags(IntFlag):
    """TCP header flags (byte 13)."""

    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


class SegmentError(ValueError):
    """A frame that is not a well-formed Ethernet/IPv4/TCP segment."""


@dataclass(frozen=True, slots=True)
class TcpOptions:
    """The TCP options the slow path understands; None/False means absent.

    `window_scale` is the shift count as received (RFC 7323 says to treat values > 14 as 14).
    `timestamps` is (TSval, TSecr).
    """

    mss: int | None = None
    window_scale: int | None = None
    sack_permitted: bool = False
    timestamps: tuple[int, int] | None = None


@dataclass(frozen=True)
class TcpSegment:
    """One parsed Ethernet/IPv4/TCP frame; `payload` is exactly what IPv4 total length covers."""

    src_mac: str
    dst_mac: str
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: TcpFlags
    window: int
    options: TcpOptions
    payload: bytes = b""
    tos: int = 0


def mac_to_bytes(mac: str | bytes) -> bytes:
    """6 raw bytes of a MAC given as "aa:bb:cc:dd:ee:ff" (or '-' separated) or as raw bytes."""
    if isinstance(mac, (bytes, bytearray)):
        if len(mac) != 6:
            raise ValueError(f"MAC address must be 6 bytes, got {len(mac)}")
        return bytes(mac)
    try:
        raw = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        raw = b""
    if len(raw) != 6:
        raise ValueError(f"not a MAC address: {mac!r}")
    return raw


def mac_to_str(raw: bytes) -> str:
    """Lowercase colon-separated text of a 6-byte MAC."""
    return raw.hex(":")


def ip_to_bytes(ip: str) -> bytes:
    """4 raw bytes of a dotted-quad IPv4 address (strict: no shorthand forms)."""
    try:
        return socket.inet_pton(socket.AF_INET, ip)
    except (OSError, TypeError):
        raise ValueError(f"not an IPv4 address: {ip!r}") from None


def _ipv4_bounds(frame: memoryview) -> tuple[int, int]:
    """(IPv4 header length, total length) of the frame's IPv4 packet, validated."""
    if len(frame) < ETH_BYTES:
        raise SegmentError(f"frame of {len(frame)} bytes is shorter than an Ethernet header")
    (ether_type,) = struct.unpack_from("!H", frame, 12)
    if ether_type != ETHERTYPE_IPV4:
        raise SegmentError(f"not IPv4: EtherType 0x{ether_type:04x}")
    available = len(frame) - ETH_BYTES
    if available < IPV4_MIN_BYTES:
        raise SegmentError(f"IPv4 header truncated: {available} bytes after Ethernet, need 20")
    ver_ihl, _, total_length, _, frag, _, proto, _, _, _ = IPV4_HEADER.unpack_from(frame, ETH_BYTES)
    version, ihl = ver_ihl >> 4, (ver_ihl & 0x0F) * 4
    if version != 4:
        raise SegmentError(f"IP version {version} in an IPv4 EtherType frame")
    if ihl < IPV4_MIN_BYTES:
        raise SegmentError(f"IPv4 header length {ihl} bytes is below the minimum 20")
    if total_length < ihl:
        raise SegmentError(f"IPv4 total length {total_length} is smaller than its header ({ihl})")
    if total_length > available:
        raise SegmentError(
            f"IPv4 total length {total_length} exceeds the {available} bytes after Ethernet"
        )
    if frag & (IP_FLAG_MF | IP_FRAGMENT_OFFSET_MASK):
        raise SegmentError(f"IPv4 fragment (flags/offset 0x{frag:04x}) not supported")
    if proto != IPPROTO_TCP:
        raise SegmentError(f"not TCP: IP protocol {proto}")
    return ihl, total_length


def _tcp_header_length(frame: memoryview, tcp_start: int, tcp_length: int) -> int:
    """Validated TCP header length (data offset * 4) of the segment at `tcp_start`."""
    if tcp_length < TCP_MIN_BYTES:
        raise SegmentError(f"TCP header truncated: IPv4 carries {tcp_length} bytes, need 20")
    header_length = (frame[tcp_start + 12] >> 4) * 4
    if header_length < TCP_MIN_BYTES:
        raise SegmentError(f"TCP data offset {header_length} bytes is below the minimum 20")
    if header_length > tcp_length:
        raise SegmentError(
            f"TCP data offset {header_length} bytes exceeds the {tcp_length}-byte TCP segment"
        )
    return header_length


def parse_options(data: bytes | memoryview) -> TcpOptions:
    """Parse a TCP option block; unknown kinds are skipped by their length."""
    mss = window_scale = timestamps = None
    sack_permitted = False
    i, end = 0, len(data)
    while i < end:
        kind = data[i]
        if kind == OPT_EOL:
            break
        if kind == OPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise SegmentError(f"TCP option kind {kind} at offset {i} truncated: no length byte")
        length = data[i + 1]
        if length < 2:
            raise SegmentError(f"TCP option kind {kind} at offset {i} has invalid length {length}")
        if i + length > end:
            raise SegmentError(
                f"TCP option kind {kind} at offset {i} truncated: length {length}, "
                f"{end - i} bytes left"
            )
        expected = _OPTION_LENGTHS.get(kind)
        if expected is not None and length != expected:
            raise SegmentError(
                f"TCP {_OPTION_NAMES[kind]} option has length {length}, must be {expected}"
            )
        if kind == OPT_MSS:
            mss = (data[i + 2] << 8) | data[i + 3]
        elif kind == OPT_WINDOW_SCALE:
            window_scale = data[i + 2]
        elif kind == OPT_SACK_PERMITTED:
            sack_permitted = True
        elif kind == OPT_TIMESTAMPS:
            _, _, tsval, tsecr = _TS_OPTION.unpack_from(data, i)
            timestamps = (tsval, tsecr)
        i += length
    return TcpOptions(mss, window_scale, sack_permitted, timestamps)


def parse_segment(frame: bytes | bytearray | memoryview) -> TcpSegment:
    """Parse an Ethernet/IPv4/TCP frame; raise SegmentError saying what is wrong.

    Checksums are not verified here: see checksums_ok(). Ethernet padding is ignored.
    """
    view = memoryview(frame)
    ihl, total_length = _ipv4_bounds(view)
    tcp_start = ETH_BYTES + ihl
    tcp_length = total_length - ihl
    header_length = _tcp_header_length(view, tcp_start, tcp_length)
    dst_mac, src_mac, _ = ETH_HEADER.unpack_from(view)
    _, tos, _, _, _, _, _, _, src_ip, dst_ip = IPV4_HEADER.unpack_from(view, ETH_BYTES)
    src_port, dst_port, seq, ack, _, flags, window, _, _ = TCP_HEADER.unpack_from(view, tcp_start)
    if not src_port or not dst_port:
        raise SegmentError(f"TCP port 0 ({src_port} -> {dst_port}) is reserved, never a connection's")
    options = parse_options(view[tcp_start + TCP_MIN_BYTES:tcp_start + header_length])
    payload = bytes(view[tcp_start + header_length:ETH_BYTES + total_length])
    return TcpSegment(
        mac_to_str(src_mac), mac_to_str(dst_mac),
        socket.inet_ntoa(src_ip), socket.inet_ntoa(dst_ip),
        src_port, dst_port, seq, ack, TcpFlags(flags), window, options, payload, tos,
    )


def checksums_ok(frame: bytes | bytearray | memoryview) -> bool:
    """True if the frame is IPv4/TCP with correct IPv4 header and TCP checksums.

    A frame too malformed to checksum (see parse_segment's checks) is reported as False.
    """
    view = memoryview(frame)
    try:
        ihl, total_length = _ipv4_bounds(view)
        _tcp_header_length(view, ETH_BYTES + ihl, total_length - ihl)
    except SegmentError as error:
        log.debug("checksums not checkable: %s", error)
        return False
    if internet_checksum(view[ETH_BYTES:ETH_BYTES + ihl]) != 0:
        return False
    tcp = view[ETH_BYTES + ihl:ETH_BYTES + total_length]
    src_dst = view[ETH_BYTES + 12:ETH_BYTES + 20]
    pseudo = bytes(src_dst) + struct.pack("!BBH", 0, IPPROTO_TCP, len(tcp))
    return internet_checksum(pseudo + bytes(tcp)) == 0


def encode_options(options: TcpOptions | None, syn: bool) -> bytes:
    """TCP option bytes in the Linux layout (see module docstring), padded to 4 bytes."""
    if options is None:
        return b""
    if not syn and (
        options.mss is not None or options.window_scale is not None or options.sack_permitted
    ):
        raise ValueError("MSS, window scale and SACK-permitted may only be sent on a SYN")
    try:
        out = _pack_options(options)
    except struct.error as error:
        raise ValueError(f"cannot encode TCP options {options}: {error}") from None
    if len(out) % 4:
        out += bytes(4 - len(out) % 4)
    return bytes(out)


def _pack_options(options: TcpOptions) -> bytearray:
    """The option bytes of `options` in the Linux order, unpadded."""
    out = bytearray()
    if options.mss is not None:
        out += _MSS_OPTION.pack(OPT_MSS, 4, options.mss)
    if options.timestamps is not None:
        tsval, tsecr = options.timestamps[0] & _U32, options.timestamps[1] & _U32
        if options.sack_permitted:
            out += bytes((OPT_SACK_PERMITTED, 2))
            out += _TS_OPTION.pack(OPT_TIMESTAMPS, 10, tsval, tsecr)
        else:
            out += _NOP_NOP_TS.pack(OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10, tsval, tsecr)
    elif options.sack_permitted:
        out += bytes((OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2))
    if options.window_scale is not None:
        out += _WS_OPTION.pack(OPT_NOP, OPT_WINDOW_SCALE, 3, options.window_scale)
    return out


def build_segment(
    src_mac: str | bytes,
    dst_mac: str | bytes,
    src_ip: str,
    dst_ip: str,
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: TcpFlags | int,
    window: int,
    options: TcpOptions | None = None,
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
    df: bool = True,
    tos: int = 0,
) -> bytes:
    """A complete Ethernet/IPv4/TCP frame with correct IPv4 and TCP checksums (no padding)."""
    option_bytes = encode_options(options, bool(flags & TcpFlags.SYN))
    tcp_length = TCP_MIN_BYTES + len(option_bytes) + len(payload)
    total_length = IPV4_MIN_BYTES + tcp_length
    if total_length > IPV4_MAX_TOTAL_LENGTH:
        raise ValueError(f"segment of {total_length} bytes exceeds the IPv4 maximum 65535")
    src_ip_raw, dst_ip_raw = ip_to_bytes(src_ip), ip_to_bytes(dst_ip)
    frame = bytearray(ETH_BYTES + total_length)
    tcp_start = ETH_BYTES + IPV4_MIN_BYTES
    try:
        ETH_HEADER.pack_into(frame, 0, mac_to_bytes(dst_mac), mac_to_bytes(src_mac), ETHERTYPE_IPV4)
        IPV4_HEADER.pack_into(
            frame, ETH_BYTES, 0x45, tos, total_length, ip_id, IP_FLAG_DF if df else 0, ttl,
            IPPROTO_TCP, 0, src_ip_raw, dst_ip_raw,
        )
        TCP_HEADER.pack_into(
            frame, tcp_start, src_port, dst_port, seq & _U32, ack & _U32,
            ((TCP_MIN_BYTES + len(option_bytes)) // 4) << 4, int(flags), window, 0, 0,
        )
    except struct.error as error:
        raise ValueError(f"cannot build segment: field out of range ({error})") from None
    frame[tcp_start + TCP_MIN_BYTES:tcp_start + TCP_MIN_BYTES + len(option_bytes)] = option_bytes
    frame[tcp_start + TCP_MIN_BYTES + len(option_bytes):] = payload
    _fill_checksums(frame, src_ip_raw + dst_ip_raw, tcp_length)
    return bytes(frame)


def _fill_checksums(frame: bytearray, addresses: bytes, tcp_length: int) -> None:
    """Write the IPv4 header and TCP (pseudo-header) checksums into a built frame."""
    view = memoryview(frame)
    ip_checksum = internet_checksum(view[ETH_BYTES:ETH_BYTES + IPV4_MIN_BYTES])
    struct.pack_into("!H", frame, ETH_BYTES + 10, ip_checksum)
    tcp_start = ETH_BYTES + IPV4_MIN_BYTES
    pseudo = addresses + struct.pack("!BBH", 0, IPPROTO_TCP, tcp_length)
    tcp_checksum = internet_checksum(pseudo + bytes(view[tcp_start:]))
    struct.pack_into("!H", frame, tcp_start + 16, tcp_checksum)
