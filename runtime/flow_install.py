"""A connection's flow: its flow id, its fast-path entries (over P4Runtime), and its rings and
NIC channel (through the flow registry). Connection control decides when; this does it."""

from __future__ import annotations

import logging
import random

from nic_contract.flow_entries import MAX_GENERATION, FlowSpec
from nic_contract.p4rt.p4info import P4Info
from nic_contract.pipeline import flow_capacity
from runtime import congestion
from runtime.config import RuntimeConfig
from runtime.congestion.controller import RateController
from runtime.connections import Connection
from runtime.datapath import Datapath
from runtime.flow_batch import FlowEntryEncoder
from runtime.flow_channel import FlowChannel
from runtime.flow_ids import FlowIdAllocator
from runtime.flow_registry import Flow, FlowRegistry
from runtime.sack_scoreboard import SackScoreboard
from runtime.slow_path_stats import Stats
from runtime.tcp_seq import SEQ_MOD

log = logging.getLogger(__name__)

DEFAULT_PEER_MSS = 536  # RFC 1122, when the peer's SYN has no MSS option
TS_OPTION_BYTES = 12


class FlowInstaller:
    """Leases flow ids, writes and removes flow entries, attaches and detaches data paths."""

    def __init__(self, config: RuntimeConfig, datapath: Datapath, p4info: P4Info,
                 flows: FlowRegistry | None, rates: RateController | None, stats: Stats) -> None:
        """`flows`: None when there is no data path (connections carry no data)."""
        self.config = config
        self.datapath = datapath
        self.encoder = FlowEntryEncoder(p4info)   # flow_entries(), its ids resolved once
        self.flows = flows
        self.rates = rates
        self.stats = stats
        self.flow_ids = FlowIdAllocator(flow_capacity(p4info),  # the loaded build's
                                        first_generation=random.randrange(1, MAX_GENERATION + 1))

    def connection(self, flow_id: int) -> Connection | None:
        """The connection whose data path has this flow id."""
        flow = self.flows.get(flow_id) if self.flows is not None else None
        return flow.conn if flow is not None else None

    def lease(self, conn: Connection) -> None:
        """A flow id and the flow's static state for a connection completing its handshake;
        OSError when every id is in use."""
        lease = self.flow_ids.allocate()
        conn.flow = lease
        conn.flow_spec = FlowSpec(
            flow_id=lease.flow_id, generation=lease.generation, tuple=conn.tuple,
            local_mac=conn.interface.mac, peer_mac=conn.peer_mac,
            # A FIN that came with the handshake's last ACK is in rcv_nxt already; the ring
            # maps data only (_sync_sequences adds the FIN back).
            rx_ring_size=self.config.tcp.rx_ring_size,
            rx_start_seq=(conn.rcv_nxt - conn.fin_received) % SEQ_MOD,
            tx_start_seq=conn.snd_nxt, wire_port=conn.interface.port,
            rx_window_shift=conn.window_shift, timestamps=conn.timestamps,
            peer_window=conn.peer_window, ecn=conn.ecn, sack=conn.sack,
            peer_window_shift=conn.peer_options.window_scale or 0)

    def unlease(self, conn: Connection) -> None:
        """Give back a flow id whose entries never reached the switch."""
        if conn.flow is not None:
            self.flow_ids.free(conn.flow.flow_id)
        conn.flow = conn.flow_spec = None

    async def insert(self, conn: Connection) -> None:
        """Write the flow's entries; raises what the switch answered."""
        await self.datapath.insert(self.encoder.entries(conn.flow_spec))

    async def remove(self, conn: Connection) -> None:
        """Delete the flow's entries, then free its id (kept out of use if the switch failed)."""
        spec, lease = conn.flow_spec, conn.flow
        if spec is None or lease is None:
            return
        conn.flow_spec = None
        try:
            await self.datapath.delete(list(reversed(self.encoder.entries(spec))))
        except Exception as exc:  # noqa: BLE001 - keep the id out of use if removal failed
            log.error("removing the flow of %s failed: %s", conn.describe(), exc)
            return
        conn.flow = None
        self.flow_ids.free(lease.flow_id)
        self.stats.bump("flows_removed")

    def attach(self, conn: Connection) -> int | None:
        """Give an established connection ring slots, register its channel with the NIC and
        its congestion control; returns the slot (None: no data path)."""
        memory = getattr(conn.owner, "memory", None)
        if self.flows is None or memory is None or conn.flow is None:
            return None
        slot, rx, tx = memory.allocate_slot()
        peer = conn.peer_options
        wscale = peer.window_scale or 0
        mss = (peer.mss or DEFAULT_PEER_MSS) - (TS_OPTION_BYTES if conn.timestamps else 0)
        try:
            channel = FlowChannel(conn.flow.flow_id, conn.flow.generation, slot, rx, tx,
                                  memory.events(conn.owner.ctx_id), mss=mss, wscale=wscale,
                                  peer_window=conn.peer_window_bytes, opaque=conn.conn_id,
                                  tx_start_seq=conn.flow_spec.tx_start_seq,
                                  sack=SackScoreboard() if conn.sack else None)
            flow = self.flows.attach(conn, channel)
        except BaseException:
            memory.free_slot(slot)  # nothing of a half-attached flow stays behind
            raise
        if self.rates is not None:
            self.rates.attach(flow, congestion.make(conn.congestion or self.config.congestion))
        conn.channel, conn.memory = channel, memory
        if conn.keepalive is not None:
            self.flows.nic.set_keepalive(channel.flow_id, conn.keepalive)
        return slot

    def detach(self, conn: Connection) -> None:
        """Release the data path and free the ring slot."""
        if conn.channel is None:
            return
        self.release(conn)
        conn.memory.free_slot(conn.channel.slot)
        conn.channel = None

    def flow_of(self, conn: Connection) -> Flow | None:
        """The connection's attached flow: the NIC serves its channel (None once released)."""
        if self.flows is None or conn.channel is None:
            return None
        flow = self.flows.get(conn.channel.flow_id)
        return flow if flow is not None and flow.conn is conn else None

    def release(self, conn: Connection) -> None:
        """The NIC and rate control stop serving the channel (its rings stay): before the flow
        id can go to another connection."""
        flow = self.flow_of(conn)
        if flow is None:
            return
        if self.rates is not None:
            self.rates.detach(flow)
        self.flows.detach(flow)

    def deliver(self, conn: Connection, payload: bytes) -> None:
        """Payload the slow path received (a FIN's), into the RX ring as the NIC would."""
        self.flows.nic.deliver(conn.channel.flow_id, payload)
