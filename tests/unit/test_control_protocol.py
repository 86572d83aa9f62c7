"""The host_lib <-> runtime control protocol: codec, framing, validation and socket helpers."""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import struct
import threading
import time

import pytest

import host_lib.control_protocol as cp

SAMPLES: list[cp.Message] = [
    cp.Hello(version=cp.PROTOCOL_VERSION, app_name="echo-server", pid=4242),
    cp.Bye(),
    cp.CreateContext(req_id=1),
    cp.Listen(req_id=2, ctx_id=7, local_ip="10.0.0.1", port=8080, backlog=128),
    cp.Listen(req_id=3, ctx_id=7, port=1, backlog=65535),
    cp.Connect(req_id=4, ctx_id=7, peer_ip="10.0.0.2", peer_port=65535, timeout_s=2.5),
    cp.Connect(req_id=5, ctx_id=7, peer_ip="10.0.0.2", peer_port=80, local_ip="10.0.0.1",
               local_port=40000, timeout_s=30.0),
    cp.Close(req_id=6, conn_id=12),
    cp.Shutdown(req_id=7, conn_id=12, how="wr"),
    cp.SetKeepalive(req_id=13, conn_id=12, enabled=True, idle_s=1, interval_s=32767, count=127),
    cp.SetKeepalive(req_id=14, conn_id=12, enabled=False),
    cp.CloseListener(req_id=8, listener_id=3),
    cp.GetStats(req_id=9),
    cp.Hello(version=cp.PROTOCOL_VERSION, app_name="p4tas-flows", pid=4243, monitor=True),
    cp.ListFlows(req_id=11),
    cp.ListFlows(req_id=12, after_conn_id=40, limit=1),
    cp.FlowList(req_id=11, flows=[cp.FlowInfo(
        conn_id=41, state="ESTABLISHED", local_ip="10.0.0.1", local_port=7, peer_ip="10.0.0.2",
        peer_port=40000, app="echo[12]", congestion="dctcp", bytes_sent=10, bytes_acked=10,
        bytes_received=20, rate_bps=1e7, rtt_us=420).to_dict()], more=True),
    cp.Accept(req_id=10, conn_id=4),
    cp.Kick(conn_id=4),
    cp.Wake(ctx_id=2),
    cp.HelloOk(app_id=3, version=1, shm_name="p4tas-app-3"),
    cp.Stats(req_id=9, counters={"flows_installed": 3, "connections": 0}),
    cp.HelloOk(app_id=1, version=cp.PROTOCOL_VERSION),
    cp.Ok(req_id=6),
    cp.Error(req_id=2, errno=errno.EADDRINUSE, message="port 8080 is in use"),
    cp.Error(errno=errno.EPROTONOSUPPORT, message="version 9 is not spoken here"),
    cp.ContextCreated(req_id=1, ctx_id=7),
    cp.Listening(req_id=2, listener_id=3, local_ip="0.0.0.0", port=8080),
    cp.Connecting(req_id=4, conn_id=cp.MAX_ID),
    cp.IncomingConnection(ctx_id=7, listener_id=3, conn_id=13, local_ip="10.0.0.1",
                          local_port=8080, peer_ip="10.0.0.2", peer_port=51000),
    cp.Connected(ctx_id=7, conn_id=12, local_ip="10.0.0.1", local_port=40000,
                 peer_ip="10.0.0.2", peer_port=80),
    cp.ConnectFailed(ctx_id=7, conn_id=12, errno=errno.ECONNREFUSED, message="RST in reply"),
    cp.PeerClosed(ctx_id=7, conn_id=12),
    cp.ConnectionReset(ctx_id=7, conn_id=12, message="RST from peer"),
    cp.Closed(ctx_id=7, conn_id=0),
    cp.ConnectionErrorEvent(ctx_id=7, conn_id=12, errno=errno.ETIMEDOUT,
                            message="retransmission timeout"),
]


def frame(obj: object) -> bytes:
    """A frame around arbitrary JSON, bypassing the message classes."""
    payload = json.dumps(obj).encode()
    return struct.pack("!I", len(payload)) + payload


def payload_of(obj: object) -> bytes:
    return json.dumps(obj).encode()


# --- codec ---

def test_samples_cover_every_registered_type() -> None:
    assert {type(m).TYPE for m in SAMPLES} == set(cp.MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).TYPE)
