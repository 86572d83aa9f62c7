#!/usr/bin/env python3
"""A TCP echo server on p4tas: every byte a client sends comes back to it.

It is written like an ordinary `selectors` echo server on Python's `socket` module; the only
difference is that the sockets come from `host_lib.socket()`, so the connections are terminated
by p4tas (the P4 fast path and the runtime) instead of the Linux kernel:

    P4TAS_CONTROL_SOCKET=/tmp/p4tas-p4t/control.sock \\
        python examples/echo_server.py --host 10.99.1.1 --port 7

(`make run` starts it exactly like this and tells you how to talk to it.)

One thread serves every connection. Things to know about host_lib sockets (see the docstring
of host_lib/sockets.py):

* fileno() works with `selectors`, but it only ever reports *readable*: "readable" means the
  socket can make progress (bytes to read, EOF, a connection to accept, TX space again after a
  send raised BlockingIOError). So we register EVENT_READ only, and a connection whose reply
  could not be sent in full keeps the rest in a buffer until the socket is readable again.
* Readiness can be spurious, so every socket is non-blocking and BlockingIOError simply means
  "not now".
* bind() needs an explicit port.

SIGINT (Ctrl-C) and SIGTERM stop the server: the signal wakes the selector (through
signal.set_wakeup_fd, so no exception ever interrupts a host_lib call halfway); the server closes
the listening socket, shuts down the sending side of every connection (p4tas sends the FINs),
gives the clients --linger seconds to close theirs, closes everything and exits with status 0.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass, field

import host_lib

RECV_SIZE = 64 * 1024  # bytes read per recv() call
MAX_PENDING = 1024 * 1024  # stop reading a client while this much of its echo is unsent


@dataclass
class Client:
    """One accepted connection and the bytes we still owe it."""

    sock: host_lib.socket
    peer: tuple[str, int]
    pending: bytearray = field(default_factory=bytearray)
    peer_done: bool = False  # the client sent FIN (recv returned b"")
    echoed: int = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="TCP echo server on p4tas (host_lib sockets). The runtime's control "
                    "socket comes from $P4TAS_CONTROL_SOCKET.")
    parser.add_argument("--host", default="0.0.0.0",
                        help="p4tas address to listen on (default: all of them)")
    parser.add_argument("--port", type=int, default=7, help="TCP port (default 7, echo)")
    parser.add_argument("--ready-ns", metavar="NAME",
                        help="the network namespace clients connect from; when given, print "
                             "`READY ns=NAME addr=HOST:PORT` once listening (for scripts)")
    parser.add_argument("--linger", type=float, default=2.0, metavar="S",
                        help="at shutdown, seconds clients get to close their side after our "
                             "FIN before they are reset (default 2)")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="do not print a line per connection")
    return parser.parse_args(argv)


class EchoServer:
    def __init__(self, host: str, port: int, quiet: bool = False) -> None:
        self.quiet = quiet
        self.selector = selectors.DefaultSelector()
        self.clients: dict[host_lib.socket, Client] = {}
        self.listener = host_lib.socket()  # AF_INET, SOCK_STREAM, like socket.socket()
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.listener.setblocking(False)
        self.selector.register(self.listener, selectors.EVENT_READ)
        # SIGINT/SIGTERM: Python writes the signal number into `wakeup` (a plain socketpair),
        # which wakes the selector; the handler itself only records the signal.
        self.stop_signal: str | None = None
        self.wakeup, wakeup_w = socket.socketpair()
        self.wakeup.setblocking(False)
        wakeup_w.setblocking(False)
        self._wakeup_w = wakeup_w
        signal.set_wakeup_fd(wakeup_w.fileno())
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        self.selector.register(self.wakeup, selectors.EVENT_READ)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.stop_signal = signal.Signals(signum).name

    def log(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    # -- the event loop ---------------------------------------------------------------------
    def serve_forever(self) -> str:
        """Serve until SIGINT or SIGTERM; return the signal's name."""
        while self.stop_signal is None:
            for key, _ in self.selector.select():
                if key.fileobj is self.wakeup:
                    self.wakeup.recv(64)  # drain; stop_signal is set
                elif key.fileobj is self.listener:
                    self.accept()
                else:
                    client = self.clients.get(key.fileobj)  # type: ignore[call-overload]
                    if client is not None:  # (closed earlier in this round)
                        self.service(client)
        return self.stop_signal

    def accept(self) -> None:
        # Accept everything that is queued; BlockingIOError means the queue is empty.
        while True:
            try:
                sock, peer = self.listener.accept()
            except BlockingIOError:
                return
            sock.setblocking(False)
            self.clients[sock] = Client(sock, peer)
            self.selector.register(sock, selectors.EVENT_READ)
            self.log(f"connection from {peer[0]}:{peer[1]} ({len(self.clients)} open)")

    def service(self, client: Client) -> None:
        try:
            self.flush(client)
            # Read only while the client's echo is not piling up (backpressure: a client that
            # does not read its replies stops being read, it does not make us buffer forever).
            while not client.peer_done and len(client.pending) < MAX_PENDING:
                try:
                    data = client.sock.recv(RECV_SIZE)
                except BlockingIOError:
                    break
                if not data:  # EOF: the client shut down its sending side
                    client.peer_done = True
                    break
                client.pending += data
                self.flush(client)
            if client.peer_done and not client.pending:
                self.close(client, "closed by peer")
        except OSError as exc:  # ConnectionResetError, BrokenPipeError, ...
            self.close(client, f"error: {exc}")

    def flush(self, client: Client) -> None:
        """Send as much of the pending echo as the connection's TX ring takes."""
        while client.pending:
            try:
                sent = client.sock.send(client.pending)
            except BlockingIOError:
                return  # TX ring full: the socket turns readable again when space frees up
            del client.pending[:sent]
            client.echoed += sent

    def close(self, client: Client, why: str) -> None:
        self.selector.unregister(client.sock)
        del self.clients[client.sock]
        client.sock.close()
        self.log(f"connection from {client.peer[0]}:{client.peer[1]} {why} after "
                 f"{client.echoed} bytes echoed ({len(self.clients)} open)")

    def shutdown(self, linger: float) -> None:
        """Stop listening, then close every connection gracefully: send our FIN (after the
        bytes already queued) and give each client up to `linger` seconds to close its side;
        whoever is still there after that is closed anyway (and reset by p4tas)."""
        self.selector.unregister(self.listener)
        self.listener.close()
        for client in list(self.clients.values()):
            try:
                client.sock.shutdown(host_lib.SHUT_WR)
            except OSError as exc:
                self.close(client, f"error: {exc}")
        deadline = time.monotonic() + linger
        while self.clients and (left := deadline - time.monotonic()) > 0:
            for key, _ in self.selector.select(timeout=left):
                if key.fileobj is self.wakeup:
                    self.wakeup.recv(64)
                    continue
                client = self.clients.get(key.fileobj)  # type: ignore[call-overload]
                if client is not None:
                    self.drain(client)
        for client in list(self.clients.values()):
            self.close(client, "closed at shutdown")
        self.selector.close()
        signal.set_wakeup_fd(-1)
        self.wakeup.close()
        self._wakeup_w.close()
        host_lib.close_session()  # say goodbye to the runtime now rather than at exit

    def drain(self, client: Client) -> None:
        """During shutdown: discard what the client still sends, close it at its EOF."""
        try:
            while client.sock.recv(RECV_SIZE):
                pass
            self.close(client, "closed by peer at shutdown")
        except BlockingIOError:
            pass
        except OSError as exc:
            self.close(client, f"error: {exc}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        server = EchoServer(args.host, args.port, args.quiet)
    except OSError as exc:  # includes host_lib.RuntimeUnavailable: is the runtime running?
        print(f"echo_server: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    if args.ready_ns:
        print(f"READY ns={args.ready_ns} addr={args.host}:{args.port}", flush=True)
    else:
        print(f"echo server listening on {args.host}:{args.port} (p4tas); Ctrl-C stops it",
              flush=True)
    status = 0
    try:
        why = server.serve_forever()
        print(f"echo server: {why}, closing {len(server.clients)} connection(s)", flush=True)
    except host_lib.RuntimeUnavailable as exc:  # the runtime went away under us
        print(f"echo_server: {exc}", file=sys.stderr)
        status = 1
    finally:
        server.shutdown(args.linger)
    return status


if __name__ == "__main__":
    sys.exit(main())
