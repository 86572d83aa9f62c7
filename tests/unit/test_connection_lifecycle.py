"""ConnectionControl in one process: the real connection control and DMA bridge, a fake
datapath (it records PacketOuts, reinjections and table writes) and a fake host-port link.
Covers lifecycle paths that are hard to hit with a Linux peer: half-close bookkeeping,
lingering rings and flow-id reuse, punted segments that must not loop, corrupt segments,
an application that leaves with a broken ring."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

from host_lib import control_protocol as cp
from host_lib.shm_layout import Layout
from nic_contract.pipeline import P4INFO
from runtime.config import Interface, RuntimeConfig, TcpParams
from runtime.connection_control import ConnectionControl
from runtime.datapath import PacketIn
from nic_contract.constants import PacketInReason
from runtime.dma_bridge import DmaBridge
from runtime.flow_registry import FlowRegistry
from runtime.flow_ids import FlowIdAllocator
from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode
from nic_contract.p4rt.p4info import P4Info
from runtime.tcp_segments import TcpFlags, TcpOptions, build_segment
from runtime.tcp_state import State
from tests.support.fakes import App, app_memory, FakeDatapath, FakeLink

LOCAL_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_IP, PEER_IP = "10.0.0.1", "10.0.0.2"
PORT = 80
RING = 1 << 16
TIME_WAIT_S = 0.05
_app_ids = itertools.count(70001)


@dataclasses.dataclass
class Rig:
    control: ConnectionControl
    datapath: FakeDatapath
    link: FakeLink
    bridge: DmaBridge
    app: App

    def segment(self, sport: int, seq: int, ack: int, flags: TcpFlags, payload: bytes = b"",
                reason: PacketInReason = PacketInReason.UNKNOWN_FLOW, **kw) -> None:
        frame = build_segment(PEER_MAC, LOCAL_MAC, PEER_IP, LOCAL_IP, sport, PORT, seq, ack,
                              flags, 65535, kw.get("options"), payload, tos=kw.get("tos", 0))
        self.control.on_packet_in(PacketIn(frame, 1, int(reason), 0))

    def nic(self, conn, opcode: Opcode, flags: ChannelFlags, offset: int, count: int = 0,
            window: int = 1000, payload: bytes = b"") -> None:
        ch = conn.channel
        self.bridge.handle_frame(NicHostMessage(opcode, ch.flow_id, ch.generation, flags,
                                                offset, count, window=window,
                                                payload=payload).encode())

    async def passive_open(self, sport: int, irs: int = 1000):
        if not self.control.table.listeners:
            self.control.listen(self.app, None, PORT, 16)
        self.segment(sport, irs, 0, TcpFlags.SYN, reason=PacketInReason.SYN,
                     options=TcpOptions(mss=1460))
        synack = self.datapath.sent[-1]
        self.segment(sport, irs + 1, synack.seq + 1, TcpFlags.ACK)
        for _ in range(5):
            await asyncio.sleep(0)
        return next(c for c in self.control.table.by_id.values() if c.tuple.peer_port == sport)

    def close(self) -> None:
        self.link.close()
        self.app.memory.close()


def rig(flow_ids: int | None = None) -> Rig:
    config = RuntimeConfig(interfaces=(Interface(1, LOCAL_IP, LOCAL_MAC),),
                           tcp=TcpParams(time_wait_s=TIME_WAIT_S, max_app_connections=4,
                                         rx_ring_size=RING))
    datapath, link = FakeDatapath(), FakeLink(failures=0, delay=None)
    holder: dict = {}
    bridge = DmaBridge(link, on_activity=lambda ch: holder["c"].on_data_activity(ch),
                       on_flow_error=lambda f, cause: holder["c"].on_flow_error(f, cause.value))
    control = ConnectionControl(config, datapath, P4Info.from_file(P4INFO), FlowRegistry(bridge))
    holder["c"] = control
    if flow_ids is not None:
        control.installer.flow_ids = FlowIdAllocator(capacity=flow_ids, first_generation=1)
    layout = Layout(rx_ring_size=RING, tx_ring_size=RING, max_connections=4, max_contexts=2,
                    queue_depth=64)
    return Rig(control, datapath, link, bridge, App(app_memory(next(_app_ids), layout)))


def run(scenario) -> None:
    asyncio.run(scenario())


def half_close_until_time_wait(r: Rig, conn) -> None:
    """shutdown(SHUT_WR); the NIC sends our FIN and sees it acknowledged; the peer's FIN."""
    r.control.shutdown_write(conn)
    fin = [m for m in r.link.sent if m.opcode == Opcode.TX_DATA][-1]
    assert fin.flags & ChannelFlags.FIN and conn.state is State.FIN_WAIT_1
    r.nic(conn, Opcode.TX_ACKED, ChannelFlags.FIN, conn.fin_seq + 1)
    assert conn.state is State.FIN_WAIT_2
    r.segment(conn.tuple.peer_port, conn.irs + 1, conn.fin_seq + 1,
              TcpFlags.FIN | TcpFlags.ACK, reason=PacketInReason.FIN)
    assert conn.state is State.TIME_WAIT


