"""PTF: SYN cookies in the data plane (syn_cookie.p4). SYNs within the punt budget reach the
CPU; beyond it, a SYN to a listening address and port comes back as our SYN-ACK whose ISN is
the cookie nic_contract/syn_cookie.py computes (the slow path checks it with that code), with
our MSS as its only option and correct checksums; other SYNs are dropped as before."""

from __future__ import annotations

import ipaddress

import ptf.testutils as tu
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from lib.base_test import WIRE_PORT, FastPathTest
from lib.packets import LOCAL_IP, LOCAL_MAC, PEER_IP, PEER_MAC
from nic_contract.constants import DropReason, PacketInReason
from nic_contract.syn_cookie import check_cookie, listener_entry, make_cookie

PORT = 8080
KEY = (0x01234567, 0x89ABCDEF)
EPOCH = 0x1234
OUR_MSS, WINDOW = 1460, 65535
DROPS = "drop_counter"
SENT = "syn_cookies_sent"


def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def syn(sport: int, isn: int, options=(("MSS", 1460), ("SAckOK", b""), ("Timestamp", (7, 0)),
                                       ("NOP", None), ("WScale", 7)), dport: int = PORT,
        flags: str = "S", payload: bytes = b"") -> Ether:
    """A SYN as Linux sends it (MSS first), from the peer to us."""
    return (Ether(src=PEER_MAC, dst=LOCAL_MAC) / IP(src=PEER_IP, dst=LOCAL_IP)
            / TCP(sport=sport, dport=dport, seq=isn, flags=flags, window=64240,
                  options=list(options)) / Raw(payload))


class SynCookieTest(FastPathTest):
    """A listener entry, and a punt budget of 1 SYN/s with a burst of 1."""

    def setUp(self) -> None:
        super().setUp()
        self.insert([listener_entry(self.p4info, LOCAL_IP, PORT, *KEY, EPOCH, OUR_MSS, WINDOW)])
        self.client.modify([self.p4info.meter_entry("punt_rate", PacketInReason.SYN, 1, 1, 1, 1)])

    def tearDown(self) -> None:
        try:
            self.client.modify([self.p4info.meter_reset_entry("punt_rate", PacketInReason.SYN)])
        finally:
            super().tearDown()

    def send_beyond_the_budget(self, pkt: Ether) -> tuple[bytes | None, int]:
        """Empty the bucket (SYNs to a port nobody listens on until one is dropped), send
        `pkt` at once, and return what came out on the wire port (None: nothing) and the
        PUNT_LIMITED count before `pkt`. The bucket refills one token per whole second of the
        meter's clock (bmv2's algorithm): if that happened just then, `pkt` went to the CPU
        instead, and the attempt is made again."""
        for _ in range(5):
            limited = self.empty_the_bucket()
            tu.send_packet(self, WIRE_PORT, pkt)
            result = tu.dp_poll(self, port_number=WIRE_PORT, timeout=0.5)
            if self.client.packet_in(0.2) is not None:
                continue   # a token came back in between: `pkt` was punted
            frame = None if isinstance(result, self.dataplane.PollFailure) else bytes(result.packet)
            return frame, limited
        self.fail("the punt meter kept letting the SYN through")

    def empty_the_bucket(self) -> int:
        """SYNs to a port without a listener entry until one is dropped; the count then."""
        for sport in range(1000, 1010):
            before = self.counter(DROPS, DropReason.PUNT_LIMITED)[0]
            tu.send_packet(self, WIRE_PORT, syn(sport, 1, dport=PORT + 1))
            while self.client.packet_in(0.05) is not None:
                pass
            limited = self.counter(DROPS, DropReason.PUNT_LIMITED)[0]
            if limited > before:
                return limited
        self.fail("the punt meter never ran out")

    def cookie_syn_ack(self, pkt: Ether, sport: int, isn: int, peer_mss: int) -> None:
        """`pkt`, beyond the budget, comes back as our SYN-ACK with the right cookie."""
        frame, _ = self.send_beyond_the_budget(pkt)
        self.assertIsNotNone(frame, "no SYN-ACK on the wire port")
        got = Ether(frame)
        ip, tcp = got[IP], got[TCP]
        self.assertEqual((got.src, got.dst, ip.src, ip.dst), (LOCAL_MAC, PEER_MAC, LOCAL_IP, PEER_IP))
        self.assertEqual((tcp.sport, tcp.dport, tcp.flags, tcp.ack, tcp.window),
                         (PORT, sport, "SA", (isn + 1) & 0xFFFFFFFF, WINDOW))
        self.assertEqual(tcp.options, [("MSS", OUR_MSS)], "our MSS only: no room for the rest")
        self.assertEqual((ip.len, ip.ttl, ip.flags, ip.tos), (44, 64, "DF", 0))
        self.assertEqual(len(got), 14 + 44, "everything after the MSS option is cut")
        expected = make_cookie(*KEY, _ip(LOCAL_IP), _ip(PEER_IP), PORT, sport, isn, EPOCH,
                               peer_mss)
        self.assertEqual(tcp.seq, expected, f"cookie {tcp.seq:#x}, expected {expected:#x}")
        self.assertIsNotNone(check_cookie(*KEY, _ip(LOCAL_IP), _ip(PEER_IP), PORT, sport, isn,
                                          tcp.seq, EPOCH + 1))
        fresh = Ether(bytes(got))
        del fresh[IP].chksum, fresh[TCP].chksum
        fresh = Ether(bytes(fresh))   # scapy recomputes both
        self.assertEqual((ip.chksum, tcp.chksum), (fresh[IP].chksum, fresh[TCP].chksum))


class SynBeyondTheBudgetGetsACookie(SynCookieTest):
    def runTest(self) -> None:
        before = self.counter(SENT, 0)[0]
        for sport, isn in ((40000, 0x11111111), (40001, 0xFFFFFFFF), (40002, 5)):
            self.cookie_syn_ack(syn(sport, isn), sport, isn, 1460)
        self.expect_no_packet_in()
        self.assertEqual(self.counter(SENT, 0)[0] - before, 3)


class CookieKeepsTheSynsMss(SynCookieTest):
    """The MSS index rounds the peer's MSS down to the table; no MSS option means 536."""

    def runTest(self) -> None:
        self.cookie_syn_ack(syn(40010, 99, options=[("MSS", 1400)]), 40010, 99, 1300)
        self.cookie_syn_ack(syn(40011, 99, options=[]), 40011, 99, 536)
        self.cookie_syn_ack(syn(40012, 99, options=[("NOP", None), ("MSS", 1460)]), 40012, 99,
                            536)   # not first: not parsed
        self.cookie_syn_ack(syn(40013, 99, payload=b"data on the SYN"), 40013, 99, 1460)


class OnlyListenersAndPlainSynsGetCookies(SynCookieTest):
    """A SYN to a port without an entry stays dropped (PUNT_LIMITED); a SYN with RST or FIN
    is not answered either."""

    def runTest(self) -> None:
        for pkt in (syn(40020, 1, dport=PORT + 1), syn(40021, 1, flags="SR"),
                    syn(40022, 1, flags="SF")):
            frame, before = self.send_beyond_the_budget(pkt)
            self.assertIsNone(frame, "answered, but it must not be")
            self.assertEqual(self.counter(DROPS, DropReason.PUNT_LIMITED)[0], before + 1)
