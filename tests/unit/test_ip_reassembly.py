"""IPv4 reassembly (runtime.ip_reassembly): fragments in any order, duplicates, overlaps
(RFC 5722: the datagram is discarded), the timeout, and the limits a hostile network meets."""

from __future__ import annotations

import random
import struct

import pytest

from nic_contract.checksum import internet_checksum
from runtime.ip_reassembly import Reassembler, ReassemblyLimits, is_fragment
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment, checksums_ok, parse_segment

MAC_A, MAC_B = "02:00:00:00:00:01", "02:00:00:00:00:02"


def datagram(size: int = 3000, seed: int = 1) -> bytes:
    """A TCP segment of `size` bytes (header included) as one (unfragmented) frame."""
    payload = random.Random(seed).randbytes(size - 32)
    return build_segment(MAC_A, MAC_B, "10.0.0.2", "10.0.0.1", 40000, 80, 1000, 2000,
                         TcpFlags.ACK | TcpFlags.PSH, 500, TcpOptions(timestamps=(7, 9)),
                         payload)


def fragments(frame: bytes, size: int, ident: int = 77, options: bytes = b"") -> list[bytes]:
    """`frame`'s IPv4 datagram cut into fragments of `size` payload bytes (a multiple of 8);
    `options` go into every fragment's header."""
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    body = ip[ihl:]
    out = []
    for offset in range(0, len(body), size):
        out.append(fragment(frame[:14], ip[:ihl], body[offset:offset + size], offset,
                            offset + size < len(body), ident, options))
    return out


