"""The NIC<->host channel codec: round trips and clear errors for malformed frames."""

import random

import pytest

from nic_contract.constants import ETHERTYPE_NIC_HOST
from nic_contract.nic_host_header import (HEADER_BYTES, FrameError, NicHostMessage, Opcode, ChannelFlags,
                                     decode, payload_sum, tx_data)


def test_rx_data_round_trip() -> None:
    msg = NicHostMessage(Opcode.RX_DATA, flow_id=70000, gen=513, flags=ChannelFlags.PSH | ChannelFlags.CE,
                         offset=0xDEADBEEF, payload=b"\x00payload\xff")
    frame = msg.encode(dst_mac=b"\x02" * 6, src_mac=b"\x04" * 6)
    assert len(frame) == HEADER_BYTES + 9 == 38 + 9
    assert decode(frame) == msg


def test_byte_layout_is_the_documented_one() -> None:
    frame = NicHostMessage(Opcode.RX_CONSUMED, flow_id=0x01020304, gen=0x0A0B, count=0x11223344,
                           offset=0x55667788, aux=0x99AABBCC).encode()
    assert frame[12:14] == ETHERTYPE_NIC_HOST.to_bytes(2, "big")
    header = frame[14:]
    assert header[0] == 2                               # opcode
    assert header[1] == 0                               # flags
    assert header[2:4] == b"\x0a\x0b"                   # gen
    assert header[4:8] == b"\x01\x02\x03\x04"           # flow id
    assert header[8:12] == b"\x55\x66\x77\x88"          # offset
    assert header[12:14] == b"\x00\x00"                 # length
    assert header[14:16] == b"\x00\x00"                 # window
    assert header[16:20] == b"\x11\x22\x33\x44"         # count
    assert header[20:24] == b"\x99\xaa\xbb\xcc"         # aux


def test_ethernet_padding_after_payload_is_ignored() -> None:
    frame = NicHostMessage(Opcode.RX_DATA, 1, 1, payload=b"ab").encode() + b"\x00" * 20
    assert decode(frame).payload == b"ab"


@pytest.mark.parametrize("frame, words", [
    (b"\x00" * 10, "shorter than the 38-byte"),
    (b"\x00" * 12 + b"\x08\x00" + b"\x00" * 24, "EtherType 0x0800"),
])
def test_short_or_foreign_frames(frame: bytes, words: str) -> None:
    with pytest.raises(FrameError, match=words):
        decode(frame)


def test_unknown_opcode() -> None:
    frame = bytearray(NicHostMessage(Opcode.RX_DATA, 1, 1).encode())
    frame[14] = 99
    with pytest.raises(FrameError, match="unknown opcode 99"):
        decode(bytes(frame))


def test_length_beyond_frame() -> None:
    frame = bytearray(NicHostMessage(Opcode.RX_DATA, 1, 1, payload=b"abcd").encode())
    with pytest.raises(FrameError, match="says 4 payload bytes but the frame carries 2"):
        decode(bytes(frame[:-2]))


def test_tx_acked_carries_the_peer_window() -> None:
    msg = NicHostMessage(Opcode.TX_ACKED, 7, 3, flags=ChannelFlags.ECE, offset=123456, count=1448,
                         aux=99, window=0xBEEF)
    frame = msg.encode()
    assert frame[14 + 14:14 + 16] == bytes.fromhex("beef")
    assert decode(frame) == msg


def test_oversized_payload_refused() -> None:
    with pytest.raises(FrameError, match="does not fit the 16-bit length"):
        NicHostMessage(Opcode.RX_DATA, 1, 1, payload=b"x" * 70000).encode()


def _reference_sum(data: bytes) -> int:
    """RFC 1071's loop: 16-bit big-endian words, end-around carry."""
    if len(data) % 2:
        data += b"\0"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


@pytest.mark.parametrize("size", [0, 1, 2, 3, 57, 1448, 1449, 9000])
def test_tx_data_carries_its_payloads_ones_complement_sum(size: int) -> None:
    rng = random.Random(size)
    for payload in (rng.randbytes(size), b"\xff" * size, b"\0" * size):
        message = tx_data(7, 1, ChannelFlags.NONE, 0, 0, payload)
        assert message.window == payload_sum(payload) == _reference_sum(payload)
        assert decode(message.encode()).window == message.window
