"""`transfer_peer.py flows --asyncio`: the fairness flows on one asyncio loop instead of a
thread per flow. Thousands of threads made the load generator itself the bottleneck of a
2-core machine (4,096 flows: a load average of 20-40, RTTs of 0.5 s measured at the NIC);
the same code runs on Linux's and on p4tas's asyncio streams.

Each flow connects, waits until every flow has tried, sends for --seconds with nothing
buffered above the stack (the transport's high-water mark is 0, so `sent` counts what the
stack took, as a blocking send does), then half-closes and reads the sink's count. Writes are
of WRITE_BYTES: drain() returns once all of a write is in the stack, and a flow among 4,096
may have only 8 KiB there (p4tas's send budget), which a 64 KiB write would wait minutes for
where a blocking send returns what fitted."""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

WRITE_BYTES = 4096   # the smallest send budget (runtime.pacing.MIN_SEND_FLOOR)
OpenConnection = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


def run(args: argparse.Namespace, open_connection: OpenConnection) -> dict:
    """Runs --conns flows to (--host, --port); per-flow results as run_flows gives them."""
    return asyncio.run(_run(args, open_connection))


async def _run(args: argparse.Namespace, open_connection: OpenConnection) -> dict:
    payload = bytes((i * 7 + 3) % 251 for i in range(WRITE_BYTES))
    connected = [asyncio.Event() for _ in range(args.conns)]
    start = asyncio.Event()

    async def everyone_tried() -> None:
        await asyncio.gather(*(event.wait() for event in connected))
        start.set()

    starter = asyncio.create_task(everyone_tried())
    flows = [_flow(args, open_connection, payload, connected[i], start)
             for i in range(args.conns)]
    results = await asyncio.gather(*flows)
    await starter
    return {"seconds": args.seconds, "flows": list(results)}


async def _flow(args: argparse.Namespace, open_connection: OpenConnection, payload: bytes,
                connected: asyncio.Event, start: asyncio.Event) -> dict:
    sent, status, reply, writer, phase = 0, "ok", b"", None, "connect"
    began = time.monotonic()
    try:
        reader, writer = await asyncio.wait_for(open_connection(args.host, args.port),
                                                args.timeout)
        writer.transport.set_write_buffer_limits(high=0)
    except (OSError, asyncio.TimeoutError) as exc:
        status = f"connect: {exc!r}"
    connect_s = round(time.monotonic() - began, 3)
    connected.set()
    try:
        phase = "start"
        await asyncio.wait_for(start.wait(), args.deadline)
        if writer is None:
            raise ConnectionError(status)
        phase = "send"
        stop = time.monotonic() + args.seconds
        while time.monotonic() < stop:
            writer.write(payload)
            sent += len(payload)
            await asyncio.wait_for(writer.drain(), args.timeout)
        phase = "count"
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), args.timeout)
    except (TimeoutError, asyncio.TimeoutError) as exc:
        status = f"stalled ({phase}): {exc!r}"
    except OSError as exc:
        status = status if status != "ok" else f"error ({phase}): {exc!r}"
    finally:
        if writer is not None:
            writer.close()
    delivered = int(reply) if reply.strip().isdigit() else None
    if status == "ok" and delivered is None:
        status = "no count from the sink"   # it gave up on the flow (its --timeout)
    return {"status": status, "sent": sent, "delivered": delivered, "connect_s": connect_s}
