"""End to end under real packet loss: nftables drops a random share of the TCP segments that
enter and leave the Linux peer's namespace (bmv2_env.impairments; the kernel here has no
sch_netem for `tc netem`), so both p4tas's data and the peer's data and ACKs are lost. Loss
recovery (fast retransmit in the NIC, go-back-N, retransmission timeouts in the runtime) must
deliver every byte: SHA-256 of both streams is compared. And fairness: flows that share a
bottleneck (a token bucket on the wire) each get their share.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import host_lib
from bmv2_env import impairments
from tests.support.e2e_helpers import (
    LINUX_STREAM_CLIENT, MIB, PORT, Worker, json_result, linux_echo_server, p4tas_echo,
    p4tas_listener, recv_exactly, settled_stats, sha, stats, host_lib_stack)
from tests.support.stack import REPO, Stack

RUNTIME_ARGS = ["--time-wait", "0.5", "--min-rto", "0.05"]
VOLUME = 10 * MIB
MESSAGE = 64 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not impairments.nft_available():
        pytest.skip("packet loss needs the nft command (apt-get install nftables)")
    yield from host_lib_stack(tmp_path_factory, RUNTIME_ARGS)


@pytest.fixture(autouse=True)
def no_loss_left(stack: Stack):
    yield
    impairments.clear_loss(stack.peer)


@pytest.mark.parametrize("percent", [0.1, 1.0, 5.0])
def test_10_mib_each_way_under_loss(stack: Stack, percent: float) -> None:
    """A Linux client streams 10 MiB to a p4tas echo server and reads the echo, with
    `percent` % of segments lost in each direction."""
    impairments.set_loss(stack.peer, percent)
    before = stats(stack)
    with p4tas_listener(stack) as listener:
        server = Worker(lambda: p4tas_echo(listener.accept()[0], MESSAGE))
        server.start()
        client = stack.linux(LINUX_STREAM_CLIENT, stack.peer.local_ip, str(PORT), str(VOLUME),
                             str(MESSAGE), "42")
        report = json_result(client, timeout=240)
        echoed, echoed_sha = server.result(timeout=30)
    lost = impairments.loss_counts(stack.peer)
    after = settled_stats(stack)
    print(f"loss {percent}%: {lost.peer_in} segments to the peer and {lost.peer_out} from it "
          f"dropped; fast retransmits "
          f"{after.get('fast_retransmits', 0) - before.get('fast_retransmits', 0)}, timeouts "
          f"{after.get('rto_timeouts', 0) - before.get('rto_timeouts', 0)}")
    assert report["errors"] == [] and report["got"] == VOLUME, report
    assert echoed == VOLUME and echoed_sha == report["sent_sha"]  # Linux -> p4tas
    assert report["got_sha"] == report["sent_sha"]  # p4tas -> Linux
    if percent >= 1:
        assert lost.peer_in > 0 and lost.peer_out > 0, lost  # the loss was real
    assert after["connections"] == 0 and after["flows_in_use"] == 0, after


def test_lost_tail_segment_is_recovered_by_timeout(stack: Stack) -> None:
    """The only segment of a request is lost: no duplicate ACK can follow, so only the
    retransmission timeout recovers it."""
    server = linux_echo_server(stack, 7002)
    request = os.urandom(300)
    impairments.drop_first_segment(stack.peer, src_ip=stack.peer.local_ip)
    before = stats(stack)
    with host_lib.socket() as s:
        s.settimeout(20)
        s.connect((stack.peer.peer_ip, 7002))
        s.sendall(request)
        assert recv_exactly(s, len(request)) == request
        s.shutdown(host_lib.SHUT_WR)
        assert s.recv(1) == b""
        port = s.getsockname()[1]
    assert impairments.loss_counts(stack.peer).peer_in == 1
    echoed, echoed_sha, error = json_result(server)[str(port)]
    assert error is None and echoed_sha == sha(request)
    after = stats(stack)
    assert after.get("rto_timeouts", 0) - before.get("rto_timeouts", 0) >= 1, after


# ---------------------------------------------------------------------------------- fairness

FAIR_FLOWS = 16
FAIR_SECONDS = 4.0
BOTTLENECK_MBIT = 20
PEER_SCRIPT = str(REPO / "bench" / "transfer_peer.py")


def jain(values: list[float]) -> float:
    """Jain's fairness index: 1.0 when all are equal, 1/n when one takes everything."""
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))


def test_jain_index() -> None:
    assert jain([5, 5, 5, 5]) == 1.0
    assert jain([1, 0, 0, 0]) == 0.25


def test_16_flows_share_a_bottleneck(stack: Stack) -> None:
    """16 p4tas flows (rate-based DCTCP, paced) into one Linux sink through a 20 Mbit/s token
    bucket on the switch's side of the wire: every flow gets its share and every byte it
    sent; Jain's index over the delivered bytes is printed."""
    switch_side = stack.peer.ifname.removesuffix("p")
    impairments.set_bottleneck(switch_side, BOTTLENECK_MBIT)
    try:
        sink = stack.linux(f"import runpy, sys; sys.argv = ['transfer_peer', 'sink', 'linux', "
                           f"'{stack.peer.peer_ip}', '7003', '--timeout', '60']; "
                           f"runpy.run_path('{PEER_SCRIPT}', run_name='__main__')")
        assert sink.stdout.readline().strip() == "listening"
        flows = subprocess.run(
            [sys.executable, PEER_SCRIPT, "flows", "p4tas", stack.peer.peer_ip, "7003",
             "--conns", str(FAIR_FLOWS), "--seconds", str(FAIR_SECONDS), "--timeout", "60",
             "--deadline", "30"], capture_output=True, text=True, timeout=150,
            env={**os.environ, "PYTHONPATH": str(REPO)})
        sink.terminate()
        sink.communicate(timeout=10)
    finally:
        impairments.clear_bottleneck(switch_side)
    assert flows.returncode == 0, flows.stderr
    report = json.loads(flows.stdout.strip().splitlines()[-1])["flows"]
    assert [f["status"] for f in report] == ["ok"] * FAIR_FLOWS, (report, stats(stack))
    delivered = [f["delivered"] for f in report]
    assert delivered == [f["sent"] for f in report]  # the sink counted every byte sent
    goodput = sum(delivered) * 8 / FAIR_SECONDS / 1e6
    index = jain(delivered)
    print(f"fairness: {FAIR_FLOWS} flows through {BOTTLENECK_MBIT} Mbit/s: Jain's index "
          f"{index:.3f}, total {goodput:.1f} Mbit/s, per flow "
          f"{min(delivered) / 1e3:.0f}..{max(delivered) / 1e3:.0f} kB")
    assert min(delivered) > 0, delivered  # nobody starves
