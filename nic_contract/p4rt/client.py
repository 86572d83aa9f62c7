"""Synchronous P4Runtime client for bmv2's simple_switch_grpc (and any P4Runtime target).

One user thread calls the methods; a reader thread owned by the client drains the StreamChannel
(arbitration updates, PacketIn, digests) into queues. Stream failures are logged by the reader
and raised as `StreamError` on the user's next call. gRPC stubs are built by hand over the
upb protobuf classes of `nic_contract.p4rt.proto` (see that module for why).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import grpc

from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2, status_pb2

log = logging.getLogger(__name__)

_SERVICE = "/p4.v1.P4Runtime/"
_MAX_MESSAGE = 256 * 1024 * 1024  # wildcard counter reads are tens of MB (ARCHITECTURE.md 5)
_SLOW_TIMEOUT = 120.0  # default deadline for pipeline pushes and reads (1M counters ~ 61 s)
_CLOSED = object()  # queue sentinel: the stream has ended

Code = code_pb2.Code


# --------------------------------------------------------------------------- errors

class P4RuntimeError(RuntimeError):
    """Any failure talking P4Runtime to the switch; `grpc_code` is set when gRPC reported one."""

    def __init__(self, message: str, grpc_code: grpc.StatusCode | None = None):
        super().__init__(message)
        self.grpc_code = grpc_code


class SwitchUnreachableError(P4RuntimeError):
    """Nothing answers gRPC at the address."""


class NotPrimaryError(P4RuntimeError):
    """This client is not the primary controller of the device."""


class StreamError(P4RuntimeError):
    """The StreamChannel ended or failed."""


class PipelineError(P4RuntimeError):
    """No usable pipeline (none loaded, or no P4Info known to this client)."""


@dataclass(frozen=True)
class UpdateFailure:
    """One failed update of a WriteRequest."""

    index: int
    code: int
    message: str
    update: p4runtime_pb2.Update | None = None

    @property
    def code_name(self) -> str:
        return code_name(self.code)


class WriteError(P4RuntimeError):
    """A WriteRequest failed; `failures` lists each failed update."""

    def __init__(self, message: str, failures: list[UpdateFailure]):
        super().__init__(message, grpc.StatusCode.UNKNOWN)
        self.failures = failures


def code_name(code: int) -> str:
    """Name of a google.rpc.Code value ("ALREADY_EXISTS"), or the number if unknown."""
    try:
        return Code.Name(code)
    except ValueError:
        return str(code)


def _rpc_code_name(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    return code.name if code is not None else "UNKNOWN"


def _status_details(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status from the trailing metadata of a failed call, if any."""
    for key, value in (err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else ():
        if key == "grpc-status-details-bin":
            return status_pb2.Status.FromString(value)
    return None


def update_failures(err: grpc.RpcError,
                    updates: list[p4runtime_pb2.Update]) -> list[UpdateFailure]:
    """Decode the per-update p4.v1.Error details of a failed Write."""
    status = _status_details(err)
    if status is None:
        return []
    failures = []
    for index, detail in enumerate(status.details):
        error = p4runtime_pb2.Error()
        if not detail.Unpack(error) or error.canonical_code == Code.OK:
            continue
        update = updates[index] if index < len(updates) else None
        failures.append(UpdateFailure(index, error.canonical_code, error.message, update))
    return failures


def _write_error(err: grpc.RpcError, updates: list[p4runtime_pb2.Update]) -> P4RuntimeError:
    failures = update_failures(err, updates)
    if not failures:
        return _rpc_error("Write", err)
    lines = [f"#{f.index} {f.code_name}: {f.message}" for f in failures[:20]]
    more = f"; ... {len(failures) - 20} more" if len(failures) > 20 else ""
    return WriteError(f"write failed for {len(failures)} of {len(updates)} updates: "
                      + "; ".join(lines) + more, failures)


def _rpc_error(method: str, err: grpc.RpcError) -> P4RuntimeError:
    """Translate a gRPC error of a unary call into a P4RuntimeError subclass."""
    code = err.code() if hasattr(err, "code") else None
    details = err.details() if hasattr(err, "details") else str(err)
    if code == grpc.StatusCode.UNAVAILABLE:
        return SwitchUnreachableError(f"{method}: switch unavailable ({details}); "
                                      "is simple_switch_grpc running? check the address", code)
    if code == grpc.StatusCode.PERMISSION_DENIED:
        return NotPrimaryError(f"{method}: {details}: this client is not the primary "
                               "controller (another one holds a higher election id)", code)
    if code == grpc.StatusCode.FAILED_PRECONDITION and "pipeline" in (details or "").lower():
        return PipelineError(f"{method}: {details}: push one with set_pipeline() first", code)
    return P4RuntimeError(f"{method} failed: {_rpc_code_name(err)}: {details}", code)


# --------------------------------------------------------------------------- helpers

def default_cookie(p4info_path: str | Path, bmv2_json_path: str | Path) -> int:
    """A stable 64-bit pipeline cookie: SHA-256 over both files' bytes (length-prefixed)."""
    digest = hashlib.sha256()
    for path in (p4info_path, bmv2_json_path):
        data = Path(path).read_bytes()
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return int.from_bytes(digest.digest()[:8], "big")


_ENTITY_FIELDS: dict[type, str] = {
    p4runtime_pb2.TableEntry: "table_entry",
    p4runtime_pb2.CounterEntry: "counter_entry",
    p4runtime_pb2.DirectCounterEntry: "direct_counter_entry",
    p4runtime_pb2.MeterEntry: "meter_entry",
    p4runtime_pb2.DirectMeterEntry: "direct_meter_entry",
    p4runtime_pb2.PacketReplicationEngineEntry: "packet_replication_engine_entry",
    p4runtime_pb2.RegisterEntry: "register_entry",
    p4runtime_pb2.DigestEntry: "digest_entry",
    p4runtime_pb2.ValueSetEntry: "value_set_entry",
    p4runtime_pb2.ActionProfileMember: "action_profile_member",
    p4runtime_pb2.ActionProfileGroup: "action_profile_group",
}


def to_entity(obj: Any) -> p4runtime_pb2.Entity:
    """Wrap a TableEntry, CounterEntry, MeterEntry, ... in an Entity (Entities pass through)."""
    if isinstance(obj, p4runtime_pb2.Entity):
        return obj
    name = _ENTITY_FIELDS.get(type(obj))
    if name is None:
        raise TypeError(f"cannot make a P4Runtime Entity from {type(obj).__name__}")
    entity = p4runtime_pb2.Entity()
    getattr(entity, name).CopyFrom(obj)
    return entity


def updates_of(kind: int, entities: Iterable[Any]) -> list[p4runtime_pb2.Update]:
    """Wrap entities in Updates of one type (p4runtime_pb2.Update.INSERT, MODIFY or DELETE)."""
    return [p4runtime_pb2.Update(type=kind, entity=to_entity(e)) for e in entities]


def clone_session_entry(session_id: int, egress_port: int,
                        instance: int = 1) -> p4runtime_pb2.PacketReplicationEngineEntry:
    """A clone session with one replica to `egress_port`."""
    entry = p4runtime_pb2.PacketReplicationEngineEntry()
    session = entry.clone_session_entry
    session.session_id = session_id
    # egress_port (deprecated in 1.4 in favour of `port` bytes) is what every bmv2 PI reads.
    session.replicas.add(egress_port=egress_port, instance=instance)
    return entry


# --------------------------------------------------------------------------- client

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
    _stream: Any = field(default=None, init=False, repr=False)
    _requests: queue.Queue = field(default_factory=queue.Queue, init=False, repr=False)
    _arbitration: queue.Queue = field(default_factory=queue.Queue, init=False, repr=False)
    _packets: queue.Queue = field(default_factory=queue.Queue, init=False, repr=False)
    _digests: queue.Queue = field(default_factory=queue.Queue, init=False, repr=False)
    _reader: threading.Thread | None = field(default=None, init=False, repr=False)
    _stream_error: str | None = field(default=None, init=False, repr=False)
    _closing: bool = field(default=False, init=False, repr=False)
    _primary: bool = field(default=False, init=False, repr=False)
    _arbitrated: bool = field(default=False, init=False, repr=False)

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
        self._closing, self._stream_error, self._arbitrated = False, None, False
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
        self._start_stream()
        try:
            self._arbitrate()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """End the stream, join the reader thread and close the channel (idempotent)."""
        self._closing = True
        if self._stream is not None:
            self._requests.put(_CLOSED)
            self._stream.cancel()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=max(self.timeout, 1.0))
            if self._reader.is_alive():
                log.warning("P4Runtime stream reader did not stop within %.1f s", self.timeout)
        if self._channel is not None:
            self._channel.close()
        self._channel, self._stream, self._reader, self._stubs = None, None, None, {}
        self._primary = False

    @property
    def is_primary(self) -> bool:
        """Whether the last arbitration update said this client is primary."""
        return self._primary and self._stream_error is None

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

    # ---- stream

    def _start_stream(self) -> None:
        self._requests, self._arbitration = queue.Queue(), queue.Queue()
        self._packets, self._digests = queue.Queue(), queue.Queue()
        self._stream = self._stubs["StreamChannel"](self._request_iter())
        self._reader = threading.Thread(target=self._read_stream, name="p4rt-stream",
                                        daemon=True)
        self._reader.start()

    def _request_iter(self) -> Iterator[p4runtime_pb2.StreamMessageRequest]:
        while True:
            item = self._requests.get()
            if item is _CLOSED:
                return
            yield item

    def _read_stream(self) -> None:
        """Reader thread: dispatch stream messages to queues until the stream ends."""
        reason = "the switch closed the P4Runtime stream"
        try:
            for msg in self._stream:
                self._dispatch(msg)
        except grpc.RpcError as err:
            reason = f"P4Runtime stream failed: {_rpc_code_name(err)}: {err.details()}"
        except Exception as err:  # noqa: BLE001 - the thread must report, not die silently
            reason = f"P4Runtime stream reader crashed: {err!r}"
            log.exception("P4Runtime stream reader crashed")
        if not self._closing:
            # Before the first arbitration answer, connect() raises this reason itself.
            level = logging.ERROR if self._arbitrated else logging.DEBUG
            log.log(level, "%s (device %d at %s)", reason, self.device_id, self.address)
            self._stream_error = reason
        for q in (self._arbitration, self._packets, self._digests):
            q.put(_CLOSED)

    def _dispatch(self, msg: p4runtime_pb2.StreamMessageResponse) -> None:
        kind = msg.WhichOneof("update")
        if kind == "packet":
            self._packets.put(msg.packet)
        elif kind == "arbitration":
            self._on_arbitration(msg.arbitration)
        elif kind == "digest":
            self._digests.put(msg.digest)
        elif kind == "error":
            err = msg.error
            log.error("P4Runtime stream error %s: %s", code_name(err.canonical_code), err.message)
        else:
            log.debug("ignoring stream message %s", kind)

    def _on_arbitration(self, arb: p4runtime_pb2.MasterArbitrationUpdate) -> None:
        was_primary = self._primary
        self._primary = arb.status.code == Code.OK
        self._arbitrated = True
        if was_primary and not self._primary:
            log.warning("lost primary role on device %d: %s", self.device_id, arb.status.message)
        self._arbitration.put(arb)

    def _arbitrate(self) -> None:
        high, low = self.election_id
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = self.device_id
        req.arbitration.election_id.high = high
        req.arbitration.election_id.low = low
        self._requests.put(req)
        try:
            arb = self._arbitration.get(timeout=self.timeout)
        except queue.Empty:
            raise P4RuntimeError(f"no arbitration answer from {self.address} within "
                                 f"{self.timeout:g} s (device id {self.device_id}?)") from None
        if arb is _CLOSED:
            reason = self._stream_error or "stream closed"
            if "election" in reason.lower():
                raise NotPrimaryError(f"arbitration refused: {reason}; another controller "
                                      f"uses election id {self.election_id}")
            raise P4RuntimeError(f"arbitration failed on device {self.device_id}: {reason}")
        if arb.status.code != Code.OK:
            theirs = (arb.election_id.high, arb.election_id.low)
            raise NotPrimaryError(
                f"another controller is primary on device {self.device_id} with election id "
                f"{theirs} >= ours {self.election_id}: stop it or use a higher election_id")

    def _check(self) -> None:
        """Raise if the client is not connected or its stream has failed."""
        if self._channel is None:
            raise P4RuntimeError("not connected: call connect() first")
        if self._stream_error is not None:
            raise StreamError(f"{self._stream_error}; reconnect (close() then connect())")

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
            raise _rpc_error(method, err) from None

    # ---- pipeline

    def set_pipeline(self, p4info_path: str | Path, bmv2_json_path: str | Path,
                     cookie: int | None = None, timeout: float | None = None) -> None:
        """Push the P4Info and bmv2 JSON with VERIFY_AND_COMMIT (this wipes all state)."""
        p4info = P4Info.from_file(p4info_path)
        if cookie is None:
            cookie = default_cookie(p4info_path, bmv2_json_path)
        req = p4runtime_pb2.SetForwardingPipelineConfigRequest(
            device_id=self.device_id, election_id=self._election(),
            action=p4runtime_pb2.SetForwardingPipelineConfigRequest.VERIFY_AND_COMMIT)
        req.config.p4info.CopyFrom(p4info.proto)
        req.config.p4_device_config = Path(bmv2_json_path).read_bytes()
        req.config.cookie.cookie = cookie
        self._call("SetForwardingPipelineConfig", req, timeout or max(self.timeout, _SLOW_TIMEOUT))
        self.p4info = p4info
        log.info("pipeline %s pushed to device %d (cookie %#018x)",
                 Path(bmv2_json_path).name, self.device_id, cookie)

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

    def ensure_pipeline(self, p4info_path: str | Path, bmv2_json_path: str | Path) -> bool:
        """Push the pipeline unless the loaded one has the same cookie; return whether pushed."""
        cookie = default_cookie(p4info_path, bmv2_json_path)
        if self.pipeline_cookie() == cookie:
            self.p4info = P4Info.from_file(p4info_path)
            log.info("pipeline already loaded on device %d (cookie %#018x)", self.device_id,
                     cookie)
            return False
        self.set_pipeline(p4info_path, bmv2_json_path, cookie)
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
            raise _write_error(err, updates) from None

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
            raise _rpc_error("Read", err) from None

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

    # ---- packet I/O and digests

    def packet_out(self, payload: bytes, **metadata: Any) -> None:
        """Send a PacketOut on the stream (metadata by packet_out header field name)."""
        self._check()
        msg = self._need_p4info().packet_out(payload, **metadata)
        self._requests.put(p4runtime_pb2.StreamMessageRequest(packet=msg))

    def packet_in(self, timeout: float) -> tuple[bytes, dict[str, int]] | None:
        """Next PacketIn as (payload, metadata), or None after `timeout` seconds."""
        self._check()
        try:
            item = self._packets.get(timeout=timeout)
        except queue.Empty:
            return None
        return self._decode_packet(item)

    def drain_packet_ins(self) -> list[tuple[bytes, dict[str, int]]]:
        """All PacketIns queued so far, without waiting."""
        out = []
        while True:
            try:
                item = self._packets.get_nowait()
            except queue.Empty:
                return out
            if item is _CLOSED:
                self._packets.put(_CLOSED)
                return out
            out.append(self._need_p4info().decode_packet_in(item))

    def _decode_packet(self, item: Any) -> tuple[bytes, dict[str, int]]:
        if item is _CLOSED:
            self._packets.put(_CLOSED)  # keep waking later callers
            self._check()
            raise StreamError("P4Runtime stream closed")
        return self._need_p4info().decode_packet_in(item)

    def digest_list(self, timeout: float, ack: bool = True) -> p4runtime_pb2.DigestList | None:
        """Next DigestList from the stream (acknowledged unless ack=False), or None on timeout."""
        self._check()
        try:
            item = self._digests.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._digests.put(_CLOSED)
            self._check()
            raise StreamError("P4Runtime stream closed")
        if ack:
            self.ack_digest(item)
        return item

    def ack_digest(self, digest: p4runtime_pb2.DigestList) -> None:
        """Acknowledge a DigestList so the switch may send the same digest data again."""
        req = p4runtime_pb2.StreamMessageRequest()
        req.digest_ack.digest_id = digest.digest_id
        req.digest_ack.list_id = digest.list_id
        self._requests.put(req)
