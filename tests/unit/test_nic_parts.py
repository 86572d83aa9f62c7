"""Connection control's parts against fakes of the switch and the NIC (tests/support/fakes.py): the
segments it sends (SegmentSender), what applications are told (AppEvents), the one record per
flow (FlowRegistry), and handshake, teardown and endings through the NIC interface."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from host_lib import control_protocol as cp
from host_lib.shm_layout import Layout
from nic_contract.constants import PacketInReason
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import P4INFO
from runtime.app_events import AppEvents
from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.datapath import PacketIn
from runtime.dma_bridge import DmaBridge
from runtime.flow_registry import FlowRegistry
from runtime.nic_interface import NicInterface
from runtime.segment_sender import ChallengeAckLimit, SegmentSender
from runtime.slow_path_stats import Stats
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment
from runtime.tcp_state import State
from tests.support.fakes import App, app_memory, FakeDatapath, FakeLink, FakeNic

LOCAL_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_IP, PEER_IP = "10.0.0.1", "10.0.0.2"
PORT, RING = 80, 1 << 16
_app_ids = itertools.count(71001)


class Rig:
    """ConnectionControl over a FakeNic and a FakeDatapath, one application with memory."""

    def __init__(self, ecn: bool = True) -> None:
        config = RuntimeConfig(interfaces=(Interface(1, LOCAL_IP, LOCAL_MAC),), ecn=ecn,
                               tcp=TcpParams(time_wait_s=0.05, max_app_connections=4,
                                             rx_ring_size=RING))
        self.nic, self.datapath = FakeNic(), FakeDatapath()
        self.control = ConnectionControl(config, self.datapath, P4Info.from_file(P4INFO),
                                         FlowRegistry(self.nic))
        layout = Layout(rx_ring_size=RING, tx_ring_size=RING, max_connections=4,
                        max_contexts=2, queue_depth=64)
        self.app = App(app_memory(next(_app_ids), layout))

    def segment(self, sport: int, seq: int, ack: int, flags: TcpFlags, payload: bytes = b"",
                reason: PacketInReason = PacketInReason.UNKNOWN_FLOW,
                options: TcpOptions | None = None) -> None:
        frame = build_segment(PEER_MAC, LOCAL_MAC, PEER_IP, LOCAL_IP, sport, PORT, seq, ack,
                              flags, 65535, options, payload)
        self.control.on_packet_in(PacketIn(frame, 1, int(reason), 0))

    async def established(self, sport: int = 40000, irs: int = 1000,
                          syn: TcpFlags = TcpFlags.SYN):
        self.control.listen(self.app, None, PORT, 16)
        self.segment(sport, irs, 0, syn, reason=PacketInReason.SYN,
                     options=TcpOptions(mss=1460, window_scale=7))
        synack = self.datapath.sent[-1]
        self.segment(sport, irs + 1, synack.seq + 1, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        return next(iter(self.control.table.by_id.values()))

    def close(self) -> None:
        self.app.memory.close()


def run(scenario) -> None:
    asyncio.run(scenario())


# ---------------------------------------------------------------- the NIC interface

def test_the_bridge_and_the_fake_implement_the_nic_interface() -> None:
    assert isinstance(DmaBridge(FakeLink(failures=0, delay=None)), NicInterface)
    assert isinstance(FakeNic(), NicInterface)


# ---------------------------------------------------------------- FlowRegistry

def test_registry_attaches_once_and_detaches_only_its_own_flow() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        flows = r.control.flows
        flow = flows.get(conn.channel.flow_id)
        assert flow is not None and flow.conn is conn and flow.channel is conn.channel
        assert r.nic.called("register") == [("register", conn.channel.flow_id)]
        with pytest.raises(ValueError, match="already attached"):
            flows.attach(conn, conn.channel)
        r.control.installer.release(conn)
        assert flows.get(conn.channel.flow_id) is None and len(flows) == 0
        assert r.nic.called("unregister") == [("unregister", conn.channel.flow_id)]
        r.control.installer.release(conn)          # twice: nothing more
        assert len(r.nic.called("unregister")) == 1
        r.close()
    run(scenario)


# ---------------------------------------------------------------- SegmentSender

def test_sender_window_is_the_rings_free_space_scaled() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        sender = SegmentSender(r.control.config, r.datapath)
        assert sender.window(conn) == RING >> conn.window_shift
        r.nic.deliver(conn.channel.flow_id, b"x" * 1000)   # unread bytes shrink the window
        assert sender.window(conn) == (RING - 1000) >> conn.window_shift
        sender.ack(conn, ece=True)
        ack = r.datapath.sent[-1]
        assert ack.flags == TcpFlags.ACK  # no ECN negotiated: no ECE either
        assert ack.window == (RING - 1000) >> conn.window_shift
        r.close()
    run(scenario)


def test_sender_resets_a_stray_segment_as_rfc_9293_says() -> None:
    r = Rig()
    r.segment(40001, 500, 777, TcpFlags.ACK)                 # with ACK: RST seq = its ACK
    rst = r.datapath.sent[-1]
    assert rst.flags == TcpFlags.RST and rst.seq == 777
    r.segment(40002, 500, 0, TcpFlags.FIN, payload=b"abc")   # without: ACK of all it took
    rst = r.datapath.sent[-1]
    assert rst.flags == TcpFlags.RST | TcpFlags.ACK and rst.ack == 500 + 3 + 1
    r.close()


def test_ecn_setup_syn_ack_only_for_an_ecn_setup_syn() -> None:
    async def scenario() -> None:
        r = Rig()
        r.control.listen(r.app, None, PORT, 16)
        r.segment(40003, 1, 0, TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR,
                  reason=PacketInReason.SYN)
        assert r.datapath.sent[-1].flags == TcpFlags.SYN | TcpFlags.ACK | TcpFlags.ECE
        r.segment(40004, 1, 0, TcpFlags.SYN, reason=PacketInReason.SYN)
        assert r.datapath.sent[-1].flags == TcpFlags.SYN | TcpFlags.ACK
        r.control.close_listener(next(iter(r.control.table.listeners.values())))
        r.close()
    run(scenario)


def test_slow_path_acks_keep_ece_from_the_nic_until_the_peers_cwr() -> None:
    """RFC 3168 6.1.3: while the NIC's ACKs carry ECE (RX_DATA flagged ECE_ECHO), so do
    ours; a FIN with CWR (the fast path punts it) ends it, as the NIC would."""
    async def scenario() -> None:
        r = Rig()
        conn = await r.established(40005, syn=TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR)
        sender = SegmentSender(r.control.config, r.datapath)
        conn.channel.ece_echo = True
        sender.ack(conn)
        assert r.datapath.sent[-1].flags == TcpFlags.ACK | TcpFlags.ECE
        r.segment(40005, 1001, conn.snd_nxt, TcpFlags.FIN | TcpFlags.ACK | TcpFlags.CWR,
                  reason=PacketInReason.FIN)
        assert not conn.channel.ece_echo
        assert r.datapath.sent[-1].flags == TcpFlags.ACK   # the FIN's ACK: no ECE
        r.close()
    run(scenario)


# ---------------------------------------------------------------- AppEvents

def test_wakes_are_coalesced_per_context_and_events_wait_for_the_announcement() -> None:
    async def scenario() -> None:
        events = AppEvents(Stats())
        a, b = App(None), App(None)
        for owner in (a, b, a, a):
            events.wake(owner)
        assert a.events == [] and b.events == []      # sent at the end of the loop pass
        await asyncio.sleep(0)
        assert a.told(cp.Wake) == 1 and b.told(cp.Wake) == 1
    run(scenario)


def test_closed_is_told_once_and_only_for_an_announced_connection() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        assert r.app.told(cp.IncomingConnection) == 1
        r.control.events.tell_closed(conn)
        r.control.events.tell_closed(conn)
        assert r.app.told(cp.Closed) == 1
        conn.announced, conn.closed_told = False, False
        r.control.events.tell_closed(conn)
        assert r.app.told(cp.Closed) == 1
        r.close()
    run(scenario)


# ---------------------------------------------------------------- through the NIC interface

def test_a_fins_payload_goes_into_the_ring_through_the_nic() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established(irs=1000)
        r.segment(40000, 1001, conn.snd_nxt, TcpFlags.FIN | TcpFlags.ACK, payload=b"bye",
                  reason=PacketInReason.FIN)
        assert r.nic.called("deliver") == [("deliver", conn.channel.flow_id, b"bye")]
        assert conn.state is State.CLOSE_WAIT and r.app.told(cp.PeerClosed) == 1
        assert r.datapath.sent[-1].ack == 1001 + 3 + 1
        r.close()
    run(scenario)


def test_a_slow_path_ack_returns_the_read_space_to_the_nic_before_advertising_it() -> None:
    """The slow path's window is the ring's free space; the NIC hears of space the application
    freed short of a doorbell first, else the peer sends into a window the NIC refuses (a
    stall seen with reinjected segments: drops as OUT_OF_ORDER / NO_RX_SPACE)."""
    async def scenario() -> None:
        r = Rig()
        conn = await r.established(irs=1000)
        flow_id = conn.channel.flow_id
        r.nic.deliver(flow_id, b"x" * 3000)
        assert conn.channel.rx_ring.read(3000) == b"x" * 3000   # the application, no kick
        conn.reinjected_until = 1001 + 3000
        r.control._ack_reinjected(conn, last=True)
        assert ("rx_consumed", flow_id, 3000) in r.nic.calls
        ack = r.datapath.sent[-1]
        assert ack.ack == 1001 + 3000 and ack.window << conn.window_shift == RING
        r.close()
    run(scenario)


def test_shutdown_write_asks_the_nic_for_our_fin() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        r.control.shutdown_write(conn)
        flow_id = conn.channel.flow_id
        assert ("kick", flow_id) in r.nic.calls and r.nic.called("fin") == [("fin", flow_id)]
        assert conn.state is State.FIN_WAIT_1
        r.close()
    run(scenario)


def test_a_half_closed_connection_holds_a_fin_ahead_of_its_data_and_never_resets() -> None:
    """After shutdown(SHUT_WR) the peer may still send: its FIN (with the last bytes) can reach
    the slow path before the data before it reaches the ring; that is held, not taken for
    data after close (which resets: RFC 1122 4.2.2.13 is for an application that closed)."""
    async def scenario() -> None:
        r = Rig()
        conn = await r.established(irs=1000)
        r.control.shutdown_write(conn)
        sent = len(r.datapath.sent)
        r.segment(40000, 1001 + 1448, conn.snd_nxt, TcpFlags.FIN | TcpFlags.ACK,
                  payload=b"tail", reason=PacketInReason.FIN)
        assert conn.conn_id in r.control.table.by_id and conn.held_fin is not None
        assert conn.state is State.FIN_WAIT_1 and conn.channel is not None
        assert not [s for s in r.datapath.sent[sent:] if s.flags & TcpFlags.RST]
        assert r.control.stats.counts.get("data_after_close", 0) == 0
        r.close()
    run(scenario)


def test_close_removes_the_flow_then_sends_the_fin_and_detaches() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        flow_id = conn.channel.flow_id
        r.control.close(conn)
        await r.control.flush_switch_writes()
        assert r.datapath.deletes == 1 and ("unregister", flow_id) in r.nic.calls
        fin = r.datapath.sent[-1]
        assert fin.flags == TcpFlags.FIN | TcpFlags.ACK and conn.channel is None
        r.close()
    run(scenario)


def test_a_broken_data_path_resets_the_connection_and_tells_why() -> None:
    async def scenario() -> None:
        r = Rig()
        conn = await r.established()
        r.control.on_flow_error(conn.channel.flow_id, "ring_corrupted")
        assert r.datapath.sent[-1].flags & TcpFlags.RST
        [error] = [e for e in r.app.events if isinstance(e, cp.ConnectionErrorEvent)]
        assert "ring_corrupted" in error.message
        await r.control.flush_switch_writes()
        assert not r.control.table.by_id and len(r.control.flows) == 0
        r.close()
    run(scenario)


def test_an_exception_in_one_connection_resets_it_and_spares_the_others() -> None:
    """Fault containment: a PacketIn whose handling raises (a bug, or state an application
    broke) resets its own connection; the next packets, of other connections, are handled."""
    async def scenario() -> None:
        r = Rig()
        a = await r.established(sport=40000)
        r.segment(40001, 5000, 0, TcpFlags.SYN, reason=PacketInReason.SYN,
                  options=TcpOptions(mss=1460, window_scale=7))
        r.segment(40001, 5001, r.datapath.sent[-1].seq + 1, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        b = next(c for c in r.control.table.by_id.values() if c.tuple.peer_port == 40001)
        real_ack = r.control.sender.ack

        def broken_for_a(conn, ece=False):
            if conn is a:
                raise RuntimeError("a bug in one connection's path")
            real_ack(conn, ece)
        r.control.sender.ack = broken_for_a
        r.segment(40000, 1001, a.snd_nxt, TcpFlags.FIN | TcpFlags.ACK, reason=PacketInReason.FIN)
        assert r.control.stats.counts["internal_errors"] == 1
        assert a.conn_id not in r.control.table.by_id
        assert any(s.flags & TcpFlags.RST and s.dst_port == 40000 for s in r.datapath.sent)
        r.segment(40001, 5001, b.snd_nxt, TcpFlags.FIN | TcpFlags.ACK, reason=PacketInReason.FIN)
        assert b.state is State.CLOSE_WAIT and r.datapath.sent[-1].ack == 5002
        await r.control.flush_switch_writes()
        r.close()
    run(scenario)


def test_challenge_acks_are_rate_limited() -> None:
    """RFC 5961 7: in-window RSTs draw challenge ACKs, at most --challenge-ack-rate a second."""
    async def scenario() -> None:
        r = Rig()
        r.control.sender.challenges = ChallengeAckLimit(2, clock := FakeClock())
        conn = await r.established()
        sent = len(r.datapath.sent)
        for _ in range(5):
            r.segment(40000, conn.rcv_nxt + 100, 0, TcpFlags.RST, reason=PacketInReason.RST)
        assert len(r.datapath.sent) - sent == 2
        assert r.control.stats.counts["challenge_acks_limited"] == 3
        clock.now += 0.5                       # one more token
        r.segment(40000, conn.rcv_nxt + 100, 0, TcpFlags.RST, reason=PacketInReason.RST)
        assert len(r.datapath.sent) - sent == 3 and conn.state is State.ESTABLISHED
        r.close()
    run(scenario)


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now
