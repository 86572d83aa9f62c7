"""Routed peers: the routing table (longest prefix match, default route, gateways on our
subnets), its command line (--route, --gateway), and connection control reaching a routed peer
by ARP for its gateway (and failing with EHOSTUNREACH when the gateway does not answer)."""

from __future__ import annotations

import asyncio
import errno
import itertools

import pytest

from host_lib import control_protocol as cp
from host_lib.shm_layout import Layout
from nic_contract.constants import PacketInReason
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime.arp import ArpOp, build_arp_reply, parse_arp
from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.daemon import parse_args
from runtime.datapath import PacketIn
from runtime.flow_registry import FlowRegistry
from runtime.routing import Route, RoutingError, RoutingTable
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment
from tests.support.fakes import App, FakeDatapath, FakeNic, app_memory

PORT1 = Interface(1, "10.99.1.1", "02:00:0a:63:01:01")
PORT2 = Interface(2, "10.99.2.1", "02:00:0a:63:02:01", prefix_len=16)
GATEWAY, GATEWAY_MAC = "10.99.1.2", "02:00:00:00:01:02"
ROUTED_PEER = "10.98.1.2"
_app_ids = itertools.count(90001)


def table(*routes: tuple[str, str]) -> RoutingTable:
    return RoutingTable((PORT1, PORT2), [Route.parse(p, g) for p, g in routes])


# ------------------------------------------------------------------------------ the table

def test_on_link_destinations_are_their_own_next_hop() -> None:
    hop = table().lookup("10.99.1.7")
    assert (hop.interface, hop.ip, hop.gateway) == (PORT1, "10.99.1.7", False)
    assert table().lookup("10.99.200.9").interface == PORT2
    assert table().lookup("192.0.2.1") is None


def test_longest_prefix_wins_and_the_default_route_takes_the_rest() -> None:
    routes = table(("default", "10.99.2.254"), ("10.98.0.0/16", "10.99.1.3"),
                   ("10.98.1.0/24", GATEWAY))
    assert routes.lookup(ROUTED_PEER) == routes.lookup("10.98.1.200")
    assert (routes.lookup(ROUTED_PEER).ip, routes.lookup(ROUTED_PEER).interface) == (GATEWAY,
                                                                                     PORT1)
    assert routes.lookup("10.98.7.1").ip == "10.99.1.3"
    far = routes.lookup("192.0.2.1")
    assert (far.ip, far.interface, far.gateway) == ("10.99.2.254", PORT2, True)
    assert routes.lookup("10.99.1.9").ip == "10.99.1.9"   # on-link beats the default route


def test_lookup_through_one_interface_only() -> None:
    """A connect from a bound address uses only the routes of that address's interface."""
    routes = table(("default", "10.99.2.254"))
    assert routes.lookup("192.0.2.1", PORT1) is None
    assert routes.lookup("192.0.2.1", PORT2).ip == "10.99.2.254"
    assert routes.on_link("10.99.1.9", PORT1) and not routes.on_link("192.0.2.1", PORT2)


@pytest.mark.parametrize("prefix, gateway, words", [
    ("10.98.1.0/24", "10.97.0.1", "on none of our subnets"),
    ("10.98.1.0/24", "10.99.1.1", "our own address"),
    ("10.99.1.0/24", GATEWAY, "a connected subnet"),
    ("10.98.1.5/24", GATEWAY, "host bits"),
    ("somewhere", GATEWAY, "bad route"),
    ("default", "10.99.1.300", "bad route"),
])
def test_unusable_routes_are_refused(prefix: str, gateway: str, words: str) -> None:
    with pytest.raises(RoutingError, match=words):
        table((prefix, gateway))


def test_a_prefix_twice_is_refused() -> None:
    with pytest.raises(RoutingError, match="already via 10.99.1.3"):
        table(("default", "10.99.1.3"), ("0.0.0.0/0", GATEWAY))


# ------------------------------------------------------------------------- command line

BASE = ["--interface", "1=10.99.1.1/24,02:00:0a:63:01:01"]


def test_route_and_gateway_options() -> None:
    config, _ = parse_args(BASE + ["--route", "10.98.1.0/24", "via", GATEWAY,
                                   "--gateway", "10.99.1.254"])
    assert [str(r) for r in config.routes] == [f"10.98.1.0/24 via {GATEWAY}",
                                               "default via 10.99.1.254"]
    assert config.routing.lookup(ROUTED_PEER).ip == GATEWAY
    assert config.routing.lookup("192.0.2.1").ip == "10.99.1.254"
    same, _ = parse_args(BASE + ["--route", "default", "via", "10.99.1.254"])
    assert same.routes == config.routes[1:]


@pytest.mark.parametrize("extra, words", [
    (["--route", "10.98.1.0/24", "to", GATEWAY], "expected PREFIX via GATEWAY"),
    (["--gateway", "10.97.0.1"], "on none of our subnets"),
    (["--gateway", GATEWAY, "--route", "default", "via", "10.99.1.3"], "already via"),
])
def test_bad_route_options(extra: list[str], words: str, capsys) -> None:
    with pytest.raises(SystemExit):
        parse_args(BASE + extra)
    assert words in capsys.readouterr().err


