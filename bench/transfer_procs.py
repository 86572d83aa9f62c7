"""bench_transfer's processes: transfer_peer.py roles started in a namespace or here, their
servers stopped and clients finished (a stalled client is killed, never waited for).
Also used by bench_cc.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from benchlib import BenchError, _last_json, _stop, spawn_script, wait_listening

PEER = Path(__file__).resolve().parent / "transfer_peer.py"
CONTROL_SOCKET_ENV = "P4TAS_CONTROL_SOCKET"


def _peer_env(control_socket: Path | None) -> dict[str, str]:
    """The environment of a transfer_peer.py process (the control socket for p4tas roles)."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    if control_socket is not None:
        env[CONTROL_SOCKET_ENV] = str(control_socket)
    return env


def spawn(argv: Sequence[object], netns: str | None, control_socket: Path | None = None,
          stdin: int = subprocess.DEVNULL) -> subprocess.Popen:
    """transfer_peer.py with `argv`, in `netns` (None: here), tracked for cleanup."""
    return spawn_script(PEER, argv, netns, stdin=stdin, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=_peer_env(control_socket))


def start_server(argv: Sequence[object], netns: str | None, what: str,
                 control_socket: Path | None = None) -> subprocess.Popen:
    """A transfer_peer.py server, once it listens."""
    return wait_listening(spawn(argv, netns, control_socket), what)


def stop_server(proc: subprocess.Popen, what: str) -> dict:
    """Stop a server; its JSON result, or {"error": ...} if it printed none."""
    out, err = _stop(proc)
    try:
        return _last_json(out, what)
    except BenchError:
        return {"error": err.strip()[-500:] or "no result"}


def finish(proc: subprocess.Popen, timeout: float, what: str) -> dict:
    """The JSON a client printed; a client still running after `timeout` is killed and reported
    as stalled (never waited for)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(proc, timeout=2)
        return {"status": f"stalled (killed after {timeout:g} s)"}
    if proc.returncode != 0:
        return {"status": f"error: {what} exited with code {proc.returncode}: "
                          f"{err.strip()[-500:]}"}
    return _last_json(out, what)


def median(values: list[float]) -> float | None:
    """The median (the upper one of an even count), None for no values."""
    values = sorted(values)
    return values[len(values) // 2] if values else None
