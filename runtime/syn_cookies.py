"""SYN cookies (RFC 4987 3.6): when a listener's backlog is full, its SYN-ACKs carry all the
state the handshake needs in their ISN, and nothing is kept until the peer's ACK returns it.
A SYN flood then costs one answer per SYN, never the listener's slots. The fast path makes the
same cookies for SYNs beyond its punt budget (nic_contract/syn_cookie.py has the format); the
slow path holds the key and the epoch, and checks every returning cookie, whoever made it.

Such a connection has no window scaling, timestamps, SACK or ECN: the cookie has no room for
the peer's options (the price of surviving the flood; Linux pays it too without timestamps)."""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable

from nic_contract.flow_entries import FlowTuple
from nic_contract.syn_cookie import EPOCH_MASK, EPOCH_S, check_cookie, make_cookie


def _ip(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


class SynCookies:
    """Makes and checks the ISNs of SYN-ACKs sent without keeping state."""

    def __init__(self, key: bytes | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        key = key if key is not None else secrets.token_bytes(8)
        self.k0 = int.from_bytes(key[:4], "little")
        self.k1 = int.from_bytes(key[4:8], "little")
        self._clock = clock

    @property
    def epoch(self) -> int:
        """The current epoch (what the fast path's listener entries carry)."""
        return int(self._clock() // EPOCH_S) & EPOCH_MASK

    def make(self, flow: FlowTuple, peer_isn: int, peer_mss: int) -> int:
        """Our ISN for a SYN-ACK to `flow`'s SYN with ISN `peer_isn` and MSS `peer_mss`."""
        return make_cookie(self.k0, self.k1, _ip(flow.local_ip), _ip(flow.peer_ip),
                           flow.local_port, flow.peer_port, peer_isn, self.epoch, peer_mss)

    def check(self, flow: FlowTuple, peer_isn: int, cookie: int) -> int | None:
        """The peer's MSS if `cookie` (the ACK's ack - 1) is one of ours for this flow and
        ISN, made in this epoch or the one before; None otherwise."""
        return check_cookie(self.k0, self.k1, _ip(flow.local_ip), _ip(flow.peer_ip),
                            flow.local_port, flow.peer_port, peer_isn, cookie, self.epoch)
