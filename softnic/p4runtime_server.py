"""P4Runtime gRPC server of softnic: the controller's view of the switch, behaving like
simple_switch_grpc (PI's frontend over bmv2) for everything p4tas uses.

Writes and reads go to a `SwitchState` that the dataplane runs packets against; a committed
pipeline hands a fresh state to the dataplane. Error codes and messages follow PI
(proto/frontend/src/device_mgr.cpp): a failed Write is UNKNOWN with one p4.v1.Error per update in
the google.rpc.Status details, the way nic_contract/p4rt/client.py decodes them. The service is
built from generic handlers because the p4runtime wheel ships no usable service stubs (see
nic_contract/p4rt/proto.py).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
from google.protobuf import text_format

from nic_contract.pipeline import BMV2_JSON, P4INFO
from nic_contract.p4rt.proto import code_pb2, p4info_pb2, p4runtime_pb2, status_pb2
from softnic.p4info_check import (ConfigError, ControllerHeader, DefaultActions, IndexedInfo,
                                  Program, TableInfo, p4info_differences, unsupported_features)
from softnic.state import SwitchState

log = logging.getLogger(__name__)

pb = p4runtime_pb2
Code = code_pb2.Code

DEFAULT_P4INFO = P4INFO
DEFAULT_BMV2_JSON = BMV2_JSON

API_VERSION = "1.4.0"
_SERVICE = "p4.v1.P4Runtime"
_MAX_MESSAGE = 256 * 1024 * 1024   # as the client: wildcard counter reads are tens of MB
_WORKERS = 40                      # each StreamChannel holds one worker while open
_MAX_CONNECTIONS = 16              # PI's limit of StreamChannels per device
_READ_CHUNK = 8192                 # entities per ReadResponse: keeps messages a few MB
_PACKET_IN_BACKLOG = 10000         # PacketIns queued for a slow primary before dropping
_ERROR_SPACE = "ALL-sswitch-p4org"  # PI's error space, for clients that look at it
_MAX_CLONE_SESSION = 32768         # PI: clone session ids 1..32767
_U32_MAX, _U64_MAX = (1 << 32) - 1, (1 << 64) - 1

_Update = pb.Update
_SetAction = pb.SetForwardingPipelineConfigRequest
_GetType = pb.GetForwardingPipelineConfigRequest
# plain ints: enum wrapper attribute lookups cost microseconds per update
_TABLE_ONLY = p4info_pb2.ActionRef.Scope.Value("TABLE_ONLY")
_DEFAULT_ONLY = p4info_pb2.ActionRef.Scope.Value("DEFAULT_ONLY")
_UNIT_BYTES = p4info_pb2.CounterSpec.Unit.Value("BYTES")
_UNIT_PACKETS = p4info_pb2.CounterSpec.Unit.Value("PACKETS")
_GRPC_CODES = {status.value[0]: status for status in grpc.StatusCode}


class Dataplane(Protocol):
    """What the server needs from the packet-processing side."""

    def load(self, state: SwitchState) -> None:
        """A new pipeline was committed: use this state from now on."""

    def packet_out(self, frame: bytes) -> None:
        """Run `frame` (packet_out controller header + payload) through the pipeline from
        the CPU port."""


class RpcFailure(Exception):
    """A failed P4Runtime operation: a google.rpc code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _invalid(message: str) -> RpcFailure:
    return RpcFailure(Code.INVALID_ARGUMENT, message)


# --------------------------------------------------------------------------- encoding

def _to_int(data: bytes, bitwidth: int, what: str) -> int:
    """A P4Runtime bytestring as an int; padded or short forms are fine, as in PI."""
    value = int.from_bytes(data, "big")
    if value >> bitwidth:
        raise _invalid(f"{what}: bytestring 0x{data.hex()} does not fit within {bitwidth} bits")
    return value


def _canonical(value: int) -> bytes:
    """The canonical P4Runtime bytestring of a non-negative int (0 is one zero byte)."""
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")


def _u128(msg: pb.Uint128) -> int:
    return (msg.high << 64) | msg.low


def _set_u128(msg: pb.Uint128, value: int) -> None:
    msg.high, msg.low = value >> 64, value & _U64_MAX


# --------------------------------------------------------------------------- stream connections

@dataclass
class _Hangup:
    """Ends a StreamChannel: with an error status, or OK when code is None."""

    code: int | None = None
    message: str = ""


