"""The transfer benchmark's processes (bench_transfer.py starts them; one role per process).

    python transfer_peer.py sink   API HOST PORT               # accept; read to EOF; reply count
    python transfer_peer.py source API HOST PORT --bytes N     # send N bytes, SHUT_WR, await count
    python transfer_peer.py echo   API HOST PORT               # accept; echo each connection
    python transfer_peer.py spout  API HOST PORT --bytes N     # accept; send N bytes, close
    python transfer_peer.py rpc    HOST PORT --conns C --seconds S   # closed-loop 64 B requests
    python transfer_peer.py ring-producer|ring-consumer SEGMENT --msgs M --msg-bytes B
    python transfer_peer.py tcp-producer PORT | tcp-consumer --msgs M --msg-bytes B

API is `linux` (the standard library's socket) or `p4tas` (host_lib.socket, the runtime's control
socket from $P4TAS_CONTROL_SOCKET): the same code runs on both stacks. Servers print `listening`
(tcp-consumer: `listening PORT`) once they accept connections and run until SIGTERM/SIGINT; every
role ends with one JSON line. Clients never hang: each socket operation has --timeout seconds and
the whole run --deadline seconds; running out is reported as `"status": "stalled"` with what was
done so far (p4tas has no loss recovery yet: one dropped segment stalls a connection).
Times come from time.monotonic() (one clock for every process, namespaces included).
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

CHUNK = 65536
POLL_S = 0.2  # how often servers look at the stop flag
_stop = threading.Event()


def _on_signal(signum: int, frame: object) -> None:
    _stop.set()


def _socket_module(api: str):
    if api == "p4tas":
        repo = Path(__file__).resolve().parent.parent
        if str(repo) not in sys.path:
            sys.path.insert(0, str(repo))
        import host_lib
        return host_lib
    return socket


def _listener(api: str, host: str, port: int):
    mod = _socket_module(api)
    srv = mod.socket()
    if api == "linux":
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(1024)
    srv.settimeout(POLL_S)
    return srv


def _accept_loop(srv, handle) -> list[threading.Thread]:
    threads = []
    while not _stop.is_set():
        try:
            conn, _ = srv.accept()
        except (TimeoutError, BlockingIOError):
            continue
        thread = threading.Thread(target=handle, args=(conn,), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


# ---- bulk --------------------------------------------------------------------------------------
def serve_sink(args: argparse.Namespace) -> dict:
    """Read each connection to EOF, then send back the byte count as one ASCII line."""
    results: list[dict] = []
    lock = threading.Lock()

    def handle(conn) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total, first, status = 0, None, "ok"
        conn.settimeout(args.timeout)
        try:
            while True:
                n = conn.recv_into(view)
                if not n:
                    break
                if first is None:
                    first = time.monotonic()
                total += n
            conn.sendall(f"{total}\n".encode())
        except TimeoutError:
            status = "stalled"
        except OSError as exc:
            status = f"error: {exc!r}"
        finally:
            end = time.monotonic()
            conn.close()
        with lock:
            results.append({"bytes": total, "status": status,
                            "seconds": round(end - first, 6) if first else 0.0})

    srv = _listener(args.api, args.host, args.port)
    print("listening", flush=True)
    _accept_loop(srv, handle)
    srv.close()
    return {"connections": results}


def serve_spout(args: argparse.Namespace) -> dict:
    """Send --bytes on each connection, then close it (the peer counts what arrives)."""
    results: list[dict] = []
    lock = threading.Lock()
    payload = memoryview(bytes((i * 7 + 3) % 251 for i in range(CHUNK)))

    def handle(conn) -> None:
        sent, status = 0, "ok"
        conn.settimeout(args.timeout)
        try:
            while sent < args.bytes:
                n = min(CHUNK, args.bytes - sent)
                conn.sendall(payload[:n])
                sent += n
        except TimeoutError:
            status = "stalled"
        except OSError as exc:
            status = f"error: {exc!r}"
        finally:
            conn.close()
        with lock:
            results.append({"bytes": sent, "status": status})

    srv = _listener(args.api, args.host, args.port)
    print("listening", flush=True)
    _accept_loop(srv, handle)
    srv.close()
    return {"connections": results}


def run_source(args: argparse.Namespace) -> dict:
    """Connect, send --bytes, SHUT_WR, wait for the sink's count and its FIN."""
    mod = _socket_module(args.api)
    payload = memoryview(bytes((i * 7 + 3) % 251 for i in range(CHUNK)))
    start = time.monotonic()
    deadline = start + args.deadline
    sent, status, reply, connected = 0, "ok", b"", None
    sock = mod.socket()
    sock.settimeout(args.timeout)
    try:
        sock.connect((args.host, args.port))
        connected = time.monotonic()
        while sent < args.bytes:
            if time.monotonic() > deadline:
                raise TimeoutError("deadline")
            n = min(CHUNK, args.bytes - sent)
            sock.sendall(payload[:n])
            sent += n
        sock.shutdown(socket.SHUT_WR)
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("deadline")
            data = sock.recv(64)
            if not data:
                break
            reply += data
    except TimeoutError:
        status = "stalled"
    except OSError as exc:
        status = f"error: {exc!r}"
    finally:
        end = time.monotonic()
        sock.close()
    acked = int(reply) if reply.strip().isdigit() else None
    if status == "ok" and acked != args.bytes:
        status = f"error: the sink counted {acked} bytes, {args.bytes} were sent"
    elapsed = end - (connected or start)
    return {"status": status, "bytes": args.bytes, "sent": sent, "acked": acked,
            "seconds": round(elapsed, 6), "start": start, "end": end}


