"""Bring a whole environment up and down: veths, switch (of the selected target), pipeline,
state dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from . import echo_proc, pipeline, routed, runtime_proc, switch, system_deps, targets, topology
from .peers import Peer, PeerError, PeerSet, link_in_netns
from .routed import RoutedHost
from nic_contract.pipeline import PipelineFiles
from .portmap import DEFAULT_PREFIX, DEFAULT_WIRE_PORTS, PortMap
from .state import (CONTROL_SOCKET, ECHO_LOG, ECHO_PID, ENV_FILE, P4RUNTIME_SOCKET, PEERS_FILE,
                    PORTMAP_FILE, PTF_LOG, ROUTED_FILE, RUNTIME_LOG, RUNTIME_PID, SWITCH_LOG,
                    SWITCH_PID, EnvRecord, state_dir)
from .switch import SwitchConfig
from .targets import Target
from .toolchain import ToolNotFound

log = logging.getLogger(__name__)

# Only these are ever deleted from the state dir (it may be a user's P4TAS_STATE_DIR).
_STATE_FILES = (ENV_FILE, PORTMAP_FILE, PEERS_FILE, ROUTED_FILE, SWITCH_PID, RUNTIME_PID,
                CONTROL_SOCKET, ECHO_PID, P4RUNTIME_SOCKET)
_LOG_FILES = (SWITCH_LOG, PTF_LOG, "ptf.pcap", RUNTIME_LOG, ECHO_LOG)


@dataclass(frozen=True)
class EnvOptions:
    """What the user asked for on the command line."""

    ports: int = DEFAULT_WIRE_PORTS
    prefix: str = DEFAULT_PREFIX
    grpc_port: int | None = None   # None: P4Runtime on a UNIX socket in the state dir
    log: bool = False
    pipeline: bool = True
    peers: bool = False  # wire ports' peer veths into namespaces with Linux peers (not for PTF)
    target: str | None = None  # "bmv2" or "soft"; None: $TARGET or the default (targets.select)
    routed: bool = False  # each peer also routes to a host behind it (bmv2_env.routed)
    cpu_interface: bool = False  # the CPU port as a veth (the runtime's packet I/O), not gRPC

    def __post_init__(self) -> None:
        if self.routed and not self.peers:
            raise ValueError("routed hosts need the Linux peers (peers=True): they are the "
                             "routers")

    @property
    def state_dir(self) -> Path:
        """Where this environment keeps its PID, logs and port map."""
        return state_dir(self.prefix)

    def resolve_target(self) -> Target:
        """The target to run: `target` if given, else the selected one (TARGET, default)."""
        return targets.get(self.target) if self.target else targets.select().target

    def switch_config(self, target: str | None = None) -> SwitchConfig:
        """The switch configuration for these options (validates them)."""
        portmap = PortMap(self.ports, self.prefix, cpu_interface=self.cpu_interface)
        return SwitchConfig(portmap, self.state_dir, self.grpc_port, self.log,
                            target=target or self.target or targets.BMV2)


@dataclass(frozen=True)
class UpResult:
    """A running environment."""

    pid: int
    record: EnvRecord
    state_dir: Path
    pipeline_loaded: bool
    peers: PeerSet | None = None
    routed: tuple[RoutedHost, ...] = ()


@dataclass
class DownResult:
    """What `down` removed."""

    stopped_pids: list[int] = field(default_factory=list)  # the switch (any target)
    removed: list[str] = field(default_factory=list)
    state_files: list[str] = field(default_factory=list)
    runtime_pids: list[int] = field(default_factory=list)  # the runtime daemon (runtime_proc)
    echo_pids: list[int] = field(default_factory=list)  # run's echo server (echo_proc)
    switch_names: dict[int, str] = field(default_factory=dict)  # pid -> its target's process

    def switches_stopped(self) -> list[str]:
        """`simple_switch_grpc pid 12` (`softnic pid 13, 14`), one item per process name."""
        by_name: dict[str, list[str]] = {}
        for pid in self.stopped_pids:
            by_name.setdefault(self.switch_names.get(pid, "switch"), []).append(str(pid))
        return [f"{name} pid {', '.join(pids)}" for name, pids in by_name.items()]

    @property
    def nothing(self) -> bool:
        """True if there was nothing to clean."""
        return not (self.stopped_pids or self.removed or self.state_files or self.runtime_pids
                    or self.echo_pids)


@dataclass(frozen=True)
class Status:
    """What of one environment exists right now."""

    prefix: str
    state_dir: Path
    record: EnvRecord | None
    pid: int | None
    grpc_up: bool
    interfaces: list[str]
    namespaces: list[str]
    peers: PeerSet | None = None
    missing_peers: list[str] = field(default_factory=list)  # "<netns>/<ifname>" not there
    runtime_pid: int | None = None  # the runtime daemon, if it runs (runtime_proc)
    runtime_pid_file: bool = False  # runtime.pid exists: a runtime was started for this env
    echo_pid: int | None = None  # the example echo server of a foreground `run` (echo_proc)

    @property
    def switch_name(self) -> str:
        """What the switch is called: the recorded target's process, else the running one's."""
        if self.record is not None and self.record.target in targets.TARGETS:
            return targets.get(self.record.target).process
        return switch.process_name(self.pid) if self.pid else "switch"

    @property
    def expected_interfaces(self) -> list[str]:
        """The veth ends the record says are in our namespace (peer sides of peers are not)."""
        if not self.record:
            return []
        names = self.record.portmap.interface_names()
        if self.record.peers:
            moved = {self.record.portmap.wire_link(p).peer_iface
                     for p in self.record.portmap.wire_ports}
            names = [n for n in names if n not in moved]
        return sorted(names)

    @property
    def up(self) -> bool:
        """Switch running with its gRPC port open and every veth (and peer) of the record there."""
        if not (self.record and self.pid and self.grpc_up):
            return False
        if self.record.peers and (self.peers is None or self.missing_peers):
            return False
        if self.runtime_pid_file and not self.runtime_pid:
            return False  # a runtime was started and is gone
        return set(self.expected_interfaces) <= set(self.interfaces)

    @property
    def nothing(self) -> bool:
        """Nothing of ours exists (logs kept from a past run do not count)."""
        return not (self.record or self.pid or self.interfaces or self.namespaces or self.peers
                    or self.runtime_pid or self.runtime_pid_file or self.echo_pid)


def up(opts: EnvOptions) -> UpResult:
    """Replace any environment of this prefix with a fresh one; on failure remove what was made.

    The switch is of opts.target, else of the selected target (TARGET; bmv2_env.targets).
    """
    target = opts.resolve_target()
    config = opts.switch_config(target.name)
    program = target.command_prefix()  # ToolNotFound before anything is touched
    lacking = system_deps.skip_reason()
    if lacking is not None:
        raise ToolNotFound(lacking)
    files = PipelineFiles.for_target(target.name)
    if opts.pipeline:
        files.check()
    down(opts.prefix)
    try:
        topology.create(config.portmap)
        peer_set = PeerSet.create(config.portmap) if opts.peers else None
        hosts = routed.create(config.portmap, peer_set) if opts.routed else ()
        pid = switch.start(config, program)
        loaded = pipeline.push(config.grpc_addr, config.portmap, files) if opts.pipeline else False
        record = EnvRecord(config.portmap, config.grpc_addr, opts.log, opts.pipeline, opts.peers,
                           target.name)
        if peer_set is not None:
            peer_set.save(config.state_dir)
        if hosts:
            routed.save(hosts, config.state_dir)
        record.save(config.state_dir)
    except BaseException:
        log.info("up failed: removing what was created")
        _cleanup_after_failure(opts.prefix)
        raise
    return UpResult(pid, record, config.state_dir, loaded, peer_set, hosts)


def _cleanup_after_failure(prefix: str) -> None:
    """down(), keeping the logs, without hiding the original error behind a cleanup error."""
    try:
        down(prefix, keep_logs=True)
    except Exception as exc:  # noqa: BLE001 - the caller re-raises the real failure
        log.error("cleanup after a failed up also failed: %s (run `make clean-env`)", exc)


def down(prefix: str, keep_logs: bool = False) -> DownResult:
    """Stop our runtime and switch, delete our veths and namespaces, clear the state dir (logs
    unless kept).

    The example echo server of `run` goes first (an application: it closes its connections),
    then the runtime daemon (runtime.pid, and any other daemon started for this state dir),
    while the switch is still there to take its connection resets. The processes inside our
    namespaces (Linux peers' clients and servers) are stopped too.
    """
    directory = state_dir(prefix)
    result = DownResult()
    result.echo_pids = echo_proc.stop_all(directory)
    result.runtime_pids = runtime_proc.stop_all(directory)
    recorded = switch.running_pid(directory)
    name = switch.process_name(recorded) if recorded is not None else "switch"
    stopped = switch.stop(directory)
    if stopped is not None:
        result.stopped_pids.append(stopped)
        result.switch_names[stopped] = name
    for pid in switch.find_switches_on(prefix):  # e.g. a switch whose state dir was lost
        result.switch_names[pid] = switch.process_name(pid)
        switch.terminate(pid)
        result.stopped_pids.append(pid)
    result.removed = topology.destroy(prefix)
    result.state_files = _clear_state_dir(directory, keep_logs)
    return result


def _clear_state_dir(directory: Path, keep_logs: bool) -> list[str]:
    """Delete our files from `directory`, then the directory itself if that left it empty."""
    names = _STATE_FILES if keep_logs else _STATE_FILES + _LOG_FILES
    removed = []
    for name in names:
        path = directory / name
        if path.exists():
            path.unlink()
            removed.append(name)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()
    return removed


def _present(peer: Peer, namespaces: list[str]) -> bool:
    """True if the peer's namespace exists and holds its veth."""
    return peer.netns in namespaces and link_in_netns(peer.netns, peer.ifname)


def status(prefix: str) -> Status:
    """Look at what exists for `prefix`, changing nothing."""
    directory = state_dir(prefix)
    record = EnvRecord.load(directory)
    namespaces = topology.existing_namespaces(prefix)
    peer_set, missing = None, []
    if (directory / PEERS_FILE).exists() or (record and record.peers):
        try:
            peer_set = PeerSet.load(directory)
        except PeerError as exc:
            log.warning("%s", exc)
        else:
            missing = [f"{p.netns}/{p.ifname}" for p in peer_set if not _present(p, namespaces)]
    return Status(
        prefix=prefix,
        state_dir=directory,
        record=record,
        pid=switch.running_pid(directory),
        grpc_up=record is not None and switch.grpc_reachable(record.grpc_addr),
        interfaces=topology.existing_interfaces(prefix),
        namespaces=namespaces,
        peers=peer_set,
        missing_peers=missing,
        runtime_pid=runtime_proc.running_pid(directory),
        runtime_pid_file=runtime_proc.pid_path(directory).exists(),
        echo_pid=echo_proc.running_pid(directory),
    )
