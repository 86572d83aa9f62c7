"""What every part of connection control shares: its tables and collaborators (set up by
ConnectionControl) and the helpers each part uses."""

from __future__ import annotations

import asyncio

from host_lib.rings import RingCorruptedError
from runtime.app_events import AppEvents
from runtime.arp import ArpCache
from runtime.config import RuntimeConfig, TcpParams
from runtime.connections import Connection, ConnectionTable
from runtime.datapath import Datapath
from runtime.flow_install import FlowInstaller
from runtime.isn import IsnGenerator
from runtime.local_ports import LocalPortAllocator
from runtime.nic_interface import NicInterface
from runtime.ip_reassembly import Reassembler
from runtime.orphans import Orphans
from runtime.segment_sender import SegmentSender
from runtime.cookie_listeners import CookieListeners
from runtime.punt_budget import SynBudget
from runtime.syn_cookies import SynCookies
from runtime.slow_path_stats import Stats
from runtime.tcp_seq import seq_add


class ConnectionControlBase:
    """The shared state of Handshake, Reinjection, Teardown and Endings."""

    config: RuntimeConfig
    tcp: TcpParams
    datapath: Datapath
    nic: NicInterface | None     # None: no data path (connections carry no data)
    table: ConnectionTable
    ports: LocalPortAllocator
    arp: ArpCache
    stats: Stats
    orphans: Orphans
    reassembly: Reassembler      # IPv4 fragments the fast path punted (runtime.ip_reassembly)
    window_shift: int            # our window scale (the RX ring's size needs it)
    isns: IsnGenerator           # RFC 6528 initial sequence numbers
    cookies: SynCookies          # RFC 4987 SYN cookies for listeners whose backlog is full
    cookie_listeners: CookieListeners   # ... and the fast path's, beyond its SYN punt budget
    syn_budget: SynBudget        # that budget, cut while a backlog overflows (a SYN flood)
    sender: SegmentSender
    events: AppEvents
    installer: FlowInstaller
    _switch_tasks: set[asyncio.Task]
    _reassembly_timer: asyncio.TimerHandle | None

    def _report_consumed(self, conn: Connection) -> None:
        """Return to the NIC the RX space the application freed since it last heard (the
        doorbell rings only once a quarter of the ring was read): a window the slow path
        advertises from the ring itself is then one the NIC also accepts data into."""
        channel = conn.channel
        if channel is None or self.nic is None or self.installer.flow_of(conn) is None:
            return
        tail = channel.rx_ring.tail
        if tail != conn.rx_consumed_seen:
            self.nic.send_rx_consumed(channel.flow_id, tail - conn.rx_consumed_seen)
            conn.rx_consumed_seen = tail

    def _send_ack(self, conn: Connection, ece: bool = False) -> None:
        """An ACK from the slow path; its window is the ring's free space, which the NIC is
        told of first."""
        self._report_consumed(conn)
        self.sender.ack(conn, ece=ece)

    def _sync_sequences(self, conn: Connection) -> None:
        """Our and the peer's next sequence numbers, from where the data path has got to."""
        channel, spec = conn.channel, conn.flow_spec
        if channel is None or spec is None:
            return
        data_end = seq_add(spec.tx_start_seq, channel.tx_high - channel.tx_base)
        conn.snd_nxt = data_end if conn.fin_seq is None else seq_add(conn.fin_seq, 1)
        conn.rcv_nxt = seq_add(spec.rx_start_seq, channel.rx_ring.head + conn.fin_received)


    @staticmethod
    def _unread(conn: Connection) -> bool:
        """Received bytes wait in the RX ring (a ring the application broke counts too)."""
        if conn.channel is None:
            return False
        try:
            return conn.channel.rx_ring.readable() > 0
        except RingCorruptedError:
            return True


    @staticmethod
    def _tx_drained(conn: Connection) -> bool:
        channel = conn.channel
        return channel is None or channel.tx_acked == channel.tx_ring.head


    def _track(self, coro) -> None:
        """Run a coroutine that writes to the switch; shutdown waits for all of them."""
        task = asyncio.get_running_loop().create_task(coro)
        self._switch_tasks.add(task)
        task.add_done_callback(self._switch_tasks.discard)

    async def flush_switch_writes(self) -> None:
        """Wait until every flow installation and removal under way has reached the switch."""
        while self._switch_tasks:
            await asyncio.gather(*self._switch_tasks, return_exceptions=True)
