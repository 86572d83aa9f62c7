"""runtime.arp: codec against scapy, responder, cache expiry and asyncio resolution."""

from __future__ import annotations

import asyncio
import errno
import pickle
import re

import pytest
from scapy.layers.inet import IP
from scapy.layers.l2 import ARP, Ether

from runtime.arp import (
    ArpCache,
    ArpError,
    ArpOp,
    ArpPacket,
    ArpResponder,
    ArpTimeout,
    build_arp_reply,
    build_arp_request,
    parse_arp,
)

OUR_MAC, OUR_IP = "02:00:00:00:00:01", "10.0.0.1"
OUR_MAC2, OUR_IP2 = "02:00:00:00:00:02", "10.0.1.1"
PEER_MAC, PEER_IP = "0a:bb:cc:dd:ee:ff", "10.0.0.2"
OTHER_MAC, OTHER_IP = "0a:00:00:00:00:09", "10.0.0.9"


class FakeClock:
    """A settable monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _scapy_request(target_ip: str = OUR_IP, sender_ip: str = PEER_IP) -> bytes:
    return bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
                 / ARP(op=1, hwsrc=PEER_MAC, psrc=sender_ip, pdst=target_ip))


# --- codec ------------------------------------------------------------------------------------

def test_request_matches_scapy_bytes_and_fields() -> None:
    frame = build_arp_request(OUR_MAC, OUR_IP, PEER_IP)
    expected = Ether(src=OUR_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst="00:00:00:00:00:00", pdst=PEER_IP)
    assert frame == bytes(expected)
    arp = Ether(frame)[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc, arp.pdst) == (1, OUR_MAC, OUR_IP, PEER_IP)


def test_reply_matches_scapy_bytes_and_fields() -> None:
    frame = build_arp_reply(OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    packet = Ether(frame)
    assert packet.dst == PEER_MAC and packet.src == OUR_MAC and packet.type == 0x0806
    arp = packet[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc) == (2, OUR_MAC, OUR_IP)
    assert (arp.hwdst, arp.pdst) == (PEER_MAC, PEER_IP)
    assert frame == bytes(Ether(src=OUR_MAC, dst=PEER_MAC) / ARP(
        op=2, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst=PEER_MAC, pdst=PEER_IP))


def test_parse_scapy_frames_and_round_trip() -> None:
    assert parse_arp(_scapy_request()) == ArpPacket(
        ArpOp.REQUEST, PEER_MAC, PEER_IP, "00:00:00:00:00:00", OUR_IP)
    padded = bytes(Ether(src=PEER_MAC, dst=OUR_MAC) / ARP(
        op=2, hwsrc=PEER_MAC, psrc=PEER_IP, hwdst=OUR_MAC, pdst=OUR_IP)) + bytes(18)
    assert parse_arp(padded) == ArpPacket(ArpOp.REPLY, PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)
    assert parse_arp(build_arp_reply(OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)) == ArpPacket(
        ArpOp.REPLY, OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)


def test_builders_accept_raw_mac_bytes_and_reject_bad_addresses() -> None:
    assert build_arp_request(bytes.fromhex("020000000001"), OUR_IP, PEER_IP) == build_arp_request(
        OUR_MAC, OUR_IP, PEER_IP)
    with pytest.raises(ValueError, match="not an IPv4 address"):
        build_arp_request(OUR_MAC, OUR_IP, "10.0.0")
    with pytest.raises(ValueError, match="not a MAC address"):
        build_arp_reply(OUR_MAC, OUR_IP, "zz:00:00:00:00:00", PEER_IP)


GOOD_ARP = _scapy_request()


def _patched(offset: int, value: bytes) -> bytes:
    """GOOD_ARP with `value` written at `offset`."""
    return GOOD_ARP[:offset] + value + GOOD_ARP[offset + len(value):]


@pytest.mark.parametrize("frame, text", [
    (GOOD_ARP[:41], "shorter than an ARP frame"),
    (bytes(Ether() / IP()) + bytes(20), "not ARP: EtherType 0x0800"),
    (_patched(14, b"\x00\x06"), "hardware type 6 / length 6 is not Ethernet"),
    (_patched(18, b"\x08"), "hardware type 1 / length 8 is not Ethernet"),
    (_patched(16, b"\x86\xdd"), "protocol type 0x86dd / length 4 is not IPv4"),
    (_patched(19, b"\x10"), "protocol type 0x0800 / length 16 is not IPv4"),
    (_patched(20, b"\x00\x03"), "unknown ARP operation 3"),
])
def test_parse_rejects_malformed(frame: bytes, text: str) -> None:
    with pytest.raises(ArpError, match=text):
        parse_arp(frame)


# --- responder --------------------------------------------------------------------------------

def test_responder_answers_requests_for_each_local_ip_with_exact_bytes() -> None:
    cache = ArpCache()
    responder = ArpResponder({OUR_IP: OUR_MAC, OUR_IP2: OUR_MAC2.upper()}, cache)
    reply = responder.handle(_scapy_request(OUR_IP))
    assert reply == bytes(Ether(src=OUR_MAC, dst=PEER_MAC) / ARP(
        op=2, hwsrc=OUR_MAC, psrc=OUR_IP, hwdst=PEER_MAC, pdst=PEER_IP))
    assert reply == build_arp_reply(OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)
    assert responder.handle(_scapy_request(OUR_IP2)) == build_arp_reply(
        OUR_MAC2, OUR_IP2, PEER_MAC, PEER_IP)
    assert cache.get(PEER_IP) == PEER_MAC


def test_responder_ignores_other_ips_replies_and_garbage() -> None:
    cache = ArpCache()
    responder = ArpResponder({OUR_IP: OUR_MAC}, cache)
    assert responder.handle(_scapy_request("10.0.0.77")) is None
    assert cache.get(PEER_IP) is None  # a request not for us teaches nothing new
    reply_to_us = build_arp_reply(PEER_MAC, PEER_IP, OUR_MAC, OUR_IP)
    assert responder.handle(reply_to_us) is None
    assert cache.get(PEER_IP) == PEER_MAC  # replies to our requests are learnt
    assert responder.handle(b"\x00" * 10) is None
    assert responder.handle(bytes(Ether() / IP())) is None


def test_responder_merges_known_senders_and_skips_probes() -> None:
    cache = ArpCache()
    cache.learn(OTHER_IP, "0a:00:00:00:00:01")
    responder = ArpResponder({OUR_IP: OUR_MAC}, cache)
    gratuitous = bytes(Ether(src=OTHER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=OTHER_MAC, psrc=OTHER_IP, pdst=OTHER_IP))
    assert responder.handle(gratuitous) is None
    assert cache.get(OTHER_IP) == OTHER_MAC
    probe = bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(
        op=1, hwsrc=PEER_MAC, psrc="0.0.0.0", pdst=OUR_IP))
    assert responder.handle(probe) == build_arp_reply(OUR_MAC, OUR_IP, PEER_MAC, "0.0.0.0")
    assert cache.get("0.0.0.0") is None and len(cache) == 1


def test_responder_without_cache_still_answers() -> None:
    assert ArpResponder({OUR_IP: OUR_MAC}).handle(_scapy_request()) == build_arp_reply(
        OUR_MAC, OUR_IP, PEER_MAC, PEER_IP)


# --- cache expiry -----------------------------------------------------------------------------

def test_cache_entries_expire_with_the_clock() -> None:
    clock = FakeClock()
    cache = ArpCache(ttl_s=60.0, clock=clock)
    cache.learn(PEER_IP, PEER_MAC.upper())
    assert cache.get(PEER_IP) == PEER_MAC
    clock.now += 59.9
    assert cache.get(PEER_IP) == PEER_MAC
    cache.learn(PEER_IP, PEER_MAC)  # refresh
    clock.now += 59.9
    assert cache.get(PEER_IP) == PEER_MAC
    clock.now += 0.1
    assert cache.get(PEER_IP) is None
    assert len(cache) == 0


def test_cache_purge_and_forget() -> None:
    clock = FakeClock()
    cache = ArpCache(ttl_s=10.0, clock=clock)
    cache.learn(PEER_IP, PEER_MAC)
    clock.now += 5
    cache.learn(OTHER_IP, OTHER_MAC)
    clock.now += 6
    assert cache.purge() == 1 and len(cache) == 1
    cache.forget(OTHER_IP)
    assert cache.get(OTHER_IP) is None


# --- asyncio resolution -----------------------------------------------------------------------

def test_resolve_returns_cached_mac_without_sending() -> None:
    cache = ArpCache()
    cache.learn(PEER_IP, PEER_MAC)
    sent: list[str] = []
    assert asyncio.run(cache.resolve(PEER_IP, lambda: sent.append(PEER_IP))) == PEER_MAC
    assert sent == []


def test_resolve_succeeds_when_another_task_learns() -> None:
    async def scenario() -> tuple[str, int]:
        cache = ArpCache()
        sent: list[bytes] = []
        responder = ArpResponder({OUR_IP: OUR_MAC}, cache)

        async def peer_answers() -> None:
            while not sent:
                await asyncio.sleep(0.001)
            assert Ether(sent[0])[ARP].pdst == PEER_IP
            responder.handle(build_arp_reply(PEER_MAC, PEER_IP, OUR_MAC, OUR_IP))

        answer = asyncio.create_task(peer_answers())
        request = build_arp_request(OUR_MAC, OUR_IP, PEER_IP)
        mac = await cache.resolve(PEER_IP, lambda: sent.append(request), timeout_s=2.0)
        await answer
        return mac, len(sent)

    assert asyncio.run(scenario()) == (PEER_MAC, 1)


def test_concurrent_resolvers_share_one_request() -> None:
    async def scenario() -> tuple[list[str], int]:
        cache = ArpCache()
        sent: list[str] = []
        resolvers = [asyncio.create_task(cache.resolve(PEER_IP, lambda: sent.append(PEER_IP),
                                                       timeout_s=10.0)) for _ in range(5)]
        await asyncio.sleep(0.02)
        cache.learn(PEER_IP, PEER_MAC)
        macs = await asyncio.gather(*resolvers)
        return macs, len(sent)

    assert asyncio.run(scenario()) == ([PEER_MAC] * 5, 1)


def test_resolve_retries_with_backoff_then_times_out() -> None:
    async def scenario() -> tuple[ArpTimeout, list[float], float]:
        cache = ArpCache()
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent: list[float] = []
        with pytest.raises(ArpTimeout) as caught:
            await cache.resolve(OTHER_IP, lambda: sent.append(loop.time() - start),
                                timeout_s=0.35, retries=2)
        return caught.value, sent, loop.time() - start

    error, sent, elapsed = asyncio.run(scenario())
    assert len(sent) == 3  # first request + 2 retries
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert gaps[0] >= 0.045 and gaps[1] >= 0.095 and gaps[1] > 1.5 * gaps[0]  # 0.05 s, 0.10 s
    assert 0.33 <= elapsed < 1.0
    assert isinstance(error, OSError) and error.errno == errno.EHOSTUNREACH
    assert error.ip == OTHER_IP and error.requests == 3
    expected = rf"host {OTHER_IP} unreachable: no ARP reply after 0\.\d\d s \(3 requests sent\)"
    assert re.search(expected, str(error))
    assert str(error).startswith(f"[Errno {errno.EHOSTUNREACH}]")


def test_timeout_reaches_every_waiter_and_a_later_resolve_starts_afresh() -> None:
    async def scenario() -> tuple[list[BaseException | str], int, str]:
        cache = ArpCache()
        sent: list[str] = []
        results = await asyncio.gather(
            *(cache.resolve(OTHER_IP, lambda: sent.append("x"), timeout_s=0.1, retries=1)
              for _ in range(3)), return_exceptions=True)
        first_round = len(sent)

        async def learn_soon() -> None:
            await asyncio.sleep(0.01)
            cache.learn(OTHER_IP, OTHER_MAC)

        learner = asyncio.create_task(learn_soon())
        mac = await cache.resolve(OTHER_IP, lambda: sent.append("y"), timeout_s=1.0)
        await learner
        return results, first_round, mac + f"/{len(sent)}"

    results, first_round, mac = asyncio.run(scenario())
    assert all(isinstance(r, ArpTimeout) and r.errno == errno.EHOSTUNREACH for r in results)
    assert first_round == 2
    assert mac == f"{OTHER_MAC}/3"


def test_cancelled_resolver_does_not_cancel_the_others() -> None:
    async def scenario() -> str:
        cache = ArpCache()
        first = asyncio.create_task(cache.resolve(PEER_IP, lambda: None, timeout_s=5.0))
        second = asyncio.create_task(cache.resolve(PEER_IP, lambda: None, timeout_s=5.0))
        await asyncio.sleep(0.01)
        first.cancel()
        await asyncio.sleep(0.01)
        cache.learn(PEER_IP, PEER_MAC)
        return await second

    assert asyncio.run(scenario()) == PEER_MAC


def test_failing_send_request_still_times_out_cleanly() -> None:
    def broken() -> None:
        raise ConnectionError("PacketOut stream down")

    async def scenario() -> None:
        await ArpCache().resolve(OTHER_IP, broken, timeout_s=0.05, retries=1)

    with pytest.raises(ArpTimeout, match="10.0.0.9"):
        asyncio.run(scenario())


def test_arp_timeout_pickles_and_is_an_oserror() -> None:
    error = pickle.loads(pickle.dumps(ArpTimeout(OTHER_IP, 3.0, 4)))
    assert isinstance(error, OSError) and error.errno == errno.EHOSTUNREACH
    assert str(error) == (f"[Errno {errno.EHOSTUNREACH}] host {OTHER_IP} unreachable: "
                          "no ARP reply after 3.00 s (4 requests sent)")