def test_round_trip(message: cp.Message) -> None:
    data = cp.encode(message)
    (length,) = struct.unpack("!I", data[:4])
    assert length == len(data) - 4
    if isinstance(message, (cp.Kick, cp.Wake)):
        assert length == cp.DOORBELL.size
    else:
        assert json.loads(data[4:])["type"] == message.TYPE
    assert cp.decode(data[4:]) == message


def test_doorbells_are_binary_and_checked_like_json_messages() -> None:
    """Kick and Wake, sent per request: a tag and a big-endian u64 id, no JSON."""
    assert cp.encode(cp.Kick(conn_id=5)) == b"\0\0\0\x09\x01" + (5).to_bytes(8, "big")
    assert cp.encode(cp.Wake(ctx_id=3)) == b"\0\0\0\x09\x02" + (3).to_bytes(8, "big")
    with pytest.raises(cp.ProtocolError, match="9 bytes"):
        cp.decode(b"\x01\0\0\0\x05")
    with pytest.raises(cp.ProtocolError, match="travels the other way"):
        cp.decode(cp.DOORBELL.pack(2, 3), cp.ClientMessage)   # a Wake sent by an application
    with pytest.raises(cp.ProtocolError, match="conn_id"):
        cp.decode(cp.DOORBELL.pack(1, 2**64 - 1), cp.ClientMessage)
    assert cp.FrameReader(cp.ClientMessage).feed(cp.encode(cp.Kick(conn_id=7)) * 2) == \
        [cp.Kick(conn_id=7)] * 2


def test_wire_form_is_the_documented_one() -> None:
    data = cp.encode(cp.Shutdown(req_id=9, conn_id=4, how="rdwr"))
    assert json.loads(data[4:]) == {"type": "Shutdown", "req_id": 9, "conn_id": 4, "how": "rdwr"}
    assert json.loads(cp.encode(cp.ConnectionErrorEvent(
        ctx_id=1, conn_id=2, errno=5, message="x"))[4:])["type"] == "ConnectionError"


def test_directions() -> None:
    client = {cp.Hello, cp.Bye, cp.CreateContext, cp.Listen, cp.Connect, cp.Close, cp.Shutdown,
              cp.CloseListener, cp.GetStats, cp.Accept, cp.Kick, cp.ListFlows, cp.SetKeepalive}
    for cls in cp.MESSAGE_TYPES.values():
        assert issubclass(cls, cp.ClientMessage) == (cls in client), cls
        assert issubclass(cls, cp.ServerMessage) == (cls not in client), cls


def test_a_full_flow_list_fits_one_frame() -> None:
    """MAX_FLOWS_PER_LIST rows with the longest app names and largest numbers still encode."""
    row = cp.FlowInfo(conn_id=cp.MAX_ID, state="CLOSE_WAIT", local_ip="255.255.255.255",
                      local_port=65535, peer_ip="255.255.255.255", peer_port=65535,
                      app="a" * cp.MAX_APP_NAME_CHARS + "[2147483647]", congestion="timely",
                      **{name: 2**63 - 1 for name in ("bytes_sent", "bytes_acked",
                         "bytes_received", "fast_retransmits", "rto_timeouts",
                         "retransmitted_bytes", "ece_bytes", "ooo_bytes", "rx_ring_fill",
                         "rx_ring_size", "tx_ring_fill", "tx_ring_size", "rtt_us")},
                      rate_bps=1.2345678901234567e300, keepalive_idle_s=32766.999999999996,
                      keepalive_interval_s=32766.999999999996, keepalive_count=127,
                      keepalive_probes=127, keepalive_heard_s=1.2345678901234567e300)
    message = cp.FlowList(req_id=cp.MAX_ID, flows=[row.to_dict()] * cp.MAX_FLOWS_PER_LIST,
                          more=True)
    assert cp.decode(cp.encode(message)[cp.FRAME_HEADER.size:]).rows()[0] == row
    with pytest.raises(cp.ProtocolError, match="at most"):
        cp.FlowList(req_id=1, flows=[row.to_dict()] * (cp.MAX_FLOWS_PER_LIST + 1))


def test_flow_rows_ignore_unknown_keys_and_reject_bad_ones() -> None:
    row = {"conn_id": 1, "state": "SYN_SENT", "local_ip": "10.0.0.1", "local_port": 1,
           "peer_ip": "10.0.0.2", "peer_port": 2, "added_later": 7}
    assert cp.FlowList(req_id=1, flows=[row]).rows()[0].conn_id == 1
    with pytest.raises(cp.ProtocolError, match="FlowInfo"):
        cp.FlowList(req_id=1, flows=[{"conn_id": 1}]).rows()
    with pytest.raises(cp.ProtocolError, match="flows"):
        cp.FlowList(req_id=1, flows=[[1, 2]])


