"""P4Runtime's number encodings: bytestrings (any padding in, canonical out) and Uint128."""

from __future__ import annotations

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.failures import invalid

U32_MAX, U64_MAX = (1 << 32) - 1, (1 << 64) - 1


def to_int(data: bytes, bitwidth: int, what: str) -> int:
    """A P4Runtime bytestring as an int; padded or short forms are fine, as in PI."""
    value = int.from_bytes(data, "big")
    if value >> bitwidth:
        raise invalid(f"{what}: bytestring 0x{data.hex()} does not fit within {bitwidth} bits")
    return value


def canonical(value: int) -> bytes:
    """The canonical P4Runtime bytestring of a non-negative int (0 is one zero byte)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def u128(msg: p4runtime_pb2.Uint128) -> int:
    return (msg.high << 64) | msg.low


def set_u128(msg: p4runtime_pb2.Uint128, value: int) -> None:
    msg.high, msg.low = value >> 64, value & U64_MAX
