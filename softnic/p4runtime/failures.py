"""How softnic's P4Runtime server fails an RPC, as PI (proto/frontend/src/device_mgr.cpp) does:
a google.rpc code and message; a failed Write is UNKNOWN with one p4.v1.Error per update in the
google.rpc.Status details, the way nic_contract/p4rt/client.py decodes them."""

from __future__ import annotations

import grpc

from nic_contract.p4rt.proto import code_pb2, p4runtime_pb2, status_pb2

Code = code_pb2.Code

ERROR_SPACE = "ALL-sswitch-p4org"  # PI's error space, for clients that look at it
_GRPC_CODES = {status.value[0]: status for status in grpc.StatusCode}


class RpcFailure(Exception):
    """A failed P4Runtime operation: a google.rpc code and a message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def invalid(message: str) -> RpcFailure:
    """An INVALID_ARGUMENT failure."""
    return RpcFailure(Code.INVALID_ARGUMENT, message)


def check_device(device_id: int, ours: int) -> None:
    """NOT_FOUND unless a request names this device."""
    if device_id != ours:
        raise RpcFailure(Code.NOT_FOUND, f"Unknown device id {device_id} "
                         f"(this is device {ours})")


class WriteFailure(RpcFailure):
    """A Write with failed updates: UNKNOWN with one p4.v1.Error per update (OK ones too)."""

    def __init__(self, errors: list[RpcFailure | None], failed: int) -> None:
        first = next(e for e in errors if e is not None)
        super().__init__(Code.UNKNOWN, f"Write failed for {failed} of {len(errors)} updates; "
                         f"first: {Code.Name(first.code)}: {first.message}")
        self.errors = errors

    def status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code, message=self.message)
        for error in self.errors:
            detail = p4runtime_pb2.Error()
            if error is not None:
                detail.canonical_code, detail.message = error.code, error.message
                detail.space = ERROR_SPACE
            status.details.add().Pack(detail)
        return status


def abort(context: grpc.ServicerContext, failure: RpcFailure) -> None:
    """End the RPC with `failure`'s code, and a google.rpc.Status in the trailing metadata
    as PI sends it (grpc-status-details-bin)."""
    if isinstance(failure, WriteFailure):
        status = failure.status()
    else:
        status = status_pb2.Status(code=failure.code, message=failure.message)
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(_GRPC_CODES.get(failure.code, grpc.StatusCode.UNKNOWN), failure.message)
