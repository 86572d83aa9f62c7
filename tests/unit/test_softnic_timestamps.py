"""softnic's pipeline on clocks a PTF test cannot wait for: TS.Recent lapses after 24 days
without an update (RFC 7323 5.5), and PAWS rejects older TSvals until then. bmv2 runs the
same P4 (timestamps.p4); the differential test keeps the two targets equal."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from nic_contract.constants import HOST_PORT, DropReason
from nic_contract.flow_entries import FlowSpec, FlowTuple
from tests.support.differential_traffic import FlowModel
from tests.support.fuzzing import softnic_pipeline

DAY_US = 86_400 * 10**6
T0 = 5 * 10**6
SPEC = FlowSpec(flow_id=7, generation=3, tuple=FlowTuple("10.7.0.1", 5000, "10.7.1.2", 40000),
                local_mac="02:00:00:00:00:01", peer_mac="02:00:00:00:00:02",
                rx_ring_size=1 << 16, rx_start_seq=1000, tx_start_seq=5000, wire_port=1,
                rx_window_shift=0, timestamps=True, peer_window=1000)


def segment(seq: int, tsval: int, payload: bytes = b"x" * 10) -> bytes:
    t = SPEC.tuple
    return bytes(Ether(src=SPEC.peer_mac, dst=SPEC.local_mac)
                 / IP(src=t.peer_ip, dst=t.local_ip, flags="DF")
                 / TCP(sport=t.peer_port, dport=t.local_port, seq=seq, ack=SPEC.tx_start_seq,
                       flags="PA", window=1000,
                       options=[("NOP", None), ("NOP", None), ("Timestamp", (tsval, 0))])
                 / payload)


def delivered(outputs: list[tuple[int, bytes]]) -> bool:
    return any(port == HOST_PORT for port, _ in outputs)


def test_paws_until_ts_recent_is_24_days_old() -> None:
    pipeline = softnic_pipeline([FlowModel(SPEC, peer_seq=SPEC.rx_start_seq)])
    paws = pipeline.verdict.drop_counter.packets
    assert delivered(pipeline.process(1, segment(1000, tsval=1000), T0))
    before = paws[DropReason.PAWS]
    assert not delivered(pipeline.process(1, segment(1010, tsval=999), T0 + 23 * DAY_US))
    assert paws[DropReason.PAWS] == before + 1
    # 24.7 days without an update: TS.Recent is invalid and the older TSval is taken.
    lapsed = T0 + 24 * DAY_US + 17 * 3600 * 10**6
    assert delivered(pipeline.process(1, segment(1010, tsval=999), lapsed))
    assert not delivered(pipeline.process(1, segment(1020, tsval=998), T0 + 25 * DAY_US))
