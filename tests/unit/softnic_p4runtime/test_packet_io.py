"""PacketOut and PacketIn on softnic's P4Runtime server (softnic/p4runtime/packet_io.py and the
StreamChannel of server.py)."""

from __future__ import annotations

import pytest

from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2
from softnic.p4runtime.failures import RpcFailure
from softnic.p4runtime.packet_io import packet_in_message, packet_out_frame
from softnic.p4runtime.program import Program
from softnic.p4runtime.server import P4RuntimeServer
from tests.unit.softnic_p4runtime.helpers import FakeDataplane, p4info, wait_until

pb = p4runtime_pb2
Code = code_pb2.Code


def test_packet_out_reaches_the_dataplane(loaded: P4RuntimeClient,
                                          dataplane: FakeDataplane) -> None:
    payload = bytes(range(60))
    loaded.packet_out(payload, egress_port=3)
    frame = dataplane.frames.get(timeout=3)
    assert frame == bytes([0x01, 0x80]) + payload   # egress_port 3 in 9 bits, 7 pad bits


def test_packet_out_with_unknown_metadata_is_not_sent(loaded: P4RuntimeClient,
                                                      dataplane: FakeDataplane) -> None:
    msg = loaded.p4info.packet_out(b"x", egress_port=1)
    msg.metadata.add(metadata_id=99, value=b"\x01")
    loaded._stream.send(pb.StreamMessageRequest(packet=msg))
    loaded.packet_out(b"y", egress_port=1)
    assert dataplane.frames.get(timeout=3) == bytes([0x00, 0x80]) + b"y"


def test_packet_in_reaches_the_primary(loaded: P4RuntimeClient,
                                       server: P4RuntimeServer) -> None:
    ingress_port, reason, tsval = 7, 5, 0x12345678
    header = (((ingress_port << 7) << 8 | reason) << 32 | tsval).to_bytes(7, "big")
    payload = b"\xaa" * 64
    server.packet_in(header + payload)
    got = loaded.packet_in(timeout=3)
    assert got == (payload, {"ingress_port": 7, "_pad": 0, "reason": 5, "tsval": tsval})


def test_packet_in_without_primary_is_dropped(loaded: P4RuntimeClient,
                                              server: P4RuntimeServer) -> None:
    server.packet_in(bytes(7) + b"first")
    assert loaded.packet_in(timeout=3) == (b"first", {"ingress_port": 0, "_pad": 0,
                                                      "reason": 0, "tsval": 0})
    loaded.close()   # the only controller leaves: nobody to send PacketIns to
    assert wait_until(lambda: server.primary_election_id is None)
    server.packet_in(bytes(7) + b"second")
    assert (server.packet_in_count, server.packet_in_drops) == (1, 1)


def test_packet_out_frame_packs_padded_metadata_and_refuses_wide_values() -> None:
    header = Program(p4info().proto).packet_out
    egress_port, width = header.fields[0]   # 9 bits, then reinject and padding
    assert width == 9
    packet = pb.PacketOut(payload=b"p")
    packet.metadata.add(metadata_id=egress_port, value=b"\x00\x00\x03")   # padded: fine
    assert packet_out_frame(header, packet) == bytes([0x01, 0x80]) + b"p"
    assert packet_out_frame(None, packet) == b"p"
    packet.metadata[0].value = (1 << 9).to_bytes(2, "big")   # egress_port is 9 bits
    with pytest.raises(RpcFailure) as err:
        packet_out_frame(header, packet)
    assert err.value.code == Code.INVALID_ARGUMENT


def test_packet_in_message_has_canonical_metadata() -> None:
    header = Program(p4info().proto).packet_in
    ids = [fid for fid, _ in header.fields]
    frame = header.pack(dict(zip(ids, (7, 0, 5, 0x1234), strict=True))) + b"payload"
    packet = packet_in_message(header, frame).packet
    assert packet.payload == b"payload"
    assert [(m.metadata_id, m.value) for m in packet.metadata] == list(zip(
        ids, (b"\x07", b"\x00", b"\x05", b"\x12\x34"), strict=True))
