"""The connection benchmark's client: N TCP connection setups and teardowns, one after another.

Standard library only: the same file runs against the p4tas stack and against a Linux server.
Each connection: connect, wait for the server's FIN (the server closes first, right after
accepting), close. Failures (refused, timeout, data instead of EOF) are counted, not fatal.

Protocol with bench_conn.py: print `ready`, wait for one line on stdin (the start signal, so that
K clients start together), run, print one JSON line:
    {"ok": ..., "errors": {"<kind>": count}, "start": t0, "end": t1, "lat_us": [...]}
with t0/t1 from time.monotonic() (one clock for every process on the machine, namespaces
included) and each successful connection's setup+teardown time in microseconds.

    python conn_client.py HOST PORT N [--timeout S] [--deadline S] [--no-wait]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time


def one(host: str, port: int, timeout: float) -> str | None:
    """One connection; None if it went as planned, else the kind of failure."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "connect_timeout"
    except OSError as exc:
        return f"connect_{type(exc).__name__}"
    try:
        data = sock.recv(1)
    except TimeoutError:
        return "eof_timeout"
    except ConnectionResetError:
        return "reset"
    except OSError as exc:
        return f"recv_{type(exc).__name__}"
    finally:
        sock.close()
    return None if data == b"" else "data_instead_of_eof"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="per connect and per EOF wait (default %(default)s s)")
    parser.add_argument("--deadline", type=float, default=120.0,
                        help="stop after this many seconds whatever is left (default %(default)s)")
    parser.add_argument("--no-wait", action="store_true", help="start at once, no stdin line")
    args = parser.parse_args()
    print("ready", flush=True)
    if not args.no_wait and not sys.stdin.readline():
        return 1  # stdin closed before the start signal: the benchmark was aborted
    errors: dict[str, int] = {}
    latencies: list[int] = []
    start = time.monotonic()
    stop_at = start + args.deadline
    for _ in range(args.n):
        if time.monotonic() >= stop_at:
            errors["deadline"] = errors.get("deadline", 0) + 1
            break
        t0 = time.monotonic()
        failure = one(args.host, args.port, args.timeout)
        if failure is None:
            latencies.append(round((time.monotonic() - t0) * 1e6))
        else:
            errors[failure] = errors.get(failure, 0) + 1
    end = time.monotonic()
    print(json.dumps({"ok": len(latencies), "errors": errors, "start": start, "end": end,
                      "lat_us": latencies}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
