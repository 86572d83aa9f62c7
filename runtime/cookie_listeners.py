"""The fast path's listener entries (p4src/v1model/syn_cookie.p4): the addresses and ports whose
SYNs it answers with a SYN cookie itself once its SYN punt budget is spent, with the key and
the epoch the cookies are made with (the slow path checks them: runtime/syn_cookies.py).

One entry per listening address and port, written when an application listens and deleted
when it stops; every epoch (nic_contract.syn_cookie.EPOCH_S) the entries get the new one, in
one batched write. Writes are not awaited by the caller: a failure is logged and counted, and
costs only the fast path's cookies for that port (SYNs beyond the budget are dropped then, as
they would be without this table)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable

from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from nic_contract.syn_cookie import EPOCH_S, listener_entry
from runtime.slow_path_stats import Stats
from runtime.syn_cookies import SynCookies

log = logging.getLogger(__name__)

Address = tuple[str, int]   # local IP, port


class CookieListeners:
    """Keeps the fast path's syn_cookie_listeners table equal to our listening addresses."""

    def __init__(self, p4info: P4Info, datapath, cookies: SynCookies, local_mss: int,
                 window: int, stats: Stats) -> None:
        """`local_mss` and the unscaled `window` are what the fast path's SYN-ACKs offer."""
        self.p4info = p4info
        self.datapath = datapath
        self.cookies = cookies
        self.local_mss = local_mss
        self.window = window
        self.stats = stats
        self.addresses: set[Address] = set()
        self._epoch = cookies.epoch
        self._timer: asyncio.TimerHandle | None = None

    def add(self, ips: Iterable[str], port: int) -> None:
        """Listening on `port` at `ips`: the fast path may answer their SYNs with cookies."""
        new = [(ip, port) for ip in ips if (ip, port) not in self.addresses]
        self._catch_up()
        self.addresses.update(new)
        self._write(self.datapath.insert, new, "insert")
        self._arm()

    def remove(self, ips: Iterable[str], port: int) -> None:
        """No longer listening: SYNs beyond the budget are dropped again."""
        gone = [(ip, port) for ip in ips if (ip, port) in self.addresses]
        self.addresses.difference_update(gone)
        self._write(self.datapath.delete, gone, "delete")

    def _entries(self, addresses: Iterable[Address]) -> list[p4runtime_pb2.TableEntry]:
        return [listener_entry(self.p4info, ip, port, self.cookies.k0, self.cookies.k1,
                               self._epoch, self.local_mss, self.window)
                for ip, port in addresses]

    def _write(self, how, addresses: list[Address], what: str) -> None:
        if not addresses:
            return
        done: Awaitable = how(self._entries(addresses))
        future = asyncio.ensure_future(done)
        future.add_done_callback(lambda f: self._written(f, what, addresses))

    def _written(self, future: asyncio.Future, what: str, addresses: list[Address]) -> None:
        if future.cancelled() or future.exception() is None:
            return
        self.stats.bump("cookie_listener_write_errors")
        log.warning("%s of the fast path's cookie entries for %s failed: %s", what,
                    ", ".join(f"{ip}:{port}" for ip, port in addresses), future.exception())

    def _arm(self) -> None:
        """Wake at the next epoch (only while something listens)."""
        if self._timer is not None or not self.addresses:
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(EPOCH_S - loop.time() % EPOCH_S + 0.01, self._on_epoch)

    def _on_epoch(self) -> None:
        self._timer = None
        self._catch_up()
        self._arm()

    def _catch_up(self) -> None:
        """When the epoch moved on, give every entry the new one (cookies of the previous
        epoch stay valid, so a late write loses nothing)."""
        epoch = self.cookies.epoch
        if epoch != self._epoch:
            self._epoch = epoch
            self._write(self.datapath.modify, sorted(self.addresses), "epoch update")

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
