"""Differential test: the same seeded random packets (tests/support/differential_traffic.py) fed to
a reference target and to the software target (softnic), both with the same flows installed,
must give the same frames on every port, the same PacketIns and the same counters. The
references: bmv2 (v1model), and dpdk (the PNA program; without the malformations only payload
or packet-length checks catch: it sees neither, docs/ARCHITECTURE.md).

Each pair runs when its reference is present; prints how many packets were compared.
Fields that come from each switch's clock are compared for presence only: our TSval in
generated segments (the TCP checksum is checked on each side, then recomputed without it),
PacketIn tsval, and RTT samples in TX_ACKED / RX_DATA frames."""

from __future__ import annotations

import os
import random
import select
import time
from collections import Counter
from dataclasses import dataclass, field

import pytest

from bmv2_env import env, targets
from bmv2_env.portmap import PortMap
from nic_contract.constants import PacketInReason, ack_clone_sessions
from nic_contract.host_port import HostPort
from nic_contract.flow_entries import flow_entries
from nic_contract.nic_host_header import AUX_OFFSET, ChannelFlags, Opcode
from nic_contract.p4rt.client import P4RuntimeClient
from nic_contract.p4rt.proto import p4info_pb2
from nic_contract.checksum import internet_checksum
from tests.support.differential_traffic import Traffic, make_flows
from tests.support.stack import skip_reason

PACKETS = int(os.environ.get("P4TAS_DIFF_PACKETS", "10000"))
SEED = int(os.environ.get("P4TAS_DIFF_SEED", "20261122"))
FLOWS = 6
# Veths (and so P4Runtime sockets) of its own: the unit stage must not collide with a PTF or
# end-to-end stage (Makefile); P4TAS_DIFF_BASE moves them, for runs side by side in several
# work trees.
DIFF_BASE = os.environ.get("P4TAS_DIFF_BASE", "")
DIFF_PREFIXES = ({"bmv2": "p4dfb", "soft": "p4dfs", "dpdk": "p4dfd"} if not DIFF_BASE else
                 {"bmv2": f"d{DIFF_BASE}b", "soft": f"d{DIFF_BASE}s", "dpdk": f"d{DIFF_BASE}d"})
QUIET = 0.002          # the software target emits a packet's frames at once: this ends them
# ... unless it has not taken the input in yet (a loaded machine). An input with no output on
# either side is waited for this much longer when the next one comes in another way (port or
# PacketOut), which could overtake it on one side only (seen: an ACK built before the 1-byte
# send of the step before on one side, after it on the other).
EMPTY_QUIET = 0.010
CATCH_UP = 2.0         # how long the other side may take to produce as many
ETH_P_ALL = 3
CounterSpec = p4info_pb2.CounterSpec
TS_TSVAL = slice(58, 62)
TCP_CHECKSUM = slice(50, 52)
NIC_AUX = slice(AUX_OFFSET, AUX_OFFSET + 4)
COUNTERS = ["exception_counter", "drop_counter", "new_ack_counter", "ece_ack_counter",
            "dupack_counter", "fast_retransmit_counter"]


@dataclass
class Side:
    """One target: its P4Runtime session and the peer ends of its ports."""

    name: str
    client: P4RuntimeClient
    ports: dict[int, HostPort]
    outputs: list[tuple] = field(default_factory=list)

    def collect(self) -> int:
        """Take in what arrived on the ports and as PacketIns; the number of outputs now."""
        for port, sock in self.ports.items():
            for frame in sock.recv_batch():
                self.outputs.append((port, frame))
        for payload, metadata in self.client.drain_packet_ins():
            self.outputs.append(("cpu", payload, metadata["ingress_port"], metadata["reason"]))
        return len(self.outputs)

    def wait(self, timeout: float) -> None:
        select.select(list(self.ports.values()), [], [], timeout)


