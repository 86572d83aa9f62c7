"""Running an unmodified Python program on p4tas (TAS's socket interposition, for Python):

    python -m host_lib.run [--addr IP]... app.py args...
    python -m host_lib.run [--addr IP]... -m module args...

install() swaps socket.socket for HybridSocket (host_lib.run.hybrid_socket), so that everything
built on it — socket.create_connection/create_server, socketserver, http.server, http.client,
urllib, asyncio's create_connection/create_server/start_server/open_connection/sock_* — uses
p4tas for IPv4 TCP where host_lib.run.placement says so, and the kernel for everything else
(UNIX, UDP, IPv6, loopback, the kernel's own addresses and subnets). Readiness is the kernel's
(host_lib.doorbell): select, poll, epoll, selectors and asyncio's loop work unchanged.
"""

from __future__ import annotations

import asyncio
import socket as _std

from host_lib.run import hybrid_socket
from host_lib.run.aio import P4tasEventLoopPolicy
from host_lib.run.placement import Placement


def install(placement: Placement) -> None:
    """Substitute p4tas for IPv4 TCP in this process from now on."""
    hybrid_socket.configure(placement)
    _std.socket = hybrid_socket.HybridSocket
    asyncio.set_event_loop_policy(P4tasEventLoopPolicy())
