"""Codec of the NIC<->host channel frames on the host port (p4src/shared/headers.p4, nic_host_h).

Frame: Ethernet (EtherType 0x88B5) + 24-byte header + payload. Header, big-endian:
  byte  0     opcode    Opcode
  byte  1     flags     ChannelFlags
  bytes 2-3   gen       generation of the flow
  bytes 4-7   flow_id
  bytes 8-11  offset    ring offset of the first payload byte (RX_DATA, TX_DATA), or the
                        cumulative ACK sequence number (TX_ACKED)
  bytes 12-13 length    payload bytes that follow the header (RX_DATA, TX_DATA)
  bytes 14-15 window    the peer's raw (unscaled) TCP window (TX_ACKED), zero otherwise
  bytes 16-19 count     bytes the application consumed (RX_CONSUMED), newly acked (TX_ACKED)
  bytes 20-23 aux       RTT sample in microseconds (TX_ACKED, RX_DATA), zero = none
SACK frames carry a SACK block's edges as TX stream positions in `count` and `aux`.
A frame may be longer than its payload (Ethernet pads short frames): `length` is the truth.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

from nic_contract.constants import ETHERTYPE_NIC_HOST

ETH_HEADER = struct.Struct("!6s6sH")
NIC_HOST_HEADER = struct.Struct("!BBHIIHHII")
HEADER_BYTES = ETH_HEADER.size + NIC_HOST_HEADER.size
AUX_OFFSET = HEADER_BYTES - 4  # byte offset of `aux` (the last field) in a frame


class Opcode(IntEnum):
    """What a channel message means (NIC_HOST_OP_* in constants.p4)."""

    RX_DATA = 1       # NIC -> host: payload at RX ring `offset`, `length` bytes
    RX_CONSUMED = 2   # host -> NIC: the application freed `count` RX ring bytes
    TX_DATA = 3       # host -> NIC: send the payload from ring `offset`, TX stream position
                      # `aux` (mod 2^32); the NIC adds the headers, sequence tx_start + aux
    TX_ACKED = 4      # NIC -> host: acknowledged up to sequence `offset` (`count` more bytes);
                      # also the NIC's answer to a TX_DATA of already acknowledged data;
                      # `window` is the peer's raw window, `aux` an RTT sample in
                      # microseconds (0: none), flag ECE if the ACK echoed congestion
    RETRANSMIT = 5    # NIC -> host: third duplicate ACK; go back to TX stream position `aux`
                      # (snd_una, mod 2^32); `window` as for TX_ACKED
    SACK = 6          # NIC -> host: a duplicate ACK with SACK blocks (RFC 2018) of a flow
                      # that negotiated SACK: its first block is TX stream positions
                      # [`count`, `aux`) (mod 2^32); `offset` and `window` as for TX_ACKED;
                      # flag FAST_RETRANSMIT: the third duplicate ACK (no RETRANSMIT follows)


class ChannelFlags(IntFlag):
    """Message flags (NIC_HOST_FLAG_* in constants.p4)."""

    NONE = 0
    PSH = 0x01   # RX_DATA: the segment carried PSH; TX_DATA: set PSH on the segment
    CE = 0x02    # RX_DATA: the segment arrived CE-marked
    ECE = 0x04   # TX_ACKED: the acknowledging segment echoed congestion (ECE)
    CWR = 0x04   # TX_DATA (flags are per opcode): set CWR, first data after a cut for ECE
    RTO = 0x08   # TX_DATA: first segment of a go-back-N after a retransmission timeout
    TRIM = 0x08  # RX_DATA: starts below the RX write position; skip what the ring holds
    FAST_RETRANSMIT = 0x08  # SACK: this duplicate ACK starts a fast retransmit (RFC 6675)
    PROBE = 0x10  # TX_DATA: a window probe (one byte below snd_una, sent anyway)
    ECE_ECHO = 0x10  # RX_DATA: our ACKs carry ECE now (CE seen, CWR not yet, RFC 3168 6.1.3)
    OOO = 0x20   # RX_DATA: placed out of order at `offset`, not readable yet
    MERGED = 0x40  # RX_DATA: after this payload `aux` earlier placed bytes become readable
    FIN = 0x80   # TX_DATA: our FIN follows the payload (which may be empty); TX_ACKED,
                 # RX_DATA: this ACK covered our FIN (not counted in `count`)


_OPCODES = {int(op): op for op in Opcode}
_FLAGS = tuple(ChannelFlags(value) for value in range(256))  # constructing one costs ~1 us
_ETHER_TYPE = struct.Struct("!H")
_ETHER_TYPE_AT = ETH_HEADER.size - _ETHER_TYPE.size


class FrameError(ValueError):
    """A host-port frame that is not a valid channel message."""


@dataclass(frozen=True)
class NicHostMessage:
    """One NIC<->host channel message; `payload` is empty except for RX_DATA."""

    opcode: Opcode
    flow_id: int
    gen: int
    flags: ChannelFlags = ChannelFlags.NONE
    offset: int = 0
    count: int = 0
    payload: bytes = b""
    aux: int = 0
    window: int = 0

    def encode(self, dst_mac: bytes = b"\x00" * 6, src_mac: bytes = b"\x00" * 6) -> bytes:
        """Serialize to a complete Ethernet frame."""
        if len(self.payload) > 0xFFFF:
            raise FrameError(f"payload of {len(self.payload)} bytes does not fit the 16-bit length")
        header = NIC_HOST_HEADER.pack(
            self.opcode, self.flags, self.gen, self.flow_id, self.offset, len(self.payload),
            self.window, self.count, self.aux,
        )
        return ETH_HEADER.pack(dst_mac, src_mac, ETHERTYPE_NIC_HOST) + header + self.payload


def payload_sum(payload: bytes) -> int:
    """The 16-bit one's-complement sum of `payload` as big-endian words, an odd last byte
    padded with zero (RFC 1071): what TX_DATA carries in `window`, so that a target whose
    checksum unit covers header fields only (PNA on DPDK) can still checksum the segment.
    Since 2^16 = 1 (mod 2^16 - 1), the sum of the words is the number mod 0xFFFF."""
    if len(payload) % 2:
        payload += b"\0"
    total = int.from_bytes(payload, "big") % 0xFFFF
    return 0xFFFF if total == 0 and any(payload) else total


def tx_data(flow_id: int, gen: int, flags: ChannelFlags, offset: int, position: int,
            payload: bytes = b"") -> NicHostMessage:
    """A TX_DATA message: `payload` to send from TX stream position `position` (aux), with
    its one's-complement sum in `window`."""
    return NicHostMessage(Opcode.TX_DATA, flow_id, gen, flags, offset, payload=payload,
                          aux=position, window=payload_sum(payload))


