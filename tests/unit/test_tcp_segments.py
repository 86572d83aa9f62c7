"""runtime.tcp_segments against scapy: fields, checksums, Linux option layout, malformed input."""

from __future__ import annotations

import os
import struct

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.utils import checksum as scapy_checksum

from nic_contract.checksum import internet_checksum
from runtime.tcp_segments import (
    SegmentError,
    TcpFlags,
    TcpOptions,
    TcpSegment,
    build_segment,
    checksums_ok,
    encode_options,
    parse_segment,
)

A_MAC, B_MAC = "02:00:00:00:00:0a", "02:00:00:00:00:0b"
A_IP, B_IP = "10.0.0.1", "10.0.0.2"
LINUX_SYN_OPTIONS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456, 0)), ("NOP", None),
                     ("WScale", 7)]


def _build(**overrides) -> bytes:
    """A segment A -> B with defaults, fields overridable by keyword."""
    args = dict(src_mac=A_MAC, dst_mac=B_MAC, src_ip=A_IP, dst_ip=B_IP, src_port=40000,
                dst_port=5201, seq=1000, ack=2000, flags=TcpFlags.ACK, window=512)
    args.update(overrides)
    return build_segment(**args)


def _scapy_frame(tcp: TCP, payload: bytes = b"", **ip_fields) -> bytes:
    """A scapy-built Ethernet/IPv4/TCP frame A -> B."""
    return bytes(Ether(src=A_MAC, dst=B_MAC) / IP(src=A_IP, dst=B_IP, **ip_fields) / tcp / payload)


def _recomputed_by_scapy(frame: bytes) -> bytes:
    """`frame` re-serialized by scapy with both checksums recomputed."""
    packet = Ether(frame)
    del packet[IP].chksum
    del packet[TCP].chksum
    return bytes(packet)


# --- internet_checksum ------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    b"", b"\x00", b"\x00\x00\x00\x00", b"\xff\xff", b"\xff\xff\xff\xff", b"\x01",
    b"\xab\xcd\xef", b"\xff\xfe\x00\x01",
    os.urandom(1), os.urandom(1499), os.urandom(1500), os.urandom(9001),
])
def test_internet_checksum_matches_scapy(data: bytes) -> None:
    assert internet_checksum(data) == scapy_checksum(data)


def test_internet_checksum_accepts_memoryview_and_verifies_to_zero() -> None:
    data = bytearray(os.urandom(64)) + b"\x00\x00"
    struct.pack_into("!H", data, 64, internet_checksum(data))
    assert internet_checksum(memoryview(data)) == 0


# --- build_segment vs scapy -------------------------------------------------------------------

def test_built_ack_parses_in_scapy_with_same_fields_and_checksums() -> None:
    frame = _build(payload=b"hello world!", ip_id=77, ttl=33, tos=0x02)
    packet = Ether(frame)
    assert (packet.src, packet.dst) == (A_MAC, B_MAC)
    ip, tcp = packet[IP], packet[TCP]
    assert (ip.src, ip.dst, ip.ttl, ip.id, ip.tos) == (A_IP, B_IP, 33, 77, 2)
    assert (ip.proto, ip.ihl) == (6, 5)
    assert ip.flags == "DF" and ip.frag == 0 and ip.len == 20 + 20 + 12
    assert (tcp.sport, tcp.dport, tcp.seq, tcp.ack, tcp.window) == (40000, 5201, 1000, 2000, 512)
    assert tcp.flags == "A" and tcp.dataofs == 5 and tcp.options == []
    assert bytes(tcp.payload) == b"hello world!"
    assert _recomputed_by_scapy(frame) == frame
    assert checksums_ok(frame)


@pytest.mark.parametrize("payload", [b"x", b"abc", os.urandom(1459), os.urandom(1461)])
def test_odd_and_even_payload_checksums_match_scapy(payload: bytes) -> None:
    frame = _build(payload=payload, flags=TcpFlags.ACK | TcpFlags.PSH,
                   options=TcpOptions(timestamps=(1, 2)))
    assert _recomputed_by_scapy(frame) == frame
    assert checksums_ok(frame)
    assert parse_segment(frame).payload == payload


