"""runtime.datapath: the async front of the P4Runtime client."""

from __future__ import annotations

import asyncio
import threading
import time

from nic_contract.pipeline import P4INFO
from runtime.datapath import Datapath
from nic_contract.p4rt.p4info import P4Info

WRITE_SECONDS = 0.02


class SlowClient:
    """What Datapath uses of P4RuntimeClient; each Write takes a while and is recorded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = self.most_active = 0
        self.written: list[int] = []   # the meters' CIRs, in the order the writes finished
        self.batches: list[int] = []   # updates per WriteRequest

    def write(self, updates: list) -> None:
        with self.lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        time.sleep(WRITE_SECONDS)
        with self.lock:
            self.active -= 1
            self.written.extend(u.entity.meter_entry.config.cir for u in updates)
            self.batches.append(len(updates))

    def packet_in(self, timeout: float) -> None:
        time.sleep(timeout)


def test_writes_go_one_at_a_time_in_the_order_they_were_made() -> None:
    """A later rate must not overtake an earlier one on the way to the meter."""
    p4info = P4Info.from_file(P4INFO)
    client = SlowClient()

    async def scenario() -> None:
        datapath = Datapath(client)  # type: ignore[arg-type]
        jobs = []
        for cir in (1000, 2000, 3000):
            jobs.append(datapath.modify([p4info.meter_entry("tx_rate", 7, cir, 9000, cir, 9000)]))
            await asyncio.sleep(0)   # the next loop iteration: a Write of its own
        await asyncio.gather(*jobs)
        datapath.close()

    asyncio.run(scenario())
    assert client.written == [1000, 2000, 3000]
    assert client.most_active == 1


def test_what_is_queued_while_a_write_is_in_flight_goes_in_one_write_next() -> None:
    """One Write at a time, and no queue of Writes behind it: a connection setup rate is not
    capped at one switch round trip per update."""
    p4info = P4Info.from_file(P4INFO)
    client = SlowClient()

    async def scenario() -> None:
        datapath = Datapath(client)  # type: ignore[arg-type]
        jobs = [datapath.modify([p4info.meter_entry("tx_rate", 1, 1000, 9000, 1000, 9000)])]
        await asyncio.sleep(WRITE_SECONDS / 4)   # the first Write is in flight now
        for flow, cir in ((2, 2000), (3, 3000), (4, 4000)):
            jobs.append(datapath.modify([p4info.meter_entry("tx_rate", flow, cir, 9000, cir,
                                                            9000)]))
            await asyncio.sleep(0)
        await asyncio.gather(*jobs)
        datapath.close()

    asyncio.run(scenario())
    assert client.batches == [1, 3]
    assert client.written == [1000, 2000, 3000, 4000]
