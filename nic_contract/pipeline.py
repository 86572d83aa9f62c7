"""The compiled fast path: where its committed artifacts are (p4src/build/) and how a
controller installs it on a switch (the pipeline, then the ACK clone sessions)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nic_contract.constants import ack_clone_sessions

if TYPE_CHECKING:
    from nic_contract.p4rt.client import P4RuntimeClient
    from nic_contract.p4rt.p4info import P4Info

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "p4src" / "build"
P4INFO = BUILD_DIR / "p4tas.p4info.txtpb"
BMV2_JSON = BUILD_DIR / "p4tas.json"
# The PNA program (p4src/pna/) compiled by p4c-dpdk for the dpdk target: its P4Info and the
# DPDK SWX pipeline spec, which is that target's device config.
PNA_BUILD_DIR = BUILD_DIR / "pna"
PNA_P4INFO = PNA_BUILD_DIR / "p4tas.p4info.txtpb"
PNA_SPEC = PNA_BUILD_DIR / "p4tas.spec"
PNA_CONTEXT = PNA_BUILD_DIR / "p4tas.context.json"   # P4 names -> the spec's names
DPDK_TARGET_NAME = "dpdk"   # the target that runs the PNA program (bmv2_env.targets)
# The same v1model program built for 1,048,576 flows (`make p4`; constants.p4's MAX_FLOWS), for
# bmv2 and softnic: run it with the daemon's --p4info/--device-config (PipelineFiles.scale()).
SCALE_BUILD_DIR = BUILD_DIR / "1m"
# Which build bmv2_env runs (for_target): "64k", the default every test uses, or "1m".
FLOWS_ENV = "P4TAS_FLOWS"
BUILDS = ("64k", "1m")
FLOW_TABLE = "flow_state"   # indexed by flow id: its size is the build's flow capacity


class PipelineError(RuntimeError):
    """The pipeline could not be installed (artifacts or client missing, or the switch refused)."""


@dataclass(frozen=True)
class PipelineFiles:
    """The compiled artifacts pushed with SetForwardingPipelineConfig."""

    p4info: Path = P4INFO
    device_config: Path = BMV2_JSON

    @classmethod
    def for_target(cls, target: str, build: str | None = None) -> PipelineFiles:
        """The artifacts of a target: the PNA program's P4Info and spec on dpdk, the v1model
        program's P4Info and bmv2 JSON elsewhere (softnic runs the bmv2 JSON's program).
        `build`: "64k" or "1m" (default: $P4TAS_FLOWS, else "64k"); dpdk has the 64K one only."""
        build = build or os.environ.get(FLOWS_ENV) or BUILDS[0]
        if build not in BUILDS:
            raise PipelineError(f"{FLOWS_ENV}={build!r}: the builds are {', '.join(BUILDS)}")
        if target == DPDK_TARGET_NAME:
            if build != BUILDS[0]:
                raise PipelineError(f"the {target} target runs the committed 64K-flow spec only "
                                    f"({FLOWS_ENV}={build})")
            return cls(PNA_P4INFO, PNA_SPEC)
        return cls.scale() if build == "1m" else cls()

    @classmethod
    def scale(cls) -> PipelineFiles:
        """The 1M-flow build of the v1model program (bmv2, soft)."""
        return cls(SCALE_BUILD_DIR / P4INFO.name, SCALE_BUILD_DIR / BMV2_JSON.name)

    @property
    def target_args(self) -> list[str]:
        """The runtime daemon's options for these files (none for the defaults)."""
        if self == PipelineFiles():
            return []
        return ["--p4info", str(self.p4info), "--device-config", str(self.device_config)]

    def check(self) -> None:
        """Raise PipelineError naming every missing artifact and how to produce it."""
        missing = [shown(p) for p in (self.p4info, self.device_config) if not p.is_file()]
        if missing:
            raise PipelineError(f"pipeline artifacts missing: {', '.join(missing)} "
                                f"(run `make p4`, which needs p4c)")


def shown(path: Path) -> str:
    """`path` relative to the repository when it is inside it (shorter messages)."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def flow_capacity(p4info: P4Info) -> int:
    """How many flow ids a build holds: the size of its flow_state table (the one fact, in the
    compiled P4Info; every per-flow register, counter and meter has the same size)."""
    return int(p4info.table(FLOW_TABLE).size)


def install(client: P4RuntimeClient, wire_ports: list[int],
            files: PipelineFiles = PipelineFiles()) -> bool:
    """Load the pipeline unless the switch runs it already, then program one ACK clone session
    per wire port. True if the pipeline was (re)loaded."""
    loaded = client.ensure_pipeline(files.p4info, files.device_config)
    client.write_clone_sessions(ack_clone_sessions(wire_ports))
    return loaded
