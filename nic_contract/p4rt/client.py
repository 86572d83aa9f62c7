"""Synchronous P4Runtime client for bmv2's simple_switch_grpc (and any P4Runtime target).

One user thread calls the methods: pipeline config, Write and Read here; the StreamChannel
(arbitration, PacketIn/PacketOut) is stream.py's, errors are errors.py's, and messages built
without a P4Info are messages.py's. gRPC stubs are built by hand over the upb protobuf classes
of `nic_contract.p4rt.proto` (see that module for why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import grpc

from nic_contract.p4rt.errors import (Code, P4RuntimeError, PipelineError, SwitchUnreachableError,
                                      WriteError, rpc_error, write_error)
from nic_contract.p4rt.messages import clone_session_entry, default_cookie, to_entity, updates_of
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from nic_contract.p4rt.stream import StreamChannel

log = logging.getLogger(__name__)

_SERVICE = "/p4.v1.P4Runtime/"
_MAX_MESSAGE = 256 * 1024 * 1024  # wildcard counter reads are tens of MB (ARCHITECTURE.md 5)
_SLOW_TIMEOUT = 120.0  # default deadline for pipeline pushes and reads (1M counters ~ 61 s)


@dataclass(eq=False)
class P4RuntimeClient:
    """A primary P4Runtime controller connection to one device."""

    address: str = "127.0.0.1:9559"
    device_id: int = 0
    election_id: tuple[int, int] = (0, 1)
    timeout: float = 5.0
    p4info: P4Info | None = field(default=None, init=False, repr=False)
    _channel: grpc.Channel | None = field(default=None, init=False, repr=False)
    _stubs: dict[str, Callable] = field(default_factory=dict, init=False, repr=False)
    _stream: StreamChannel = field(default_factory=StreamChannel, init=False, repr=False)

    # ---- lifecycle

    def __enter__(self) -> "P4RuntimeClient":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self, primary: bool = True) -> None:
        """Open the channel and the StreamChannel, and become primary controller.

        With primary=False only the channel opens: a read-only observer (Read RPCs need no
        arbitration) that leaves the running controller alone."""
        if self._channel is not None:
            raise P4RuntimeError("already connected; close() first")
        self._stream = StreamChannel(self.device_id, self.address)
        self._channel = grpc.insecure_channel(self.address, options=[
            ("grpc.max_receive_message_length", _MAX_MESSAGE),
            ("grpc.max_send_message_length", _MAX_MESSAGE),
        ])
        try:
            grpc.channel_ready_future(self._channel).result(timeout=self.timeout)
        except grpc.FutureTimeoutError:
            self.close()
            raise SwitchUnreachableError(
                f"no P4Runtime server at {self.address} within {self.timeout:g} s: "
                "is simple_switch_grpc running? check the address") from None
        self._make_stubs()
        if not primary:
            return
        self._stream.start(self._stubs["StreamChannel"])
        try:
            self._stream.arbitrate(self.election_id, self.timeout)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the stream, join its reader thread and close the channel (idempotent)."""
        self._stream.close(self.timeout)
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stubs = None, {}

    @property
    def is_primary(self) -> bool:
        """Whether the last arbitration update said this client is primary."""
        return self._stream.is_primary

    def _make_stubs(self) -> None:
        assert self._channel is not None
        pb = p4runtime_pb2
        unary = {
            "Write": (pb.WriteRequest, pb.WriteResponse),
            "SetForwardingPipelineConfig": (pb.SetForwardingPipelineConfigRequest,
                                            pb.SetForwardingPipelineConfigResponse),
            "GetForwardingPipelineConfig": (pb.GetForwardingPipelineConfigRequest,
                                            pb.GetForwardingPipelineConfigResponse),
            "Capabilities": (pb.CapabilitiesRequest, pb.CapabilitiesResponse),
        }
        for method, (req, resp) in unary.items():
            self._stubs[method] = self._channel.unary_unary(
                _SERVICE + method, request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString)
        self._stubs["Read"] = self._channel.unary_stream(
            _SERVICE + "Read", request_serializer=pb.ReadRequest.SerializeToString,
            response_deserializer=pb.ReadResponse.FromString)
        self._stubs["StreamChannel"] = self._channel.stream_stream(
            _SERVICE + "StreamChannel",
            request_serializer=pb.StreamMessageRequest.SerializeToString,
            response_deserializer=pb.StreamMessageResponse.FromString)

    def _check(self) -> None:
        """Raise if the client is not connected or its stream has failed."""
        if self._channel is None:
            raise P4RuntimeError("not connected: call connect() first")
        self._stream.check()

    def _need_p4info(self) -> P4Info:
        if self.p4info is None:
            raise PipelineError("no P4Info known: call set_pipeline()/ensure_pipeline() "
                                "or assign client.p4info")
        return self.p4info

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        self._check()
        try:
            return self._stubs[method](request, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise rpc_error(method, err) from None

    # ---- pipeline

    def set_pipeline(self, p4info_path: str | Path, device_config_path: str | Path,
                     cookie: int | None = None, timeout: float | None = None) -> None:
        """Push the P4Info and bmv2 JSON with VERIFY_AND_COMMIT (this wipes all state)."""
        p4info = P4Info.from_file(p4info_path)
        if cookie is None:
            cookie = default_cookie(p4info_path, device_config_path)
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=self.device_id, election_id=self._election(),
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT)
        req.config.p4info.CopyFrom(p4info.proto)
        req.config.p4_device_config = Path(device_config_path).read_bytes()
        req.config.cookie.cookie = cookie
        self._call("SetForwardingPipelineConfig", req, timeout or max(self.timeout, _SLOW_TIMEOUT))
        self.p4info = p4info
        log.info("pipeline %s pushed to device %d (cookie %#018x)",
                 Path(device_config_path).name, self.device_id, cookie)

    def pipeline_cookie(self) -> int | None:
        """The cookie of the loaded pipeline, or None when no pipeline (or no cookie) is set."""
        req = p4runtime_pb2.GetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            response_type=p4runtime_pb2.GetForwardingPipelineConfigRequest.COOKIE_ONLY)
        try:
            resp = self._call("GetForwardingPipelineConfig", req)
        except P4RuntimeError as err:
            if err.grpc_code == grpc.StatusCode.FAILED_PRECONDITION:
                return None
            raise
        if not resp.HasField("config") or not resp.config.HasField("cookie"):
            return None
        return resp.config.cookie.cookie

    def ensure_pipeline(self, p4info_path: str | Path, device_config_path: str | Path) -> bool:
        """Push the pipeline unless the loaded one has the same cookie; return whether pushed."""
        cookie = default_cookie(p4info_path, device_config_path)
        if self.pipeline_cookie() == cookie:
            self.p4info = P4Info.from_file(p4info_path)
            log.info("pipeline already loaded on device %d (cookie %#018x)", self.device_id,
                     cookie)
            return False
        self.set_pipeline(p4info_path, device_config_path, cookie)
        return True

    def fetch_p4info(self) -> P4Info:
        """Adopt the P4Info of the pipeline loaded on the switch (pushed by someone else)."""
        req = p4runtime_pb2.GetForwardingPipelineConfigRequest(
            device_id=self.device_id,
            response_type=p4runtime_pb2.GetForwardingPipelineConfigRequest.P4INFO_AND_COOKIE)
        resp = self._call("GetForwardingPipelineConfig", req)
        if not resp.config.p4info.tables and not resp.config.p4info.actions:
            raise PipelineError(f"device {self.device_id} has no pipeline loaded")
        self.p4info = P4Info(resp.config.p4info)
        return self.p4info

    def _election(self) -> p4runtime_pb2.Uint128:
        return p4runtime_pb2.Uint128(high=self.election_id[0], low=self.election_id[1])

    # ---- write

    def write(self, updates: Iterable[p4runtime_pb2.Update], timeout: float | None = None) -> None:
        """Send all `updates` in ONE WriteRequest; raise WriteError listing failed updates."""
        updates = list(updates)
        if not updates:
            return
        self._check()
        req = p4runtime_pb2.WriteRequest(device_id=self.device_id, election_id=self._election(),
                                         updates=updates)
        try:
            self._stubs["Write"](req, timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise write_error(err, updates) from None

    def insert(self, entities: Iterable[Any]) -> None:
        """INSERT TableEntry/CounterEntry/MeterEntry/PRE entries/Entity objects in one request."""
        self.write(updates_of(p4runtime_pb2.Update.INSERT, entities))

    def modify(self, entities: Iterable[Any]) -> None:
        """MODIFY TableEntry/CounterEntry/MeterEntry/PRE entries/Entity objects in one request."""
        self.write(updates_of(p4runtime_pb2.Update.MODIFY, entities))

    def delete(self, entities: Iterable[Any]) -> None:
        """DELETE TableEntry/CounterEntry/MeterEntry/PRE entries/Entity objects in one request."""
        self.write(updates_of(p4runtime_pb2.Update.DELETE, entities))

    # ---- read

    def read(self, entities: Iterable[Any],
             timeout: float | None = None) -> Iterator[p4runtime_pb2.Entity]:
        """Iterate over the entities matching the given (possibly wildcard) entities."""
        self._check()
        req = p4runtime_pb2.ReadRequest(device_id=self.device_id,
                                        entities=[to_entity(e) for e in entities])
        return self._read_responses(req, timeout or max(self.timeout, _SLOW_TIMEOUT))

    def _read_responses(self, req: p4runtime_pb2.ReadRequest,
                        timeout: float) -> Iterator[p4runtime_pb2.Entity]:
        try:
            for resp in self._stubs["Read"](req, timeout=timeout):
                yield from resp.entities
        except grpc.RpcError as err:
            raise rpc_error("Read", err) from None

    def read_counter(self, name: str, index: int) -> tuple[int, int]:
        """(packets, bytes) of one index of an indirect counter."""
        entry = self._need_p4info().counter_entry(name, index)
        for entity in self.read([entry]):
            data = entity.counter_entry.data
            return data.packet_count, data.byte_count
        raise P4RuntimeError(f"counter {name}[{index}] not returned by the switch")

    # ---- packet replication

    @staticmethod
    def clone_session_entry(session_id: int, egress_port: int,
                            instance: int = 1) -> p4runtime_pb2.PacketReplicationEngineEntry:
        """A clone session with one replica to `egress_port`."""
        return clone_session_entry(session_id, egress_port, instance)

    def write_clone_sessions(self, sessions: dict[int, int]) -> None:
        """Install {session_id: egress_port}; sessions that already exist are modified."""
        entries = [clone_session_entry(sid, port) for sid, port in sorted(sessions.items())]
        try:
            self.insert(entries)
        except WriteError as err:
            others = [f for f in err.failures if f.code != Code.ALREADY_EXISTS]
            if others:
                raise
            self.modify([entries[f.index] for f in err.failures])

    # ---- packet I/O

    def packet_out(self, payload: bytes, **metadata: Any) -> None:
        """Send a PacketOut on the stream (metadata by packet_out header field name)."""
        self._check()
        msg = self._need_p4info().packet_out(payload, **metadata)
        self._stream.send(p4runtime_pb2.StreamMessageRequest(packet=msg))

    def packet_in(self, timeout: float) -> tuple[bytes, dict[str, int]] | None:
        """Next PacketIn as (payload, metadata), or None after `timeout` seconds."""
        self._check()
        packet = self._stream.packet_in(timeout)
        return None if packet is None else self._need_p4info().decode_packet_in(packet)

    def drain_packet_ins(self) -> list[tuple[bytes, dict[str, int]]]:
        """All PacketIns queued so far, without waiting."""
        return [self._need_p4info().decode_packet_in(packet)
                for packet in self._stream.queued_packet_ins()]