def test_df_off_and_sequence_numbers_wrap_modulo_2_32() -> None:
    frame = _build(df=False, seq=2**32 + 5, ack=-1)
    packet = Ether(frame)
    assert packet[IP].flags == 0
    assert (packet[TCP].seq, packet[TCP].ack) == (5, 2**32 - 1)
    assert _recomputed_by_scapy(frame) == frame


def test_mac_given_as_bytes() -> None:
    assert _build(src_mac=bytes.fromhex("02000000000a")) == _build()


def test_linux_syn_layout_with_sack_and_timestamps() -> None:
    options = TcpOptions(mss=1460, window_scale=7, sack_permitted=True, timestamps=(0x01020304, 0))
    frame = _build(flags=TcpFlags.SYN, ack=0, window=64240, options=options)
    tcp = Ether(frame)[TCP]
    assert tcp.dataofs == 10
    mss, sack_perm, ts, nop, ws = "020405b4", "0402", "080a0102030400000000", "01", "030307"
    assert bytes(tcp)[20:40] == bytes.fromhex(mss + sack_perm + ts + nop + ws)
    assert tcp.options == [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0x01020304, 0)),
                           ("NOP", None), ("WScale", 7)]
    assert _recomputed_by_scapy(frame) == frame


def test_syn_ack_without_sack_uses_nop_nop_timestamps() -> None:
    options = TcpOptions(mss=1460, window_scale=9, timestamps=(7, 8))
    frame = _build(flags=TcpFlags.SYN | TcpFlags.ACK, options=options)
    assert Ether(frame)[TCP].options == [("MSS", 1460), ("NOP", None), ("NOP", None),
                                        ("Timestamp", (7, 8)), ("NOP", None), ("WScale", 9)]
    assert parse_segment(frame).options == options
    assert _recomputed_by_scapy(frame) == frame


@pytest.mark.parametrize("options, expected", [
    (TcpOptions(), b""),
    (TcpOptions(mss=536), bytes.fromhex("02040218")),
    (TcpOptions(sack_permitted=True), bytes.fromhex("01010402")),
    (TcpOptions(window_scale=0), bytes.fromhex("01030300")),
    (TcpOptions(mss=9000, sack_permitted=True, window_scale=14),
     bytes.fromhex("02042328" "01010402" "0103030e")),
])
def test_syn_option_encodings(options: TcpOptions, expected: bytes) -> None:
    assert encode_options(options, syn=True) == expected


def test_non_syn_segments_carry_only_nop_nop_timestamps() -> None:
    frame = _build(options=TcpOptions(timestamps=(2**32 - 1, 5)))
    tcp = Ether(frame)[TCP]
    assert bytes(tcp)[20:32] == bytes.fromhex("0101080affffffff00000005")
    assert tcp.options == [("NOP", None), ("NOP", None), ("Timestamp", (2**32 - 1, 5))]
    with pytest.raises(ValueError, match="only be sent on a SYN"):
        _build(options=TcpOptions(mss=1460))


@pytest.mark.parametrize("overrides, text", [
    (dict(window=70000), "out of range"),
    (dict(src_port=-1), "out of range"),
    (dict(src_ip="10.0.1"), "not an IPv4 address"),
    (dict(dst_mac="02:00:00:00:00"), "not a MAC address"),
    (dict(payload=bytes(65535 - 40 + 1)), "exceeds the IPv4 maximum"),
    (dict(flags=TcpFlags.SYN, options=TcpOptions(mss=70000)), "cannot encode TCP options"),
])
def test_build_rejects_bad_fields(overrides: dict, text: str) -> None:
    with pytest.raises(ValueError, match=text):
        _build(**overrides)


# --- parse_segment ----------------------------------------------------------------------------

