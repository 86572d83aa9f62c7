"""SYN cookies (RFC 4987 3.6): when a listener's backlog is full, its SYN-ACKs carry all the
state the handshake needs in their ISN, and nothing is kept until the peer's ACK returns it.
A SYN flood then costs one answer per SYN, never the listener's slots.

Cookie (our ISN), 32 bits: [31:27] a 64-second counter mod 32, [26:25] the peer's MSS as an
index into MSS_TABLE (rounded down), [24:0] a keyed BLAKE2b of the 4-tuple, the peer's ISN and
the counter (key from `secrets`). A cookie is valid for two counter periods (64 to 128 s).
Such a connection has no window scaling, timestamps, SACK or ECN: the cookie has no room for
the peer's options (the price of surviving the flood; Linux pays it too without timestamps)."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from nic_contract.flow_entries import FlowTuple

MSS_TABLE = (536, 1300, 1440, 1460)   # Linux's IPv4 table: common MSS values, rounded down to
PERIOD_S = 64
COUNTER_BITS, MSS_BITS, HASH_BITS = 5, 2, 25
VALID_PERIODS = 2


class SynCookies:
    """Makes and checks the ISNs of SYN-ACKs sent without keeping state."""

    def __init__(self, key: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._key = key if key is not None else secrets.token_bytes(16)
        self._clock = clock

    def make(self, flow: FlowTuple, peer_isn: int, peer_mss: int) -> int:
        """Our ISN for a SYN-ACK to `flow`'s SYN with ISN `peer_isn` and MSS `peer_mss`."""
        counter = self._counter()
        index = max(i for i, mss in enumerate(MSS_TABLE) if mss <= max(peer_mss, MSS_TABLE[0]))
        return ((counter % (1 << COUNTER_BITS)) << (MSS_BITS + HASH_BITS)
                | index << HASH_BITS | self._hash(flow, peer_isn, counter))

    def check(self, flow: FlowTuple, peer_isn: int, cookie: int) -> int | None:
        """The peer's MSS if `cookie` (the ACK's ack - 1) is one of ours for this flow and
        ISN, made no more than VALID_PERIODS ago; None otherwise."""
        now = self._counter()
        stamp = cookie >> (MSS_BITS + HASH_BITS)
        for counter in range(now, now - VALID_PERIODS, -1):
            if counter % (1 << COUNTER_BITS) == stamp and \
                    cookie & ((1 << HASH_BITS) - 1) == self._hash(flow, peer_isn, counter):
                return MSS_TABLE[(cookie >> HASH_BITS) & ((1 << MSS_BITS) - 1)]
        return None

    def _counter(self) -> int:
        return int(self._clock() // PERIOD_S)

    def _hash(self, flow: FlowTuple, peer_isn: int, counter: int) -> int:
        text = (f"{flow.local_ip}|{flow.local_port}|{flow.peer_ip}|{flow.peer_port}|"
                f"{peer_isn}|{counter}").encode()
        digest = hashlib.blake2b(text, key=self._key, digest_size=4).digest()
        return int.from_bytes(digest, "big") & ((1 << HASH_BITS) - 1)
