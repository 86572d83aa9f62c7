"""What the P4Runtime client raises: P4RuntimeError and its kinds, translated from gRPC errors;
a failed Write lists its failed updates from the p4.v1.Error details PI sends."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2, status_pb2

Code = code_pb2.Code
_SHOWN_FAILURES = 20   # failed updates named in a WriteError's message


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


def rpc_code_name(err: grpc.RpcError) -> str:
    """The gRPC status name of a failed call ("UNAVAILABLE")."""
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


def write_error(err: grpc.RpcError, updates: list[p4runtime_pb2.Update]) -> P4RuntimeError:
    """Translate a failed Write: a WriteError naming its failed updates when PI listed them."""
    failures = update_failures(err, updates)
    if not failures:
        return rpc_error("Write", err)
    lines = [f"#{f.index} {f.code_name}: {f.message}" for f in failures[:_SHOWN_FAILURES]]
    more = (f"; ... {len(failures) - _SHOWN_FAILURES} more"
            if len(failures) > _SHOWN_FAILURES else "")
    return WriteError(f"write failed for {len(failures)} of {len(updates)} updates: "
                      + "; ".join(lines) + more, failures)


def rpc_error(method: str, err: grpc.RpcError) -> P4RuntimeError:
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
    return P4RuntimeError(f"{method} failed: {rpc_code_name(err)}: {details}", code)
