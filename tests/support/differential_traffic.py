"""Seeded random traffic for the differential test (tests/contract/test_differential.py): segments of
a few installed flows (in order, out of order, duplicates, old data, segments overlapping
rcv_nxt, ACKs and duplicate ACKs, SACK blocks after the timestamps and odd option layouts,
window changes, probes, CE marks and CWR, TSvals that advance and now and then go back),
exceptions and malformed frames, host-port messages and
PacketOuts, all as (ingress port, frame) or ("packet_out", egress port, frame, reinject)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether

from nic_contract.constants import HOST_PORT
from nic_contract.flow_entries import FlowSpec, FlowTuple
from nic_contract.nic_host_header import ChannelFlags, NicHostMessage, Opcode, tx_data

LOCAL_MAC, PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
LOCAL_IP = "10.7.0.1"
M32 = 0xFFFFFFFF
MSS = 1448


@dataclass
class FlowModel:
    """A flow and where its two streams are, so most generated segments make sense."""

    spec: FlowSpec
    peer_seq: int            # next in-order sequence from the peer
    tx_pos: int = 0          # TX stream position the host sends next
    acked_pos: int = 0       # what generated ACKs acknowledged so far
    peer_window: int = 1000
    peer_ts: int = 0         # the peer's TSval clock
    history: list[tuple[int, int]] = field(default_factory=list)  # (seq, len) sent by the peer


def make_flows(rng: random.Random, count: int, first_flow_id: int) -> list[FlowModel]:
    flows = []
    for i in range(count):
        spec = FlowSpec(
            flow_id=first_flow_id + i, generation=rng.randrange(1, 0xFFFF),
            tuple=FlowTuple(LOCAL_IP, 5000 + i, f"10.7.1.{i + 2}", 40000 + i),
            local_mac=LOCAL_MAC, peer_mac=PEER_MAC,
            rx_ring_size=rng.choice([1 << 12, 1 << 16, 1 << 20]),
            rx_start_seq=rng.choice([rng.randrange(1 << 32), M32 - 3000]),
            tx_start_seq=rng.choice([rng.randrange(1 << 32), M32 - 5000]),
            wire_port=1 + i % 2, rx_window_shift=rng.choice([0, 2, 7]),
            timestamps=i % 3 != 2, peer_window=1000, sack=i % 3 == 0,
            peer_window_shift=rng.choice([0, 0, 7]))
        flows.append(FlowModel(spec, peer_seq=spec.rx_start_seq,
                               peer_ts=rng.choice([rng.randrange(1 << 32), M32 - 50])))
    return flows


class Traffic:
    """The generator: next_packet() draws one input."""

    def __init__(self, seed: int, flows: list[FlowModel], payload_checks: bool = True) -> None:
        """`payload_checks=False`: no bad TCP checksums, truncated headers, IPv4 lengths beyond
        the frame, truncated host messages or TX_DATA longer than its length, which a target that sees no payload or packet
        length (PNA on DPDK) cannot catch."""
        self.rng = random.Random(seed)
        self.flows = flows
        self.payload_checks = payload_checks
        kinds = [(self.in_order, 22), (self.out_of_order, 7), (self.old_data, 4),
                 (self.overlap, 4),
                 (self.new_ack, 9), (self.dup_acks, 5), (self.window_change, 2),
                 (self.probe, 2), (self.control_flags, 3), (self.malformed, 8),
                 (self.tx_data, 16), (self.rx_consumed, 6), (self.bad_host_message, 2),
                 (self.packet_out, 2)]
        self.kinds = [k for k, _ in kinds]
        self.weights = [w for _, w in kinds]
        self.pending: list = []

    def next_packet(self) -> tuple:
        if not self.pending:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            self.pending = kind(self.rng.choice(self.flows))
        return self.pending.pop(0)

    # ---- wire segments

    def segment(self, f: FlowModel, seq: int, payload: bytes, flags: str = "A", *,
                ack: int | None = None, window: int | None = None, ecn: int = 0) -> tuple:
        t, rng = f.spec.tuple, self.rng
        options = []
        ack = (f.spec.tx_start_seq + f.acked_pos) & M32 if ack is None else ack
        if rng.random() < 0.03:   # old, maybe older than the peer's largest window (RFC 5961)
            ack = (ack - rng.choice([100, 60000, 70000, 1 << 22, 1 << 24])) & M32
        if rng.random() < 0.7:
            tsecr = 0 if rng.random() < 0.6 else rng.randrange(1, 1 << 32)
            options = [("NOP", None), ("NOP", None), ("Timestamp", (self.tsval(f), tsecr))]
            options += self.sack_options(ack)
        frame = (Ether(src=PEER_MAC, dst=LOCAL_MAC)
                 / IP(src=t.peer_ip, dst=t.local_ip, tos=ecn, id=rng.randrange(1 << 16), flags="DF")
                 / TCP(sport=t.peer_port, dport=t.local_port, seq=seq & M32, ack=ack,
                       flags=flags, window=f.peer_window if window is None else window,
                       options=options)
                 / payload)
        return (f.spec.wire_port, bytes(frame))

    def sack_options(self, ack: int) -> list:
        """After the timestamps: often nothing, else 1-3 SACK blocks above (or at times below)
        `ack` in Linux's layout, or now and then a layout the fast path does not take."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.7:
            return []
        if roll < 0.96:
            edges = []
            for _ in range(rng.randrange(1, 4)):
                left = (ack + rng.randrange(-2000, 6000)) & M32
                edges += [left, (left + rng.randrange(1, 3000)) & M32]
            return [("NOP", None), ("NOP", None), ("SAck", tuple(edges))]
        return [("NOP", None)] * 4 + [("SAck", (ack, ack + 10))]   # SACK, not Linux's layout

    def tsval(self, f: FlowModel) -> int:
        """The peer's clock, advancing (and wrapping); now and then an older value (PAWS)."""
        roll = self.rng.random()
        if roll < 0.06:
            return (f.peer_ts - self.rng.choice([1, 1000, 1 << 30])) & M32
        f.peer_ts = (f.peer_ts + self.rng.choice([0, 0, 1, 7])) & M32
        return f.peer_ts

    def payload(self) -> bytes:
        return self.rng.randbytes(self.rng.choice([1, 100, 536, self.rng.randrange(1, MSS + 1)]))

    def in_order(self, f: FlowModel) -> list:
        data = self.payload()
        seq = f.peer_seq
        f.peer_seq = (f.peer_seq + len(data)) & M32
        f.history.append((seq, len(data)))
        ecn = 3 if self.rng.random() < 0.1 else 0
        flags = self.rng.choice(["A", "PA"]) + ("C" if self.rng.random() < 0.1 else "")
        return [self.segment(f, seq, data, flags, ecn=ecn)]

    def overlap(self, f: FlowModel) -> list:
        """A resend with other segmentation: starts below rcv_nxt, ends beyond it."""
        behind = self.rng.choice([1, 100, MSS - 1])
        fresh = self.rng.choice([1, 50, MSS])
        seq = (f.peer_seq - behind) & M32
        f.history.append((f.peer_seq, fresh))
        f.peer_seq = (f.peer_seq + fresh) & M32
        ecn = 3 if self.rng.random() < 0.1 else 0
        return [self.segment(f, seq, self.rng.randbytes(behind + fresh), "PA", ecn=ecn)]

    def out_of_order(self, f: FlowModel) -> list:
        """A segment ahead of the expected one, often followed by the one filling the gap."""
        gap = self.rng.choice([1, 100, MSS])
        data = self.payload()
        ahead = self.segment(f, f.peer_seq + gap, data, "PA")
        if self.rng.random() < 0.5:
            return [ahead]
        filler = self.rng.randbytes(gap)
        f.history.append((f.peer_seq, gap))
        fill = self.segment(f, f.peer_seq, filler, "A")
        f.peer_seq = (f.peer_seq + gap + len(data)) & M32
        return [ahead, fill]

    def old_data(self, f: FlowModel) -> list:
        if not f.history:
            return self.in_order(f)
        seq, length = self.rng.choice(f.history[-20:])
        return [self.segment(f, seq, self.rng.randbytes(length), "PA")]

    def new_ack(self, f: FlowModel) -> list:
        if f.tx_pos > f.acked_pos:
            f.acked_pos += self.rng.randrange(1, f.tx_pos - f.acked_pos + 1)
        ece = self.rng.random() < 0.15
        return [self.segment(f, f.peer_seq, b"", "AE" if ece else "A")]

    def dup_acks(self, f: FlowModel) -> list:
        return [self.segment(f, f.peer_seq, b"", "A") for _ in range(self.rng.randrange(3, 5))]

    def window_change(self, f: FlowModel) -> list:
        f.peer_window = self.rng.choice([0, 10, 1000, 65535])
        return [self.segment(f, f.peer_seq, b"", "A")]

    def probe(self, f: FlowModel) -> list:
        return [self.segment(f, f.peer_seq - 1, b"", "A")]

    def control_flags(self, f: FlowModel) -> list:
        flags = self.rng.choice(["S", "SA", "FA", "R", "RA", "UA", "", "PA"])
        return [self.segment(f, f.peer_seq, self.payload() if "P" in flags else b"", flags)]

    def malformed(self, f: FlowModel) -> list:
        port, frame = self.segment(f, f.peer_seq, self.payload(), "PA")
        t, rng = f.spec.tuple, self.rng
        frame = bytearray(frame)
        choice = rng.randrange(10)
        if choice in (1, 2, 3) and not self.payload_checks:
            choice = 0                               # a bad IPv4 checksum instead
        if choice == 0:
            frame[24] ^= 0xFF                        # IPv4 header checksum
        elif choice == 1:
            frame[50] ^= 0x55                        # TCP checksum
        elif choice == 2:
            frame = frame[:rng.randrange(1, 54)]     # truncated headers
        elif choice == 3:
            frame[16:18] = (len(frame)).to_bytes(2, "big")   # IPv4 length beyond the frame
        elif choice == 4:
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst=LOCAL_MAC)
                                    / IP(src=t.peer_ip, dst=t.local_ip, options=[b"\x01" * 4])
                                    / TCP(sport=t.peer_port, dport=t.local_port, flags="A")))
        elif choice == 5:
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst=LOCAL_MAC)
                                    / IP(src=t.peer_ip, dst=t.local_ip, flags="MF")
                                    / TCP(sport=t.peer_port, dport=t.local_port, flags="A")))
        elif choice == 6:
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst=LOCAL_MAC)
                                    / IP(src=t.peer_ip, dst=t.local_ip) / UDP(dport=53) / b"q"))
        elif choice == 7:
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst=LOCAL_MAC) / IPv6() / (b"x" * 20)))
        elif choice == 8:
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst="ff:ff:ff:ff:ff:ff")
                                    / ARP(psrc=t.peer_ip, pdst=t.local_ip)))
        else:                                        # a connection nobody installed
            frame = bytearray(bytes(Ether(src=PEER_MAC, dst=LOCAL_MAC)
                                    / IP(src="10.7.9.9", dst=t.local_ip)
                                    / TCP(sport=1234, dport=t.local_port, flags="PA") / b"hi"))
        return [(port, bytes(frame))]

    # ---- host port

    def tx_data(self, f: FlowModel) -> list:
        rng, spec = self.rng, f.spec
        data = self.payload()
        flags = ChannelFlags.PSH if rng.random() < 0.5 else ChannelFlags.NONE
        position = f.tx_pos
        roll = rng.random()
        if roll < 0.08 and f.tx_pos:
            position = rng.randrange(max(0, f.acked_pos - 3000), f.tx_pos)   # a resend
            flags |= ChannelFlags.RTO if rng.random() < 0.3 else ChannelFlags.NONE
        elif roll < 0.11:
            flags |= ChannelFlags.PROBE
            position = (f.acked_pos - 1) & M32
            data = data[:1]
        elif roll < 0.14:
            flags |= ChannelFlags.FIN   # our FIN, after data or alone (half-close)
            data = data if rng.random() < 0.5 else b""
            f.tx_pos += len(data)
        else:
            f.tx_pos += len(data)
        gen = spec.generation if rng.random() < 0.95 else (spec.generation + 1) & 0xFFFF
        msg = tx_data(spec.flow_id, gen, flags, position, position & M32, data)
        frame = msg.encode()
        if rng.random() < 0.04 and self.payload_checks:
            frame = frame + b"\0" * rng.randrange(1, 8)    # longer than `length` says
        return [(HOST_PORT, frame)]

    def rx_consumed(self, f: FlowModel) -> list:
        spec = f.spec
        count = self.rng.choice([1, 1000, 6000, spec.rx_ring_size, 1 << 31])
        gen = spec.generation if self.rng.random() < 0.95 else (spec.generation + 7) & 0xFFFF
        return [(HOST_PORT, NicHostMessage(Opcode.RX_CONSUMED, spec.flow_id, gen,
                                           count=count).encode())]

    def bad_host_message(self, f: FlowModel) -> list:
        frame = bytearray(NicHostMessage(Opcode.RX_CONSUMED, f.spec.flow_id, f.spec.generation,
                                         count=1).encode())
        bad_opcode = self.rng.random() < 0.5
        if bad_opcode or not self.payload_checks:
            frame[14] = self.rng.choice([0, 1, 4, 5, 99])      # not a host -> NIC opcode
        else:
            frame = frame[:self.rng.randrange(14, 37)]         # truncated channel header
        return [(HOST_PORT, bytes(frame))]

    def packet_out(self, f: FlowModel) -> list:
        """A PacketOut to a port, or (reinject) a segment handed back to the fast path."""
        port, frame = self.segment(f, f.peer_seq, self.payload(), "PA")
        reinject = 1 if self.rng.random() < 0.4 else 0
        return [("packet_out", self.rng.choice([1, 2, HOST_PORT]), frame, reinject)]
