"""The runtime's one record per flow: for each flow id with a data path, the connection, its
NIC channel (rings, TX state, retransmission timer) and its congestion-control state. Attach and
detach happen here only; the NIC learns of a flow at attach and forgets it at detach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator

from runtime.flow_channel import FlowChannel
from runtime.nic_interface import NicInterface

if TYPE_CHECKING:
    from runtime.congestion.controller import FlowControl
    from runtime.connections import Connection


@dataclass(eq=False, slots=True)
class Flow:
    """One flow id in use: whose it is, how its data moves, how fast it may send."""

    conn: Connection
    channel: FlowChannel
    control: FlowControl | None = None  # None: not rate-controlled (unlimited)

    @property
    def flow_id(self) -> int:
        return self.channel.flow_id


class FlowRegistry:
    """Flows by id, registered with the NIC while they are here."""

    def __init__(self, nic: NicInterface) -> None:
        self.nic = nic
        self._flows: dict[int, Flow] = {}

    def __len__(self) -> int:
        return len(self._flows)

    def __iter__(self) -> Iterator[Flow]:
        return iter(list(self._flows.values()))

    def get(self, flow_id: int) -> Flow | None:
        """The flow of an id, if one is attached."""
        return self._flows.get(flow_id)

    def attach(self, conn: Connection, channel: FlowChannel) -> Flow:
        """Register the channel with the NIC and record the flow; ValueError if the id is
        taken (the previous user must be detached first)."""
        if channel.flow_id in self._flows:
            raise ValueError(f"flow {channel.flow_id} is already attached")
        self.nic.register(channel)
        flow = self._flows[channel.flow_id] = Flow(conn, channel)
        return flow

    def detach(self, flow: Flow) -> None:
        """The NIC stops serving the flow (its rings stay with the connection)."""
        if self._flows.get(flow.flow_id) is flow:
            del self._flows[flow.flow_id]
            self.nic.unregister(flow.flow_id)
