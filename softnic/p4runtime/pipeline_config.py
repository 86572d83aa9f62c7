"""SetForwardingPipelineConfig and GetForwardingPipelineConfig of softnic: a pushed config must be
the program softnic runs (p4info_check.py); committing it hands a fresh SwitchState to the
dataplane (LoadedPipeline holds it with what P4Runtime keeps beside it)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.failures import Code, RpcFailure, invalid
from softnic.p4runtime.p4info_check import p4info_differences, unsupported_features
from softnic.p4runtime.program import ConfigError, DefaultActions, Program
from softnic.state import SwitchState

log = logging.getLogger(__name__)

pb = p4runtime_pb2
_SetAction = pb.SetForwardingPipelineConfigRequest
_GetType = pb.GetForwardingPipelineConfigRequest
_SHOWN_DIFFERENCES = 12   # P4Info differences named in the error message
_NO_PIPELINE = "No forwarding pipeline config set for this device"

EntryMeta = dict[Any, tuple[int, bytes]]   # match key (None: default) -> controller metadata


@dataclass
class LoadedPipeline:
    """The committed pipeline: its config, the SwitchState the dataplane runs, and what P4Runtime
    keeps beside it (initial default actions, entry metadata, clone sessions as written)."""

    config: pb.ForwardingPipelineConfig
    state: SwitchState
    initial_defaults: DefaultActions
    entry_meta: dict[int, EntryMeta]                  # table id -> its entries' metadata
    clone_sessions: dict[int, pb.CloneSessionEntry] = field(default_factory=dict)


class PipelineConfig:
    """The device's forwarding pipeline config: verified, saved, committed and read back as PI
    does. `lock` guards it together with the P4 object state (shared with writes and reads)."""

    def __init__(self, program: Program, device_config: bytes,
                 load: Callable[[SwitchState], None],
                 lock: threading.RLock) -> None:
        self._program, self._json, self._load, self._lock = program, device_config, load, lock
        self._json_defaults = program.default_actions(device_config)   # ConfigError: ours
        self._saved: tuple[pb.ForwardingPipelineConfig, DefaultActions] | None = None
        self.loaded: LoadedPipeline | None = None

    def need_loaded(self) -> LoadedPipeline:
        """The committed pipeline; FAILED_PRECONDITION before the first commit."""
        if self.loaded is None:
            raise RpcFailure(Code.FAILED_PRECONDITION, _NO_PIPELINE)
        return self.loaded

    def set(self, request: pb.SetForwardingPipelineConfigRequest) -> Any:
        """SetForwardingPipelineConfig, once the server has checked the device and primary."""
        action = request.action
        if action == _SetAction.UNSPECIFIED:
            raise invalid("Invalid SetForwardingPipeline action")
        defaults = self._verify(request.config) if action != _SetAction.COMMIT else {}
        if action == _SetAction.VERIFY:
            return pb.SetForwardingPipelineConfigResponse()
        config = pb.ForwardingPipelineConfig()
        config.CopyFrom(request.config)
        with self._lock:
            if action == _SetAction.VERIFY_AND_SAVE:
                self._saved = (config, defaults)
            elif action == _SetAction.COMMIT:
                if self._saved is None:
                    raise RpcFailure(Code.FAILED_PRECONDITION, "No saved forwarding pipeline "
                                     "config to commit: use VERIFY_AND_SAVE first")
                self._commit(*self._saved)
                self._saved = None
            elif action == _SetAction.RECONCILE_AND_COMMIT and self.loaded is not None:
                # Same program (checked): the forwarding state carries over as it is.
                self.loaded.config = config
            elif action in (_SetAction.VERIFY_AND_COMMIT, _SetAction.RECONCILE_AND_COMMIT):
                self._commit(config, defaults)
            else:
                raise invalid(f"Invalid SetForwardingPipeline action {action}")
        return pb.SetForwardingPipelineConfigResponse()

    def get(self, request: pb.GetForwardingPipelineConfigRequest) -> Any:
        """GetForwardingPipelineConfig, once the server has checked the device."""
        with self._lock:
            config = None if self.loaded is None else self.loaded.config
        if config is None:
            raise RpcFailure(Code.FAILED_PRECONDITION, _NO_PIPELINE)
        kind = request.response_type
        if kind not in _GetType.ResponseType.values():
            raise invalid("Invalid response_type in GetForwardingPipelineConfigRequest")
        resp = pb.GetForwardingPipelineConfigResponse()
        if kind in (_GetType.ALL, _GetType.P4INFO_AND_COOKIE):
            resp.config.p4info.CopyFrom(config.p4info)
        if kind in (_GetType.ALL, _GetType.DEVICE_CONFIG_AND_COOKIE):
            resp.config.p4_device_config = config.p4_device_config
        if config.HasField("cookie"):
            resp.config.cookie.CopyFrom(config.cookie)
        return resp

    def _verify(self, config: pb.ForwardingPipelineConfig) -> DefaultActions:
        """Check that `config` is our program; return its tables' default actions."""
        diffs = p4info_differences(self._program.p4info, config.p4info,
                                   ignore_sizes=self._program.resizable)
        if diffs:
            more = (f"; ... {len(diffs) - _SHOWN_DIFFERENCES} more"
                    if len(diffs) > _SHOWN_DIFFERENCES else "")
            raise invalid("P4Info is not the one of the program this target runs: "
                          + "; ".join(diffs[:_SHOWN_DIFFERENCES]) + more)
        unsupported = unsupported_features(config.p4info)
        if unsupported:
            raise RpcFailure(Code.UNIMPLEMENTED, "softnic cannot run this program: "
                             + "; ".join(unsupported))
        if not config.p4_device_config:
            raise invalid("p4_device_config is empty: push the bmv2 JSON of the program")
        if config.p4_device_config == self._json:
            return self._json_defaults
        try:
            return self._program.default_actions(config.p4_device_config)
        except ConfigError as err:
            raise invalid(f"p4_device_config is not the bmv2 JSON of this program: "
                          f"{err}") from None

    def _commit(self, config: pb.ForwardingPipelineConfig, defaults: DefaultActions) -> None:
        """Load a fresh state: all tables, counters, meters and clone sessions are reset."""
        if self._program.resizable:
            self._program.resize(config.p4info)   # the pushed build's sizes
        state = self._program.new_state(defaults)
        self.loaded = LoadedPipeline(config, state, defaults,
                                     {t: {} for t in self._program.tables})
        self._load(state)
        log.info("pipeline committed (cookie %#x)", config.cookie.cookie)