def test_parse_round_trip_of_built_segment() -> None:
    options = TcpOptions(mss=1400, window_scale=3, sack_permitted=True, timestamps=(9, 10))
    frame = _build(flags=TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR, options=options, payload=b"")
    assert parse_segment(frame) == TcpSegment(
        A_MAC, B_MAC, A_IP, B_IP, 40000, 5201, 1000, 2000,
        TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR, 512, options, b"", 0,
    )


def test_parse_scapy_linux_syn() -> None:
    frame = _scapy_frame(TCP(sport=51000, dport=80, seq=4242, flags="SEC", window=64240,
                             options=LINUX_SYN_OPTIONS), tos=0x01)
    segment = parse_segment(frame)
    assert (segment.src_mac, segment.dst_mac) == (A_MAC, B_MAC)
    assert (segment.src_ip, segment.dst_ip) == (A_IP, B_IP)
    assert (segment.src_port, segment.dst_port, segment.seq, segment.ack) == (51000, 80, 4242, 0)
    assert segment.flags == TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR
    assert segment.window == 64240 and segment.payload == b"" and segment.tos == 1
    assert segment.options == TcpOptions(mss=1460, window_scale=7, sack_permitted=True,
                                         timestamps=(123456, 0))
    assert checksums_ok(frame)


@pytest.mark.parametrize("scapy_options, expected", [
    ([], TcpOptions()),
    ([("MSS", 536)], TcpOptions(mss=536)),
    ([("NOP", None), ("WScale", 14), ("NOP", None), ("NOP", None), ("SAckOK", b"")],
     TcpOptions(window_scale=14, sack_permitted=True)),
    ([("MSS", 1460), ("NOP", None), ("NOP", None), ("Timestamp", (1, 2)), ("NOP", None),
      ("WScale", 0)], TcpOptions(mss=1460, window_scale=0, timestamps=(1, 2))),
    # unknown kinds (SACK blocks, TCP-AO style 29, experimental 254) are skipped by length
    ([("NOP", None), ("NOP", None), ("SAck", (100, 200)), ("Timestamp", (3, 4))],
     TcpOptions(timestamps=(3, 4))),
    ([(254, b"\x12\x34\x56"), ("MSS", 1200), (29, b"")], TcpOptions(mss=1200)),
    # End of option list stops parsing: what follows is padding
    ([("MSS", 1000), ("EOL", None)], TcpOptions(mss=1000)),
])
def test_parse_scapy_option_sets(scapy_options: list, expected: TcpOptions) -> None:
    frame = _scapy_frame(TCP(flags="S", options=scapy_options))
    assert parse_segment(frame).options == expected


def test_parse_ignores_ethernet_padding_and_skips_ip_options() -> None:
    frame = _scapy_frame(TCP(flags="R", seq=5), options=[b"\x01\x01\x01\x00"])
    frame += b"\xee" * (60 - len(frame) + 4)
    segment = parse_segment(frame)
    assert segment.flags == TcpFlags.RST and segment.seq == 5 and segment.payload == b""
    assert checksums_ok(frame)


def test_payload_is_exactly_ipv4_total_length() -> None:
    frame = _build(payload=b"ab") + b"\x00" * 4
    assert parse_segment(frame).payload == b"ab"
    assert parse_segment(bytearray(frame)).payload == b"ab"


def _patched(frame: bytes, offset: int, value: bytes) -> bytes:
    return frame[:offset] + value + frame[offset + len(value):]


GOOD = _scapy_frame(TCP(flags="S", options=[("MSS", 1460)]), payload=b"data")
TCP_AT = 14 + 20