class _Connection:
    """One StreamChannel: its election id once arbitrated, and what to send on it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.election_id: int | None = None
        self.device_id: int | None = None
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, msg: pb.StreamMessageResponse) -> None:
        self.outbox.put(msg)

    def hang_up(self, code: int | None = None, message: str = "") -> None:
        self.outbox.put(_Hangup(code, message))


class _ReadOut:
    """Entities read so far, in ReadResponses of at most _READ_CHUNK entities each."""

    def __init__(self) -> None:
        self.responses = [pb.ReadResponse()]
        self._count = 0

    def add(self) -> pb.Entity:
        if self._count == _READ_CHUNK:
            self.responses.append(pb.ReadResponse())
            self._count = 0
        self._count += 1
        return self.responses[-1].entities.add()


# --------------------------------------------------------------------------- the server

class P4RuntimeServer:
    """P4Runtime server of one device whose pipeline is the program of `p4info_path`."""

    def __init__(self, address: str, device_id: int, cpu_port: int, dataplane: Dataplane,
                 p4info_path: Path = DEFAULT_P4INFO,
                 bmv2_json_path: Path = DEFAULT_BMV2_JSON) -> None:
        self.address, self.device_id, self.cpu_port = address, device_id, cpu_port
        self._dataplane = dataplane
        p4info = text_format.Parse(Path(p4info_path).read_text(encoding="utf-8"),
                                   p4info_pb2.P4Info())
        self._program = Program(p4info)
        self._json = Path(bmv2_json_path).read_bytes()
        self._json_defaults = self._program.default_actions(self._json)   # ConfigError: ours
        self._lock = threading.RLock()          # pipeline and P4 object state
        self._conn_lock = threading.Lock()      # connections and the primary
        self._packet_out_lock = threading.Lock()
        self._config: pb.ForwardingPipelineConfig | None = None
        self._saved: tuple[pb.ForwardingPipelineConfig, DefaultActions] | None = None
        self._state: SwitchState | None = None
        self._initial_defaults: DefaultActions = {}
        self._entry_meta: dict[int, dict[Any, tuple[int, bytes]]] = {}
        self._clone_sessions: dict[int, pb.CloneSessionEntry] = {}
        self._connections: list[_Connection] = []
        self._primary: _Connection | None = None
        self._numbers = itertools.count(1)
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
        with self._conn_lock:
            for conn in self._connections:
                conn.hang_up()
        if self._server is not None:
            self._server.stop(grace).wait(grace + 1.0)
            self._server = None

    @property
    def primary_election_id(self) -> int | None:
        """The primary controller's election id, or None while no controller is connected."""
        primary = self._primary
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
                _abort(context, failure)
        return handler

    # ---- checks shared by the RPCs

    def _check_device(self, device_id: int) -> None:
        if device_id != self.device_id:
            raise RpcFailure(Code.NOT_FOUND, f"Unknown device id {device_id} "
                             f"(this is device {self.device_id})")

    def _check_primary(self, request: Any) -> None:
        """PI's rule: with no stream open, only requests without an election id pass."""
        with self._conn_lock:
            primary = self._primary
            if primary is None:
                if request.HasField("election_id"):
                    raise RpcFailure(Code.PERMISSION_DENIED, "Not primary: no controller has "
                                     "arbitrated on the StreamChannel")
                return
            theirs = _u128(request.election_id)
            if theirs != primary.election_id:
                raise RpcFailure(Code.PERMISSION_DENIED, f"Not primary: election id {theirs} is "
                                 f"not the primary's ({primary.election_id})")

    def _need_state(self) -> SwitchState:
        if self._state is None:
            raise RpcFailure(Code.FAILED_PRECONDITION,
                             "No forwarding pipeline config set for this device")
        return self._state

    # ---- pipeline config

    def _set_pipeline(self, request: pb.SetForwardingPipelineConfigRequest) -> Any:
        self._check_device(request.device_id)
        self._check_primary(request)
        action = request.action
        if action == _SetAction.UNSPECIFIED:
            raise _invalid("Invalid SetForwardingPipeline action")
        defaults = self._verify(request.config) if action != _SetAction.COMMIT else {}
        if action == _SetAction.VERIFY:
            return pb.SetForwardingPipelineConfigResponse()
        config = pb.ForwardingPipelineConfig()
        config.CopyFrom(request.config)
        with self._lock:
            if action == _SetAction.VERIFY_AND_SAVE:
                self._saved = (config, defaults)
            elif action == _SetAction.COMMIT:
                if self._saved is None:
                    raise RpcFailure(Code.FAILED_PRECONDITION, "No saved forwarding pipeline "
                                     "config to commit: use VERIFY_AND_SAVE first")
                self._commit(*self._saved)
                self._saved = None
            elif action == _SetAction.RECONCILE_AND_COMMIT and self._state is not None:
                # Same program (checked): the forwarding state carries over as it is.
                self._config = config
            elif action in (_SetAction.VERIFY_AND_COMMIT, _SetAction.RECONCILE_AND_COMMIT):
                self._commit(config, defaults)
            else:
                raise _invalid(f"Invalid SetForwardingPipeline action {action}")
        return pb.SetForwardingPipelineConfigResponse()

    def _verify(self, config: pb.ForwardingPipelineConfig) -> DefaultActions:
        """Check that `config` is our program; return its tables' default actions."""
        diffs = p4info_differences(self._program.p4info, config.p4info)
        if diffs:
            more = f"; ... {len(diffs) - 12} more" if len(diffs) > 12 else ""
            raise _invalid("P4Info is not the one of the program this target runs: "
                           + "; ".join(diffs[:12]) + more)
        unsupported = unsupported_features(config.p4info)
        if unsupported:
            raise RpcFailure(Code.UNIMPLEMENTED, "softnic cannot run this program: "
                             + "; ".join(unsupported))
        if not config.p4_device_config:
            raise _invalid("p4_device_config is empty: push the bmv2 JSON of the program")
        if config.p4_device_config == self._json:
            return self._json_defaults
        try:
            return self._program.default_actions(config.p4_device_config)
        except ConfigError as err:
            raise _invalid(f"p4_device_config is not the bmv2 JSON of this program: "
                           f"{err}") from None

    def _commit(self, config: pb.ForwardingPipelineConfig, defaults: DefaultActions) -> None:
        """Load a fresh state: all tables, counters, meters and clone sessions are reset."""
        state = self._program.new_state(defaults)
        self._entry_meta = {t: {} for t in self._program.tables}
        self._clone_sessions = {}
        self._state, self._config, self._initial_defaults = state, config, defaults
        self._dataplane.load(state)
        log.info("pipeline committed (cookie %#x)", config.cookie.cookie)

    def _get_pipeline(self, request: pb.GetForwardingPipelineConfigRequest) -> Any:
        self._check_device(request.device_id)
        with self._lock:
            config = self._config
        if config is None:
            raise RpcFailure(Code.FAILED_PRECONDITION,
                             "No forwarding pipeline config set for this device")
        kind = request.response_type
        if kind not in _GetType.ResponseType.values():
            raise _invalid("Invalid response_type in GetForwardingPipelineConfigRequest")
        resp = pb.GetForwardingPipelineConfigResponse()
        if kind in (_GetType.ALL, _GetType.P4INFO_AND_COOKIE):
            resp.config.p4info.CopyFrom(config.p4info)
        if kind in (_GetType.ALL, _GetType.DEVICE_CONFIG_AND_COOKIE):
            resp.config.p4_device_config = config.p4_device_config
        if config.HasField("cookie"):
            resp.config.cookie.CopyFrom(config.cookie)
        return resp

    @staticmethod
    def _capabilities(request: pb.CapabilitiesRequest) -> pb.CapabilitiesResponse:
        return pb.CapabilitiesResponse(p4runtime_api_version=API_VERSION)

    # ---- write

    def _write(self, request: pb.WriteRequest) -> pb.WriteResponse:
        self._check_device(request.device_id)
        self._check_primary(request)
        with self._lock:
            self._need_state()
            if request.atomicity != pb.WriteRequest.CONTINUE_ON_ERROR:
                raise RpcFailure(Code.UNIMPLEMENTED,
                                 "Support for atomic write modes has not been implemented yet")
            errors = [self._apply(update) for update in request.updates]
        failed = [e for e in errors if e is not None]
        if failed:
            raise _WriteFailure(errors, len(failed))
        return pb.WriteResponse()

    def _apply(self, update: pb.Update) -> RpcFailure | None:
        """Apply one update; its failure, if any."""
        entity = update.entity
        kind = entity.WhichOneof("entity")
        try:
            if kind == "table_entry":
                self._write_table(update.type, entity.table_entry)
            elif kind == "counter_entry":
                self._write_counter(update.type, entity.counter_entry)
            elif kind == "meter_entry":
                self._write_meter(update.type, entity.meter_entry)
            elif kind == "packet_replication_engine_entry":
                self._write_pre(update.type, entity.packet_replication_engine_entry)
            else:
                self._write_other(kind, entity)
        except RpcFailure as failure:
            return failure
        return None

    def _write_other(self, kind: str | None, entity: pb.Entity) -> None:
        """Entities our program has none of, or that bmv2 cannot write."""
        if kind == "register_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Register writes are not supported yet")
        if kind == "value_set_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "ValueSet writes are not supported yet")
        if kind == "extern_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Extern writes are not supported")
        if kind in ("direct_counter_entry", "direct_meter_entry"):
            self._direct_resource(getattr(entity, kind), kind)
        if kind == "digest_entry":
            raise RpcFailure(Code.NOT_FOUND, f"{entity.digest_entry.digest_id} is not a valid "
                             "digest id")
        if kind in ("action_profile_member", "action_profile_group"):
            raise _invalid(f"Invalid P4 id {getattr(entity, kind).action_profile_id}: the "
                           "program has no action profiles")
        raise RpcFailure(Code.UNKNOWN, "Incorrect entity type")

    def _direct_resource(self, entry: Any, kind: str) -> None:
        """Direct counters and meters: refused as PI refuses them for tables without any."""
        if not entry.HasField("table_entry"):
            raise _invalid(f"Missing table_entry field in {type(entry).__name__}")
        table = self._table(entry.table_entry.table_id)
        what = "counters" if kind == "direct_counter_entry" else "meters"
        raise _invalid(f"Table {table.name} has no direct {what}")

    # ---- tables

    def _table(self, table_id: int) -> TableInfo:
        table = self._program.tables.get(table_id)
        if table is None:
            raise _invalid(f"Invalid P4 id: no table with id {table_id}")
        return table

    def _write_table(self, kind: int, entry: pb.TableEntry) -> None:
        table = self._table(entry.table_id)
        if entry.HasField("time_since_last_hit"):
            raise _invalid("has_time_since_last_hit must not be set in WriteRequest")
        if kind == _Update.INSERT:
            self._table_insert(table, entry)
        elif kind == _Update.MODIFY:
            if entry.is_default_action:
                self._table_set_default(table, entry)
            else:
                self._table_modify(table, entry)
        elif kind == _Update.DELETE:
            self._table_delete(table, entry)
        else:
            raise _bad_update_type(kind)

    def _table_insert(self, table: TableInfo, entry: pb.TableEntry) -> None:
        if entry.is_default_action:
            raise _invalid("Cannot use INSERT for default entry")
        if not entry.HasField("action"):
            raise _invalid("'action' field must be set")
        key = _match_key(table, entry)
        action = self._action_call(table, entry)
        _check_no_extras(table, entry)
        exact = self._state.tables[table.name]
        if key in exact.entries:
            raise RpcFailure(Code.ALREADY_EXISTS,
                             "Match entry exists, use MODIFY if you wish to change action")
        if len(exact.entries) >= table.size:
            # bmv2's TABLE_FULL reaches P4Runtime as UNKNOWN
            raise RpcFailure(Code.UNKNOWN, f"Error when adding match entry to target: table "
                             f"{table.name} is full ({table.size} entries)")
        exact.entries[key] = action
        self._remember_meta(table, key, entry)

    def _table_modify(self, table: TableInfo, entry: pb.TableEntry) -> None:
        key = _match_key(table, entry)
        if not entry.HasField("action"):
            raise _invalid("'action' field must be set for non-default entries")
        action = self._action_call(table, entry)
        _check_no_extras(table, entry)
        exact = self._state.tables[table.name]
        if key not in exact.entries:
            raise RpcFailure(Code.NOT_FOUND, "Cannot find match entry")
        exact.entries[key] = action
        self._remember_meta(table, key, entry)

    def _table_set_default(self, table: TableInfo, entry: pb.TableEntry) -> None:
        """MODIFY of the default entry; without an action it goes back to the initial one."""
        if entry.match:
            raise _invalid("Non-empty key for default entry")
        if entry.priority:
            raise _invalid("Non-zero priority for default entry")
        if table.const_default:
            raise RpcFailure(Code.PERMISSION_DENIED, f"Cannot set / reset default action for "
                             f"table {table.name} which has a const default action")
        if entry.HasField("action"):
            action = self._action_call(table, entry)
        else:
            action = self._initial_defaults[table.id]
        _check_no_extras(table, entry)
        self._state.tables[table.name].default_action = action
        if entry.HasField("action"):
            self._remember_meta(table, None, entry)
        else:
            self._entry_meta[table.id].pop(None, None)

    def _table_delete(self, table: TableInfo, entry: pb.TableEntry) -> None:
        if entry.is_default_action:
            raise _invalid("Cannot use DELETE for default entry")
        key = _match_key(table, entry)
        exact = self._state.tables[table.name]
        if exact.entries.pop(key, None) is None:
            raise RpcFailure(Code.NOT_FOUND, "Cannot find match entry")
        self._entry_meta[table.id].pop(key, None)

    def _remember_meta(self, table: TableInfo, key: Any, entry: pb.TableEntry) -> None:
        """Controller metadata, read back as written (kept only when set)."""
        meta = self._entry_meta[table.id]
        if entry.controller_metadata or entry.metadata:
            meta[key] = (entry.controller_metadata, entry.metadata)
        else:
            meta.pop(key, None)

    def _action_call(self, table: TableInfo, entry: pb.TableEntry) -> tuple[str, tuple[int, ...]]:
        """The (action name, params) of an entry's direct action, validated as PI does."""
        if entry.action.WhichOneof("type") != "action":
            raise _invalid(f"Cannot provide indirect action for direct table {table.name}")
        call = entry.action.action
        action = self._program.actions.get(call.action_id)
        if action is None:
            raise _invalid(f"Invalid P4 id: no action with id {call.action_id}")
        scope = table.scopes.get(action.id)
        if scope is None:
            raise _invalid(f"Invalid action for table: {action.name} is not an action of "
                           f"{table.name}")
        if scope == _TABLE_ONLY and entry.is_default_action:
            raise RpcFailure(Code.PERMISSION_DENIED,
                             f"Cannot use TABLE_ONLY action {action.name} as default action")
        if scope == _DEFAULT_ONLY and not entry.is_default_action:
            raise RpcFailure(Code.PERMISSION_DENIED,
                             f"Cannot use DEFAULT_ONLY action {action.name} in table entry")
        if len(call.params) != len(action.params):
            raise _invalid(f"Unexpected number of action parameters for {action.name}: "
                           f"{len(call.params)}, expected {len(action.params)}")
        values: list[int | None] = [None] * len(action.params)
        positions, specs = action.param_pos, action.params
        for param in call.params:
            pid = param.param_id
            pos = positions.get(pid)
            if pos is None or values[pos] is not None:
                raise _invalid(f"Unknown action parameter {pid} of {action.name}")
            value = int.from_bytes(param.value, "big")   # _to_int inlined: the hot loop
            if value >> specs[pos][1]:
                _to_int(param.value, specs[pos][1], f"{action.name} param {pid}")
            values[pos] = value
        return action.name, tuple(values)  # type: ignore[arg-type]

    # ---- counters and meters

    def _counter(self, counter_id: int) -> IndexedInfo:
        counter = self._program.counters.get(counter_id)
        if counter is None:
            raise _invalid(f"Invalid P4 id: no counter with id {counter_id}")
        return counter

    def _meter(self, meter_id: int) -> IndexedInfo:
        meter = self._program.meters.get(meter_id)
        if meter is None:
            raise _invalid(f"Invalid P4 id: no meter with id {meter_id}")
        return meter

    def _write_counter(self, kind: int, entry: pb.CounterEntry) -> None:
        info = self._counter(entry.counter_id)
        index = _write_index(entry, "counters")
        if kind == _Update.INSERT:
            raise _invalid("INSERT update type not supported for counters")
        if kind not in (_Update.MODIFY, _Update.DELETE):
            raise _bad_update_type(kind)
        if index >= info.size:
            raise RpcFailure(Code.UNKNOWN, f"Error when writing to counter: index {index} outside "
                             f"{info.name}[0..{info.size - 1}]")
        counter = self._state.counters[info.name]
        packets = bytes_ = 0
        if kind == _Update.MODIFY:
            # bmv2 keeps both values and zeroes the one the counter's unit does not have
            unit = info.unit
            packets = entry.data.packet_count if unit != _UNIT_BYTES else 0
            bytes_ = entry.data.byte_count if unit != _UNIT_PACKETS else 0
        counter.packets[index], counter.bytes[index] = packets, bytes_

    def _write_meter(self, kind: int, entry: pb.MeterEntry) -> None:
        info = self._meter(entry.meter_id)
        index = _write_index(entry, "meters")
        if kind in (_Update.INSERT, _Update.DELETE):
            raise _invalid(f"{_Update.Type.Name(kind)} update type not supported for meters")
        if kind != _Update.MODIFY:
            raise _bad_update_type(kind)
        rates = _meter_rates(entry.config) if entry.HasField("config") else None
        if index >= info.size:
            raise RpcFailure(Code.UNKNOWN, f"Error when writing meter spec: index {index} outside "
                             f"{info.name}[0..{info.size - 1}]")
        meter = self._state.meters[info.name]
        if rates is None:
            meter.reset(index)
        else:
            meter.set_config(index, *rates)

    # ---- packet replication engine

    def _write_pre(self, kind: int, entry: pb.PacketReplicationEngineEntry) -> None:
        which = entry.WhichOneof("type")
        if which == "multicast_group_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "softnic has no multicast groups")
        if which != "clone_session_entry":
            raise _invalid("Invalid PRE operation")
        session = entry.clone_session_entry
        sid = session.session_id
        if sid == 0:
            raise _invalid("0 is not a valid session id")
        if kind not in (_Update.INSERT, _Update.MODIFY, _Update.DELETE):
            raise _bad_update_type(kind)
        if not 1 <= sid < _MAX_CLONE_SESSION:
            raise _invalid("Clone session id out-of-range")
        exists = sid in self._clone_sessions
        if kind == _Update.INSERT and exists:
            raise RpcFailure(Code.ALREADY_EXISTS, "Clone session id already exists")
        if kind != _Update.INSERT and not exists:
            raise RpcFailure(Code.NOT_FOUND, "Clone session id does not exist")
        if kind == _Update.DELETE:
            del self._clone_sessions[sid]
            self._state.clone_sessions.pop(sid, None)
            return
        ports = _replica_ports(session)
        if session.class_of_service:
            raise RpcFailure(Code.UNIMPLEMENTED, "COS for clone sessions not supported yet")
        stored = pb.CloneSessionEntry()
        stored.CopyFrom(session)
        self._clone_sessions[sid] = stored
        if ports:
            self._state.clone_sessions[sid] = ports[0]   # p4tas clones to one port per session
        else:
            self._state.clone_sessions.pop(sid, None)

    # ---- read

    def _read(self, request: pb.ReadRequest,
              context: grpc.ServicerContext) -> Iterator[pb.ReadResponse]:
        out, failure = _ReadOut(), None
        try:
            self._check_device(request.device_id)
            with self._lock:
                self._need_state()
                for entity in request.entities:
                    self._read_entity(entity, out)
        except RpcFailure as err:
            failure = err
        # Like PI, what was read before a failure is sent too.
        for resp in out.responses:
            if resp.entities or failure is None:
                yield resp
        if failure is not None:
            _abort(context, failure)

    def _read_entity(self, entity: pb.Entity, out: _ReadOut) -> None:
        kind = entity.WhichOneof("entity")
        if kind == "table_entry":
            self._read_tables(entity.table_entry, out)
        elif kind == "counter_entry":
            self._read_counters(entity.counter_entry, out)
        elif kind == "meter_entry":
            self._read_meters(entity.meter_entry, out)
        elif kind == "packet_replication_engine_entry":
            self._read_pre(entity.packet_replication_engine_entry, out)
        elif kind == "register_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "Register reads are not supported yet")
        elif kind == "value_set_entry":
            raise RpcFailure(Code.UNIMPLEMENTED, "ValueSet reads are not supported yet")
        elif kind in ("direct_counter_entry", "direct_meter_entry"):
            entry = getattr(entity, kind)
            if entry.HasField("table_entry") and entry.table_entry.table_id == 0:
                raise RpcFailure(Code.UNIMPLEMENTED, "Reading all direct resources for ALL "
                                 "tables is not supported yet")
            self._direct_resource(entry, kind)
        elif kind == "digest_entry":
            digest_id = entity.digest_entry.digest_id
            if digest_id == 0:
                raise RpcFailure(Code.UNIMPLEMENTED,
                                 "digest_id must be set when reading DigestEntry")
            raise RpcFailure(Code.NOT_FOUND, f"{digest_id} is not a valid digest id")
        elif kind in ("action_profile_member", "action_profile_group"):
            profile_id = getattr(entity, kind).action_profile_id
            if profile_id != 0:   # a wildcard read finds nothing: the program has none
                raise _invalid(f"Invalid P4 id {profile_id}: the program has no action "
                               "profiles")
        else:
            raise RpcFailure(Code.UNKNOWN, "Incorrect entity type")

    def _read_tables(self, request: pb.TableEntry, out: _ReadOut) -> None:
        tables = (self._program.tables.values() if request.table_id == 0
                  else [self._table(request.table_id)])
        for table in tables:
            if request.is_default_action:
                self._read_default(table, request, out)
            else:
                self._read_entries(table, request, out)

    def _read_default(self, table: TableInfo, request: pb.TableEntry, out: _ReadOut) -> None:
        if request.HasField("time_since_last_hit"):
            raise _invalid("Default table entries do not support entry ageing, do not set "
                           "'time_since_last_hit' in your ReadRequest")
        action, params = self._state.tables[table.name].default_action
        entry = out.add().table_entry
        entry.table_id = table.id
        entry.is_default_action = True
        self._fill_action(entry, action, params)
        self._fill_meta(entry, table, None)

    def _read_entries(self, table: TableInfo, request: pb.TableEntry, out: _ReadOut) -> None:
        if request.HasField("time_since_last_hit"):
            raise _invalid("Do not set time_since_last_hit for a ReadRequest if the table "
                           "does not support idle timeout; yes, that includes wildcard reads")
        entries = self._state.tables[table.name].entries
        if request.match:
            key = _match_key(table, request)
            items = [(key, entries[key])] if key in entries else []
        else:
            items = list(entries.items())
        meta = self._entry_meta[table.id]
        for key, (action, params) in items:
            entry = out.add().table_entry
            entry.table_id = table.id
            for (fid, _, _), value in zip(table.fields, key, strict=True):
                entry.match.add(field_id=fid).exact.value = _canonical(value)
            self._fill_action(entry, action, params)
            if key in meta:
                self._fill_meta(entry, table, key)

    def _fill_action(self, entry: pb.TableEntry, name: str, params: tuple[int, ...]) -> None:
        action = self._program.actions_by_name[name]
        call = entry.action.action
        call.action_id = action.id
        for (pid, _), value in zip(action.params, params, strict=True):
            call.params.add(param_id=pid, value=_canonical(value))

    def _fill_meta(self, entry: pb.TableEntry, table: TableInfo, key: Any) -> None:
        meta = self._entry_meta[table.id].get(key)
        if meta is not None:
            entry.controller_metadata, entry.metadata = meta

    def _read_counters(self, request: pb.CounterEntry, out: _ReadOut) -> None:
        infos = (self._program.counters.values() if request.counter_id == 0
                 else [self._counter(request.counter_id)])
        for info in infos:
            counter = self._state.counters[info.name]
            for index in self._read_indexes(request, info, "counter"):
                entry = out.add().counter_entry
                entry.counter_id = info.id
                entry.index.index = index
                entry.data.packet_count = counter.packets[index]
                entry.data.byte_count = counter.bytes[index]

    def _read_meters(self, request: pb.MeterEntry, out: _ReadOut) -> None:
        infos = (self._program.meters.values() if request.meter_id == 0
                 else [self._meter(request.meter_id)])
        for info in infos:
            configs = self._state.meters[info.name].configs
            for index in self._read_indexes(request, info, "meter spec"):
                entry = out.add().meter_entry
                entry.meter_id = info.id
                entry.index.index = index
                config = configs.get(index)
                if config is not None:
                    _fill_meter_config(entry.config, config)

    @staticmethod
    def _read_indexes(request: Any, info: IndexedInfo, what: str) -> range:
        """The indexes a counter/meter read asks for: one, or all when none is given."""
        if not request.HasField("index"):
            return range(info.size)
        index = request.index.index
        if index < 0:
            raise _invalid("A negative number is not a valid index value")
        if index >= info.size:
            raise RpcFailure(Code.UNKNOWN, f"Error when reading {what} from target: index "
                             f"{index} outside {info.name}[0..{info.size - 1}]")
        return range(index, index + 1)

    def _read_pre(self, request: pb.PacketReplicationEngineEntry, out: _ReadOut) -> None:
        which = request.WhichOneof("type")
        if which == "multicast_group_entry":
            if request.multicast_group_entry.multicast_group_id != 0:
                raise RpcFailure(Code.NOT_FOUND, "Multicast group does not exist")
            return
        if which != "clone_session_entry":
            raise _invalid("Invalid PRE operation")
        sid = request.clone_session_entry.session_id
        if sid == 0:
            sids = sorted(self._clone_sessions)
        elif sid in self._clone_sessions:
            sids = [sid]
        else:
            raise RpcFailure(Code.NOT_FOUND, "Clone session id does not exist")
        for s in sids:
            out.add().packet_replication_engine_entry.clone_session_entry.CopyFrom(
                self._clone_sessions[s])

    # ---- stream channel

    def _stream_channel(self, requests: Iterator[pb.StreamMessageRequest],
                        context: grpc.ServicerContext) -> Iterator[pb.StreamMessageResponse]:
        conn = _Connection(next(self._numbers))
        context.add_callback(conn.hang_up)   # the RPC ended (client gone): stop sending
        reader = threading.Thread(target=self._serve_stream, args=(conn, requests),
                                  name=f"p4rt-stream-{conn.number}", daemon=True)
        reader.start()
        try:
            while True:
                item = conn.outbox.get()
                if isinstance(item, _Hangup):
                    if item.code is not None:
                        _abort(context, RpcFailure(item.code, item.message))
                    return
                yield item
        finally:
            self._remove_connection(conn)

    def _serve_stream(self, conn: _Connection,
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
            self._remove_connection(conn)
            conn.hang_up()

    def _stream_request(self, conn: _Connection,
                        request: pb.StreamMessageRequest) -> RpcFailure | None:
        """Handle one stream message; a failure that ends the stream, if any."""
        kind = request.WhichOneof("update")
        try:
            if kind == "arbitration":
                self._arbitrate(conn, request.arbitration)
            elif kind == "packet":
                self._packet_out(conn, request.packet)
            # digest_ack: our program has no digests; others: ignored, as PI does
        except RpcFailure as failure:
            return failure
        return None

    def _arbitrate(self, conn: _Connection, arb: pb.MasterArbitrationUpdate) -> None:
        """Add or update a controller; the highest election id is primary (PI's rules)."""
        if conn.device_id is not None and arb.device_id != conn.device_id:
            raise RpcFailure(Code.FAILED_PRECONDITION, "Invalid device id")
        self._check_device(arb.device_id)
        election = _u128(arb.election_id)
        with self._conn_lock:
            others = [c for c in self._connections if c is not conn]
            if any(c.election_id == election for c in others):
                raise _invalid("Election id already exists")
            if conn.election_id is None and len(others) >= _MAX_CONNECTIONS:
                raise RpcFailure(Code.RESOURCE_EXHAUSTED, "Too many connections")
            old_primary = self._primary
            conn.device_id, conn.election_id = arb.device_id, election
            if conn not in self._connections:
                self._connections.append(conn)
            self._primary = max(self._connections, key=lambda c: c.election_id)
            if self._primary is not old_primary:
                self._notify_all()
            else:
                self._notify(conn)

    def _remove_connection(self, conn: _Connection) -> None:
        with self._conn_lock:
            if conn not in self._connections:
                return
            self._connections.remove(conn)
            if conn is self._primary:
                self._primary = (max(self._connections, key=lambda c: c.election_id)
                                 if self._connections else None)
                self._notify_all()

    def _notify_all(self) -> None:
        for conn in self._connections:
            self._notify(conn)

    def _notify(self, conn: _Connection) -> None:
        """Tell `conn` whether it is primary (OK) or a backup (ALREADY_EXISTS)."""
        primary = self._primary
        msg = pb.StreamMessageResponse()
        arb = msg.arbitration
        arb.device_id = self.device_id
        _set_u128(arb.election_id, primary.election_id)
        if conn is primary:
            arb.status.code, arb.status.message = Code.OK, "Is primary"
        else:
            arb.status.code, arb.status.message = Code.ALREADY_EXISTS, "Is backup"
        conn.send(msg)

    def _packet_out(self, conn: _Connection, packet: pb.PacketOut) -> None:
        """Send a primary's PacketOut into the pipeline from the CPU port."""
        if conn is not self._primary or self._state is None:
            return   # PI drops packets of backups and before any pipeline
        header = self._program.packet_out
        try:
            frame = (_packet_out_header(header, packet) if header else b"") + packet.payload
        except RpcFailure as failure:
            conn.send(_stream_error(failure, packet))
            return
        with self._packet_out_lock:
            try:
                self._dataplane.packet_out(frame)
            except Exception as err:
                log.exception("dataplane failed on a PacketOut")
                conn.send(_stream_error(RpcFailure(Code.UNKNOWN, f"packet-out failed: {err}"),
                                        packet))
                return
            self.packet_out_count += 1

    def packet_in(self, frame: bytes) -> None:
        """Send a frame the pipeline punted to the CPU port (packet_in header + payload) to
        the primary controller; drop it (counted) if there is none."""
        header, primary = self._program.packet_in, self._primary
        if (primary is None or self._state is None or header is None
                or len(frame) < header.nbytes
                or primary.outbox.qsize() >= _PACKET_IN_BACKLOG):
            self.packet_in_drops += 1
            return
        msg = pb.StreamMessageResponse()
        packet = msg.packet
        packet.payload = frame[header.nbytes:]
        for fid, value in header.unpack(frame):
            packet.metadata.add(metadata_id=fid, value=_canonical(value))
        primary.send(msg)
        self.packet_in_count += 1


# --------------------------------------------------------------------------- helpers

class _WriteFailure(RpcFailure):
    """A Write with failed updates: UNKNOWN with one p4.v1.Error per update (OK ones too)."""

    def __init__(self, errors: list[RpcFailure | None], failed: int) -> None:
        first = next(e for e in errors if e is not None)
        super().__init__(Code.UNKNOWN, f"Write failed for {failed} of {len(errors)} updates; "
                         f"first: {Code.Name(first.code)}: {first.message}")
        self.errors = errors

    def status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code, message=self.message)
        for error in self.errors:
            detail = pb.Error()
            if error is not None:
                detail.canonical_code, detail.message = error.code, error.message
                detail.space = _ERROR_SPACE
            status.details.add().Pack(detail)
        return status


