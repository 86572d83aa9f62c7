"""p4tas host library: what applications import (never the runtime).

    host_lib.socket(...)                 a TCP socket on p4tas, like socket.socket (sockets.py)
    host_lib.open_connection / start_server   asyncio streams (streams.py)
    host_lib.session().create_context()  the low-level event API (context.py): Context.poll,
                                         Connection.rx_peek, rx_done, tx_alloc, tx_send
    host_lib.session()                   the process's session with the runtime (sessions.py)
"""

from host_lib.control_channel import ControlChannel, RuntimeUnavailable
from host_lib.context import ConnEvent, Connection, Context, Listener
from host_lib.sessions import Session, close_session, session
from host_lib.sockets import (
    AF_INET,
    SHUT_RD,
    SHUT_RDWR,
    SHUT_WR,
    SOCK_STREAM,
    TCP_CONGESTION,
    timeout,
)
from host_lib.sockets import Socket as socket
from host_lib.streams import open_connection, start_server

__all__ = [
    "AF_INET", "SHUT_RD", "SHUT_RDWR", "SHUT_WR", "SOCK_STREAM", "TCP_CONGESTION", "ConnEvent",
    "Connection",
    "Context", "ControlChannel", "Listener", "RuntimeUnavailable", "Session", "close_session",
    "open_connection", "session", "socket", "start_server", "timeout",
]
