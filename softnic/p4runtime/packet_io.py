"""PacketOut and PacketIn messages of softnic's P4Runtime server: the controller headers
(nic_contract.controller_header) to and from stream messages, validated as PI does."""

from __future__ import annotations

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.encoding import canonical, to_int
from softnic.p4runtime.failures import ERROR_SPACE, RpcFailure, invalid
from nic_contract.controller_header import ControllerHeader

pb = p4runtime_pb2


def packet_out_frame(header: ControllerHeader | None, packet: pb.PacketOut) -> bytes:
    """The frame a PacketOut runs through the pipeline: its packet_out header, then payload."""
    if header is None:
        return packet.payload
    values = {}
    for m in packet.metadata:
        width = header.widths.get(m.metadata_id)
        if width is None:
            raise invalid(f"Unknown metadata id {m.metadata_id} in PacketOut message")
        values[m.metadata_id] = to_int(m.value, width, f"PacketOut metadata {m.metadata_id}")
    return header.pack(values) + packet.payload


def packet_in_message(header: ControllerHeader, frame: bytes) -> pb.StreamMessageResponse:
    """The PacketIn of a frame punted to the CPU port (packet_in header, then payload)."""
    msg = pb.StreamMessageResponse()
    packet = msg.packet
    packet.payload = frame[header.nbytes:]
    for fid, value in header.unpack(frame):
        packet.metadata.add(metadata_id=fid, value=canonical(value))
    return msg


def packet_out_error(failure: RpcFailure, packet: pb.PacketOut) -> pb.StreamMessageResponse:
    """The stream error that tells the controller a PacketOut was not sent."""
    msg = pb.StreamMessageResponse()
    error = msg.error
    error.canonical_code, error.message, error.space = (failure.code, failure.message,
                                                        ERROR_SPACE)
    error.packet_out.packet_out.CopyFrom(packet)
    return msg
