"""nic_contract.controller_header: the packet_in/packet_out headers as bytes, cross-checked with
the P4Runtime route (P4Info's PacketOut/PacketIn messages and softnic's server, which turns them
into and from the same bytes)."""

from __future__ import annotations

import pytest

from nic_contract.controller_header import ControllerHeader
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from softnic.p4runtime.packet_io import packet_in_message, packet_out_frame

P4INFO_ = P4Info.from_file(P4INFO)


def header(kind: str) -> ControllerHeader:
    return ControllerHeader.of(P4INFO_.lookup("controller_packet_metadata", kind))


def test_packet_out_bytes_are_what_p4runtime_delivers() -> None:
    out, payload = header("packet_out"), b"\x02" * 60
    for meta in ({"egress_port": 1}, {"egress_port": 300, "reinject": 1}, {"egress_port": 511}):
        via_p4runtime = packet_out_frame(out, P4INFO_.packet_out(payload, **meta))
        assert out.pack_named(**meta) + payload == via_p4runtime


def test_packet_in_bytes_decode_as_p4runtime_does() -> None:
    pin, frame = header("packet_in"), b"\x05" * 40
    raw = pin.pack_named(ingress_port=7, reason=4, tsval=0xDEADBEEF) + frame
    message = packet_in_message(pin, raw).packet
    payload, via_p4runtime = P4INFO_.decode_packet_in(message)
    assert payload == frame
    named = pin.unpack_named(raw)
    assert {k: v for k, v in named.items() if not k.startswith("_")} == {
        k: v for k, v in via_p4runtime.items() if not k.startswith("_")}
    assert named["ingress_port"] == 7 and named["reason"] == 4 and named["tsval"] == 0xDEADBEEF


def test_bad_metadata_is_refused() -> None:
    out = header("packet_out")
    with pytest.raises(KeyError, match="unknown metadata colour"):
        out.pack_named(colour=1)
    with pytest.raises(ValueError, match="does not fit 9 bits"):
        out.pack_named(egress_port=512)
