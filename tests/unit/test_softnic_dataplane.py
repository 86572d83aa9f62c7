"""softnic's packet loop: SYNs from the wire wait in a bounded queue of their own, behind
every other frame (a SYN flood does not delay established flows' segments)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether

from softnic.dataplane import SYN_QUANTUM, SYN_QUEUE, Dataplane, is_syn
from softnic.pipeline.constants import HOST_PORT

WIRE = 1


def segment(tcp_flags: str, sport: int = 40000, **ip) -> bytes:
    return bytes(Ether() / IP(src="10.0.0.2", dst="10.0.0.1", **ip)
                 / TCP(sport=sport, dport=80, flags=tcp_flags))


class Port:
    """A port whose socket holds `frames`."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames

    def recv_batch(self) -> list[bytes]:
        frames, self.frames = self.frames, []
        return frames

    def close(self) -> None:
        pass


class Recorder:
    """A pipeline that records what it is given and outputs nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes]] = []

    def process(self, port: int, frame: bytes, now_us: int) -> list:
        self.seen.append((port, frame))
        return []


def dataplane(ports: dict[int, list[bytes]]) -> tuple[Dataplane, Recorder]:
    dp = Dataplane({})
    dp.ports = {port: Port(frames) for port, frames in ports.items()}
    dp.pipeline = recorder = Recorder()
    return dp, recorder


def test_a_syn_is_a_tcp_segment_with_syn_and_without_ack() -> None:
    assert is_syn(segment("S"))
    assert is_syn(segment("S", options=[b"\x01\x01\x01\x01"]))   # IPv4 options: further on
    assert not is_syn(segment("SA")) and not is_syn(segment("A")) and not is_syn(segment("R"))
    assert not is_syn(bytes(Ether() / ARP())) and not is_syn(segment("S")[:40])
    assert not is_syn(segment("S", flags="MF")) and not is_syn(segment("S", frag=185))
    assert is_syn(segment("S", flags="DF"))


def test_wire_syns_wait_behind_other_frames_in_arrival_order() -> None:
    syn_a, ack, syn_b, data = (segment("S", 1), segment("A", 2), segment("S", 3),
                               segment("PA", 4))
    host_frame = segment("S", 5)   # from the host port: never queued
    dp, recorder = dataplane({WIRE: [syn_a, ack, syn_b, data], HOST_PORT: [host_frame]})
    dp.receive(WIRE)
    dp.receive(HOST_PORT)
    assert recorder.seen == [(WIRE, ack), (WIRE, data), (HOST_PORT, host_frame)]
    dp.handle_syns()
    assert recorder.seen[3:] == [(WIRE, syn_a), (WIRE, syn_b)]
    dp.close()


def test_a_full_syn_queue_drops_and_counts() -> None:
    syns = [segment("S", 1000 + i) for i in range(SYN_QUEUE + 3)]
    dp, recorder = dataplane({WIRE: syns})
    dp.receive(WIRE)
    assert dp.stats["syn_queue_full"] == 3 and recorder.seen == []
    for _ in range(SYN_QUEUE // SYN_QUANTUM + 1):
        dp.handle_syns()
    assert [frame for _, frame in recorder.seen] == syns[:SYN_QUEUE]
    dp.close()
