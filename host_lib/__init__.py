"""p4tas host library: what applications import (never the runtime).

    host_lib.socket(...)                 a TCP socket on p4tas (like socket.socket)
    host_lib.open_connection / start_server   asyncio streams
    host_lib.session().create_context()  the low-level event API (Context.poll, Connection.rx_peek,
                                         rx_done, tx_alloc, tx_send)
"""

from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.socket import (
    AF_INET,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SOCK_STREAM,
    TCP_CONGESTION,
    ConnEvent,
    Connection,
    Context,
    Listener,
    Session,
    close_session,
    session,
    socket,
    timeout,
)
from host_lib.streams import open_connection, start_server

__all__ = [
    "AF_INET", "SHUT_RD", "SHUT_RDWR", "SHUT_WR", "SOCK_STREAM", "TCP_CONGESTION", "ConnEvent",
    "Connection",
    "Context", "ControlChannel", "Listener", "RuntimeUnavailable", "Session", "close_session",
    "open_connection", "session", "socket", "start_server", "timeout",
]
