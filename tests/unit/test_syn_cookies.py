"""SYN cookies (RFC 4987): a listener whose backlog is full answers SYNs without keeping state,
and a returning cookie opens the connection."""

from __future__ import annotations

import asyncio

from host_lib import control_protocol as cp
from nic_contract.constants import PacketInReason
from nic_contract.flow_entries import FlowTuple
from runtime.syn_cookies import PERIOD_S, SynCookies
from runtime.tcp_segments import TcpFlags, TcpOptions
from runtime.tcp_state import State
from tests.unit.test_nic_parts import PORT, Rig

FLOW = FlowTuple("10.0.0.1", 80, "10.0.0.2", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_returns_the_mss_and_only_for_its_flow_and_time() -> None:
    clock = Clock()
    cookies = SynCookies(b"k" * 16, clock)
    cookie = cookies.make(FLOW, 12345, 1460)
    assert cookies.check(FLOW, 12345, cookie) == 1460
    assert cookies.make(FLOW, 12345, 1400) != cookie
    assert cookies.check(FLOW, 12345, cookies.make(FLOW, 12345, 1400)) == 1300  # rounded down
    assert cookies.check(FLOW, 12346, cookie) is None                           # other ISN
    assert cookies.check(FlowTuple("10.0.0.1", 80, "10.0.0.2", 40001), 12345, cookie) is None
    assert cookies.check(FLOW, 12345, cookie ^ 1) is None
    clock.now += PERIOD_S
    assert cookies.check(FLOW, 12345, cookie) == 1460                           # still valid
    clock.now += PERIOD_S
    assert cookies.check(FLOW, 12345, cookie) is None                           # expired


def test_a_full_backlog_answers_with_cookies_and_a_returned_cookie_connects() -> None:
    async def scenario() -> None:
        r = Rig()
        listener = r.control.listen(r.app, None, PORT, 1)
        r.segment(40000, 100, 0, TcpFlags.SYN, reason=PacketInReason.SYN)   # fills the backlog
        assert listener.queue_full() and len(r.control.table.by_id) == 1
        r.segment(40001, 5000, 0, TcpFlags.SYN, reason=PacketInReason.SYN,
                  options=TcpOptions(mss=1460, window_scale=7, timestamps=(1, 0)))
        synack = r.datapath.sent[-1]
        assert synack.flags == TcpFlags.SYN | TcpFlags.ACK and synack.ack == 5001
        assert synack.options.window_scale is None and synack.options.timestamps is None
        assert len(r.control.table.by_id) == 1                 # nothing kept for it
        assert r.control.stats.counts["syncookies_sent"] == 1
        r.segment(40001, 5001, (synack.seq + 999) % 2**32, TcpFlags.ACK)   # a forged cookie
        assert r.datapath.sent[-1].flags & TcpFlags.RST
        r.segment(40001, 5001, synack.seq + 1, TcpFlags.ACK | TcpFlags.PSH, payload=b"early")
        for _ in range(5):
            await asyncio.sleep(0)
        conn = next(c for c in r.control.table.by_id.values() if c.tuple.peer_port == 40001)
        assert conn.state is State.ESTABLISHED and conn.channel is not None
        assert conn.channel.mss == 1460 and conn.channel.wscale == 0 and not conn.timestamps
        assert r.app.told(cp.IncomingConnection) == 1
        assert [s.payload for s in r.datapath.reinjected] == [b"early"]   # handed to the NIC
        assert r.control.stats.counts["syncookies_accepted"] == 1
        r.close()
    asyncio.run(scenario())