def bring_up(target: str, prefix: str) -> Side:
    result = env.up(env.EnvOptions(ports=2, prefix=prefix, target=target))
    client = P4RuntimeClient(result.record.grpc_addr)
    client.connect()
    client.fetch_p4info()
    portmap = PortMap(2, prefix)
    client.write_clone_sessions(ack_clone_sessions(portmap.wire_ports))
    ports = {link.port: HostPort(link.peer_iface, ethertype=ETH_P_ALL)
             for link in portmap.links()}
    return Side(target, client, ports)


def _cannot_compare(reference: str) -> str | None:
    return targets.get(reference).missing() or skip_reason()


@pytest.fixture(scope="module", params=["bmv2", "dpdk"])
def sides(request: pytest.FixtureRequest):
    reference = request.param
    reason = _cannot_compare(reference)
    if reason:
        pytest.skip(f"the differential test needs {reference} as the reference: {reason}")
    made = []
    try:
        made.append(bring_up(reference, DIFF_PREFIXES[reference]))
        made.append(bring_up("soft", DIFF_PREFIXES["soft"]))
        yield made
    finally:
        for side in made:
            side.client.close()
            for sock in side.ports.values():
                sock.close()
        env.down(DIFF_PREFIXES[reference])
        env.down(DIFF_PREFIXES["soft"])


def normalized(output: tuple) -> tuple:
    """Clock-derived fields replaced by whether they are set (see the module docstring)."""
    if output[0] == "cpu":
        return output
    port, frame = output
    frame = bytearray(frame)
    if len(frame) >= 62 and frame[12:14] == b"\x08\x00" and frame[23] == 6 \
            and frame[46] >> 4 in (8, 11) and frame[54:58] == b"\x01\x01\x08\x0a":
        assert tcp_checksum_ok(bytes(frame)), f"bad TCP checksum on port {port}: {frame.hex()}"
        frame[TS_TSVAL] = (int.from_bytes(frame[TS_TSVAL], "big") != 0).to_bytes(4, "big")
        frame[TCP_CHECKSUM] = b"\0\0"
    elif frame[12:14] == b"\x88\xb5" and len(frame) >= 38:
        opcode, flags = frame[14], frame[15]
        if opcode == Opcode.TX_ACKED or (opcode == Opcode.RX_DATA
                                         and not flags & ChannelFlags.MERGED):
            frame[NIC_AUX] = (int.from_bytes(frame[NIC_AUX], "big") != 0).to_bytes(4, "big")
    return port, bytes(frame)


def tcp_checksum_ok(frame: bytes) -> bool:
    ihl = (frame[14] & 0xF) * 4
    total = int.from_bytes(frame[16:18], "big")
    tcp = frame[14 + ihl:14 + total]
    pseudo = frame[26:34] + bytes([0, 6]) + len(tcp).to_bytes(2, "big")
    return internet_checksum(pseudo + tcp) == 0


def feed(side: Side, item: tuple) -> None:
    if item[0] == "packet_out":
        side.client.packet_out(item[2], egress_port=item[1], reinject=item[3], _pad=0)
    else:
        side.ports[item[0]].send(item[1])


def way_in(item: tuple) -> int | str:
    """Where an input enters: a port, or the PacketOut stream."""
    return item[0]


def settle(ref: Side, soft: Side, start: tuple[int, int], hold: bool = False,
           ) -> tuple[list, list]:
    """One input's outputs on both sides, normalized and sorted: wait until soft has been
    quiet for QUIET (EMPTY_QUIET for a silent input when `hold`), then collect both until they
    agree or CATCH_UP passed."""
    quiet = QUIET
    while True:
        before = soft.collect()
        soft.wait(quiet)
        time.sleep(quiet / 2)   # PacketIns come on the gRPC stream, not the ports
        if soft.collect() != before:
            continue
        if not hold or quiet == EMPTY_QUIET or before > start[1] or ref.collect() > start[0]:
            break
        quiet = EMPTY_QUIET
    # Either side may lag: a PacketIn crosses a gRPC stream, which under load can take longer
    # than QUIET. An output that comes after this input's turn counts towards the next one,
    # where the other side's copy is waited for in the same way.
    deadline = time.monotonic() + CATCH_UP
    while True:
        got = [sorted((normalized(o) for o in side.outputs[first:]), key=repr)
               for side, first in ((ref, start[0]), (soft, start[1]))]
        if got[0] == got[1] or time.monotonic() >= deadline:
            return got[0], got[1]
        ref.wait(0.002)
        ref.collect()
        soft.collect()