def _abort(context: grpc.ServicerContext, failure: RpcFailure) -> None:
    """End the RPC with `failure`'s code, and a google.rpc.Status in the trailing metadata
    as PI sends it (grpc-status-details-bin)."""
    if isinstance(failure, _WriteFailure):
        status = failure.status()
    else:
        status = status_pb2.Status(code=failure.code, message=failure.message)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(_GRPC_CODES.get(failure.code, grpc.StatusCode.UNKNOWN), failure.message)


def _stream_error(failure: RpcFailure, packet: pb.PacketOut) -> pb.StreamMessageResponse:
    msg = pb.StreamMessageResponse()
    error = msg.error
    error.canonical_code, error.message, error.space = (failure.code, failure.message,
                                                        _ERROR_SPACE)
    error.packet_out.packet_out.CopyFrom(packet)
    return msg


def _packet_out_header(header: ControllerHeader, packet: pb.PacketOut) -> bytes:
    """The packet_out controller header of a PacketOut's metadata, validated as PI does."""
    values = {}
    for m in packet.metadata:
        width = header.widths.get(m.metadata_id)
        if width is None:
            raise _invalid(f"Unknown metadata id {m.metadata_id} in PacketOut message")
        values[m.metadata_id] = _to_int(m.value, width, f"PacketOut metadata {m.metadata_id}")
    return header.pack(values)


