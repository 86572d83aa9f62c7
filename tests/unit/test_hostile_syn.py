"""A remote peer's SYN options cannot wedge a listener: window scale above 14 is taken as 14
(RFC 7323 2.3), a tiny MSS is raised to 536, and a flow that fails to attach is rolled back
completely (ring slot, flow id)."""

from __future__ import annotations

import asyncio

from nic_contract.constants import PacketInReason
from runtime.tcp_segments import TcpFlags, TcpOptions
from runtime.tcp_state import State
from tests.unit.test_nic_parts import PORT, Rig


async def _open(r: Rig, options: TcpOptions, sport: int = 40000):
    r.segment(sport, 1000, 0, TcpFlags.SYN, reason=PacketInReason.SYN, options=options)
    synack = r.datapath.sent[-1]
    r.segment(sport, 1001, synack.seq + 1, TcpFlags.ACK)
    for _ in range(5):
        await asyncio.sleep(0)
    return next((c for c in r.control.table.by_id.values() if c.tuple.peer_port == sport), None)


def test_window_scale_and_mss_are_clamped() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        conn = await _open(r, TcpOptions(mss=13, window_scale=15))
        assert conn is not None and conn.state is State.ESTABLISHED
        assert conn.channel.wscale == 14 and conn.channel.mss == 536
        assert r.control.stats.counts["syn_options_clamped"] == 1
        r.close()
    asyncio.run(scenario())


def test_a_flow_that_cannot_attach_leaves_nothing_behind() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        free = len(r.app.memory.free_slots)

        def refuse(conn, channel):
            raise ValueError("refused")
        r.control.flows.attach = refuse
        for sport in range(40000, 40010):
            assert await _open(r, TcpOptions(mss=1460), sport) is None
        await r.control.flush_switch_writes()
        assert len(r.app.memory.free_slots) == free
        assert r.control.installer.flow_ids.in_use == 0 and not r.control.table.by_id
        r.close()
    asyncio.run(scenario())