def run_flows(args: argparse.Namespace) -> dict:
    """--conns connections to one sink, all sending at once for --seconds (a barrier after
    connect); each then SHUT_WRs and takes the sink's count. Per-flow delivered bytes.
    --asyncio: one event loop instead of a thread per flow (bench/flows_aio.py)."""
    if args.asyncio:
        return _run_flows_aio(args)
    mod = _socket_module(args.api)
    payload = memoryview(bytes((i * 7 + 3) % 251 for i in range(CHUNK)))
    barrier = threading.Barrier(args.conns, timeout=args.deadline)
    results: list[dict] = [{} for _ in range(args.conns)]

    def flow(index: int) -> None:
        sent, status, reply = 0, "ok", b""
        sock = mod.socket()
        sock.settimeout(args.timeout)
        began = time.monotonic()
        try:
            sock.connect((args.host, args.port))
        except OSError as exc:
            status = f"connect: {exc!r}"
        connect_s = round(time.monotonic() - began, 3)
        try:
            barrier.wait()  # every flow, connected or not, so that one failure stops no other
            if status != "ok":
                raise ConnectionError(status)
            stop = time.monotonic() + args.seconds
            while time.monotonic() < stop:
                sent += sock.send(payload)
            sock.shutdown(socket.SHUT_WR)
            while data := sock.recv(64):
                reply += data
        except (TimeoutError, threading.BrokenBarrierError) as exc:
            status = f"stalled: {exc!r}"
        except OSError as exc:
            status = status if status != "ok" else f"error: {exc!r}"
        finally:
            sock.close()
        delivered = int(reply) if reply.strip().isdigit() else None
        if status == "ok" and delivered is None:
            status = "no count from the sink"   # it gave up on the flow (its --timeout)
        results[index] = {"status": status, "sent": sent, "delivered": delivered,
                          "connect_s": connect_s}

    threads = [threading.Thread(target=flow, args=(i,)) for i in range(args.conns)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.deadline + args.seconds + args.timeout)
    return {"seconds": args.seconds, "flows": results}


def _run_flows_aio(args: argparse.Namespace) -> dict:
    import asyncio
    import flows_aio
    if args.api == "linux":
        return flows_aio.run(args, asyncio.open_connection)
    _socket_module(args.api)   # puts the repository on sys.path for host_lib
    from host_lib import streams
    return flows_aio.run(args, streams.open_connection)


