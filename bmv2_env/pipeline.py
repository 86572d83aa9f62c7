"""Push the committed pipeline (p4src/build/) to the switch and program the ACK clone sessions."""

from __future__ import annotations

import logging

from nic_contract.pipeline import PipelineError, PipelineFiles, install

from .portmap import PortMap

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0


def push(grpc_addr: str, portmap: PortMap, files: PipelineFiles | None = None,
         device_id: int = 0, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Load the pipeline if the switch does not run it yet, then program the ACK clone sessions.

    Returns True if the pipeline was (re)loaded, False if the switch already ran it.
    """
    files = files or PipelineFiles()
    files.check()
    try:
        from nic_contract.p4rt.client import P4RuntimeClient
    except ImportError as exc:
        raise PipelineError(f"cannot import nic_contract.p4rt.client ({exc}); "
                            f"run `make setup`") from None
    try:
        with P4RuntimeClient(grpc_addr, device_id=device_id, timeout=timeout) as client:
            loaded = install(client, portmap.wire_ports, files)
    except Exception as exc:  # grpc.RpcError and the client's own errors: report, don't trace
        raise PipelineError(f"pushing the pipeline to {grpc_addr} failed: {exc}") from exc
    log.info("pipeline %s on wire ports %s", "loaded" if loaded else "already loaded",
             portmap.wire_ports)
    return loaded
