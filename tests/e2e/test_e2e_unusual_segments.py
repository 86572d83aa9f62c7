"""End to end: segments of an established flow that the fast path cannot parse as they are
(urgent data, IPv4 options) do not stall the flow: the slow path rebuilds them and hands
them back (runtime/normalize.py). Every byte is checked by SHA-256."""

from __future__ import annotations

import random

import pytest

from tests.support.e2e_helpers import (PORT, host_lib_stack, json_result, p4tas_listener,
                               recv_until_eof, sha, stats)
from tests.support.stack import Stack

# A Linux client: connects (with IPv4 options on every segment if asked), sends `before`
# bytes, one urgent byte (MSG_OOB: URG set, if asked), `after` bytes, and closes.
LINUX_CLIENT = """
import json, random, socket, sys
host, port, ip_options, urgent = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4] == "1"
data = random.Random(12).randbytes(200_000)
s = socket.socket()
if ip_options:
    # Four NOPs, padded by EOL: every segment carries 4 bytes of IPv4 options (ihl 6).
    s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 1, 1, 0]))
s.settimeout(30)
s.connect((host, port))
s.sendall(data[:100_000])
if urgent:
    s.send(b"!", socket.MSG_OOB)
s.sendall(data[100_000:])
s.close()
print(json.dumps({"sent": 200_001 if urgent else 200_000}), flush=True)
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    yield from host_lib_stack(tmp_path_factory, ["--time-wait", "0.5"])


@pytest.mark.parametrize("ip_options,urgent", [(False, True), (True, False)],
                         ids=["urgent-data", "ipv4-options"])
def test_unusual_segments_are_delivered(stack: Stack, ip_options: bool, urgent: bool) -> None:
    before = stats(stack).get("segments_normalized", 0)
    data = random.Random(12).randbytes(200_000)
    expected = data[:100_000] + (b"!" if urgent else b"") + data[100_000:]
    with p4tas_listener(stack, PORT) as listener:
        client = stack.linux(LINUX_CLIENT, stack.peer.local_ip, str(PORT),
                             "1" if ip_options else "0", "1" if urgent else "0")
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            got = recv_until_eof(conn)
        report = json_result(client)
    assert report == {"sent": len(expected)}
    assert sha(got) == sha(expected)  # the urgent byte inline, in its place (RFC 6093)
    assert stats(stack).get("segments_normalized", 0) > before
