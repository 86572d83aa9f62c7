"""The fast path's punt budgets (its punt_rate meter, one index per PacketIn reason) and how
the SYN budget follows a SYN flood.

The slow path answers --syn-punt-rate SYNs per second with full options; the fast path answers
the SYNs beyond it with SYN cookies (syn_cookie.p4). While a listener's backlog overflows the
slow path answers with a cookie too (RFC 4987 3.6: what Linux does once a listen queue is
full), the same cookie the fast path makes, so the SYNs punted to it then buy nothing and
cost PacketIns, PacketOuts and Python on both sides. SynBudget cuts the SYN budget to
--syn-flood-punt-rate on the first SYN that finds a backlog full and restores it once no SYN
has for FLOOD_HOLD_S: the slow path keeps seeing some SYNs, so it notices when the flood ends.
Nothing here looks at source addresses: a flood from random or spoofed sources is met the
same way."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable

from nic_contract.constants import PacketInReason
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from runtime.slow_path_stats import Stats

log = logging.getLogger(__name__)

PUNT_BURST_S = 0.1   # a meter lets this much of a second's rate through at once
MIN_PUNT_BURST = 64
FLOOD_HOLD_S = 10.0  # the SYN budget stays cut this long after the last backlog overflow


def meter_rate_entries(p4info: P4Info, meter: str, indexes: Iterable[int],
                       pps: int) -> list[p4runtime_pb2.MeterEntry]:
    """A packets meter's `indexes` at `pps` per second with a PUNT_BURST_S burst."""
    burst = max(int(pps * PUNT_BURST_S), MIN_PUNT_BURST)
    return [p4info.meter_entry(meter, index, pps, burst, pps, burst) for index in indexes]


class SynBudget:
    """The SYN index of the punt_rate meter: `normal_pps`, or `flood_pps` while backlogs
    overflow (inactive unless 0 < flood_pps < normal_pps)."""

    def __init__(self, p4info: P4Info, datapath, normal_pps: int, flood_pps: int,
                 stats: Stats, clock: Callable[[], float] = time.monotonic) -> None:
        self.p4info = p4info
        self.datapath = datapath
        self.normal_pps, self.flood_pps = normal_pps, flood_pps
        self.stats = stats
        self.flooded = False
        self._clock = clock
        self._last_overflow = -math.inf
        self._timer: asyncio.TimerHandle | None = None

    @property
    def active(self) -> bool:
        return 0 < self.flood_pps < self.normal_pps

    def overflow(self) -> None:
        """A SYN found its listener's backlog full: cut the budget (if not cut already)."""
        if not self.active:
            return
        self._last_overflow = self._clock()
        if self.flooded:
            return
        self.flooded = True
        self.stats.bump("syn_budget_cuts")
        log.warning("a listen backlog overflows (SYN flood?): the fast path answers SYNs with "
                    "cookies beyond %d/s (was %d/s)", self.flood_pps, self.normal_pps)
        self._write(self.flood_pps)
        self._arm(FLOOD_HOLD_S)

    def _on_timer(self) -> None:
        self._timer = None
        quiet = self._clock() - self._last_overflow
        if quiet < FLOOD_HOLD_S:
            self._arm(FLOOD_HOLD_S - quiet)
            return
        self.flooded = False
        log.info("no listen backlog overflowed for %.0f s: SYN budget back to %d/s",
                 FLOOD_HOLD_S, self.normal_pps)
        self._write(self.normal_pps)

    def _arm(self, delay: float) -> None:
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _write(self, pps: int) -> None:
        entries = meter_rate_entries(self.p4info, "punt_rate", [PacketInReason.SYN], pps)
        future = asyncio.ensure_future(self.datapath.modify(entries))
        future.add_done_callback(self._written)

    def _written(self, future: asyncio.Future) -> None:
        if future.cancelled() or future.exception() is None:
            return
        self.stats.bump("syn_budget_write_errors")
        log.warning("writing the fast path's SYN budget failed: %s", future.exception())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