# --------------------------------------------------------------- connection control

def control(routes: tuple[Route, ...], arp_timeout_s: float = 3.0
            ) -> tuple[ConnectionControl, FakeDatapath, App]:
    config = RuntimeConfig(interfaces=(PORT1,), routes=routes,
                           tcp=TcpParams(arp_timeout_s=arp_timeout_s, rx_ring_size=1 << 16))
    datapath = FakeDatapath()
    cc = ConnectionControl(config, datapath, P4Info.from_file(P4INFO), FlowRegistry(FakeNic()))
    layout = Layout(rx_ring_size=1 << 16, tx_ring_size=1 << 16, max_connections=2,
                    max_contexts=2, queue_depth=64)
    return cc, datapath, App(app_memory(next(_app_ids), layout))


def arp_targets(datapath: FakeDatapath) -> list[str]:
    return [parse_arp(frame).target_ip for frame in datapath.other
            if parse_arp(frame).op == ArpOp.REQUEST]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_connect_to_a_routed_peer_arps_for_the_gateway_and_sends_to_its_mac() -> None:
    async def scenario() -> None:
        cc, datapath, app = control((Route.parse("10.98.0.0/16", GATEWAY),))
        conn_id = await cc.connect(app, ROUTED_PEER, 80, None, None, timeout_s=5)
        await settle()
        assert arp_targets(datapath) == [GATEWAY]   # the next hop, not the destination
        reply = build_arp_reply(GATEWAY_MAC, GATEWAY, PORT1.mac, PORT1.ip)
        cc.on_packet_in(PacketIn(reply, 1, int(PacketInReason.ARP), 0))
        await settle()
        syn = datapath.sent[-1]
        assert syn.flags & TcpFlags.SYN and (syn.dst_mac, syn.dst_ip) == (GATEWAY_MAC, ROUTED_PEER)
        conn = cc.table.by_id[conn_id]
        synack = build_segment(GATEWAY_MAC, PORT1.mac, ROUTED_PEER, PORT1.ip, 80,
                               conn.tuple.local_port, 5000, syn.seq + 1,
                               TcpFlags.SYN | TcpFlags.ACK, 65535, TcpOptions(mss=1460))
        cc.on_packet_in(PacketIn(synack, 1, int(PacketInReason.SYN_ACK), 0))
        await settle()
        assert app.told(cp.Connected) == 1
        assert conn.flow_spec.peer_mac == GATEWAY_MAC   # what the fast path sends to
        assert cc.arp.get(ROUTED_PEER) is None and cc.arp.get(GATEWAY) == GATEWAY_MAC
        await cc.shutdown_all()
        app.memory.close()
    asyncio.run(scenario())


def test_an_unanswered_gateway_fails_the_connect_with_ehostunreach() -> None:
    async def scenario() -> None:
        cc, datapath, app = control((Route.parse("default", "10.99.1.77"),), arp_timeout_s=0.3)
        await cc.connect(app, ROUTED_PEER, 80, None, None, timeout_s=5)
        await asyncio.sleep(0.5)
        failed = [e for e in app.events if isinstance(e, cp.ConnectFailed)]
        assert len(failed) == 1 and failed[0].errno == errno.EHOSTUNREACH, app.events
        assert "10.99.1.77" in failed[0].message and ROUTED_PEER in failed[0].message
        assert arp_targets(datapath) == ["10.99.1.77"] * 4   # 1 + 3 retries
        assert not cc.table.by_id and not datapath.sent
        app.memory.close()
    asyncio.run(scenario())


def test_no_route_is_enetunreach_at_once() -> None:
    async def scenario() -> None:
        cc, _, app = control(())
        with pytest.raises(OSError) as raised:
            await cc.connect(app, ROUTED_PEER, 80, None, None, timeout_s=5)
        assert raised.value.errno == errno.ENETUNREACH
        with pytest.raises(OSError) as raised:
            await cc.connect(app, "10.99.1.2", 80, "10.99.9.9", None, timeout_s=5)
        assert raised.value.errno == errno.ENETUNREACH
        app.memory.close()
    asyncio.run(scenario())


def test_a_routed_peers_syn_teaches_arp_nothing() -> None:
    """A SYN from behind a gateway carries the gateway's MAC: it is answered there, and not
    taken as the peer's own MAC."""
    async def scenario() -> None:
        cc, datapath, app = control((Route.parse("default", GATEWAY),))
        cc.listen(app, None, 7001, 4)
        syn = build_segment(GATEWAY_MAC, PORT1.mac, ROUTED_PEER, PORT1.ip, 40000, 7001, 1000,
                            0, TcpFlags.SYN, 65535, TcpOptions(mss=1460))
        cc.on_packet_in(PacketIn(syn, 1, int(PacketInReason.SYN), 0))
        synack = datapath.sent[-1]
        assert (synack.dst_mac, synack.dst_ip) == (GATEWAY_MAC, ROUTED_PEER)
        assert cc.arp.get(ROUTED_PEER) is None
        await cc.shutdown_all()
        app.memory.close()
    asyncio.run(scenario())