def _bad_update_type(kind: int) -> RpcFailure:
    return _invalid("Update type is not set" if kind == _Update.UNSPECIFIED
                    else "Invalid update type")


def _match_key(table: TableInfo, entry: pb.TableEntry) -> tuple[int, ...]:
    """The exact-match key of an entry, in p4info field order, validated as PI does."""
    if len(entry.match) > len(table.fields):
        raise _invalid(f"Too many fields in match key of {table.name}")
    values: list[int | None] = [None] * len(table.fields)
    for fm in entry.match:
        pos = table.field_pos.get(fm.field_id)
        if pos is None or values[pos] is not None:
            raise _invalid(f"Unknown field in match key of {table.name}: id {fm.field_id}")
        if fm.WhichOneof("field_match_type") != "exact":
            raise _invalid(f"Invalid match type for field {table.fields[pos][2]} of "
                           f"{table.name}: it is EXACT")
        data = fm.exact.value
        value = int.from_bytes(data, "big")   # _to_int inlined: the hot loop
        _, width, name = table.fields[pos]
        if value >> width:
            _to_int(data, width, f"{table.name} field {name}")
        values[pos] = value
    if None in values:
        missing = [table.fields[i][2] for i, v in enumerate(values) if v is None]
        raise _invalid(f"Missing non-ternary field in match key of {table.name}: "
                       + ", ".join(missing))
    if entry.priority > 0:
        raise _invalid("Non-zero priority for non-ternary match")
    return tuple(values)  # type: ignore[arg-type]


