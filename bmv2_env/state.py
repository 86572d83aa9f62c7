"""The state directory of one environment: what `up` started, for `status`, `down` and `ptf`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .portmap import PortMap, validate_prefix

STATE_DIR_ENV = "P4TAS_STATE_DIR"
ENV_FILE = "env.json"
PORTMAP_FILE = "portmap.json"
SWITCH_LOG = "switch.log"
SWITCH_PID = "switch.pid"
P4RUNTIME_SOCKET = "p4runtime.sock"  # the switch's P4Runtime server (bmv2_env.switch)
PTF_LOG = "ptf.log"
PEERS_FILE = "peers.json"
ROUTED_FILE = "routed.json"  # hosts behind the peers as routers (bmv2_env.routed)
RUNTIME_PID = "runtime.pid"  # the runtime daemon (bmv2_env.runtime_proc)
RUNTIME_LOG = "runtime.log"
CONTROL_SOCKET = "control.sock"  # the runtime's UNIX socket for applications (host_lib)
ECHO_PID = "echo.pid"  # the example echo server of `run` (bmv2_env.echo_proc)
ECHO_LOG = "echo.log"


def state_dir(prefix: str) -> Path:
    """$P4TAS_STATE_DIR, else /tmp/p4tas-<prefix>."""
    override = os.environ.get(STATE_DIR_ENV, "").strip()
    return Path(override) if override else Path(f"/tmp/p4tas-{validate_prefix(prefix)}")


@dataclass(frozen=True)
class EnvRecord:
    """What `up` brought up, saved as env.json (the PortMap also goes alone to portmap.json).

    `peers`: the wire ports' peer veths are in namespaces (`up --peers`; table in peers.json).
    `target`: the switch's target (bmv2_env.targets), "bmv2" in records from before targets.
    """

    portmap: PortMap
    grpc_addr: str
    log: bool
    pipeline: bool
    peers: bool = False
    target: str = "bmv2"

    def save(self, directory: Path) -> None:
        """Write env.json and portmap.json into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        data = asdict(self) | {"portmap": self.portmap.to_dict()}
        (directory / ENV_FILE).write_text(json.dumps(data, indent=2) + "\n")
        (directory / PORTMAP_FILE).write_text(self.portmap.to_json())

    @classmethod
    def load(cls, directory: Path) -> EnvRecord | None:
        """Read env.json from `directory`; None if absent or unreadable."""
        try:
            data = json.loads((directory / ENV_FILE).read_text())
            return cls(PortMap.from_dict(data["portmap"]), str(data["grpc_addr"]),
                       bool(data["log"]), bool(data["pipeline"]), bool(data.get("peers", False)),
                       str(data.get("target", "bmv2")))
        except (OSError, ValueError, KeyError, TypeError):
            return None