@pytest.mark.parametrize("counters", [[1], {"a": -1}, {"a": 1.5}, {"a": True}, {1: 2}])
def test_bad_stats_counters(counters) -> None:
    with pytest.raises(cp.ProtocolError, match="counters"):
        cp.Stats(req_id=1, counters=counters)


def test_optional_fields_default_and_integers_become_floats() -> None:
    message = cp.decode(payload_of({"type": "Connect", "req_id": 1, "ctx_id": 2,
                                    "peer_ip": "10.1.2.3", "peer_port": 22, "timeout_s": 5}))
    assert message == cp.Connect(req_id=1, ctx_id=2, peer_ip="10.1.2.3", peer_port=22,
                                 timeout_s=5.0)
    assert isinstance(message.timeout_s, float)
    assert cp.decode(payload_of({"type": "Error", "errno": 22, "message": "bad"})).req_id is None


def test_unknown_fields_are_ignored() -> None:
    message = cp.decode(payload_of({"type": "Close", "req_id": 1, "conn_id": 2,
                                    "linger_s": 4, "future": {"nested": [1, 2]}}))
    assert message == cp.Close(req_id=1, conn_id=2)


def test_text_is_clipped_and_any_string_survives() -> None:
    long = cp.Error(req_id=1, errno=errno.EINVAL, message="x" * 100_000)
    assert len(long.message) == cp.MAX_TEXT_CHARS
    odd = cp.Error(req_id=1, errno=errno.EINVAL, message="caf\u00e9 \ud800 \U0001f600")
    assert cp.decode(cp.encode(odd)[4:]) == odd


def test_expected_direction_is_enforced() -> None:
    payload = cp.encode(cp.Ok(req_id=5))[4:]
    with pytest.raises(cp.ProtocolError, match="Ok is not a message the application sends") as info:
        cp.decode(payload, cp.ClientMessage)
    assert info.value.req_id == 5
    assert cp.decode(cp.encode(cp.Bye())[4:], cp.ClientMessage) == cp.Bye()


# --- bad frames ---

BAD_PAYLOADS = [
    (b"", "not UTF-8 JSON"),
    (b"{\"type\": \"Bye\"", "not UTF-8 JSON"),
    (b"\xff\xfe{}", "not UTF-8 JSON"),
    (b"{\"type\":\"Connect\",\"timeout_s\":NaN}", "NaN is not valid JSON"),
    (b"[" * 50_000 + b"]" * 50_000, "nested too deeply"),
    (payload_of([1, 2]), "a JSON list, not an object"),
    (payload_of("Hello"), "a JSON str, not an object"),
    (payload_of({"req_id": 1}), "no \"type\" string"),
    (payload_of({"type": 3}), "no \"type\" string"),
    (payload_of({"type": "AllocateRings", "req_id": 1}), "unknown message type 'AllocateRings'"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1}), "lacks field\\(s\\) port, backlog"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": 0, "backlog": 1}),
     "Listen.port = 0 is invalid: it must be an integer in 1..65535"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": 80, "backlog": 0}),
     "Listen.backlog = 0 is invalid"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": 65536, "backlog": 1}),
     "Listen.port = 65536"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": "80", "backlog": 1}),
     "Listen.port = '80' is invalid"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": True, "backlog": 1}),
     "Listen.port = True is invalid"),
    (payload_of({"type": "Listen", "req_id": 1, "ctx_id": 1, "port": 80, "backlog": 1,
                 "local_ip": "10.0.0.256"}), "local_ip = '10.0.0.256' is invalid: it must be an "
                                             "IPv4 address in dotted-quad form.*\\(or null\\)"),
    (payload_of({"type": "Connect", "req_id": 1, "ctx_id": 1, "peer_ip": 167772161,
                 "peer_port": 80, "timeout_s": 1}), "peer_ip = 167772161 is invalid"),
    (payload_of({"type": "Connect", "req_id": 1, "ctx_id": 1, "peer_ip": "::1",
                 "peer_port": 80, "timeout_s": 1}), "peer_ip = '::1' is invalid"),
    (payload_of({"type": "Connect", "req_id": 1, "ctx_id": 1, "peer_ip": "10.0.0.1",
                 "peer_port": 80, "timeout_s": 0}), "timeout_s = 0 is invalid"),
    (b"{\"type\":\"Connect\",\"req_id\":1,\"ctx_id\":1,\"peer_ip\":\"10.0.0.1\","
     b"\"peer_port\":80,\"timeout_s\":1e999}", "timeout_s = inf is invalid"),
    (payload_of({"type": "Shutdown", "req_id": 1, "conn_id": 1, "how": "both"}),
     "Shutdown.how = 'both' is invalid: it must be one of 'rd', 'wr', 'rdwr'"),
    (payload_of({"type": "Close", "req_id": -1, "conn_id": 1}), "Close.req_id = -1"),
    (payload_of({"type": "Close", "req_id": 1, "conn_id": 2**63}), "Close.conn_id"),
    (payload_of({"type": "Hello", "version": 1, "app_name": "", "pid": 1}), "Hello.app_name"),
    (payload_of({"type": "Error", "errno": 0, "message": "?"}), "Error.errno = 0"),
]


