"""host_lib.streams (asyncio open_connection / start_server) against a fake in-process runtime
(tests/support/host_lib_fake.py)."""

from __future__ import annotations

import asyncio

import pytest

import host_lib
from host_lib import control_protocol as cp
from tests.support import host_lib_fake
from tests.support.host_lib_fake import LAYOUT, LOCAL, PEER

make_fake = host_lib_fake.make_fake  # the fixtures
fake = host_lib_fake.fake


def test_asyncio_open_connection(fake):
    async def main() -> None:
        reader, writer = await host_lib.open_connection(*PEER)
        assert writer.get_extra_info("peername") == PEER
        assert writer.get_extra_info("sockname") == LOCAL
        slot = fake.conn_slots[101]
        fake.deliver(slot, b"line one\nrest")
        assert await reader.readline() == b"line one\n"
        fake.deliver(slot, b"12345")
        assert await reader.readexactly(6) == b"rest12"
        assert await reader.read(100) == b"345"
        writer.write(b"a" * (3 * LAYOUT.tx_ring_size))  # more than the ring: buffered
        drained = asyncio.ensure_future(writer.drain())
        await asyncio.sleep(0.05)
        received = bytearray()
        while len(received) < 3 * LAYOUT.tx_ring_size:
            received += fake.take_tx(slot)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(drained, 5)
        assert received == b"a" * (3 * LAYOUT.tx_ring_size)
        fake.send(cp.PeerClosed(ctx_id=0, conn_id=101))
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        await asyncio.wait_for(writer.wait_closed(), 5)
        assert fake.wait_for(cp.Close).conn_id == 101
    asyncio.run(main())


def test_asyncio_refused_and_reset(make_fake):
    fake = make_fake(connect="refused")

    async def main() -> None:
        with pytest.raises(ConnectionRefusedError):
            await host_lib.open_connection(*PEER)
        fake.connect_mode = "ok"
        reader, writer = await host_lib.open_connection(*PEER)
        conn_id = max(fake.conn_slots)
        fake.send(cp.ConnectionReset(ctx_id=0, conn_id=conn_id, message="reset"))
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 5)
        writer.close()
    asyncio.run(main())


def test_asyncio_start_server(fake):
    async def main() -> None:
        done = asyncio.get_running_loop().create_future()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            data = await reader.readexactly(4)
            writer.write(data.upper())
            await writer.drain()
            writer.close()
            await writer.wait_closed()
            done.set_result(writer.get_extra_info("peername"))

        server = await host_lib.start_server(handle, "0.0.0.0", 8080)
        assert fake.wait_for(cp.Listen).port == 8080
        async with server:
            conn_id, slot = fake.incoming()
            fake.deliver(slot, b"ping")
            assert await asyncio.wait_for(done, 5) == PEER
            assert fake.take_tx(slot) == b"PING"
        assert fake.wait_for(cp.CloseListener).listener_id == 1
    asyncio.run(main())


def test_asyncio_data_and_eof_that_arrive_together_are_both_read(fake):
    """The peer's last bytes and its FIN in one segment (a reply, then close): the service
    that moves the bytes must report the EOF too, else read() waits for an event that never
    comes (bench-cc's asyncio flows waited 30 s for the sink's count)."""
    async def main() -> None:
        reader, writer = await host_lib.open_connection(*PEER)
        slot = fake.conn_slots[max(fake.conn_slots)]
        await asyncio.sleep(0.05)   # the transport's first service is done
        fake.deliver(slot, b"917504\n", wake=False)   # PeerClosed wakes: one service
        fake.send(cp.PeerClosed(ctx_id=0, conn_id=max(fake.conn_slots)))
        assert await asyncio.wait_for(reader.read(), 5) == b"917504\n"
        writer.close()
    asyncio.run(main())