def test_close_after_half_close_and_time_wait_tells_closed_and_forgets() -> None:
    async def scenario() -> None:
        r = rig()
        conn = await r.passive_open(40000)
        half_close_until_time_wait(r, conn)
        r.control.close(conn)
        await asyncio.sleep(TIME_WAIT_S * 3)
        assert r.app.told(cp.Closed) == 1
        assert conn.conn_id not in r.control.table.by_id
        assert r.control.installer.flow_ids.in_use == 0 and len(r.app.memory.free_slots) == 4
        r.close()
    run(scenario)


def test_window_updates_after_our_fin_was_acked_reset_nothing() -> None:
    async def scenario() -> None:
        r = rig()
        conn = await r.passive_open(40001)
        r.control.shutdown_write(conn)
        r.nic(conn, Opcode.TX_ACKED, ChannelFlags.FIN, conn.fin_seq + 1)
        r.nic(conn, Opcode.TX_ACKED, ChannelFlags.NONE, conn.fin_seq + 1, window=2000)
        assert conn.state is State.FIN_WAIT_2 and not r.bridge.stats.drops
        assert not any(s.flags & TcpFlags.RST for s in r.datapath.sent)
        r.close()
    run(scenario)


def test_lingering_rings_do_not_block_the_flow_id() -> None:
    """TIME_WAIT ends while the application still holds the connection: its rings stay, its
    flow id goes back, and a connection that gets that id installs normally."""
    async def scenario() -> None:
        r = rig(flow_ids=1)
        first = await r.passive_open(40002)
        half_close_until_time_wait(r, first)
        await asyncio.sleep(TIME_WAIT_S * 3)
        assert first.lingering and first.channel is not None
        second = await r.passive_open(40003, irs=5000)
        assert second.state is State.ESTABLISHED and second.announced
        assert second.channel is not None and not second.installing
        r.control.close(first)
        assert r.app.told(cp.Closed) == 1 and first.conn_id not in r.control.table.by_id
        assert r.bridge.channel(second.channel.flow_id) is second.channel
        r.close()
    run(scenario)


def test_shutdown_after_the_peers_fin_acknowledges_it_and_ends_on_the_last_ack() -> None:
    """shutdown(SHUT_WR) in CLOSE_WAIT then close() (socketserver's shutdown_request): the flow
    leaves the fast path and our FIN, by PacketOut, acknowledges the peer's FIN (the NIC's
    would not: the peer's FIN went to the slow path); the peer's last ACK ends it."""
    async def scenario() -> None:
        r = rig()

        async def slow_delete(entries) -> None:
            await asyncio.sleep(0.01)
        r.datapath.delete = slow_delete
        conn = await r.passive_open(40004)
        r.segment(40004, conn.irs + 1, conn.snd_nxt, TcpFlags.FIN | TcpFlags.ACK,
                  reason=PacketInReason.FIN)
        r.control.shutdown_write(conn)           # CLOSE_WAIT -> LAST_ACK
        r.control.close(conn)
        await asyncio.sleep(0.05)
        fins = [s for s in r.datapath.sent if s.flags & TcpFlags.FIN]
        assert len(fins) == 1 and fins[0].ack == conn.irs + 2  # the peer's FIN acknowledged
        r.segment(40004, conn.irs + 2, conn.fin_seq + 1, TcpFlags.ACK)
        await asyncio.sleep(0.01)
        assert conn.conn_id not in r.control.table.by_id and not conn.lingering
        assert r.app.told(cp.Closed) == 1
        assert not any(s.flags & TcpFlags.RST for s in r.datapath.sent)
        r.close()
    run(scenario)


def test_punted_data_without_ack_is_dropped_not_handed_back() -> None:
    async def scenario() -> None:
        r = rig()
        await r.passive_open(40005)
        r.segment(40005, 123456, 0, TcpFlags.PSH, b"x" * 10, reason=PacketInReason.TCP_FLAGS)
        assert r.datapath.reinjected == []
        assert r.control.stats.counts["unusual_segments_dropped"] == 1
        r.close()
    run(scenario)


