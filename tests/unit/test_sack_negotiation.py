"""SACK-permitted (RFC 2018 2) in the passive handshake: echoed only to a SYN that offers it
with timestamps (the fast path parses SACK blocks after timestamps), recorded per flow."""

from __future__ import annotations

import asyncio

from nic_contract.constants import PacketInReason
from runtime.sack_scoreboard import SackScoreboard
from runtime.tcp_segments import TcpFlags, TcpOptions
from tests.unit.test_nic_parts import PORT, Rig


async def handshake(r: Rig, sport: int, options: TcpOptions):
    """A SYN with `options`, our SYN-ACK, the last ACK; returns (SYN-ACK, connection)."""
    r.segment(sport, 1000, 0, TcpFlags.SYN, reason=PacketInReason.SYN, options=options)
    synack = r.datapath.sent[-1]
    ts = TcpOptions(timestamps=(5, synack.options.timestamps[0])) if options.timestamps else None
    r.segment(sport, 1001, synack.seq + 1, TcpFlags.ACK, options=ts)
    for _ in range(5):
        await asyncio.sleep(0)
    conn = next(c for c in r.control.table.by_id.values() if c.tuple.peer_port == sport)
    return synack, conn


def test_sack_is_echoed_and_recorded_when_offered_with_timestamps() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        synack, conn = await handshake(r, 40100, TcpOptions(mss=1460, sack_permitted=True,
                                                            timestamps=(7, 0)))
        assert synack.options.sack_permitted
        assert conn.sack and conn.flow_spec.sack
        assert isinstance(conn.channel.sack, SackScoreboard)
        r.close()
    asyncio.run(scenario())


def test_no_sack_without_the_peer_s_offer_or_without_timestamps() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        synack, conn = await handshake(r, 40101, TcpOptions(mss=1460, timestamps=(7, 0)))
        assert not synack.options.sack_permitted and not conn.sack
        assert conn.channel.sack is None and not conn.flow_spec.sack
        synack, conn = await handshake(r, 40102, TcpOptions(mss=1460, sack_permitted=True))
        assert not synack.options.sack_permitted and not conn.sack
        r.close()
    asyncio.run(scenario())