def fragment(eth: bytes, header: bytes, data: bytes, offset: int, more: bool, ident: int = 77,
             options: bytes = b"") -> bytes:
    h = bytearray(header[:20] + options)
    h[0] = 0x40 | len(h) // 4
    struct.pack_into("!HHH", h, 2, len(h) + len(data), ident,
                     (0x2000 if more else 0) | offset // 8)
    struct.pack_into("!H", h, 10, 0)
    struct.pack_into("!H", h, 10, internet_checksum(bytes(h)))
    return eth + bytes(h) + data


def same(got: bytes, whole: bytes) -> bool:
    """The same segment, its checksums right (the IPv4 identification and flags may differ)."""
    a, b = parse_segment(got), parse_segment(whole)
    return checksums_ok(got) and (a.src_ip, a.dst_ip, a.src_port, a.seq, a.ack, a.flags,
                                  a.options, a.payload) == (b.src_ip, b.dst_ip, b.src_port,
                                                            b.seq, b.ack, b.flags, b.options,
                                                            b.payload)


def feed(r: Reassembler, frames: list[bytes], now: float = 0.0) -> list[bytes]:
    return [out for f in frames if (out := r.add(f, now)) is not None]


def test_in_order_fragments_give_back_the_segment() -> None:
    whole = datagram()
    parts = fragments(whole, 1024)
    assert len(parts) == 3 and all(is_fragment(p) for p in parts)
    assert not is_fragment(whole)
    r = Reassembler()
    [out] = feed(r, parts)
    assert same(out, whole)
    assert len(r) == 0 and r.held_bytes == 0 and r.counters["reassembled"] == 1


def test_any_order_duplicates_and_ip_options() -> None:
    whole = datagram(5000, seed=2)
    parts = fragments(whole, 808, options=b"\x01\x01\x01\x00")  # NOPs, EOL
    order = parts[:]
    random.Random(5).shuffle(order)
    r = Reassembler()
    [got] = feed(r, order[:3] + [order[1]] + order[3:])
    assert same(got, whole) and len(got) == len(whole)   # rebuilt without the options
    assert r.counters["duplicates"] == 1


def test_two_datagrams_interleaved_are_kept_apart() -> None:
    a, b = datagram(2000, seed=3), datagram(2000, seed=4)
    pa, pb = fragments(a, 1000, ident=1), fragments(b, 1000, ident=2)
    r = Reassembler()
    got = feed(r, [pa[0], pb[1], pb[0], pa[1]])
    assert len(got) == 2 and same(got[0], b) and same(got[1], a)


@pytest.mark.parametrize("overlap", ["partial", "same_offset_other_data", "other_end"])
def test_overlaps_discard_the_datagram_and_its_later_fragments(overlap: str) -> None:
    whole = datagram(3000)
    parts = fragments(whole, 1000)
    eth, header = whole[:14], whole[14:34]
    body = whole[34:]
    bad = {"partial": fragment(eth, header, body[496:1496], 496, True),
           "same_offset_other_data": fragment(eth, header, b"\0" * 1000, 1000, True),
           "other_end": fragment(eth, header, body[1000:1008], 1000, False)}[overlap]
    r = Reassembler()
    first = [parts[0], parts[2]] if overlap == "other_end" else [parts[0]]
    assert feed(r, first + [bad] + parts[1:]) == []
    assert r.counters["overlaps"] == 1 and r.held_bytes == 0
    assert feed(r, parts) == [] and r.counters["discarded_fragments"] >= 3
    r.expire(31.0)
    assert len(r) == 0
    [got] = feed(r, parts, now=31.0)   # after the timeout the key is free again
    assert same(got, whole)


def test_incomplete_datagrams_time_out() -> None:
    parts = fragments(datagram(), 1024)
    r = Reassembler(ReassemblyLimits(timeout_s=30.0))
    feed(r, parts[:2], now=0.0)
    assert len(r) == 1 and r.next_deadline() == 30.0
    r.expire(29.9)
    assert len(r) == 1
    r.expire(30.0)
    assert len(r) == 0 and r.held_bytes == 0 and r.counters["timeouts"] == 1
    assert feed(r, parts[2:], now=30.0) == []   # the rest alone is not enough


def test_limits_bound_what_a_flood_can_make_it_hold() -> None:
    limits = ReassemblyLimits(max_datagrams=4, max_bytes=10_000, max_fragments=8)
    r = Reassembler(limits)
    whole = datagram(2000)
    for ident in range(10):   # first halves only, never completed
        feed(r, fragments(whole, 1000, ident=ident)[:1])
    assert len(r) == 4 and r.counters["over_datagram_limit"] == 6
    assert r.held_bytes <= limits.max_bytes
    big = datagram(12_000, seed=9)
    feed(r, fragments(big, 1000, ident=99)[:1])   # no room for a fifth datagram
    r.expire(31.0)
    feed(r, fragments(big, 1000, ident=100)[:9])
    assert r.held_bytes <= limits.max_bytes
    assert r.counters["too_many_fragments"] + r.counters["over_byte_limit"] >= 1


def test_a_datagram_beyond_64_kib_is_refused() -> None:
    whole = datagram(100)
    eth, header = whole[:14], whole[14:34]
    r = Reassembler()
    assert r.add(fragment(eth, header, b"x" * 16, 65528, False), 0.0) is None
    assert r.counters["too_big"] == 1 and r.held_bytes == 0


def test_malformed_fragments_are_dropped() -> None:
    whole = datagram(3000)
    parts = fragments(whole, 1000)
    r = Reassembler()
    bad_sum = bytearray(parts[0])
    bad_sum[14 + 8] ^= 1   # TTL changed, checksum not
    odd = fragment(whole[:14], whole[14:34], b"x" * 999, 0, True)   # not a multiple of 8
    truncated = parts[1][:500]
    assert feed(r, [bytes(bad_sum), odd, truncated]) == []
    assert r.counters["malformed"] == 3 and len(r) == 0


# ------------------------------------------------------------------ in connection control


def test_fragments_of_an_established_flow_go_back_to_the_fast_path_split_to_the_mss() -> None:
    import asyncio

    from nic_contract.constants import PacketInReason
    from runtime.datapath import PacketIn
    from tests.unit.test_nic_parts import LOCAL_IP, LOCAL_MAC, PEER_IP, PEER_MAC, PORT, Rig

    async def scenario() -> None:
        r = Rig()
        conn = await r.established(sport=40000, irs=1000)
        payload = random.Random(3).randbytes(4000)   # a datagram bigger than the MSS
        whole = build_segment(PEER_MAC, LOCAL_MAC, PEER_IP, LOCAL_IP, 40000, PORT, 1001,
                              conn.snd_nxt, TcpFlags.ACK | TcpFlags.PSH, 500,
                              TcpOptions(timestamps=(5, 6)), payload)
        parts = fragments(whole, 1480)
        random.Random(1).shuffle(parts)
        for part in parts:
            r.control.on_packet_in(PacketIn(part, 1, int(PacketInReason.IPV4_FRAGMENT), 0))
        pieces = r.datapath.reinjected
        assert b"".join(p.payload for p in pieces) == payload
        assert all(len(p.payload) <= 1460 - 12 for p in pieces) and len(pieces) == 3
        assert [p.seq for p in pieces] == [1001, 1001 + 1448, 1001 + 2 * 1448]
        assert [bool(p.flags & TcpFlags.PSH) for p in pieces] == [False, False, True]
        assert all(p.options.timestamps == (5, 6) for p in pieces)
        counters = r.control.snapshot()
        assert counters["ipfrag_reassembled"] == 1 and counters["ipfrag_in_progress"] == 0
        # A fragment that never completes is counted and expires; nothing is reinjected.
        r.control.on_packet_in(PacketIn(fragments(whole, 1480, ident=9)[0], 1,
                                        int(PacketInReason.IPV4_FRAGMENT), 0))
        assert r.control.snapshot()["ipfrag_in_progress"] == 1 and len(pieces) == 3
        r.close()
    asyncio.run(scenario())
