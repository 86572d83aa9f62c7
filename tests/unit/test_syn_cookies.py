"""SYN cookies (RFC 4987): a listener whose backlog is full answers SYNs without keeping state,
a returning cookie opens the connection, and the fast path's SYN budget is cut meanwhile."""

from __future__ import annotations

import asyncio
import ipaddress

from host_lib import control_protocol as cp
from nic_contract.constants import PacketInReason
from nic_contract.flow_entries import FlowTuple
from nic_contract.p4rt.p4info import P4Info
from nic_contract.p4rt.proto import p4runtime_pb2
from nic_contract.pipeline import P4INFO
from nic_contract.syn_cookie import EPOCH_S as PERIOD_S
from nic_contract.syn_cookie import make_cookie
from runtime.config import RuntimeConfig
from runtime.punt_budget import FLOOD_HOLD_S, SynBudget
from runtime.slow_path_stats import Stats
from runtime.syn_cookies import SynCookies
from runtime.tcp_segments import TcpFlags, TcpOptions
from runtime.tcp_state import State
from tests.support.fakes import FakeDatapath
from tests.unit.test_nic_parts import LOCAL_IP, PEER_IP, PORT, Rig

FLOW = FlowTuple("10.0.0.1", 80, "10.0.0.2", 40000)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_returns_the_mss_and_only_for_its_flow_and_time() -> None:
    clock = Clock()
    cookies = SynCookies(b"k" * 8, clock)
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


def test_a_connection_the_application_closes_leaves_the_accept_queue() -> None:
    """An application may close a connection it was told of without accepting it first (as
    bench/conn_server.py does): it leaves the accept queue then, not once TCP is over (its
    TIME_WAIT held the backlog: SYNs got cookies, and cookies' ACKs were dropped)."""
    async def scenario() -> None:
        r = Rig()
        listener = r.control.listen(r.app, None, PORT, 1)
        r.segment(40000, 100, 0, TcpFlags.SYN, reason=PacketInReason.SYN)
        r.segment(40000, 101, r.datapath.sent[-1].seq + 1, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        conn = next(iter(r.control.table.by_id.values()))
        assert conn.state is State.ESTABLISHED and listener.unaccepted == {conn.conn_id}
        r.control.close(conn)
        assert not listener.unaccepted and not listener.queue_full()
        r.segment(40001, 5000, 0, TcpFlags.SYN, reason=PacketInReason.SYN,
                  options=TcpOptions(mss=1460, window_scale=7))
        assert r.datapath.sent[-1].options.window_scale is not None   # not a cookie
        assert "syncookies_sent" not in r.control.stats.counts
        r.close()
    asyncio.run(scenario())


def test_a_cookie_the_fast_path_made_opens_the_connection() -> None:
    """No SYN reached the slow path (the fast path answered it beyond the punt budget): the
    returning cookie, made with the key and epoch of the listener entry, opens the connection;
    a cookie made with another key does not."""
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        cookies = r.control.cookies
        local, peer = int(ipaddress.IPv4Address(LOCAL_IP)), int(ipaddress.IPv4Address(PEER_IP))
        forged = make_cookie(cookies.k0 ^ 1, cookies.k1, local, peer, PORT, 40002, 7000,
                             cookies.epoch, 1460)
        r.segment(40002, 7001, (forged + 1) % 2**32, TcpFlags.ACK)
        assert r.datapath.sent[-1].flags & TcpFlags.RST and not r.control.table.by_id
        isn = make_cookie(cookies.k0, cookies.k1, local, peer, PORT, 40003, 9000,
                          cookies.epoch, 1400)
        r.segment(40003, 9001, (isn + 1) % 2**32, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        conn = next(iter(r.control.table.by_id.values()))
        assert conn.state is State.ESTABLISHED and conn.channel.mss == 1300
        assert r.control.stats.counts["syncookies_accepted"] == 1
        r.close()
    asyncio.run(scenario())


def test_listening_writes_the_fast_paths_cookie_entries() -> None:
    """listen() writes one syn_cookie_listeners entry per address with the key and epoch;
    closing the listener deletes them; a new epoch rewrites them."""
    async def scenario() -> None:
        clock = Clock()
        r = Rig()
        r.control.cookies._clock = clock
        listener = r.control.listen(r.app, None, PORT, 16)
        await asyncio.sleep(0)
        kind, entries = r.datapath.writes[-1]
        assert kind == "insert" and len(entries) == 1
        params = {p.param_id: int.from_bytes(p.value, "big") for p in entries[0].action.action.params}
        assert list(params.values())[:3] == [r.control.cookies.k0, r.control.cookies.k1,
                                             r.control.cookies.epoch]
        clock.now += PERIOD_S
        r.control.cookie_listeners._on_epoch()
        await asyncio.sleep(0)
        assert r.datapath.writes[-1][0] == "modify"
        r.control.close_listener(listener)
        await asyncio.sleep(0)
        assert r.datapath.writes[-1][0] == "delete"
        r.control.cookie_listeners.close()
        r.close()
    asyncio.run(scenario())


def _syn_budgets(writes: list) -> list[int]:
    """The rates the SYN index of punt_rate was written with, in order."""
    return [entity.config.cir for kind, entities in writes if kind == "modify"
            for entity in entities if isinstance(entity, p4runtime_pb2.MeterEntry)
            and entity.index.index == PacketInReason.SYN]


def test_a_backlog_overflow_cuts_the_fast_paths_syn_budget_until_the_flood_ends() -> None:
    """While SYNs find a listener's backlog full, the slow path answers them with the cookies
    the fast path makes as well: the SYN budget drops to syn_flood_punt_rate_pps, and is back
    FLOOD_HOLD_S after the last overflow."""
    async def scenario() -> None:
        clock = Clock()
        r = Rig()
        budget = r.control.syn_budget
        budget._clock = clock
        r.control.listen(r.app, None, PORT, 1)
        r.segment(40000, 100, 0, TcpFlags.SYN, reason=PacketInReason.SYN)   # fills the backlog
        await asyncio.sleep(0)
        assert _syn_budgets(r.datapath.writes) == [] and not budget.flooded
        for port in (40001, 40002):
            r.segment(port, 5000, 0, TcpFlags.SYN, reason=PacketInReason.SYN)
        await asyncio.sleep(0)
        config = RuntimeConfig()
        assert _syn_budgets(r.datapath.writes) == [config.syn_flood_punt_rate_pps]
        assert budget.flooded and r.control.stats.counts["syn_budget_cuts"] == 1
        clock.now += FLOOD_HOLD_S - 1
        r.segment(40003, 5000, 0, TcpFlags.SYN, reason=PacketInReason.SYN)   # still flooded
        clock.now += 1
        budget._on_timer()
        await asyncio.sleep(0)
        assert budget.flooded and len(_syn_budgets(r.datapath.writes)) == 1
        clock.now += FLOOD_HOLD_S
        budget._on_timer()
        await asyncio.sleep(0)
        assert not budget.flooded
        assert _syn_budgets(r.datapath.writes) == [config.syn_flood_punt_rate_pps,
                                                   config.syn_punt_rate_pps]
        budget.close()
        r.close()
    asyncio.run(scenario())


def test_the_syn_budget_is_left_alone_when_the_flood_rate_is_not_below_it() -> None:
    budget = SynBudget(P4Info.from_file(P4INFO), FakeDatapath(), 500, 0, Stats())
    budget.overflow()
    assert not budget.active and not budget.flooded
