"""End to end: ECN as TAS uses it (RFC 3168), against the Linux stack with a marking
bottleneck (nftables sets CE on a share of the ECN-capable segments, as an AQM would).

Both handshakes negotiate ECN; once negotiated our data leaves ECT(0), the peer's ECE on
ACKs reaches DCTCP (the flow's ECE-marked bytes), and we set CWR on the next new data. In the
other direction a Linux sender's CE-marked data is echoed with ECE and Linux answers with CWR.
Our ACKs keep ECE from a mark until Linux's CWR (RFC 3168 6.1.3), and our TSval ticks at
about 1 per ms (RFC 7323 5.4). A peer that does not negotiate ECN gets Not-ECT data. Every byte is checked by SHA-256, and
the close on the wire is FIN, not RST.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

import host_lib
from bmv2_env import impairments
from bmv2_env.peers import run_in
from tests.support.e2e_helpers import (CAPTURE_LOOP, MIB, PORT, WIRE_CAPTURE, WireCapture,
                               assert_fins_no_rst, expect_line, host_lib_stack, json_result,
                               linux_sink, p4tas_listener, recv_until_eof, send_and_close, sha,
                               sink_got)
from tests.support.stack import REPO, Stack

MARK_PERCENT = 5.0
VOLUME = 4 * MIB

LINUX_SENDER = """
import random, socket, sys
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
s.sendall(random.Random(9).randbytes(size))
s.close()
print("sent", flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not impairments.nft_available():
        pytest.skip("ECN marking needs nft (Debian package nftables; `make setup` installs it)")
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5"])


@pytest.fixture
def peer_ecn(stack: Stack):
    """Set the Linux peer's net.ipv4.tcp_ecn for one test, then restore it."""
    def sysctl(*args: str) -> str:
        done = run_in(stack.peer, ["sysctl", "-n", *args], capture_output=True, text=True,
                      check=True)
        return done.stdout.strip()
    before = sysctl("net.ipv4.tcp_ecn")
    yield lambda value: sysctl("-w", f"net.ipv4.tcp_ecn={value}")
    sysctl("-w", f"net.ipv4.tcp_ecn={before}")
    impairments.clear_ecn_marking(stack.peer)


def flow_row(stack: Stack, peer_port: int) -> dict:
    done = subprocess.run([sys.executable, "-m", "runtime", "flows", "--json", "--port",
                           str(peer_port), "--control-socket", str(stack.socket_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=30, check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 1, rows
    return rows[0]


def test_p4tas_sender_negotiates_ecn_and_hears_ece(stack: Stack, peer_ecn) -> None:
    peer_ecn(2)   # Linux's default: ECN when the other side asks for it
    port = 7401
    data = random.Random(8).randbytes(VOLUME)
    sink = linux_sink(stack, port)
    impairments.set_ecn_marking(stack.peer, MARK_PERCENT)
    wire = WireCapture(stack, port)
    with host_lib.socket() as s:
        s.settimeout(60)
        s.connect((stack.peer.peer_ip, port))
        s.sendall(data)
        ours = s.getsockname()[1]
        # Everything is acknowledged before the look: the feedback has reached the runtime.
        row = flow_row(stack, ours)
    report = json_result(sink)
    seen = wire.stop()
    assert report == sink_got(data)
    assert seen["from_p4tas"].get("SYN_ECE") and seen["to_p4tas"].get("SYN_ECE"), seen
    assert seen["from_p4tas"].get("ECT", 0) > VOLUME // 1448 // 2, seen  # our data is ECT(0)
    assert seen["to_p4tas"].get("ECE"), seen       # the marks came back ...
    assert seen["from_p4tas"].get("CWR"), seen     # ... and we answered them
    assert row["ece_bytes"] > 0, row               # what DCTCP reads each interval
    assert_fins_no_rst(seen)


# WIRE_CAPTURE's counts and, under "log", every segment in capture order: [time (s),
# from_p4tas, seq, ack, flags, ECN codepoint, payload length, TSval or null].
LOGGED_CAPTURE = WIRE_CAPTURE[:-len(CAPTURE_LOOP)] + """
log = []
count = seen
def tsval_of(options):
    i = 0
    while i < len(options) and options[i] != 0:
        if options[i] == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            return None
        if options[i] == 8 and options[i + 1] == 10:
            return struct.unpack("!I", options[i + 2:i + 6])[0]
        i += options[i + 1]
    return None
def seen(side, ip, ihl):
    count(side, ip, ihl)
    seq, ack = struct.unpack("!II", ip[ihl + 4:ihl + 12])
    doff = (ip[ihl + 12] >> 4) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    log.append([time.monotonic(), side == "from_p4tas", seq, ack, ip[ihl + 13], ip[1] & 3,
                total - ihl - doff, tsval_of(ip[ihl + 20:ihl + doff])])
counted = report
def report():
    return {**counted(), "log": log}
""" + CAPTURE_LOOP


def linux_sends_marked(stack: Stack, script: str, log: bool = False) -> tuple[bytes, dict]:
    """A Linux sender (`script`) sends VOLUME bytes to a p4tas listener through the CE-marking
    bottleneck; what arrived, and the wire capture."""
    impairments.set_ecn_marking(stack.peer, MARK_PERCENT)
    with p4tas_listener(stack, PORT) as listener:
        wire = WireCapture(stack, PORT, LOGGED_CAPTURE if log else WIRE_CAPTURE)
        client = stack.linux(script, stack.peer.local_ip, str(PORT), str(VOLUME))
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(60)
            got = recv_until_eof(conn)
        expect_line(client, "sent")
        return got, wire.stop()


def test_linux_sender_gets_ece_and_answers_with_cwr(stack: Stack, peer_ecn) -> None:
    peer_ecn(1)   # Linux asks for ECN on its own connections
    data = random.Random(9).randbytes(VOLUME)
    got, seen = linux_sends_marked(stack, LINUX_SENDER)
    assert sha(got) == sha(data)
    assert seen["to_p4tas"].get("SYN_ECE") and seen["from_p4tas"].get("SYN_ECE"), seen
    assert seen["to_p4tas"].get("ECT") and seen["to_p4tas"].get("CE"), seen
    assert seen["from_p4tas"].get("ECE"), seen    # CE echoed
    assert seen["to_p4tas"].get("CWR"), seen      # Linux reduced and said so
    assert_fins_no_rst(seen)


def test_a_peer_without_ecn_gets_not_ect_data(stack: Stack, peer_ecn) -> None:
    peer_ecn(0)
    port = 7402
    data = random.Random(10).randbytes(MIB)
    sink = linux_sink(stack, port)
    wire = WireCapture(stack, port)
    send_and_close(stack, port, data)
    report = json_result(sink)
    seen = wire.stop()
    assert report == sink_got(data)
    assert seen["from_p4tas"].get("SYN_ECE") and not seen["to_p4tas"].get("SYN_ECE"), seen
    assert not seen["from_p4tas"].get("ECT") and not seen["to_p4tas"].get("ECT"), seen

M32 = 0xFFFFFFFF
ACK, CWR, ECE = 0x10, 0x80, 0x40
CE = 3
TICK_MS = 1.024
LINUX_PAUSING_SENDER = """
import random, socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.create_connection((host, port), timeout=60)
data = random.Random(11).randbytes(size)
s.sendall(data[:size // 2])
time.sleep(0.5)   # an idle gap: our TSval keeps ticking at ~1/ms through it
s.sendall(data[size // 2:])
s.close()
print("sent", flush=True)
"""


def ece_owed(log: list, base: int) -> dict[int, bool]:
    """For each relative sequence a segment of the peer ends at: whether, once everything up
    to it arrived, the ECE echo is on (the last CE or CWR event by sequence was CE; a segment
    with both leaves it on)."""
    events: dict[int, bool] = {}
    for _, ours, seq, _, flags, codepoint, length, _ in log:
        if ours or length == 0:
            continue
        end = (seq - base + length) & M32
        if flags & CWR:
            events.setdefault(end, False)
        if codepoint == CE:
            events[end] = True
    return events


def check_ece_latch(log: list) -> tuple[int, int, int, int]:
    """(ACKs that owed ECE, of those without it, of those the ones that answer no mark
    directly (where per-segment echo would differ from latching), and of these with ECE).

    An ACK owes ECE when both orders agree that a CE mark is unanswered: by sequence (the
    last CE or CWR among the segments its ACK number covers was CE) and by arrival (the last
    CE or CWR captured before it was CE). The NIC, as Linux, takes a mark or a CWR when the
    segment arrives, even one it drops or places out of order; requiring both keeps such
    segments near an ACK from counting against it."""
    base = next(seq for _, ours, seq, _, flags, *_ in log if not ours and flags & 0x02) + 1
    events = sorted(ece_owed(log, base).items())
    marked_ends = {end for end, on in events if on}
    owed = missing = between = latched = 0
    arrived = False
    for _, ours, _, ack, flags, codepoint, length, _ in log:
        if not ours and length:
            arrived = (arrived and not flags & CWR) or codepoint == CE
            continue
        if not ours or not flags & ACK or length or flags & 0x03:
            continue
        rel = (ack - base) & M32
        last = [on for end, on in events if end <= rel]
        if last and last[-1] and arrived:
            owed += 1
            missing += not flags & ECE
            between += rel not in marked_ends
            latched += bool(flags & ECE) and rel not in marked_ends
    return owed, missing, between, latched


def tsval_rate(log: list) -> float:
    """Our TSval ticks per millisecond of capture time, first to last of our segments."""
    ours = [(t, tsval) for t, mine, *_, tsval in log if mine and tsval is not None]
    (t0, v0), (t1, v1) = ours[0], ours[-1]
    return ((v1 - v0) & M32) / ((t1 - t0) * 1000)


LATCH_RUNS = 5


def test_ece_latched_until_cwr_and_tsval_ticks_in_milliseconds(stack: Stack, peer_ecn) -> None:
    """RFC 3168 6.1.3: from the ACK of a CE-marked segment on, every ACK we send carries ECE
    until the segment with the sender's CWR (the capture's ACK numbers say which ACKs owe it,
    whatever the timing). RFC 7323 5.4: our TSval advances about once per millisecond
    (1.024 ms ticks), through an idle gap too."""
    peer_ecn(1)
    data = random.Random(11).randbytes(VOLUME)
    # Marks are random: a run may leave no ACK between a mark and a CWR, or only the one the
    # capture may see out of the NIC's order (tolerated below): then it says nothing of
    # latching, and another run is made.
    for _ in range(LATCH_RUNS):
        got, seen = linux_sends_marked(stack, LINUX_PAUSING_SENDER, log=True)
        assert sha(got) == sha(data)
        assert seen["to_p4tas"].get("CE") and seen["to_p4tas"].get("CWR"), seen["to_p4tas"]
        owed, missing, between, latched = check_ece_latch(seen["log"])
        if between - missing > 0:
            break
    assert owed > 0, "no ACK followed a CE mark"
    assert between > 0, f"no ACK fell between a mark and its CWR in {LATCH_RUNS} runs"
    # Every ACK between a mark and the CWR echoes it, not only the mark's own ACK. One may
    # differ: the capture sees a CWR segment and our ACK in an order the NIC may not have.
    assert missing <= 1 + owed // 100, f"{missing} of {owed} ACKs owed ECE and lacked it"
    assert latched >= between - missing > 0, "ECE only on marked segments' ACKs: not latched"
    rate = tsval_rate(seen["log"])
    assert 0.8 / TICK_MS <= rate <= 1.2 / TICK_MS, f"our TSval advanced {rate:.3f}/ms"
    assert_fins_no_rst({k: v for k, v in seen.items() if k != "log"})