@pytest.mark.parametrize("payload, words", BAD_PAYLOADS)
def test_bad_payloads_raise_protocol_error(payload: bytes, words: str) -> None:
    with pytest.raises(cp.ProtocolError, match=words) as info:
        cp.decode(payload)
    assert not isinstance(info.value, cp.FramingError)


def test_protocol_error_carries_req_id_for_the_error_reply() -> None:
    with pytest.raises(cp.ProtocolError) as info:
        cp.decode(payload_of({"type": "Listen", "req_id": 41, "ctx_id": 1, "port": 0,
                              "backlog": 1}))
    reply = cp.Error.from_protocol_error(info.value)
    assert (reply.req_id, reply.errno) == (41, errno.EPROTO)
    assert "Listen.port" in reply.message
    with pytest.raises(cp.ProtocolError) as info:
        cp.decode(payload_of({"type": "Nope", "req_id": "41"}))
    assert info.value.req_id is None


def test_invalid_message_cannot_be_built() -> None:
    with pytest.raises(cp.ProtocolError, match="Listen.port = 70000"):
        cp.Listen(req_id=1, ctx_id=1, port=70000, backlog=1)
    with pytest.raises(ValueError):
        cp.Connect(req_id=1, ctx_id=1, peer_ip="host.example", peer_port=1, timeout_s=1)


def test_oversize_message_cannot_be_encoded() -> None:
    hello = cp.Hello(version=1, app_name="a" * cp.MAX_APP_NAME_CHARS, pid=1)
    assert len(cp.encode(hello)) < cp.MAX_FRAME_BYTES
    with pytest.raises(cp.ProtocolError, match="Hello.app_name"):
        cp.Hello(version=1, app_name="a" * (cp.MAX_APP_NAME_CHARS + 1), pid=1)


# --- FrameReader ---

def test_frame_reader_byte_by_byte() -> None:
    stream = b"".join(cp.encode(m) for m in SAMPLES)
    reader = cp.FrameReader()
    got: list[cp.Message] = []
    for index in range(len(stream)):
        got += reader.feed(stream[index:index + 1])
    assert got == SAMPLES
    assert reader.pending_bytes == 0


def test_frame_reader_many_frames_in_one_chunk_and_a_partial_tail() -> None:
    stream = b"".join(cp.encode(m) for m in SAMPLES)
    tail = cp.encode(cp.Bye())
    reader = cp.FrameReader()
    assert reader.feed(stream + tail[:3]) == SAMPLES
    assert reader.pending_bytes == 3
    assert reader.feed(memoryview(tail[3:])) == [cp.Bye()]
    assert reader.feed(b"") == []


def test_frame_reader_keeps_order_around_a_bad_frame() -> None:
    good = [cp.Ok(req_id=1), cp.Ok(req_id=2)]
    bad = frame({"type": "Close", "req_id": 3, "conn_id": "x"})
    reader = cp.FrameReader()
    with pytest.raises(cp.ProtocolError, match="Close.conn_id") as info:
        reader.feed(cp.encode(good[0]) + cp.encode(good[1]) + bad + cp.encode(cp.Ok(req_id=4)))
    assert info.value.decoded_before == good
    assert info.value.req_id == 3
    assert reader.feed(b"") == [cp.Ok(req_id=4)]


def test_frame_reader_rejects_oversize_before_buffering_it() -> None:
    reader = cp.FrameReader()
    assert reader.feed(cp.encode(cp.Bye())[:2]) == []
    header = struct.pack("!I", cp.MAX_FRAME_BYTES + 1)
    with pytest.raises(cp.FramingError, match="exceeds the 65536-byte limit.*close the conn"):
        reader.feed(cp.encode(cp.Bye())[2:] + header)
    with pytest.raises(cp.FramingError):
        reader.feed(cp.encode(cp.Bye()))


