"""The Internet checksum (RFC 1071), as the fast path's csum16 computes it."""

from __future__ import annotations


def internet_checksum(data: bytes | bytearray | memoryview) -> int:
    """RFC 1071 checksum of `data` (odd length padded with a zero byte), as a 16-bit int.

    Uses 2**16 == 1 (mod 0xFFFF): the one's complement sum of the 16-bit words is the
    big-endian integer of the whole buffer modulo 0xFFFF (0xFFFF rather than 0 unless all zero).
    """
    if len(data) % 2:
        data = bytes(data) + b"\x00"
    value = int.from_bytes(data, "big")
    if value == 0:
        return 0xFFFF
    folded = value % 0xFFFF
    return 0 if folded == 0 else 0xFFFF - folded
