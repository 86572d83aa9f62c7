"""The controller headers (packet_in, packet_out) as bytes on a frame: their metadata fields
bit-packed big-endian in p4info order, padded to whole bytes, as bmv2's deparser emits them and
its parser reads them. A P4Runtime server turns them into stream messages; a CPU port that is a
network interface carries them as they are (the runtime's CpuInterface)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ControllerHeader:
    """A controller header (packet_in/packet_out): metadata bit-packed big-endian in p4info
    order, padded to whole bytes, as bmv2 deparses it."""

    fields: tuple[tuple[int, int], ...]   # (metadata id, bitwidth)
    widths: dict[int, int]                # metadata id -> bitwidth
    nbytes: int
    ids: dict[str, int]                   # metadata name -> id, in field order

    @classmethod
    def of(cls, cpm: Any) -> ControllerHeader:
        """The header of a p4info ControllerPacketMetadata."""
        fields = tuple((m.id, m.bitwidth) for m in cpm.metadata)
        return cls(fields, dict(fields), (sum(w for _, w in fields) + 7) // 8,
                   {m.name: m.id for m in cpm.metadata})

    def unpack_named(self, frame: bytes) -> dict[str, int]:
        """{metadata name: value} of the header at the start of `frame`."""
        return dict(zip(self.ids, (value for _, value in self.unpack(frame))))

    def pack_named(self, **values: int) -> bytes:
        """The header bytes of metadata values by name (missing fields are 0)."""
        unknown = sorted(set(values) - set(self.ids))
        if unknown:
            raise KeyError(f"unknown metadata {', '.join(unknown)}; known: {', '.join(self.ids)}")
        packed = {self.ids[name]: value for name, value in values.items()}
        for fid, value in packed.items():
            if not 0 <= value < 1 << self.widths[fid]:
                raise ValueError(f"metadata value {value} does not fit {self.widths[fid]} bits")
        return self.pack(packed)

    def unpack(self, frame: bytes) -> list[tuple[int, int]]:
        """(metadata id, value) of each field of the header at the start of `frame`."""
        bits = int.from_bytes(frame[:self.nbytes], "big")
        shift, out = self.nbytes * 8, []
        for fid, width in self.fields:
            shift -= width
            out.append((fid, (bits >> shift) & ((1 << width) - 1)))
        return out

    def pack(self, values: dict[int, int]) -> bytes:
        """The header bytes of metadata values by id (missing fields are 0; values must fit)."""
        bits, used = 0, 0
        for fid, width in self.fields:
            bits = (bits << width) | values.get(fid, 0)
            used += width
        return (bits << (self.nbytes * 8 - used)).to_bytes(self.nbytes, "big")
