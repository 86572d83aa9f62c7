"""SYN cookies (RFC 4987 3.6), one format for the fast path and the slow path.

Under a SYN flood the fast path answers SYNs to a listening port itself once its SYN punt
budget is spent (p4src/v1model/syn_cookie.p4), and the slow path answers with the same cookie
when a listener's backlog is full; whichever made it, the slow path checks the cookie the
peer's ACK returns and opens the connection it describes. So both sides compute the same
function, defined here once for Python (softnic's pipeline and the runtime use it):

    cookie (our ISN), 32 bits: [31:27] the epoch mod 32, [26:25] the peer's MSS as an index
    into MSS_TABLE (rounded down), [24:0] the low 25 bits of HalfSipHash-2-4 (32-bit tag)
    keyed with (k0, k1) over five 32-bit words, little-endian as the reference reads them:
    local address, peer address, local port << 16 | peer port, the peer's ISN, the epoch.

HalfSipHash is a keyed pseudo-random function built from add, rotate and xor on 32-bit words,
which a P4 target computes at line rate (SmartCookie, USENIX Security 2024, runs it on
Tofino); a CRC, the hash P4 targets offer natively, is affine and would give the key away to
anyone who sees one cookie. The epoch is a counter the slow path advances every EPOCH_S
seconds and writes into the fast path's listener entries with the key; a cookie is valid for
the epoch it was made in and the one before (64 to 128 s).
"""

from __future__ import annotations

import struct

from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2

MSS_TABLE = (536, 1300, 1440, 1460)   # Linux's IPv4 table: common MSS values, rounded down to
EPOCH_S = 64
STAMP_BITS, MSS_BITS, HASH_BITS = 5, 2, 25
EPOCH_MASK = 0xFFFF                   # the epoch is 16 bits in the fast path's listener entries
VALID_EPOCHS = 2
_M32 = 0xFFFFFFFF
_INIT = (0x6C796765, 0x74656462)       # HalfSipHash's constants: v2 = k0 ^ [0], v3 = k1 ^ [1]
_C_ROUNDS, _D_ROUNDS = (0, 0), (0, 0, 0, 0)   # SipRounds per message word, in finalization
_FINAL = (0, _D_ROUNDS, 0xFF)          # v2 ^= 0xFF, then the four finalization rounds
_COOKIE_LAST_WORD = 20 << 24           # the length byte of a 20-byte message, nothing after it


def _halfsiphash(k0: int, k1: int, steps: tuple[tuple[int, tuple[int, ...], int], ...]) -> int:
    """HalfSipHash's state run over `steps` (message word, its rounds, what v2 is xored with
    first), SipRounds written out in one loop: the cookie's hash is the fast path's hot spot
    in softnic."""
    v0, v1, v2, v3 = k0, k1, _INIT[0] ^ k0, _INIT[1] ^ k1
    m32 = _M32   # a local: the loop below is the hot spot
    for word, rounds, v2_xor in steps:
        v3 ^= word
        v2 ^= v2_xor
        for _ in rounds:
            v0 = (v0 + v1) & m32
            v1 = ((v1 << 5 | v1 >> 27) & m32) ^ v0
            v0 = (v0 << 16 | v0 >> 16) & m32
            v2 = (v2 + v3) & m32
            v3 = ((v3 << 8 | v3 >> 24) & m32) ^ v2
            v0 = (v0 + v3) & m32
            v3 = ((v3 << 7 | v3 >> 25) & m32) ^ v0
            v2 = (v2 + v1) & m32
            v1 = ((v1 << 13 | v1 >> 19) & m32) ^ v2
            v2 = (v2 << 16 | v2 >> 16) & m32
        v0 ^= word
    return v1 ^ v3


def halfsiphash24(k0: int, k1: int, message: bytes) -> int:
    """HalfSipHash-2-4 with a 32-bit tag (the reference's `halfsiphash(..., outlen=4)`, tag
    read little-endian); k0, k1 are the key's two little-endian words."""
    whole = len(message) - len(message) % 4
    words = [word for (word,) in struct.iter_unpack("<I", message[:whole])]
    words.append((len(message) & 0xFF) << 24 | int.from_bytes(message[whole:], "little"))
    return _halfsiphash(k0, k1, (*((word, _C_ROUNDS, 0) for word in words), _FINAL))


def mss_index(peer_mss: int) -> int:
    """The largest MSS_TABLE entry the peer's MSS allows (the smallest when it allows none)."""
    return max(i for i, mss in enumerate(MSS_TABLE) if mss <= max(peer_mss, MSS_TABLE[0]))


def cookie_hash(k0: int, k1: int, local_ip: int, peer_ip: int, local_port: int,
                peer_port: int, peer_isn: int, epoch: int) -> int:
    """The cookie's hash field: HASH_BITS of HalfSipHash over the connection and epoch."""
    steps = ((local_ip, _C_ROUNDS, 0), (peer_ip, _C_ROUNDS, 0),
             (local_port << 16 | peer_port, _C_ROUNDS, 0), (peer_isn, _C_ROUNDS, 0),
             (epoch & EPOCH_MASK, _C_ROUNDS, 0), (_COOKIE_LAST_WORD, _C_ROUNDS, 0), _FINAL)
    return _halfsiphash(k0, k1, steps) & ((1 << HASH_BITS) - 1)


def make_cookie(k0: int, k1: int, local_ip: int, peer_ip: int, local_port: int,
                peer_port: int, peer_isn: int, epoch: int, peer_mss: int) -> int:
    """Our ISN for a SYN-ACK answering the peer's SYN (addresses as 32-bit integers)."""
    stamp = epoch % (1 << STAMP_BITS)
    return (stamp << (MSS_BITS + HASH_BITS) | mss_index(peer_mss) << HASH_BITS
            | cookie_hash(k0, k1, local_ip, peer_ip, local_port, peer_port, peer_isn, epoch))


def check_cookie(k0: int, k1: int, local_ip: int, peer_ip: int, local_port: int,
                 peer_port: int, peer_isn: int, cookie: int, epoch: int) -> int | None:
    """The peer's MSS if `cookie` (the ACK's ack - 1) was made for this connection in `epoch`
    or the VALID_EPOCHS - 1 before it; None otherwise."""
    stamp = cookie >> (MSS_BITS + HASH_BITS)
    for made in range(epoch, epoch - VALID_EPOCHS, -1):
        if made % (1 << STAMP_BITS) == stamp and cookie & ((1 << HASH_BITS) - 1) == \
                cookie_hash(k0, k1, local_ip, peer_ip, local_port, peer_port, peer_isn, made):
            return MSS_TABLE[(cookie >> HASH_BITS) & ((1 << MSS_BITS) - 1)]
    return None


def listener_entry(p4info: P4Info, local_ip: str, local_port: int, k0: int, k1: int,
                   epoch: int, local_mss: int, window: int) -> p4runtime_pb2.TableEntry:
    """The fast path's syn_cookie_listeners entry: SYNs to local_ip:local_port beyond the punt
    budget are answered with a cookie made with this key and epoch, offering `local_mss` and
    an unscaled `window`."""
    return p4info.table_entry(
        "syn_cookie_listeners",
        match={"local_ip": local_ip, "local_port": local_port},
        action="answer_with_cookie",
        params={"k0": k0, "k1": k1, "epoch": epoch & EPOCH_MASK, "local_mss": local_mss,
                "window": window},
    )
