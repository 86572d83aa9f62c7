"""The whole p4tas stack for end-to-end tests: veths, the switch of the selected target (TARGET:
bmv2 or soft, bmv2_env.targets) with the pipeline, Linux peers in namespaces, and the runtime
daemon, started for real and torn down afterwards.

The tests never ask which target runs: they run unchanged on every one (`make test` runs them
once per target, each with its own P4TAS_E2E_PREFIX; P4Runtime is on a UNIX socket in the
prefix's state dir)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from bmv2_env import env, runtime_proc, system_deps, targets
from bmv2_env.peers import Peer, popen_in
from bmv2_env.routed import RoutedHost
from nic_contract.pipeline import PipelineFiles
from bmv2_env.runtime_proc import RuntimeInfo
from bmv2_env.state import RUNTIME_LOG, state_dir
from bmv2_env.targets import Target
from host_lib.control_channel import ControlChannel
from nic_contract.p4rt.client import P4RuntimeClient

REPO = Path(__file__).resolve().parents[2]
PREFIX = os.environ.get("P4TAS_E2E_PREFIX", "p4e2e")  # distinct runs can coexist
READY_TIMEOUT = 30.0


def target() -> Target:
    """The target the stack runs on: $TARGET, else bmv2 when it is found, else soft.

    Raises (ToolNotFound, ValueError) for TARGET=bmv2 without simple_switch_grpc or an unknown
    TARGET: a target asked for by name and not there is an error, not a skip.
    """
    return targets.select().target


def skip_reason() -> str | None:
    """Why the end-to-end stack cannot run here, or None (see target() for what raises)."""
    chosen = target()
    missing = chosen.missing()
    if missing:
        return f"target {chosen.name} not available: {missing}"
    files = PipelineFiles()
    if not (files.p4info.is_file() and files.device_config.is_file()):
        return "p4src/build/ artifacts missing (make p4)"
    if os.geteuid() != 0:
        return "needs root for veths and namespaces"
    return system_deps.skip_reason()


@dataclass
class Stack:
    """A running stack: the peer namespace, the runtime's control socket, the switch."""

    peer: Peer
    socket_path: Path
    grpc_addr: str
    runtime: RuntimeInfo  # pid, log_path, ready_line (bmv2_env.runtime_proc)
    routed: RoutedHost | None = None  # the host behind the peer (stack_fixture routed=True)

    @property
    def runtime_log(self) -> list[str]:
        """The daemon's output so far (runtime.log in the environment's state dir)."""
        try:
            return self.runtime.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []

    def channel(self) -> ControlChannel:
        return ControlChannel(self.socket_path, app_name="e2e-test")

    def observer(self) -> P4RuntimeClient:
        """A read-only P4Runtime client (the runtime stays primary)."""
        client = P4RuntimeClient(self.grpc_addr)
        client.connect(primary=False)
        client.fetch_p4info()
        return client

    def flow_entries(self) -> list:
        client = self.observer()  # connected already: not `with` (its __enter__ connects again)
        try:
            return list(client.read([client.p4info.table_wildcard("flow_lookup")]))
        finally:
            client.close()

    def linux(self, script: str, *args: str) -> subprocess.Popen:
        """Run a Python script in the peer's namespace (the Linux TCP stack)."""
        return popen_in(self.peer, [sys.executable, "-c", script, *args],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stack_fixture(tmp_path_factory: pytest.TempPathFactory, runtime_args: list[str],
                  routed: bool = False, cpu_interface: bool = True):
    """Generator body of a pytest fixture yielding a Stack; `routed`: the peer routes to a
    host behind it (bmv2_env.routed) and the runtime has a route to it; `cpu_interface`:
    PacketIn/PacketOut on the CPU port's veth (False: over P4Runtime, as on a target without
    one).

    The environment and the runtime daemon (bmv2_env.runtime_proc, the same code as `make run`)
    are started for real; `env.down` stops the daemon, the switch and the peers afterwards.
    The runtime's log is kept under `tmp_path_factory` when the stack goes down.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        result = env.up(env.EnvOptions(ports=1, prefix=PREFIX, peers=True,
                                       target=target().name, routed=routed,
                                       cpu_interface=cpu_interface))
        info = runtime_proc.start(result.state_dir, result.record.grpc_addr, runtime_args,
                                  timeout=READY_TIMEOUT)
        yield Stack(result.peers.peer(1), info.control_socket, info.grpc_addr, info,
                    result.routed[0] if routed else None)
    finally:
        env.down(PREFIX, keep_logs=True)  # stops the runtime first; a no-op for what was never started
        _keep_runtime_log(tmp_path_factory)


def _keep_runtime_log(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The next module's stack reuses the state dir: keep this one's runtime log (with its
    final counters) where pytest keeps temporary files, to read after a failure."""
    log = state_dir(PREFIX) / RUNTIME_LOG
    if log.is_file():
        kept = tmp_path_factory.mktemp("runtime-log") / "runtime.log"
        kept.write_bytes(log.read_bytes())
        print(f"\nruntime log kept: {kept}")
