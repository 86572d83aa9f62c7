"""runtime.normalize: a segment the fast path punted for its IPv4 options, URG or unusual TCP
options is rebuilt into exactly what the fast path parses (a rebuilt one must never be
punted again, or it would go round forever)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP, IPOption_NOP
from scapy.layers.l2 import Ether

from runtime.normalize import normalizable, normalized_frame
from runtime.tcp_segments import TcpFlags, checksums_ok, parse_segment

TS_LAYOUT = bytes([1, 1, 8, 10])


def frame(**tcp) -> bytes:
    ip = IP(src="10.0.0.2", dst="10.0.0.1", tos=0x02, options=[IPOption_NOP()] * 4)
    return bytes(Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01") / ip
                 / TCP(sport=40000, dport=7, seq=1000, ack=2000, window=512, **tcp)
                 / b"payload")


def test_ip_options_urg_and_sack_blocks_are_rebuilt_away() -> None:
    raw = frame(flags="PAU", urgptr=3,
                options=[("SAck", (100, 200)), ("Timestamp", (7, 8))])
    seg = parse_segment(raw)
    assert normalizable(seg)
    out = normalized_frame(seg)
    assert checksums_ok(out)
    assert out[14] == 0x45                       # IPv4 without options
    assert out[15] == 0x02                       # the ECN codepoint kept (ECT(0))
    tcp = out[34:]
    assert tcp[12] >> 4 == 8 and tcp[20:24] == TS_LAYOUT  # NOP, NOP, timestamps (Linux's)
    again = parse_segment(out)
    assert again.flags == TcpFlags.PSH | TcpFlags.ACK          # URG gone
    assert again.options.timestamps == (7, 8)
    assert (again.seq, again.ack, again.window, again.payload) == (1000, 2000, 512, b"payload")


def test_without_timestamps_no_option_is_left() -> None:
    out = normalized_frame(parse_segment(frame(flags="A", options=[("NOP", None)] * 4)))
    assert out[34 + 12] >> 4 == 5 and checksums_ok(out)


def test_handshake_and_teardown_segments_stay_with_the_slow_path() -> None:
    for flags in ("S", "SA", "FA", "R", "RA", "P"):
        assert not normalizable(parse_segment(frame(flags=flags)))
