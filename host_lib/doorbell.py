"""A p4tas socket's kernel descriptor for select/poll/epoll (what its fileno() returns): one end
of a UNIX datagram socket pair whose poll state the library sets to the p4tas socket's own.

    readable   a marker datagram waits on the application's end (POLLIN)
    writable   no blocking datagram from the application's end waits on ours (POLLOUT): its
               send buffer is the minimum, so one unread datagram of BLOCK bytes fills it
    rdhup      the application's end is shut for reading: POLLIN | POLLRDHUP from then on
    hup        shut both ways: POLLHUP too (a reset, as Linux reports a closed TCP socket)

Each change is one non-blocking system call, and only on a change; the kernel wakes whatever
waits on the descriptor (select, poll, epoll, selectors, asyncio). The application never reads
or writes the descriptor itself: its socket calls go to the p4tas rings.
"""

from __future__ import annotations

import _socket
import os
import socket as _std
from dataclasses import dataclass, field

BLOCK = 2048  # > a quarter of the minimum send buffer (4608): one such datagram blocks POLLOUT

_DOORBELL_INODES: set[int] = set()  # every open doorbell's descriptor (socket.fromfd refuses)


@dataclass(frozen=True)
class Readiness:
    """What select/poll should report for a socket."""

    readable: bool = False
    writable: bool = False
    rdhup: bool = False
    hup: bool = False


@dataclass
class Doorbell:
    """The descriptor pair and the state last set on it; `at`: the descriptor number to take
    over (dup2: whatever it was, e.g. a kernel socket, is closed), else a new one."""

    at: int | None = None
    app: _socket.socket = field(init=False)
    ours: _socket.socket = field(init=False)
    state: Readiness = field(init=False)

    def __post_init__(self) -> None:
        # _socket's own classes: socket.socket may be the launcher's (host_lib.run).
        self.app, self.ours = _socket.socketpair(_std.AF_UNIX, _std.SOCK_DGRAM)
        if self.at is not None:
            os.dup2(self.app.fileno(), self.at)
            self.app.close()
            self.app = _socket.socket(_std.AF_UNIX, _std.SOCK_DGRAM, 0, self.at)
        self.app.setsockopt(_std.SOL_SOCKET, _std.SO_SNDBUF, 1)  # the kernel's minimum
        self.app.setblocking(False)
        self.ours.setblocking(False)
        self.state = Readiness(writable=True)
        _DOORBELL_INODES.add(os.fstat(self.app.fileno()).st_ino)

    def fileno(self) -> int:
        return self.app.fileno()

    def set(self, want: Readiness) -> None:
        """Make the descriptor report `want` (rdhup and hup cannot be taken back)."""
        have = self.state
        if want == have:
            return
        hup, rdhup = have.hup or want.hup, have.rdhup or want.rdhup or want.hup
        writable, readable = want.writable or hup, want.readable or rdhup
        # POLLOUT and POLLIN first: a waiter woken by the hang-up then sees them too.
        if writable != have.writable:
            self._block_writes(not writable)
        if not have.rdhup and readable != have.readable:
            self._mark_readable(readable)
        if hup and not have.hup:
            self.app.shutdown(_std.SHUT_RDWR)
        elif rdhup and not have.rdhup:
            self.app.shutdown(_std.SHUT_RD)
        self.state = Readiness(readable, writable, rdhup, hup)

    def _mark_readable(self, readable: bool) -> None:
        try:
            if readable:
                self.ours.send(b"r")
            else:
                self.app.recv(1)
        except (BlockingIOError, BrokenPipeError):
            pass

    def _block_writes(self, block: bool) -> None:
        try:
            if block:
                self.app.send(bytes(BLOCK))
            else:
                self.ours.recv(BLOCK)
        except (BlockingIOError, BrokenPipeError):
            pass

    def close(self) -> None:
        _DOORBELL_INODES.discard(os.fstat(self.app.fileno()).st_ino)
        self.app.close()
        self.ours.close()


def is_doorbell(fd: int) -> bool:
    """Whether `fd` is (a duplicate of) an open p4tas socket's descriptor."""
    try:
        return os.fstat(fd).st_ino in _DOORBELL_INODES
    except OSError:
        return False
