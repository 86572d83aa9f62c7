"""The P4 objects of the dpdk target as the shared P4Runtime server sees them (softnic.state's
interfaces), kept in the SWX pipeline: table writes become runner commands staged until the
Write's commit, counters and registers are the pipeline's register arrays, meters its meter
arrays. Table entries are mirrored here too, so reads need no round trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dpdk_target.names import SpecNames
from dpdk_target.runner_control import Runner, RunnerError
from nic_contract.p4rt.proto import p4info_pb2
from nic_contract.pipeline import PNA_SPEC
from softnic.p4runtime.failures import Code, RpcFailure
from softnic.p4runtime.program import ConfigError, DefaultActions, Program, TableInfo
from softnic.state import SwitchState

ActionCall = tuple[str, tuple[int, ...]]
# rte_meter refuses rates it cannot turn into a period: "unlimited" (PI's 2^64 - 1) is capped
MAX_METER_RATE = 1 << 40


class StagedCommands:
    """Runner commands of one Write, sent and committed together (`flush`), with how to undo
    the table changes they mirror here if the runner refuses them (the runner's commit is all
    or nothing)."""

    def __init__(self, runner: Runner) -> None:
        self.runner, self.commands = runner, list[str]()
        self.undo: list[Callable[[], None]] = []

    def flush(self) -> None:
        """Send what was staged; commit the table changes among it, or undo them here."""
        commands, self.commands = self.commands, []
        undo, self.undo = self.undo, []
        if any(c.startswith("table_") for c in commands):
            commands.append("commit")
        failed = [(c, r) for c, r in zip(commands, self.runner.batch(commands), strict=True)
                  if not r.startswith("ok")]
        if failed:
            for step in reversed(undo):
                step()
            raise RunnerError("; ".join(f"{c.split(' ', 2)[:2]}: {r}" for c, r in failed))


def _hex(value: int) -> str:
    return f"0x{value:x}"


class TableEntries(dict):
    """An exact table's entries (key tuple -> action call), each change staged as a command."""

    def __init__(self, table: DpdkTable) -> None:
        super().__init__()
        self.table = table

    def __setitem__(self, key: tuple[int, ...], action: ActionCall) -> None:
        self._remember(key)
        if key in self:
            self.table.stage("table_delete", key, None)
        super().__setitem__(key, action)
        self.table.stage("table_add", key, action)

    def pop(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            return default
        self._remember(key)
        self.table.stage("table_delete", key, None)
        return super().pop(key)

    def _remember(self, key: tuple[int, ...]) -> None:
        """How to put `key` back as it is now (StagedCommands.undo)."""
        if key in self:
            old = self[key]
            self.table.staged.undo.append(lambda: dict.__setitem__(self, key, old))
        else:
            self.table.staged.undo.append(lambda: dict.pop(self, key, None))


class DpdkTable:
    """An exact-match table of the pipeline (softnic.state.ExactTable's interface)."""

    def __init__(self, info: TableInfo, spec_name: str, names: SpecNames,
                 default: ActionCall, staged: StagedCommands) -> None:
        self.name, self.size, self.spec_name = info.name, info.size, spec_name
        self.const_default = info.const_default
        self._names, self.staged, self._default = names, staged, default
        self.entries = TableEntries(self)

    @property
    def default_action(self) -> ActionCall:
        return self._default

    @default_action.setter
    def default_action(self, action: ActionCall) -> None:
        old = self._default
        self.staged.undo.append(lambda: setattr(self, "_default", old))
        self._default = action
        self.stage_default()

    def stage_default(self) -> None:
        """Stage the current default action (a freshly loaded pipeline's are the spec's; a
        const one cannot change)."""
        if self.const_default:
            return
        self.staged.commands.append(f"table_default {self.spec_name} "
                                     f"{self._action_text(self._default)}")

    def stage(self, verb: str, key: tuple[int, ...], action: ActionCall | None) -> None:
        text = "match " + " ".join(_hex(v) for v in key)
        if action is not None:
            text += " " + self._action_text(action)
        self.staged.commands.append(f"{verb} {self.spec_name} {text}")

    def _action_text(self, action: ActionCall) -> str:
        spec = self._names.action(action[0])
        args = " ".join(f"{a} {_hex(v)}" for a, v in zip(spec.args, action[1], strict=True))
        return f"action {spec.name} {args}".rstrip()


class RegisterCells:
    """A register array's cells as a list: reads from a snapshot taken once per Read RPC
    (`refresh`), writes go to the pipeline at once."""

    def __init__(self, runner: Runner, spec_name: str | None, size: int) -> None:
        self.runner, self.spec_name, self.size = runner, spec_name, size
        self._snapshot: dict[int, int] | None = None

    def refresh(self) -> None:
        self._snapshot = None

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        if self.spec_name is None:
            return 0
        if self._snapshot is None:
            reply = self.runner.command(f"reg_dump {self.spec_name}")
            self._snapshot = {int(i): int(v) for i, v in
                              (cell.split("=") for cell in reply.split())}
        return self._snapshot.get(index, 0)

    def __setitem__(self, index: int, value: int) -> None:
        if self.spec_name is not None:
            self.runner.command(f"reg_write {self.spec_name} {index} {value}")
            if self._snapshot is not None:
                self._snapshot[index] = value


class DpdkCounter:
    """An indexed counter: its packets and bytes register arrays (softnic.state.Counter's
    interface)."""

    def __init__(self, name: str, size: int, runner: Runner, arrays: tuple[str | None, ...]):
        self.name, self.size = name, size
        self.packets = RegisterCells(runner, arrays[0], size)
        self.bytes = RegisterCells(runner, arrays[1], size)

    def refresh(self) -> None:
        self.packets.refresh()
        self.bytes.refresh()


Rates = tuple[int, int, int, int]   # cir, cburst, pir, pburst as P4Runtime gives them


def _profile(rates: Rates) -> str:
    """The runner's meter_set arguments (its profile's name is made of them)."""
    return " ".join(str(min(v, MAX_METER_RATE)) for v in rates)


class DpdkMeter:
    """An indexed meter array (softnic.state.Meter's configuration interface). Packet meters
    meter a length of 1 per packet in the program, so their rates are packets per second."""

    def __init__(self, name: str, size: int, spec_name: str, staged: StagedCommands) -> None:
        self.name, self.size, self.spec_name, self._staged = name, size, spec_name, staged
        self.configs: dict[int, Rates] = {}

    def set_config(self, index: int, cir: int, cburst: int, pir: int, pburst: int) -> None:
        old = self.configs.get(index)
        self.configs[index] = (cir, cburst, pir, pburst)
        self._staged.commands.append(f"meter_set {self.spec_name} {index} "
                                     + _profile(self.configs[index]))
        self._drop_profile(old, self.configs[index])

    def reset(self, index: int) -> None:
        old = self.configs.pop(index, None)
        self._staged.commands.append(f"meter_reset {self.spec_name} {index}")
        self._drop_profile(old, None)

    def _drop_profile(self, old: Rates | None, new: Rates | None) -> None:
        """The cell's previous profile, unless it is the new one (the runner keeps it while
        another cell uses it): rates change all the time under congestion control."""
        if old is not None and old != new:
            self._staged.commands.append(f"meter_profile_drop {_profile(old)}")



class DpdkProgram(Program):
    """The P4Info of the PNA program, whose objects live in the runner's SWX pipeline."""

    resizable = False   # the sizes are the spec's

    def __init__(self, p4info: p4info_pb2.P4Info, names: SpecNames, runner: Runner,
                 spec: bytes) -> None:
        super().__init__(p4info)
        self.names, self.runner, self.spec = names, runner, spec
        self.staged = StagedCommands(runner)

    def commit(self) -> None:
        """Send the Write's staged commands and commit its table changes."""
        try:
            self.staged.flush()
        except RunnerError as err:
            raise RpcFailure(Code.UNKNOWN, f"the dpdk pipeline refused a write: {err}") from None

    def before_read(self, state: SwitchState) -> None:
        """Counters are read from the pipeline afresh by each Read."""
        for counter in state.counters.values():
            counter.refresh()   # type: ignore[attr-defined]

    def default_actions(self, device_config: bytes) -> DefaultActions:
        """Each table's default action from the spec, the dpdk target's device config, which
        must be the committed spec the runner runs."""
        if device_config != self.spec:
            raise ConfigError(f"the device config is not the spec this target runs "
                              f"({PNA_SPEC.name}, {len(self.spec)} bytes)")
        names = self.names
        out: DefaultActions = {}
        for table in self.tables.values():
            spec_name = self.names.tables.get(table.name, "")
            action_name, params = names.defaults.get(spec_name, ("", ()))
            match = [a.name for a in self.actions.values() if a.id in table.scopes
                     and self.names.action(a.name).name == action_name]
            if not match:
                raise ConfigError(f"spec: no default action for table {table.name}")
            out[table.id] = (match[0], params)
        return out

    def new_state(self, defaults: DefaultActions) -> SwitchState:
        """A fresh state over the running pipeline (which the dataplane resets on load)."""
        state = SwitchState()
        for table in self.tables.values():
            exact = DpdkTable(table, self.names.tables[table.name], self.names,
                              defaults[table.id], self.staged)
            state.tables[table.name] = exact   # type: ignore[assignment]
            state.tables.setdefault(table.alias, exact)   # type: ignore[arg-type]
        for c in self.counters.values():
            state.counters[c.name] = DpdkCounter(   # type: ignore[assignment]
                c.name, c.size, self.runner, self.names.counter_arrays(c.name))
        for m in self.meters.values():
            state.meters[m.name] = DpdkMeter(   # type: ignore[assignment]
                m.name, m.size, self.names.externs[m.name], self.staged)
        return state