# ---- RPC ---------------------------------------------------------------------------------------
def serve_echo(args: argparse.Namespace) -> dict:
    counts = {"connections": 0, "bytes": 0, "errors": 0}
    lock = threading.Lock()

    def handle(conn) -> None:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        total = 0
        conn.settimeout(None)
        if args.api == "linux":
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                n = conn.recv_into(view)
                if not n:
                    break
                conn.sendall(view[:n])
                total += n
        except OSError:
            with lock:
                counts["errors"] += 1
        finally:
            conn.close()
        with lock:
            counts["connections"] += 1
            counts["bytes"] += total

    srv = _listener(args.api, args.host, args.port)
    print("listening", flush=True)
    _accept_loop(srv, handle)
    srv.close()
    with lock:
        return dict(counts)


def run_rpc(args: argparse.Namespace) -> dict:
    """--conns connections, one request of --size bytes outstanding on each (closed loop), for
    --seconds after --warmup seconds; per-request latency in microseconds."""
    request = bytes(range(args.size % 256)) * (args.size // 256) + bytes(range(args.size % 256))
    request = (request + bytes(args.size))[:args.size]
    sel = selectors.DefaultSelector()
    socks = []
    status = "ok"
    for _ in range(args.conns):
        s = socket.create_connection((args.host, args.port), timeout=args.timeout)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
    got = {s: 0 for s in socks}
    sent_at = {}
    lat: list[float] = []
    t0 = time.monotonic()
    measure_from = t0 + args.warmup
    end = measure_from + args.seconds
    done = 0
    for s in socks:
        sent_at[s] = time.monotonic()
        s.sendall(request)  # 64 B into an empty socket buffer: never blocks
        sel.register(s, selectors.EVENT_READ)
    buf = bytearray(args.size)
    now = t0
    while now < end:
        events = sel.select(timeout=min(0.1, end - now))
        now = time.monotonic()
        for key, _ in events:
            s = key.fileobj
            try:
                n = s.recv_into(memoryview(buf)[got[s]:])
            except BlockingIOError:
                continue
            if not n:
                status = "error: server closed a connection"
                end = now
                break
            got[s] += n
            if got[s] == args.size:
                got[s] = 0
                if sent_at[s] >= measure_from:
                    lat.append(now - sent_at[s])
                    done += 1
                sent_at[s] = time.monotonic()
                s.sendall(request)
        oldest = min(sent_at.values())
        if now - oldest > args.timeout:
            status = "stalled"
            break
    stop = min(now, measure_from + args.seconds)
    for s in socks:
        sel.unregister(s)
        s.close()
    lat.sort()

    def pct(q: float) -> float | None:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6, 1) if lat else None
    seconds = max(stop - measure_from, 1e-9)
    return {"status": status, "conns": args.conns, "size": args.size, "requests": done,
            "seconds": round(seconds, 6), "rate": round(done / seconds, 1),
            "p50_us": pct(0.5), "p99_us": pct(0.99)}


# ---- rings vs loopback TCP ---------------------------------------------------------------------
def _ring(name: str):
    repo = Path(__file__).resolve().parent.parent
    if str(repo) not in sys.path:
        sys.path.insert(0, str(repo))
    from host_lib.rings import connection_ring
    from host_lib.shm_layout import Direction, Segment
    seg = Segment.attach(name)
    return seg, connection_ring(seg.buf, seg.layout, 0, Direction.RX)


def _message(index: int, size: int) -> bytearray:
    msg = bytearray(size)
    msg[:8] = index.to_bytes(8, "little")
    return msg


def run_ring_producer(args: argparse.Namespace) -> dict:
    seg, ring = _ring(args.segment)
    msg = _message(0, args.msg_bytes)
    view = memoryview(msg)
    deadline = time.monotonic() + args.deadline
    status, spins = "ok", 0
    start = time.monotonic()
    for i in range(args.msgs):
        msg[:8] = i.to_bytes(8, "little")
        off = 0
        while off < args.msg_bytes:
            n = ring.write(view[off:])
            if n:
                off += n
                continue
            spins += 1
            if not spins & 0xFFF and time.monotonic() > deadline:
                status = "stalled"
                break
        if status != "ok":
            break
    end = time.monotonic()
    view.release()
    ring.release()
    seg.close()
    return {"status": status, "start": start, "end": end, "spins": spins}