def _check_no_extras(table: TableInfo, entry: pb.TableEntry) -> None:
    """Direct resources and idle timeouts, which no table of ours has."""
    if entry.HasField("meter_config") or entry.HasField("meter_counter_data"):
        raise _invalid(f"Table {table.name} has no direct meters")
    if entry.HasField("counter_data"):
        raise _invalid(f"Table {table.name} has no direct counters")
    if entry.idle_timeout_ns < 0:
        raise _invalid("idle_timeout_ns must be a positive value")
    if entry.idle_timeout_ns > 0:
        raise _invalid("idle_timeout_ns must be set to 0 for tables which do not support "
                       "idle timeout")


def _write_index(entry: Any, what: str) -> int:
    if not entry.HasField("index"):
        raise RpcFailure(Code.UNIMPLEMENTED,
                         f"Wildcard write is not supported for indirect {what} yet")
    if entry.index.index < 0:
        raise _invalid("A negative number is not a valid index value")
    return entry.index.index


def _meter_rates(config: pb.MeterConfig) -> tuple[int, int, int, int] | None:
    """A MeterConfig as bmv2 takes it; None for PI's all -1 "default" (unconfigured)."""
    values = (config.cir, config.cburst, config.pir, config.pburst)
    if values == (-1, -1, -1, -1):
        return None
    for name, value in zip(("CIR", "CBurst", "PIR", "PBurst"), values, strict=True):
        if value < -1:
            raise _invalid(f"Negative meter {name}")
    if config.cburst > _U32_MAX:
        raise RpcFailure(Code.UNIMPLEMENTED, "CBurst too large")
    if config.pburst > _U32_MAX:
        raise RpcFailure(Code.UNIMPLEMENTED, "Pburst too large")
    # PI casts -1 to the largest unsigned value: an unlimited rate or burst
    cir, pir = (_U64_MAX if r == -1 else r for r in (config.cir, config.pir))
    cburst, pburst = (_U32_MAX if b == -1 else b for b in (config.cburst, config.pburst))
    return cir, cburst, pir, pburst