def test_frame_reader_enforces_direction() -> None:
    reader = cp.FrameReader(expect=cp.ServerMessage)
    with pytest.raises(cp.ProtocolError, match="Bye is not a message the daemon sends"):
        reader.feed(cp.encode(cp.Bye()))


def test_max_size_frame_is_accepted() -> None:
    body = {"type": "Bye", "pad": ""}
    body["pad"] = "p" * (cp.MAX_FRAME_BYTES - len(json.dumps(body).encode()))
    data = frame(body)
    assert len(data) == cp.MAX_FRAME_BYTES + 4
    assert cp.FrameReader().feed(data) == [cp.Bye()]


# --- blocking helpers ---

@pytest.fixture
def pair():
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    left.settimeout(10)
    right.settimeout(10)
    yield left, right
    left.close()
    right.close()


def test_blocking_round_trip(pair) -> None:
    left, right = pair
    for message in SAMPLES:
        cp.send_message(left, message)
    assert [cp.recv_message(right) for _ in SAMPLES] == SAMPLES


def test_blocking_recv_reassembles_trickled_bytes(pair) -> None:
    left, right = pair
    data = cp.encode(SAMPLES[3]) + cp.encode(SAMPLES[5])

    def trickle() -> None:
        for index in range(len(data)):
            left.send(data[index:index + 1])
            time.sleep(0.0005)

    sender = threading.Thread(target=trickle)
    sender.start()
    assert cp.recv_message(right) == SAMPLES[3]
    assert cp.recv_message(right) == SAMPLES[5]
    sender.join()


def test_blocking_send_larger_than_socket_buffer(pair) -> None:
    left, right = pair
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    right.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    big = [cp.Error(req_id=n, errno=errno.EIO, message="\u2603" * cp.MAX_TEXT_CHARS)
           for n in range(40)]  # ~6 KiB each as \uXXXX escapes, ~240 KiB in all
    sender = threading.Thread(target=lambda: [cp.send_message(left, m) for m in big])
    sender.start()
    assert [cp.recv_message(right) for _ in big] == big
    sender.join()


def test_blocking_eof_between_and_inside_frames(pair) -> None:
    left, right = pair
    left.sendall(cp.encode(cp.Bye()) + cp.encode(cp.Ok(req_id=1))[:7])
    left.close()
    assert cp.recv_message(right) == cp.Bye()
    with pytest.raises(cp.ConnectionClosed, match="inside a frame"):
        cp.recv_message(right)
    with pytest.raises(cp.ConnectionClosed, match="closed the control connection$"):
        cp.recv_message(right)


def test_blocking_oversize_and_bad_frames(pair) -> None:
    left, right = pair
    left.sendall(frame({"type": "Bogus"}) + struct.pack("!I", 2**32 - 1))
    with pytest.raises(cp.ProtocolError, match="unknown message type 'Bogus'"):
        cp.recv_message(right)
    with pytest.raises(cp.FramingError, match="4294967295 exceeds"):
        cp.recv_message(right)


def test_connection_closed_is_an_oserror() -> None:
    assert issubclass(cp.ConnectionClosed, ConnectionError)
    assert issubclass(cp.FramingError, cp.ProtocolError)
    assert issubclass(cp.ProtocolError, ValueError)


# --- asyncio helpers ---

