"""socket.socket under the launcher: an IPv4 TCP socket starts as the kernel's and moves to p4tas
when its bind() or connect() address says so (host_lib.run.placement); every other socket is the
kernel's, untouched. On p4tas its calls go to a host_lib socket (host_lib.sockets) and fileno()
is that socket's doorbell (host_lib.doorbell); what p4tas cannot do raises naming the call."""

from __future__ import annotations

import _socket
import errno
import socket as _std
from typing import Any, Callable

from host_lib.doorbell import is_doorbell
from host_lib.run.placement import Placement
from host_lib.sockets import Socket as P4Socket

KernelSocket = _std.socket  # the standard library's class, captured before the launcher swaps it

_placement = Placement()  # set by host_lib.run.install


def configure(placement: Placement) -> None:
    global _placement
    _placement = placement


def unsupported(call: str, why: str) -> OSError:
    """The error for what p4tas sockets cannot do, naming the call."""
    return OSError(errno.EOPNOTSUPP, f"{call} on a p4tas socket: {why}")


def _routed(name: str) -> Callable[..., Any]:
    """A method that goes to the p4tas socket once there is one, else to the kernel's."""
    kernel = getattr(KernelSocket, name)

    def method(self: HybridSocket, *args: Any, **kwargs: Any) -> Any:
        p4 = self._p4
        return kernel(self, *args, **kwargs) if p4 is None else getattr(p4, name)(*args, **kwargs)
    method.__name__ = name
    return method


def _refused(name: str, why: str) -> Callable[..., Any]:
    """A method p4tas sockets refuse (kernel sockets keep it)."""
    kernel = getattr(KernelSocket, name)

    def method(self: HybridSocket, *args: Any, **kwargs: Any) -> Any:
        if self._p4 is not None:
            raise unsupported(f"socket.{name}()", why)
        return kernel(self, *args, **kwargs)
    method.__name__ = name
    return method


_NO_FD = "p4tas sockets have no kernel descriptor of their own (ssl.wrap_socket: use asyncio's ssl=)"
_NO_ANCILLARY = "p4tas sockets carry a byte stream only (no ancillary data, no addresses)"


class HybridSocket(KernelSocket):
    """What `socket.socket(...)` makes in a launched program (see the module docstring)."""

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1,
                 fileno: int | None = None) -> None:
        if fileno is not None and is_doorbell(fileno):
            raise unsupported("socket.fromfd() / socket.socket(fileno=)", _NO_FD)
        super().__init__(family, type, proto, fileno)
        self._p4: P4Socket | None = None
        self._undecided = (fileno is None and self.family == _std.AF_INET
                           and self.type == _std.SOCK_STREAM)
        self._early_options: list[tuple[Any, ...]] = []  # setsockopt before the choice

    @classmethod
    def adopt(cls, p4: P4Socket) -> HybridSocket:
        """A HybridSocket on an existing p4tas socket (accept())."""
        sock = cls(_std.AF_INET, _std.SOCK_STREAM)
        sock._use(p4)
        return sock

    @property
    def on_p4tas(self) -> bool:
        return self._p4 is not None

    def __repr__(self) -> str:
        if self._p4 is None:
            return super().__repr__()
        return repr(self._p4).replace("host_lib.socket", "p4tas socket", 1)

    # -- choosing the stack ----------------------------------------------------------------

    def _use(self, p4: P4Socket) -> None:
        """Move to p4tas: the doorbell takes the kernel descriptor's number (asyncio may hold
        it already, e.g. sock_connect), which p4 owns from now on."""
        self._undecided = False
        p4.take_descriptor(_socket.socket.detach(self))
        self._p4 = p4

    def _choose_p4tas(self) -> P4Socket:
        p4 = P4Socket()
        p4.settimeout(KernelSocket.gettimeout(self))
        try:
            for option in self._early_options:
                p4.setsockopt(*option)
        except BaseException:
            p4.close()
            raise
        self._use(p4)
        return p4

    def bind(self, address: Any) -> None:
        if self._undecided and isinstance(address, tuple) and len(address) == 2:
            host = _placement.bind_host(address[0])
            if host is not None:
                self._choose_p4tas().bind((host, address[1]))
                return
        self._undecided = False
        routed_bind(self, address)

    def connect(self, address: Any) -> None:
        self._place_connect(address)
        routed_connect(self, address)

    def connect_ex(self, address: Any) -> int:
        self._place_connect(address)
        return routed_connect_ex(self, address)

    def _place_connect(self, address: Any) -> None:
        if not self._undecided or not isinstance(address, tuple) or len(address) != 2:
            self._undecided = False
            return
        placement = _placement
        if placement.connects_via_p4tas(address[0]):
            p4 = self._choose_p4tas()
            source = placement.source()
            if source is not None:
                p4.bind((source, 0))
        self._undecided = False

    def listen(self, backlog: int = 128) -> None:
        self._undecided = False  # unbound: the kernel's (p4tas listens only on a chosen port)
        routed_listen(self, backlog)

    def setsockopt(self, *args: Any) -> None:
        if self._p4 is not None:
            self._p4.setsockopt(*args)
            return
        KernelSocket.setsockopt(self, *args)
        if self._undecided:
            self._early_options.append(args)

    # -- p4tas sockets ----------------------------------------------------------------------

    def accept(self) -> tuple[Any, Any]:
        if self._p4 is None:
            return super().accept()
        conn, address = self._p4.accept()
        return HybridSocket.adopt(conn), address

    def fileno(self) -> int:
        return super().fileno() if self._p4 is None else self._p4.fileno()

    def _real_close(self, _ss: Any = _socket.socket) -> None:
        if self._p4 is not None:
            self._p4.close()
        else:
            super()._real_close()

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        if self._p4 is None:
            return super().sendfile(file, offset, count)
        return self._sendfile_use_send(file, offset, count)  # os.sendfile needs a kernel socket

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0,
                address: Any = None) -> int:
        if self._p4 is None:
            return super().sendmsg(buffers, ancdata, flags, *([address] if address else []))
        if ancdata or address is not None:
            raise unsupported("socket.sendmsg() with ancillary data or an address", _NO_ANCILLARY)
        return self._p4.send(b"".join(bytes(memoryview(b).cast("B")) for b in buffers), flags)



for _name in ("recv", "recv_into", "send", "sendall", "shutdown", "getsockname", "getpeername",
              "getsockopt", "settimeout", "gettimeout", "setblocking", "getblocking"):
    setattr(HybridSocket, _name, _routed(_name))
for _name in ("dup", "detach"):
    setattr(HybridSocket, _name, _refused(_name, _NO_FD))
for _name in ("recvmsg", "recvmsg_into", "recvfrom", "recvfrom_into", "sendto"):
    setattr(HybridSocket, _name, _refused(_name, _NO_ANCILLARY))
routed_bind = _routed("bind")
routed_connect = _routed("connect")
routed_connect_ex = _routed("connect_ex")
routed_listen = _routed("listen")