def decode(frame: bytes) -> NicHostMessage:
    """Parse a host-port frame; raise FrameError saying what is wrong with it."""
    if len(frame) < HEADER_BYTES:
        raise FrameError(
            f"frame of {len(frame)} bytes is shorter than the {HEADER_BYTES}-byte channel header"
        )
    (ether_type,) = _ETHER_TYPE.unpack_from(frame, _ETHER_TYPE_AT)
    if ether_type != ETHERTYPE_NIC_HOST:
        raise FrameError(f"EtherType 0x{ether_type:04x} is not the channel's 0x{ETHERTYPE_NIC_HOST:04x}")
    opcode, flags, gen, flow_id, offset, length, window, count, aux = NIC_HOST_HEADER.unpack_from(
        frame, ETH_HEADER.size
    )
    op = _OPCODES.get(opcode)
    if op is None:
        raise FrameError(f"unknown opcode {opcode} (known: {[o.name for o in Opcode]})")
    available = len(frame) - HEADER_BYTES
    if length > available:
        raise FrameError(f"header says {length} payload bytes but the frame carries {available}")
    payload = bytes(frame[HEADER_BYTES:HEADER_BYTES + length])
    return NicHostMessage(op, flow_id, gen, _FLAGS[flags], offset, count, payload, aux, window)
