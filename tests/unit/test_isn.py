"""RFC 6528 initial sequence numbers: a 4 µs clock plus a keyed hash of the 4-tuple."""

from __future__ import annotations

import asyncio

from nic_contract.constants import PacketInReason
from nic_contract.flow_entries import FlowTuple
from runtime.isn import IsnGenerator
from runtime.tcp_segments import TcpFlags
from tests.unit.test_nic_parts import PORT, Rig

A = FlowTuple("10.0.0.1", 80, "10.0.0.2", 40000)
B = FlowTuple("10.0.0.1", 80, "10.0.0.2", 40001)


class Clock:
    def __init__(self) -> None:
        self.ns = 10**12

    def __call__(self) -> int:
        return self.ns


def test_isn_advances_with_the_clock_for_one_tuple() -> None:
    clock = Clock()
    gen = IsnGenerator(b"k" * 16, clock)
    first = gen.isn(A)
    clock.ns += 4000 * 1000
    assert (gen.isn(A) - first) % 2**32 == 1000


def test_isn_depends_on_the_tuple_and_the_secret() -> None:
    clock = Clock()
    one, other = IsnGenerator(b"k" * 16, clock), IsnGenerator(b"q" * 16, clock)
    assert one.isn(A) != one.isn(B)
    assert one.isn(A) != other.isn(A)
    assert IsnGenerator(b"k" * 16, clock).isn(A) == one.isn(A)  # a function, nothing hidden
    assert IsnGenerator(clock_ns=clock).isn(A) != IsnGenerator(clock_ns=clock).isn(A)  # fresh keys


def test_syn_ack_carries_the_rfc_6528_isn() -> None:
    async def scenario() -> None:
        r = Rig()
        clock = Clock()
        r.control.isns = IsnGenerator(b"s" * 16, clock)
        r.control.listen(r.app, None, PORT, 16)
        r.segment(40000, 1, 0, TcpFlags.SYN, reason=PacketInReason.SYN)
        synack = r.datapath.sent[-1]
        assert synack.seq == IsnGenerator(b"s" * 16, clock).isn(A)
        r.control.close_listener(next(iter(r.control.table.listeners.values())))
        r.close()
    asyncio.run(scenario())
