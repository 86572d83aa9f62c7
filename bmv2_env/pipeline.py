"""Push the committed pipeline (p4src/build/) to the switch and program the ACK clone sessions."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from runtime.datapath_constants import ack_clone_sessions

from .portmap import PortMap

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "p4src" / "build"
DEFAULT_TIMEOUT = 10.0


class PipelineError(RuntimeError):
    """The pipeline could not be pushed (artifacts or client missing, or the switch refused)."""


@dataclass(frozen=True)
class PipelineFiles:
    """The compiled artifacts pushed with SetForwardingPipelineConfig."""

    p4info: Path = BUILD_DIR / "p4tas.p4info.txtpb"
    bmv2_json: Path = BUILD_DIR / "p4tas.json"

    def check(self) -> None:
        """Raise PipelineError naming every missing artifact and how to produce it."""
        missing = [_shown(p) for p in (self.p4info, self.bmv2_json) if not p.is_file()]
        if missing:
            raise PipelineError(f"pipeline artifacts missing: {', '.join(missing)} "
                                f"(run `make p4`, which needs p4c)")


def _shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def push(grpc_addr: str, portmap: PortMap, files: PipelineFiles | None = None,
         device_id: int = 0, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Load the pipeline if the switch does not run it yet, then program the ACK clone sessions.

    Returns True if the pipeline was (re)loaded, False if the switch already ran it.
    """
    files = files or PipelineFiles()
    files.check()
    try:
        from runtime.p4rt.client import P4RuntimeClient
    except ImportError as exc:
        raise PipelineError(f"cannot import runtime.p4rt.client ({exc}); "
                            f"run `make setup`") from None
    try:
        with P4RuntimeClient(grpc_addr, device_id=device_id, timeout=timeout) as client:
            loaded = client.ensure_pipeline(files.p4info, files.bmv2_json)
            sessions = ack_clone_sessions(portmap.wire_ports)
            client.write_clone_sessions(sessions)
    except PipelineError:
        raise
    except Exception as exc:  # grpc.RpcError and the client's own errors: report, don't trace
        raise PipelineError(f"pushing the pipeline to {grpc_addr} failed: {exc}") from exc
    log.info("pipeline %s; clone sessions %s", "loaded" if loaded else "already loaded", sessions)
    return loaded
