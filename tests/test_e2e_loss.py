"""End to end under real packet loss: nftables drops a random share of the TCP segments that
enter and leave the Linux peer's namespace (bmv2_env.impairments; the kernel here has no
sch_netem for `tc netem`), so both p4tas's data and the peer's data and ACKs are lost. Loss
recovery (fast retransmit in the NIC, go-back-N, retransmission timeouts in the runtime) must
deliver every byte: SHA-256 of both streams is compared.
"""

from __future__ import annotations

import importlib
import os

import pytest

import host_lib
from bmv2_env import impairments
from tests.e2e_helpers import (
    LINUX_STREAM_CLIENT, MIB, PORT, Worker, json_result, linux_echo_server, p4tas_echo,
    p4tas_listener, recv_exactly, settled_stats, sha, stats)
from tests.stack import Stack, stack_fixture

RUNTIME_ARGS = ["--time-wait", "0.5", "--min-rto", "0.05"]
VOLUME = 10 * MIB
MESSAGE = 64 * 1024


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if not impairments.nft_available():
        pytest.skip("packet loss needs the nft command (apt-get install nftables)")
    gen = stack_fixture(tmp_path_factory, RUNTIME_ARGS)
    stack = next(gen)
    os.environ["P4TAS_CONTROL_SOCKET"] = str(stack.socket_path)
    try:
        yield stack
    finally:
        importlib.import_module("host_lib.socket").close_session()
        os.environ.pop("P4TAS_CONTROL_SOCKET", None)
        next(gen, None)


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