def test_asyncio_round_trip_over_a_unix_socket(tmp_path) -> None:
    async def scenario() -> None:
        received: list[cp.Message] = []
        done = asyncio.Event()

        async def daemon(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            hello = await cp.read_message(reader, cp.ClientMessage)
            received.append(hello)
            await cp.write_message(writer, cp.HelloOk(app_id=3, version=cp.PROTOCOL_VERSION))
            try:
                while True:
                    received.append(await cp.read_message(reader, cp.ClientMessage))
            except cp.ConnectionClosed:
                pass
            writer.close()
            done.set()

        path = str(tmp_path / "control.sock")
        server = await asyncio.start_unix_server(daemon, path)
        reader, writer = await asyncio.open_unix_connection(path)
        sent = [m for m in SAMPLES if isinstance(m, cp.ClientMessage) and m.TYPE != "Hello"]
        await cp.write_message(writer, SAMPLES[0])
        assert await cp.read_message(reader, cp.ServerMessage) == cp.HelloOk(app_id=3, version=cp.PROTOCOL_VERSION)
        for message in sent:
            await cp.write_message(writer, message)
        writer.close()
        await writer.wait_closed()
        await asyncio.wait_for(done.wait(), 10)
        server.close()
        await server.wait_closed()
        assert received == [SAMPLES[0], *sent]

    asyncio.run(scenario())


def test_asyncio_partial_and_bad_input() -> None:
    async def scenario() -> None:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        reader, writer = await asyncio.open_unix_connection(sock=right)
        data = cp.encode(SAMPLES[17])
        for index in range(0, len(data), 5):
            left.send(data[index:index + 5])
        left.send(frame({"type": "Closed", "ctx_id": 1}))
        left.send(struct.pack("!I", cp.MAX_FRAME_BYTES + 1))
        assert await cp.read_message(reader) == SAMPLES[17]
        with pytest.raises(cp.ProtocolError, match="Closed message lacks field\\(s\\) conn_id"):
            await cp.read_message(reader)
        with pytest.raises(cp.FramingError):
            await cp.read_message(reader)
        left.send(cp.encode(cp.Bye())[:6])
        left.close()
        with pytest.raises(cp.ConnectionClosed, match="inside a frame"):
            await cp.read_message(reader)
        writer.close()

    asyncio.run(scenario())


def test_asyncio_write_reaches_a_blocking_reader() -> None:
    async def scenario(sock: socket.socket) -> None:
        _, writer = await asyncio.open_unix_connection(sock=sock)
        for message in SAMPLES:
            await cp.write_message(writer, message)
        writer.close()
        await writer.wait_closed()

    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    right.settimeout(10)
    asyncio.run(scenario(left))
    assert [cp.recv_message(right) for _ in SAMPLES] == SAMPLES
    with pytest.raises(cp.ConnectionClosed):
        cp.recv_message(right)
    right.close()


# --- errors as exceptions ---

@pytest.mark.parametrize("code, exc_type", [
    (errno.ECONNREFUSED, ConnectionRefusedError),
    (errno.ETIMEDOUT, TimeoutError),
    (errno.ECONNRESET, ConnectionResetError),
    (errno.ECONNABORTED, ConnectionAbortedError),
    (errno.EPIPE, BrokenPipeError),
    (errno.EAGAIN, BlockingIOError),
    (errno.EADDRINUSE, OSError),
    (errno.EINVAL, OSError),
    (errno.EBADF, OSError),
])
def test_error_to_exception(code: int, exc_type: type[OSError]) -> None:
    exc = cp.Error(req_id=1, errno=code, message="what happened").to_exception()
    assert type(exc) is exc_type
    assert (exc.errno, exc.strerror) == (code, "what happened")
    event = cp.ConnectFailed(ctx_id=1, conn_id=2, errno=code, message="m")
    assert type(event.to_exception()) is exc_type
    event2 = cp.ConnectionErrorEvent(ctx_id=1, conn_id=2, errno=code, message="m")
    assert type(event2.to_exception()) is exc_type


def test_reset_and_empty_message_and_from_os_error() -> None:
    reset = cp.ConnectionReset(ctx_id=1, conn_id=2, message="RST").to_exception()
    assert isinstance(reset, ConnectionResetError) and reset.errno == errno.ECONNRESET
    assert cp.Error(errno=errno.EBADF, message="").to_exception().strerror == \
        "Bad file descriptor"
    reply = cp.Error.from_os_error(9, OSError(errno.EADDRINUSE, "port 80 taken"))
    assert reply == cp.Error(req_id=9, errno=errno.EADDRINUSE, message="port 80 taken")
    assert cp.Error.from_os_error(None, OSError("no errno")).errno == errno.EIO


# --- registry ---

def test_registry_rejects_duplicates_and_missing_type() -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True, kw_only=True)
    class Again(cp.ClientMessage):
        TYPE = "Bye"

    with pytest.raises(TypeError, match="already Bye"):
        cp.register(Again)

    @dataclass(frozen=True, kw_only=True)
    class Untyped(cp.ClientMessage):
        pass

    with pytest.raises(TypeError, match="own TYPE"):
        cp.register(Untyped)
    assert cp.MESSAGE_TYPES["Bye"] is cp.Bye


def test_host_lib_protocol_does_not_import_runtime() -> None:
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cp))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names]
    names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [name for name in names if name.split(".")[0] == "runtime"]