def run_ring_consumer(args: argparse.Namespace) -> dict:
    seg, ring = _ring(args.segment)
    buf = bytearray(args.msg_bytes)
    view = memoryview(buf)
    deadline = time.monotonic() + args.deadline
    status, spins, first, errors = "ok", 0, None, 0
    print("ready", flush=True)
    for i in range(args.msgs):
        got = 0
        while got < args.msg_bytes:
            n = ring.read_into(view[got:])
            if n:
                if first is None:
                    first = time.monotonic()
                got += n
                continue
            spins += 1
            if not spins & 0xFFF and time.monotonic() > deadline:
                status = "stalled"
                break
        if status != "ok":
            break
        if int.from_bytes(buf[:8], "little") != i:
            errors += 1
    end = time.monotonic()
    view.release()
    ring.release()
    seg.close()
    return {"status": status, "first": first, "end": end, "spins": spins,
            "sequence_errors": errors, "msgs": i + 1 if status == "ok" else i}


def run_tcp_consumer(args: argparse.Namespace) -> dict:
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(args.timeout)
    print(f"listening {srv.getsockname()[1]}", flush=True)
    conn, _ = srv.accept()
    conn.settimeout(args.timeout)
    buf = bytearray(args.msg_bytes)
    view = memoryview(buf)
    status, first, errors, i = "ok", None, 0, 0
    try:
        for i in range(args.msgs):
            got = 0
            while got < args.msg_bytes:
                n = conn.recv_into(view[got:])
                if not n:
                    raise OSError("EOF before the last message")
                if first is None:
                    first = time.monotonic()
                got += n
            if int.from_bytes(buf[:8], "little") != i:
                errors += 1
    except TimeoutError:
        status = "stalled"
    except OSError as exc:
        status = f"error: {exc!r}"
    end = time.monotonic()
    conn.close()
    srv.close()
    return {"status": status, "first": first, "end": end, "sequence_errors": errors}


def run_tcp_producer(args: argparse.Namespace) -> dict:
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    msg = _message(0, args.msg_bytes)
    start = time.monotonic()
    status = "ok"
    try:
        for i in range(args.msgs):
            msg[:8] = i.to_bytes(8, "little")
            sock.sendall(msg)
    except TimeoutError:
        status = "stalled"
    end = time.monotonic()
    sock.close()
    return {"status": status, "start": start, "end": end}


# ---- main --------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    for role in ("sink", "source", "echo", "spout"):
        p = sub.add_parser(role)
        p.add_argument("api", choices=["linux", "p4tas"])
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("--bytes", type=int, default=1 << 20)
    p = sub.add_parser("flows")
    p.add_argument("api", choices=["linux", "p4tas"])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--conns", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--asyncio", action="store_true")
    p = sub.add_parser("rpc")
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--warmup", type=float, default=0.5)
    for role in ("ring-producer", "ring-consumer"):
        p = sub.add_parser(role)
        p.add_argument("segment")
    p = sub.add_parser("tcp-producer")
    p.add_argument("port", type=int)
    sub.add_parser("tcp-consumer")
    for p in sub.choices.values():
        p.add_argument("--timeout", type=float, default=5.0)
        p.add_argument("--deadline", type=float, default=30.0)
        p.add_argument("--msgs", type=int, default=4096)
        p.add_argument("--msg-bytes", type=int, default=65536)
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    role = {"sink": serve_sink, "source": run_source, "echo": serve_echo, "spout": serve_spout,
            "rpc": run_rpc,
            "flows": run_flows,
            "ring-producer": run_ring_producer, "ring-consumer": run_ring_consumer,
            "tcp-producer": run_tcp_producer, "tcp-consumer": run_tcp_consumer}[args.role]
    result = role(args)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
