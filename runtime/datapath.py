"""The fast path as the slow path sees it: PacketIns as an asyncio stream, PacketOut, batched
table writes, and an estimate of the switch clock for the TSvals the slow path sends."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterable

from nic_contract.constants import TS_TICK_SHIFT, PacketInReason
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.errors import StreamError, WriteError
from nic_contract.p4rt.messages import updates_of
from nic_contract.p4rt.proto import p4runtime_pb2
from runtime.cpu_interface import CpuInterface

log = logging.getLogger(__name__)

_POLL_S = 0.2  # how long a blocking PacketIn read waits before checking for shutdown


@dataclass(frozen=True)
class PacketIn:
    """One packet the fast path sent to the CPU port, with its metadata."""

    frame: bytes
    ingress_port: int
    reason: int
    tsval: int

    @property
    def reason_name(self) -> str:
        try:
            return PacketInReason(self.reason).name
        except ValueError:
            return f"reason {self.reason}"


def host_ticks() -> int:
    """The host's monotonic clock in TSval ticks (same unit as the switch's)."""
    return (time.monotonic_ns() // 1000) >> TS_TICK_SHIFT


@dataclass
class SwitchClock:
    """Estimate of the switch clock from PacketIn timestamps, never ahead of the real one.

    A PacketIn is stamped before we see it, so stamp - host_now underestimates the offset;
    the largest sample is the best estimate, and TSvals from it stay at or below the ones the
    data plane puts in its ACKs."""

    offset: int | None = None

    def observe(self, tsval: int) -> None:
        sample = (tsval - host_ticks()) & 0xFFFFFFFF
        if sample >= 1 << 31:
            sample -= 1 << 32
        if self.offset is None or sample > self.offset:
            self.offset = sample

    def now(self) -> int:
        """Current TSval; the host clock alone until the switch was heard from."""
        return (host_ticks() + (self.offset or 0)) & 0xFFFFFFFF


@dataclass
class _Batch:
    """Updates queued in one loop iteration; each caller's share has its own future."""

    updates: list[p4runtime_pb2.Update] = field(default_factory=list)
    parts: list[tuple[int, int, asyncio.Future]] = field(default_factory=list)


class Datapath:
    """Async front of a connected P4RuntimeClient, owned by one event loop."""

    def __init__(self, client: P4RuntimeClient, cpu: CpuInterface | None = None) -> None:
        """`cpu`: the CPU port's interface carries PacketIn/PacketOut (else P4Runtime)."""
        self.client = client
        self.cpu = cpu
        self.clock = SwitchClock()
        # One thread each: a Write must never overtake an earlier one (a meter's rates, an
        # entry's insert and delete), and the PacketIn poll must not wait behind a Write.
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p4rt-write")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p4rt-read")
        self._batch: _Batch | None = None
        self._writing = False   # a Write is in flight: what is queued meanwhile goes next
        self._closing = False

    async def packet_ins(self) -> AsyncIterator[PacketIn]:
        """PacketIns as they arrive, until close() or the stream ends (StreamError)."""
        if self.cpu is not None:
            async for batch in self.cpu.batches():
                for got in batch:
                    yield self._packet_in(got.frame, got.metadata)
            return
        loop = asyncio.get_running_loop()
        while not self._closing:
            got = await loop.run_in_executor(self._reader, self.client.packet_in, _POLL_S)
            if got is None:
                continue
            yield self._packet_in(*got)

    def _packet_in(self, frame: bytes, meta: dict[str, int]) -> PacketIn:
        pin = PacketIn(frame, meta.get("ingress_port", 0), meta.get("reason", 0),
                       meta.get("tsval", 0))
        self.clock.observe(pin.tsval)
        return pin

    def send(self, frame: bytes, port: int) -> None:
        """PacketOut: `frame` leaves the switch on `port` unchanged."""
        self._packet_out(frame, egress_port=port)

    def reinject(self, frame: bytes, port: int) -> None:
        """PacketOut of a wire segment the fast path handles as if it had just arrived on
        `port` (packet_out_h.reinject); it sends no ACK for it."""
        self._packet_out(frame, egress_port=port, reinject=1)

    def _packet_out(self, frame: bytes, **metadata: int) -> None:
        if self.cpu is not None:
            self.cpu.send(frame, **metadata)
        else:
            self.client.packet_out(frame, **metadata)

    def write(self, kind: int, entities: Iterable) -> asyncio.Future:
        """Queue updates of any entity type; all queued in this loop iteration, and all queued
        while the previous Write is in flight, go in one WriteRequest (one Write at a time:
        a switch's round trip, not each caller, paces them).

        Returns a future that completes when this call's updates are written, or fails with
        the WriteError of just those updates."""
        loop = asyncio.get_running_loop()
        if self._batch is None:
            self._batch = _Batch()
            if not self._writing:
                loop.call_soon(self._flush)
        batch = self._batch
        start = len(batch.updates)
        batch.updates.extend(updates_of(kind, entities))
        done = loop.create_future()
        batch.parts.append((start, len(batch.updates), done))
        return done

    def insert(self, entries: Iterable[p4runtime_pb2.TableEntry]) -> asyncio.Future:
        return self.write(p4runtime_pb2.Update.INSERT, entries)

    def delete(self, entries: Iterable[p4runtime_pb2.TableEntry]) -> asyncio.Future:
        return self.write(p4runtime_pb2.Update.DELETE, entries)

    def modify(self, entities: Iterable) -> asyncio.Future:
        """MODIFY table entries, meter entries (bmv2 takes only MODIFY for meters), ..."""
        return self.write(p4runtime_pb2.Update.MODIFY, entities)

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        self._writing = True
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._writer, self.client.write, batch.updates)
        job.add_done_callback(lambda f: self._written(batch, f))

    def _written(self, batch: _Batch, job: asyncio.Future) -> None:
        """A Write is done: its callers learn the outcome, and what queued meanwhile goes."""
        self._writing = False
        _settle(batch, job)
        if self._batch is not None:
            self._flush()

    def close(self) -> None:
        self._closing = True
        if self.cpu is not None:
            self.cpu.close()
        self._reader.shutdown(wait=True, cancel_futures=False)
        self._writer.shutdown(wait=True, cancel_futures=False)


def _settle(batch: _Batch, job: asyncio.Future) -> None:
    """Complete each caller's future with the outcome of its own updates."""
    error = job.exception()
    for start, end, done in batch.parts:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        elif isinstance(error, WriteError):
            mine = [f for f in error.failures if start <= f.index < end]
            if mine:
                text = "; ".join(f"{f.code_name}: {f.message}" for f in mine)
                done.set_exception(WriteError(f"write failed: {text}", mine))
            else:
                done.set_result(None)
        else:
            done.set_exception(error)


__all__ = ["Datapath", "PacketIn", "SwitchClock", "StreamError", "host_ticks"]
