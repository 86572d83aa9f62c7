"""softnic's SYN lane (softnic/pipeline/syn_lane.py) against the long way through the pipeline:
the same seeded SYNs, well-formed and broken in every way the lane must notice, give the same
frames, counters and meter state, with the punt meter passing some and stopping others and
listeners with and without cookie entries."""

from __future__ import annotations

import random

import pytest
from google.protobuf import text_format
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from nic_contract.p4rt.proto import p4info_pb2
from nic_contract.pipeline import BMV2_JSON, P4INFO
from softnic.p4runtime.program import Program
from softnic.pipeline import packet_io, syn_lane
from softnic.pipeline.constants import CPU_PORT, HOST_PORT, REASON_SYN
from softnic.pipeline.p4tas import P4tasPipeline
from softnic.pipeline.syn_cookie import ANSWER_WITH_COOKIE, SYN_COOKIE_LISTENERS

LOCAL = "10.0.0.1"
LISTENING, CLOSED = 80, 81
PACKETS = 3000


def pipeline(lane: bool) -> P4tasPipeline:
    """The committed program with one cookie listener and a SYN budget of 300/s."""
    program = Program(text_format.Parse(P4INFO.read_text(), p4info_pb2.P4Info()))
    state = program.new_state(program.default_actions(BMV2_JSON.read_bytes()))
    state.tables[SYN_COOKIE_LISTENERS].entries[(0x0A000001, LISTENING)] = (
        ANSWER_WITH_COOKIE, (0x01234567, 0x89ABCDEF, 77, 1460, 29200))
    state.meters["P4tasIngress.verdict.punt_rate"].set_config(REASON_SYN, 300, 3, 300, 3)
    return P4tasPipeline(state, syn_lane=lane)


def syn(rng: random.Random) -> bytes:
    """A SYN to our address, one thing about it perhaps wrong or unusual (checksums right
    unless a bit is flipped or the frame cut)."""
    options = rng.choice([[], [("MSS", rng.choice([0, 536, 1460, 9000]))],
                          [("MSS", 1460), ("WScale", 7), ("SAckOK", b""), ("Timestamp", (1, 0))],
                          [("NOP", None), ("MSS", 1400)], [("Timestamp", (5, 0))]])
    flags = rng.choice(["S"] * 6 + ["SA", "SR", "SF", "SE", "SC", "SU", "SP"])
    broken = rng.randrange(14)
    ip = {"flags": rng.choice(["DF", 0, "MF"]) if broken == 2 else rng.choice(["DF", 0]),
          "frag": rng.randrange(1, 8) if broken == 3 else 0}
    if broken == 4:
        ip["len"] = rng.randrange(65536)
    tcp = {"dataofs": rng.randrange(16)} if broken == 5 else {}
    packet = (Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
              / IP(src=f"10.0.0.{rng.randrange(2, 250)}", dst=LOCAL, id=rng.randrange(65536),
                   tos=rng.randrange(256), **ip)
              / TCP(sport=rng.randrange(1024, 65536), dport=rng.choice([LISTENING, CLOSED]),
                    seq=rng.getrandbits(32), window=rng.randrange(65536), flags=flags,
                    options=options, **tcp)
              / (rng.randbytes(rng.choice([1, 7, 100])) if broken == 6 else b""))
    frame = bytearray(bytes(packet))
    if broken == 0:
        frame[rng.randrange(14, len(frame))] ^= 1 << rng.randrange(8)    # a checksum fails
    elif broken == 1:
        frame = frame[:rng.randrange(34, len(frame))]                   # truncated
    elif broken == 7:
        frame += bytes(rng.randrange(1, 8))                             # Ethernet padding
    return bytes(frame)


def counters(p: P4tasPipeline) -> list:
    v = p.verdict
    return [c.packets[:] + c.bytes[:] for c in (v.exception_counter, v.drop_counter,
                                                  v.cookies_sent)]


@pytest.mark.parametrize("seed", [1, 2])
def test_the_syn_lane_and_the_long_way_agree(seed: int,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    rng, now = random.Random(seed), [0]
    monkeypatch.setattr(packet_io.time, "monotonic_ns", lambda: now[0] * 1000)
    assert syn_lane.time is packet_io.time   # both ways read the meter's clock from here
    fast, slow = pipeline(True), pipeline(False)
    taken = 0
    for i in range(PACKETS):
        frame, port = syn(rng), rng.choice([1, 1, 1, 2, HOST_PORT, CPU_PORT])
        now[0] += rng.choice([1, 100, 1000, 5000])
        if port == CPU_PORT:
            frame = b"\x00\x80" + frame   # a PacketOut to port 1
        taken += syn_lane.maybe_syn(port, frame) and syn_lane._well_formed(frame) is not None
        assert fast.process(port, frame, now[0]) == slow.process(port, frame, now[0]), i
    assert counters(fast) == counters(slow)
    meter = "P4tasIngress.verdict.punt_rate"
    assert vars(fast.state.meters[meter].rates[REASON_SYN][0]) == \
        vars(slow.state.meters[meter].rates[REASON_SYN][0])
    cookies, punted = fast.verdict.cookies_sent.packets[0], \
        fast.verdict.exception_counter.packets[REASON_SYN]
    assert taken > PACKETS / 5 and cookies > 30 and punted > 30   # each way was taken
