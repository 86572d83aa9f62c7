"""Initial sequence numbers as RFC 6528 says: ISN = M + F(local IP, local port, remote IP,
remote port, secret key), M a 4-microsecond clock and F a keyed hash (BLAKE2b with a random key
from `secrets`). An off-path attacker learns nothing about one connection's ISN from others'
(Python's `random` is a Mersenne Twister: 624 outputs reveal all later ones), and a 4-tuple
reused soon after gets a higher ISN than before, as RFC 9293 3.4.1 wants."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable

from nic_contract.flow_entries import FlowTuple

TICK_NS = 4000         # M: one step per 4 microseconds (RFC 6528 3, RFC 9293 3.4.1)
KEY_BYTES = 16
SEQ_MASK = 0xFFFFFFFF


class IsnGenerator:
    """ISNs for new connections (one generator, one secret key, per runtime)."""

    def __init__(self, key: bytes | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._key = key if key is not None else secrets.token_bytes(KEY_BYTES)
        self._clock_ns = clock_ns

    def isn(self, flow: FlowTuple) -> int:
        """The ISN of a connection with this 4-tuple (seen from our side) started now."""
        text = f"{flow.local_ip}|{flow.local_port}|{flow.peer_ip}|{flow.peer_port}".encode()
        offset = hashlib.blake2b(text, key=self._key, digest_size=4).digest()
        return (self._clock_ns() // TICK_NS + int.from_bytes(offset, "big")) & SEQ_MASK