def counters(side: Side, flow_ids: list[int], with_bytes: bool = True) -> dict:
    """Every counter's values, in the units its P4Info gives it (bmv2 also keeps bytes for a
    packets counter; a DPDK register array counts the one unit). `with_bytes=False`: packets
    only (the PNA program counts the length its headers give, having no packet length)."""
    p4info = side.client.p4info
    values = {}
    for name in COUNTERS:
        entity = p4info.counter_entry(name)   # all indexes
        unit = p4info.counter(name).spec.unit
        for got in side.client.read([entity]):
            entry = got.counter_entry
            if name in ("exception_counter", "drop_counter") or entry.index.index in flow_ids:
                values[(name, entry.index.index)] = (
                    entry.data.packet_count if unit != CounterSpec.BYTES else None,
                    entry.data.byte_count if unit != CounterSpec.PACKETS and with_bytes
                    else None)
    return values


def test_reference_and_soft_agree(sides: list[Side]) -> None:
    ref, soft = sides
    rng = random.Random(SEED)
    flows = make_flows(rng, FLOWS, first_flow_id=rng.randrange(0, 60000))
    for side in sides:
        side.client.insert([e for f in flows for e in flow_entries(side.client.p4info, f.spec)])
    traffic = Traffic(SEED, flows, payload_checks=ref.name != "dpdk")
    for side in sides:
        side.collect()
        side.outputs.clear()
    compared = 0
    upcoming = traffic.next_packet()
    for n in range(PACKETS):
        item, upcoming = upcoming, traffic.next_packet()
        start = (len(ref.outputs), len(soft.outputs))
        feed(soft, item)
        feed(ref, item)
        got_ref, got_soft = settle(ref, soft, start, hold=way_in(upcoming) != way_in(item))
        assert got_soft == got_ref, (
            f"packet {n} (seed {SEED}) {item[0]}: {item[-1].hex()}\n"
            f"{ref.name}: {got_ref}\nsoft: {got_soft}")
        compared += 1
    late_ref, late_soft = settle(ref, soft, (len(ref.outputs), len(soft.outputs)))
    assert late_soft == late_ref, (f"after the last packet: {ref.name} {late_ref}, "
                                   f"soft {late_soft}")
    flow_ids = [f.spec.flow_id for f in flows]
    with_bytes = ref.name != "dpdk"
    assert counters(soft, flow_ids, with_bytes) == counters(ref, flow_ids, with_bytes)
    print(f"differential {ref.name}/soft: {compared} packets compared (seed {SEED}), "
          f"{len(ref.outputs)} "
          f"outputs each, counters equal; outputs by kind: {coverage(ref.outputs)}")


def coverage(outputs: list[tuple]) -> dict[str, int]:
    """What the outputs were (PacketIn reasons, channel opcodes and flags, wire frames)."""
    kinds: Counter[str] = Counter()
    for out in outputs:
        if out[0] == "cpu":
            kinds[f"packet_in:{PacketInReason(out[3]).name}"] += 1
        elif out[1][12:14] == b"\x88\xb5":
            op, flags = Opcode(out[1][14]), ChannelFlags(out[1][15])
            shown = [name for name, flag in (("OOO", ChannelFlags.OOO),
                                             ("MERGED", ChannelFlags.MERGED),
                                             ("TRIM", ChannelFlags.TRIM))
                     if flags & flag and (op == Opcode.RX_DATA or name != "TRIM")]
            kinds["+".join([op.name, *shown])] += 1
        else:
            sack = "+sack" if out[1][46] >> 4 == 11 else ""   # our out-of-order interval
            kinds[f"wire:{'data' if len(out[1]) > 66 + len(sack) * 3 else 'ack' + sack}"] += 1
    return dict(sorted(kinds.items()))
