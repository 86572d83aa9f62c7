"""The dpdk target's side of the P4Runtime server: a committed pipeline resets the runner's
pipeline state; PacketOuts go to the runner's CPU port and its PacketIns to the server."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dpdk_target.names import SpecNames
from dpdk_target.runner_control import Runner
from dpdk_target.switch_state import DpdkMeter, DpdkTable, StagedCommands
from nic_contract.constants import pna_mirror_sessions, pna_output_ports
from softnic.state import SwitchState

log = logging.getLogger(__name__)
OUTPUT_PORT_TABLE = "output_port"
OUTPUT_PORT_ACTION = "P4tasIngress.forwarding.send"


class DpdkDataplane:
    """Owns the runner's pipeline state on behalf of the server (softnic's Dataplane
    protocol: load, packet_out)."""

    def __init__(self, runner: Runner, names: SpecNames, staged: StagedCommands,
                 clock_register: str | None, ports: list[int]) -> None:
        self.runner, self.names, self.staged = runner, names, staged
        self.clock_register, self.ports = clock_register, ports
        self._state: SwitchState | None = None

    def load(self, state: SwitchState) -> None:
        """A pipeline was committed: the SWX pipeline starts over as a freshly loaded one
        would (no entries, initial defaults, zeroed registers, unconfigured meters)."""
        commands = []
        if self._state is not None:
            for table in _tables(self._state):
                commands += [f"table_delete {table.spec_name} match "
                             + " ".join(f"0x{v:x}" for v in key) for key in table.entries]
            for meter in self._state.meters.values():
                if isinstance(meter, DpdkMeter):
                    commands += [f"meter_reset {meter.spec_name} {i}" for i in meter.configs]
        for table in _tables(state):
            table.stage_default()
        commands += [f"reg_fill {name} 0" for name in self.names.regarrays
                     if name != self.clock_register]
        commands += [f"mirror {session} {port} {truncate}"
                     for session, (port, truncate) in pna_mirror_sessions().items()]
        self.staged.commands[:0] = commands
        self._install_output_ports(state)
        self.staged.flush()
        self._state = state

    def _install_output_ports(self, state: SwitchState) -> None:
        """The output_port table's entries, one per port this target has (port p -> send(p)):
        the program's send_to_port needs its port as action data (p4src/pna/forwarding.p4)."""
        table = state.tables.get(OUTPUT_PORT_TABLE)
        if table is None:
            return
        for port in pna_output_ports(self.ports):
            table.entries[(port,)] = (OUTPUT_PORT_ACTION, (port,))

    def packet_out(self, frame: bytes) -> None:
        """A PacketOut (packet_out header + frame) into the pipeline from the CPU port."""
        self.runner.packet_out(frame)

    def pump_packet_ins(self, sink: Callable[[bytes], None], stop: threading.Event) -> None:
        """Hand every frame the pipeline sends to the CPU port to `sink` until stopped; a
        failure to deliver one is logged, not fatal."""
        while not stop.is_set():
            frame = self.runner.packet_in()
            if not frame:
                return
            try:
                sink(frame)
            except Exception:  # noqa: BLE001 - one PacketIn must not end the pump
                log.exception("delivering a PacketIn failed")


def _tables(state: SwitchState) -> list[DpdkTable]:
    """Each of the state's tables once (they are listed by name and by alias)."""
    unique = {id(t): t for t in state.tables.values() if isinstance(t, DpdkTable)}
    return list(unique.values())