def _with_raw_options(raw: bytes) -> bytes:
    """A scapy SYN whose option block is exactly `raw` (a multiple of 4 bytes)."""
    return _scapy_frame(TCP(flags="S", dataofs=5 + len(raw) // 4) / raw)


@pytest.mark.parametrize("frame, text", [
    (GOOD[:10], "shorter than an Ethernet header"),
    (bytes(Ether() / ARP()), "not IPv4: EtherType 0x0806"),
    (bytes(Ether() / IPv6() / TCP()), "not IPv4: EtherType 0x86dd"),
    (GOOD[:14 + 19], "IPv4 header truncated"),
    (_patched(GOOD, 14, b"\x65"), "IP version 6"),
    (_patched(GOOD, 14, b"\x44"), "below the minimum 20"),
    (_patched(GOOD, 16, struct.pack("!H", 19)), "smaller than its header"),
    (GOOD[:-1], "exceeds the"),
    (bytes(Ether() / IP(flags="MF") / TCP()), "IPv4 fragment"),
    (bytes(Ether() / IP(frag=100) / TCP()), "IPv4 fragment"),
    (bytes(Ether() / IP() / UDP()), "not TCP: IP protocol 17"),
    (bytes(Ether() / IP(len=30) / TCP()), "TCP header truncated"),
    (_patched(GOOD, TCP_AT + 12, b"\x40"), "TCP data offset 16 bytes is below"),
    (_patched(GOOD, TCP_AT + 12, b"\xf0"), "exceeds the 28-byte TCP segment"),
    (_with_raw_options(b"\x01\x01\x01\x02"), "truncated: no length byte"),
    (_with_raw_options(b"\x02\x03\x05\x01"), "MSS option has length 3, must be 4"),
    (_with_raw_options(b"\x01\x01\x08\x0a\x00\x00\x00\x01"), "truncated: length 10, 6 bytes left"),
    (_with_raw_options(b"\xfe\x01\x00\x00"), "invalid length 1"),
    (_with_raw_options(b"\xfe\x00\x00\x00"), "invalid length 0"),
    (_with_raw_options(b"\x03\x04\x07\x00"), "window scale option has length 4, must be 3"),
    (_with_raw_options(b"\x04\x03\x00\x00"), "SACK-permitted option has length 3, must be 2"),
    (_with_raw_options(b"\x08\x08" + bytes(6)), "timestamps option has length 8, must be 10"),
])
def test_malformed_frames_raise_segment_error(frame: bytes, text: str) -> None:
    with pytest.raises(SegmentError, match=text):
        parse_segment(frame)


# --- checksums_ok -----------------------------------------------------------------------------

def test_checksums_ok_accepts_scapy_and_built_frames() -> None:
    assert checksums_ok(GOOD)
    assert checksums_ok(_build(payload=b"odd"))


def test_checksums_ok_false_on_any_flipped_byte_after_ethernet() -> None:
    frame = _build(payload=b"some payload!", options=TcpOptions(timestamps=(1, 1)))
    for offset in range(14, len(frame)):
        flipped = _patched(frame, offset, bytes([frame[offset] ^ 0x5A]))
        assert not checksums_ok(flipped), f"flip at byte {offset} not detected"


def test_checksums_ok_detects_each_checksum_separately() -> None:
    ip_bad = _patched(GOOD, 14 + 10, b"\x00\x00")
    assert not checksums_ok(ip_bad)
    tcp_bad = _patched(GOOD, TCP_AT + 16, b"\x00\x00")
    assert not checksums_ok(tcp_bad)
    assert parse_segment(tcp_bad).options.mss == 1460  # parse does not verify checksums


def test_checksums_ok_false_for_malformed_frames() -> None:
    assert not checksums_ok(b"")
    assert not checksums_ok(bytes(Ether() / IP() / UDP()))


@pytest.mark.parametrize("sport, dport", [(0, 80), (40000, 0)])
def test_port_zero_is_malformed(sport: int, dport: int) -> None:
    """Found by the fuzzer: a segment from or to port 0 made the slow path build a FlowTuple,
    which refuses port 0 (and its handling raised twice)."""
    with pytest.raises(SegmentError, match="port 0"):
        parse_segment(_build(src_port=sport, dst_port=dport))