def _fill_meter_config(config: pb.MeterConfig, values: tuple[int, int, int, int]) -> None:
    cir, cburst, pir, pburst = values
    config.cir = -1 if cir == _U64_MAX else cir
    config.cburst = -1 if cburst == _U32_MAX else cburst
    config.pir = -1 if pir == _U64_MAX else pir
    config.pburst = -1 if pburst == _U32_MAX else pburst


def _replica_ports(session: pb.CloneSessionEntry) -> list[int]:
    """Egress ports of a clone session's replicas, validated as PI does."""
    ports, seen = [], set()
    for replica in session.replicas:
        kind = replica.WhichOneof("port_kind")
        if kind == "egress_port":
            port = replica.egress_port
        elif kind == "port":
            port = _port_bytes(replica.port)
        else:
            raise _invalid("Missing port in multicast group replica")
        if (replica.instance, port) in seen:
            raise _invalid("Duplicate replica in multicast group")
        seen.add((replica.instance, port))
        ports.append(port)
    return ports


def _port_bytes(data: bytes) -> int:
    if not data:
        raise _invalid("Port must not be the empty string")
    if len(data) > 4:
        raise RpcFailure(Code.UNIMPLEMENTED,
                         f"Got port of {len(data)} bytes, but only 4 bytes are supported")
    port = int.from_bytes(data, "big", signed=False)
    if port == 0 or port >= 1 << 31:
        raise _invalid("Port must be non-negative.")
    return port


__all__ = ["API_VERSION", "DEFAULT_BMV2_JSON", "DEFAULT_P4INFO", "Dataplane",
           "P4RuntimeServer", "RpcFailure"]