def test_corrupt_segment_with_ip_options_is_not_normalized() -> None:
    async def scenario() -> None:
        r = rig()
        conn = await r.passive_open(40006)
        frame = bytearray(build_segment(PEER_MAC, LOCAL_MAC, PEER_IP, LOCAL_IP, 40006, PORT,
                                        conn.irs + 1, conn.snd_nxt, TcpFlags.ACK, 65535, None,
                                        b"payload"))
        frame[-1] ^= 0xFF   # the TCP checksum no longer holds
        r.control.on_packet_in(PacketIn(bytes(frame), 1, int(PacketInReason.IPV4_OPTIONS), 0))
        assert r.datapath.reinjected == [] and r.control.stats.counts["bad_checksums"] == 1
        r.close()
    run(scenario)


def test_an_application_leaving_with_a_broken_ring_spares_its_other_connections() -> None:
    async def scenario() -> None:
        r = rig()
        broken = await r.passive_open(40007)
        fine = await r.passive_open(40008, irs=7000)
        broken.channel.tx_ring._pos.publish_head(10**9)   # the application scribbled
        r.control.abort_owned_by(r.app)
        assert fine.owner is None and fine.app_closed     # closed as close() would
        assert broken.conn_id not in r.control.table.by_id
        r.close()
    run(scenario)


def test_an_ack_of_all_data_during_the_removal_is_not_the_ack_of_our_fin() -> None:
    """close() after the peer's FIN: the flow leaves the fast path, then our FIN goes. An ACK
    of all our data that reaches the slow path meanwhile (unknown flow) must not end the
    connection in LAST_ACK before the FIN was even sent."""
    async def scenario() -> None:
        r = rig()

        async def slow_delete(entries) -> None:
            await asyncio.sleep(0.02)
        r.datapath.delete = slow_delete
        conn = await r.passive_open(40009)
        r.segment(40009, conn.irs + 1, conn.snd_nxt, TcpFlags.FIN | TcpFlags.ACK,
                  reason=PacketInReason.FIN)
        r.control.close(conn)                    # CLOSE_WAIT -> LAST_ACK; flow removal starts
        await asyncio.sleep(0.005)
        r.segment(40009, conn.irs + 2, conn.snd_nxt, TcpFlags.ACK)   # ACKs all data, no FIN
        await asyncio.sleep(0.05)
        fins = [s for s in r.datapath.sent if s.flags & TcpFlags.FIN]
        assert conn.state is State.LAST_ACK and len(fins) == 1, (conn.state, fins)
        r.segment(40009, conn.irs + 2, fins[0].seq + 1, TcpFlags.ACK)  # the ACK of our FIN
        assert conn.conn_id not in r.control.table.by_id and r.app.told(cp.Closed) == 1
        assert not any(s.flags & TcpFlags.RST for s in r.datapath.sent)
        r.close()
    run(scenario)


def test_reinjected_ce_marked_data_is_echoed_with_ece() -> None:
    """Data that raced the installation and arrived CE-marked: the slow path's ACK for it
    echoes ECE, as the fast path's ACK would have (ECN negotiated)."""
    async def scenario() -> None:
        r = rig()
        r.control.listen(r.app, None, PORT, 16)
        r.segment(40010, 1000, 0, TcpFlags.SYN | TcpFlags.ECE | TcpFlags.CWR,
                  reason=PacketInReason.SYN, options=TcpOptions(mss=1460))
        synack = r.datapath.sent[-1]
        assert synack.flags & TcpFlags.ECE            # ECN-setup SYN-ACK
        r.segment(40010, 1001, synack.seq + 1, TcpFlags.ACK)
        r.segment(40010, 1001, synack.seq + 1, TcpFlags.ACK | TcpFlags.PSH, b"raced",
                  tos=0x03)                         # CE, held during the installation
        for _ in range(5):
            await asyncio.sleep(0)
        conn = next(iter(r.control.table.by_id.values()))
        assert conn.ecn and [s.payload for s in r.datapath.reinjected] == [b"raced"]
        ch = conn.channel   # the NIC delivers the reinjected data: RX_DATA lands
        r.bridge.handle_frame(NicHostMessage(Opcode.RX_DATA, ch.flow_id, ch.generation,
                                             ChannelFlags.CE, 0, payload=b"raced").encode())
        ack = r.datapath.sent[-1]
        assert ack.flags & TcpFlags.ECE and ack.ack == 1001 + 5
        r.close()
    run(scenario)
