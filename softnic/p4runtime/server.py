"""P4Runtime gRPC server of softnic: the controller's view of the switch, behaving like
simple_switch_grpc (PI's frontend over bmv2) for everything p4tas uses.

This module is the transport: the gRPC service, StreamChannel and PacketIn/PacketOut delivery.
Arbitration, pipeline config, writes and reads are the sibling modules; writes and reads go to
the SwitchState of the committed pipeline, which the dataplane runs packets against. Errors
follow PI (failures.py). The service is built from generic handlers because the p4runtime wheel
ships no usable service stubs (see nic_contract/p4rt/proto.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import text_format

from nic_contract.p4rt.proto import p4info_pb2, p4runtime_pb2
from nic_contract.pipeline import BMV2_JSON, P4INFO
from softnic.p4runtime.arbitration import Arbitration, Connection, Hangup
from softnic.p4runtime.failures import Code, RpcFailure, WriteFailure, abort, check_device
from softnic.p4runtime.packet_io import packet_in_message, packet_out_error, packet_out_frame
from softnic.p4runtime.pipeline_config import PipelineConfig
from softnic.p4runtime.program import Program
from softnic.p4runtime.reads import Reader, ReadOut
from softnic.p4runtime.writes import Writer
from softnic.state import SwitchState

log = logging.getLogger(__name__)

pb = p4runtime_pb2

API_VERSION = "1.4.0"
_SERVICE = "p4.v1.P4Runtime"
_MAX_MESSAGE = 256 * 1024 * 1024   # as the client: wildcard counter reads are tens of MB
_WORKERS = 40                      # each StreamChannel holds one worker while open
_PACKET_IN_BACKLOG = 10000         # PacketIns queued for a slow primary before dropping


class Dataplane(Protocol):
    """What the server needs from the packet-processing side."""

    def load(self, state: SwitchState) -> None:
        """A new pipeline was committed: use this state from now on."""

    def packet_out(self, frame: bytes) -> None:
        """Run `frame` (packet_out controller header + payload) through the pipeline from
        the CPU port."""


def load_p4info(path: Path) -> p4info_pb2.P4Info:
    """The P4Info of a text file."""
    return text_format.Parse(Path(path).read_text(encoding="utf-8"), p4info_pb2.P4Info())


class P4RuntimeServer:
    """P4Runtime server of one device whose pipeline is the program of `p4info_path`."""

    def __init__(self, address: str, device_id: int, cpu_port: int, dataplane: Dataplane,
                 p4info_path: Path = P4INFO, device_config_path: Path = BMV2_JSON,
                 program: Program | None = None) -> None:
        """`program`: where the P4 objects live (default: softnic's Python state, from the
        P4Info at `p4info_path`); `device_config_path`: the device config the target runs."""
        self.address, self.device_id, self.cpu_port = address, device_id, cpu_port
        self._dataplane = dataplane
        self._program = program or Program(load_p4info(p4info_path))
        self._lock = threading.RLock()          # pipeline and P4 object state
        self._pipeline = PipelineConfig(self._program, Path(device_config_path).read_bytes(),
                                        dataplane.load, self._lock)
        self._arbitration = Arbitration(device_id)
        self._packet_out_lock = threading.Lock()
        self._server: grpc.Server | None = None
        self.port = 0   # the bound port once started (useful with "host:0")
        self.packet_in_count = self.packet_in_drops = self.packet_out_count = 0

    # ---- lifecycle

    def start(self) -> None:
        """Serve on `address`; raise RuntimeError if it cannot be bound."""
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=_WORKERS,
                                                        thread_name_prefix="p4rt"),
                             options=[("grpc.max_receive_message_length", _MAX_MESSAGE),
                                      ("grpc.max_send_message_length", _MAX_MESSAGE)])
        server.add_generic_rpc_handlers((self._handlers(),))
        try:
            port = server.add_insecure_port(self.address)
        except RuntimeError as err:
            raise RuntimeError(f"P4Runtime server cannot bind {self.address}: {err}") from None
        if port == 0:
            raise RuntimeError(f"P4Runtime server cannot bind {self.address}")
        self.port = port
        server.start()
        self._server = server
        log.info("P4Runtime server of device %d on %s", self.device_id, self.address)

    def stop(self, grace: float = 1.0) -> None:
        """End every stream and stop serving (idempotent)."""
        self._arbitration.hang_up_all()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1.0)
            self._server = None

    @property
    def primary_election_id(self) -> int | None:
        """The primary controller's election id, or None while no controller is connected."""
        primary = self._arbitration.primary
        return None if primary is None else primary.election_id

    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(method: Callable[[Any], Any], req: Any, resp: Any) -> grpc.RpcMethodHandler:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method), request_deserializer=req.FromString,
                response_serializer=resp.SerializeToString)

        return grpc.method_handlers_generic_handler(_SERVICE, {
            "Write": unary(self._write, pb.WriteRequest, pb.WriteResponse),
            "SetForwardingPipelineConfig": unary(
                self._set_pipeline, pb.SetForwardingPipelineConfigRequest,
                pb.SetForwardingPipelineConfigResponse),
            "GetForwardingPipelineConfig": unary(
                self._get_pipeline, pb.GetForwardingPipelineConfigRequest,
                pb.GetForwardingPipelineConfigResponse),
            "Capabilities": unary(self._capabilities, pb.CapabilitiesRequest,
                                  pb.CapabilitiesResponse),
            "Read": grpc.unary_stream_rpc_method_handler(
                self._read, request_deserializer=pb.ReadRequest.FromString,
                response_serializer=pb.ReadResponse.SerializeToString),
            "StreamChannel": grpc.stream_stream_rpc_method_handler(
                self._stream_channel, request_deserializer=pb.StreamMessageRequest.FromString,
                response_serializer=pb.StreamMessageResponse.SerializeToString),
        })

    @staticmethod
    def _unary(method: Callable[[Any], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handler(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                return method(request)
            except RpcFailure as failure:
                abort(context, failure)
        return handler

    # ---- unary RPCs

    def _set_pipeline(self, request: pb.SetForwardingPipelineConfigRequest) -> Any:
        check_device(request.device_id, self.device_id)
        self._arbitration.check_primary(request)
        return self._pipeline.set(request)

    def _get_pipeline(self, request: pb.GetForwardingPipelineConfigRequest) -> Any:
        check_device(request.device_id, self.device_id)
        return self._pipeline.get(request)

    @staticmethod
    def _capabilities(request: pb.CapabilitiesRequest) -> pb.CapabilitiesResponse:
        return pb.CapabilitiesResponse(p4runtime_api_version=API_VERSION)

    def _write(self, request: pb.WriteRequest) -> pb.WriteResponse:
        check_device(request.device_id, self.device_id)
        self._arbitration.check_primary(request)
        with self._lock:
            writer = Writer(self._program, self._pipeline.need_loaded())
            if request.atomicity != pb.WriteRequest.CONTINUE_ON_ERROR:
                raise RpcFailure(Code.UNIMPLEMENTED,
                                 "Support for atomic write modes has not been implemented yet")
            try:
                errors = [writer.apply(update) for update in request.updates]
            finally:   # what was applied (also before an unexpected error) reaches the target
                self._program.commit()
        failed = [e for e in errors if e is not None]
        if failed:
            raise WriteFailure(errors, len(failed))
        return pb.WriteResponse()

    def _read(self, request: pb.ReadRequest,
              context: grpc.ServicerContext) -> Iterator[pb.ReadResponse]:
        out, failure = ReadOut(), None
        try:
            check_device(request.device_id, self.device_id)
            with self._lock:
                loaded = self._pipeline.need_loaded()
                self._program.before_read(loaded.state)
                reader = Reader(self._program, loaded)
                for entity in request.entities:
                    reader.read(entity, out)
        except RpcFailure as err:
            failure = err
        # Like PI, what was read before a failure is sent too.
        for resp in out.responses:
            if resp.entities or failure is None:
                yield resp
        if failure is not None:
            abort(context, failure)

    # ---- stream channel

    def _stream_channel(self, requests: Iterator[pb.StreamMessageRequest],
                        context: grpc.ServicerContext) -> Iterator[pb.StreamMessageResponse]:
        conn = self._arbitration.open()
        context.add_callback(conn.hang_up)   # the RPC ended (client gone): stop sending
        reader = threading.Thread(target=self._serve_stream, args=(conn, requests),
                                  name=f"p4rt-stream-{conn.number}", daemon=True)
        reader.start()
        try:
            while True:
                item = conn.outbox.get()
                if isinstance(item, Hangup):
                    if item.code is not None:
                        abort(context, RpcFailure(item.code, item.message))
                    return
                yield item
        finally:
            self._arbitration.remove(conn)

    def _serve_stream(self, conn: Connection,
                      requests: Iterator[pb.StreamMessageRequest]) -> None:
        """Reader thread of one StreamChannel: handle requests until the stream ends."""
        try:
            for request in requests:
                failure = self._stream_request(conn, request)
                if failure is not None:
                    conn.hang_up(failure.code, failure.message)
                    break
        except Exception as err:  # noqa: BLE001 - a cancelled stream raises here
            log.debug("StreamChannel %d ended: %r", conn.number, err)
        finally:
            self._arbitration.remove(conn)
            conn.hang_up()

    def _stream_request(self, conn: Connection,
                        request: pb.StreamMessageRequest) -> RpcFailure | None:
        """Handle one stream message; a failure that ends the stream, if any."""
        kind = request.WhichOneof("update")
        try:
            if kind == "arbitration":
                self._arbitration.arbitrate(conn, request.arbitration)
            elif kind == "packet":
                self._packet_out(conn, request.packet)
            # digest_ack: our program has no digests; others: ignored, as PI does
        except RpcFailure as failure:
            return failure
        return None

    # ---- packet I/O

    def _packet_out(self, conn: Connection, packet: pb.PacketOut) -> None:
        """Send a primary's PacketOut into the pipeline from the CPU port."""
        if conn is not self._arbitration.primary or self._pipeline.loaded is None:
            return   # PI drops packets of backups and before any pipeline
        try:
            frame = packet_out_frame(self._program.packet_out, packet)
        except RpcFailure as failure:
            conn.send(packet_out_error(failure, packet))
            return
        with self._packet_out_lock:
            try:
                self._dataplane.packet_out(frame)
            except Exception as err:
                log.exception("dataplane failed on a PacketOut")
                conn.send(packet_out_error(
                    RpcFailure(Code.UNKNOWN, f"packet-out failed: {err}"), packet))
                return
            self.packet_out_count += 1

    def packet_in(self, frame: bytes) -> None:
        """Send a frame the pipeline punted to the CPU port (packet_in header + payload) to
        the primary controller; drop it (counted) if there is none."""
        header, primary = self._program.packet_in, self._arbitration.primary
        if (primary is None or self._pipeline.loaded is None or header is None
                or len(frame) < header.nbytes
                or primary.outbox.qsize() >= _PACKET_IN_BACKLOG):
            self.packet_in_drops += 1
            return
        primary.send(packet_in_message(header, frame))
        self.packet_in_count += 1
