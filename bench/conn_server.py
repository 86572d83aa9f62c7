"""The connection benchmark's servers: accept each connection and close it at once.

    python conn_server.py linux HOST PORT [--backlog B]     # a Linux TCP server (stdlib)
    python conn_server.py p4tas SOCKET PORT [--backlog B]   # a p4tas application (host_lib)

The p4tas one is an application of the runtime's control API (host_lib.control_channel):
listen on PORT on every p4tas address, and for each IncomingConnection event close the
connection. Both print `listening` once they accept connections, run until SIGTERM or SIGINT,
then print one JSON line with what they did (the p4tas one adds the runtime's counters).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
from pathlib import Path

POLL_S = 0.2  # how often the loops look at the stop flag
_stop = False


def _on_signal(signum: int, frame: object) -> None:
    global _stop
    _stop = True


def serve_linux(host: str, port: int, backlog: int) -> dict:
    srv = socket.create_server((host, port), backlog=backlog)  # SO_REUSEADDR on POSIX
    srv.settimeout(POLL_S)
    print("listening", flush=True)
    accepted = 0
    while not _stop:
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        conn.close()
        accepted += 1
    srv.close()
    return {"accepted": accepted}


def serve_p4tas(socket_path: str, port: int, backlog: int) -> dict:
    from host_lib import control_protocol as cp
    from host_lib.control_channel import ControlChannel

    counts = {"accepted": 0, "closed": 0, "peer_closed": 0, "reset": 0, "other": 0}
    with ControlChannel(Path(socket_path), app_name="bench-conn") as ch:
        ctx = ch.create_context()
        listening = ch.listen(ctx, port, backlog=backlog)
        print("listening", flush=True)
        while not _stop:
            event = ch.next_event(timeout=POLL_S)
            if event is None:
                continue
            if isinstance(event, cp.IncomingConnection):
                counts["accepted"] += 1
                ch.close_connection(event.conn_id)
            elif isinstance(event, cp.Closed):
                counts["closed"] += 1
            elif isinstance(event, cp.PeerClosed):
                counts["peer_closed"] += 1
            elif isinstance(event, cp.ConnectionReset):
                counts["reset"] += 1
            else:
                counts["other"] += 1
        ch.close_listener(listening.listener_id)
        counts["runtime"] = ch.stats()
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["linux", "p4tas"])
    parser.add_argument("where", help="linux: address to bind; p4tas: the runtime's socket")
    parser.add_argument("port", type=int)
    parser.add_argument("--backlog", type=int, default=128)
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _on_signal)
    serve = serve_linux if args.kind == "linux" else serve_p4tas
    result = serve(args.where, args.port, args.backlog)
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
