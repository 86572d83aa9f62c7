"""runtime.orphans: an orphan is reset only after a whole orphan timeout without progress."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from runtime.config import TcpParams
from runtime.orphans import Orphans
from runtime.tcp_state import State

TIMEOUT_S = 0.05


def orphan(conn_id: int = 1, acked: int = 0) -> SimpleNamespace:
    return SimpleNamespace(conn_id=conn_id, channel=SimpleNamespace(tx_acked=acked),
                           state=State.FIN_WAIT_1, fin_received=False)


def run(scenario) -> list:
    reset: list = []

    async def main() -> None:
        orphans = Orphans(TcpParams(orphan_timeout_s=TIMEOUT_S, max_orphans=2), reset.append)
        await scenario(orphans)
    asyncio.run(main())
    return reset


def test_no_progress_for_a_timeout_resets() -> None:
    conn = orphan()

    async def scenario(orphans: Orphans) -> None:
        orphans.adopt(conn)
        assert conn in orphans and len(orphans) == 1
        await asyncio.sleep(TIMEOUT_S * 2)
    assert run(scenario) == [conn]


def test_progress_keeps_it_alive_until_it_stops() -> None:
    conn = orphan()

    async def scenario(orphans: Orphans) -> None:
        orphans.adopt(conn)
        for step in range(4):  # acknowledged bytes move within every timeout
            await asyncio.sleep(TIMEOUT_S * 0.8)
            conn.channel.tx_acked += 1000
            assert conn in orphans
        conn.state = State.FIN_WAIT_2   # a state change is progress too
        await asyncio.sleep(TIMEOUT_S * 0.8)
        assert conn in orphans
        await asyncio.sleep(TIMEOUT_S * 2.5)
        assert conn not in orphans
    assert run(scenario) == [conn]


def test_forget_and_the_limit() -> None:
    a, b = orphan(1), orphan(2)

    async def scenario(orphans: Orphans) -> None:
        orphans.adopt(a)
        assert not orphans.full()
        orphans.adopt(b)
        assert orphans.full()
        orphans.forget(a)
        orphans.forget(b)
        assert len(orphans) == 0
        await asyncio.sleep(TIMEOUT_S * 2)
    assert run(scenario) == []
