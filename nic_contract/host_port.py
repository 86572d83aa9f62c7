"""The host port: an AF_PACKET raw socket on the veth (or tap) that carries the NIC<->host
channel. The slow path's DMA bridge, softnic's ports and the packet tests all use it."""

from __future__ import annotations

import errno
import logging
import socket
import struct
from pathlib import Path
from typing import Protocol

from nic_contract.constants import ETHERTYPE_NIC_HOST
from nic_contract.nic_host_header import NIC_HOST_HEADER

log = logging.getLogger(__name__)

RECV_BATCH = 256               # frames drained per call by default (fairness with other tasks)
RECV_BUFFER_BYTES = 65536      # larger than any frame the host port can carry
# Absorbs bursts: a dropped RX_DATA frame is data lost. Every connection may have a whole RX
# ring in flight, and the kernel charges about 1.5x a frame's size: 64 MiB holds the windows
# of ~150 connections with the default 256 KiB rings.
SOCKET_RCVBUF_BYTES = 64 << 20
SEND_RETRY_SECONDS = 0.001     # after ENOBUFS (the device queue was full)
SEND_ERROR_RETRY_SECONDS = 0.1  # after a hard send error (e.g. the interface went away)
U16_MAX = 0xFFFF
NIC_HEADER_BYTES = NIC_HOST_HEADER.size
SYS_NET = Path("/sys/class/net")

# Linux <asm/socket.h> and <linux/if_packet.h>; the socket module does not export them all.
SO_RCVBUFFORCE = 33
SOL_PACKET = 263
PACKET_STATISTICS = 6
PACKET_IGNORE_OUTGOING = 23
PACKET_OUTGOING = 4
TPACKET_STATS = struct.Struct("II")  # tp_packets, tp_drops
TRANSIENT_SEND_ERRNOS = frozenset({errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOBUFS})


class FrameLink(Protocol):
    """A non-blocking frame pipe to the NIC (HostPort; a fake in unit tests)."""

    max_payload: int

    def fileno(self) -> int:
        """The descriptor to watch for readability and writability."""

    def recv_batch(self, limit: int) -> list[bytes]:
        """Up to `limit` frames that are waiting, [] when none."""

    def send(self, frame: bytes) -> bool:
        """Send one frame; False if it could not go now (see retry_delay)."""

    def retry_delay(self) -> float | None:
        """After a failed send: None to wait for writability, else seconds to wait."""

    def kernel_drops(self) -> int:
        """Frames lost on the way in since the last call (0 where nothing can be lost)."""


class HostPort:
    """AF_PACKET raw socket on the host-port interface, non-blocking; channel EtherType only
    unless `ethertype` says otherwise (softnic takes every frame: ETH_P_ALL)."""

    def __init__(self, ifname: str, rcvbuf: int = SOCKET_RCVBUF_BYTES,
                 ethertype: int = ETHERTYPE_NIC_HOST) -> None:
        self.ifname = ifname
        # Protocol 0 receives nothing until bind() names the interface and EtherType, so no frame
        # of another interface slips in between socket() and bind().
        self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            self._sock.bind((ifname, ethertype))
            self._sock.setblocking(False)
            self._set_rcvbuf(rcvbuf)
            self._ignore_outgoing()
            self.max_payload = min(interface_mtu(ifname) - NIC_HEADER_BYTES, U16_MAX)
        except BaseException:
            self._sock.close()
            raise
        self._last_errno = 0

    def _set_rcvbuf(self, size: int) -> None:
        """A receive buffer of `size` bytes, beyond net.core.rmem_max if we may (CAP_NET_ADMIN)."""
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        except PermissionError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def _ignore_outgoing(self) -> None:
        """Do not see frames other sockets send on this interface (Linux >= 4.20)."""
        try:
            self._sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        except OSError:
            log.debug("%s: PACKET_IGNORE_OUTGOING unsupported; filtering by packet type",
                      self.ifname)

    def fileno(self) -> int:
        """The socket's descriptor."""
        return self._sock.fileno()

    def recv_batch(self, limit: int = RECV_BATCH) -> list[bytes]:
        """Drain up to `limit` waiting frames without blocking."""
        frames: list[bytes] = []
        while len(frames) < limit:
            try:
                frame, address = self._sock.recvfrom(RECV_BUFFER_BYTES)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ENETDOWN, reported once when the link goes down
                log.warning("%s: receive failed: %s", self.ifname, exc)
                break
            if address[2] != PACKET_OUTGOING:
                frames.append(frame)
        return frames

    def send(self, frame: bytes) -> bool:
        """Send one frame; False (errno kept for retry_delay) if it cannot go now."""
        try:
            self._sock.send(frame)
        except OSError as exc:
            code = exc.errno or 0
            if code not in TRANSIENT_SEND_ERRNOS and code != self._last_errno:
                log.warning("%s: send failed (retrying): %s", self.ifname, exc)
            self._last_errno = code
            return False
        self._last_errno = 0
        return True

    def retry_delay(self) -> float | None:
        """None: wait until writable (socket buffer full); else seconds to wait."""
        if self._last_errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return None
        return SEND_RETRY_SECONDS if self._last_errno == errno.ENOBUFS else SEND_ERROR_RETRY_SECONDS

    def kernel_drops(self) -> int:
        """Frames the kernel dropped for want of receive buffer since the last call."""
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
        return TPACKET_STATS.unpack(raw)[1]

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()


def interface_mtu(ifname: str) -> int:
    """The MTU of a network interface, from sysfs."""
    return int((SYS_NET / ifname / "mtu").read_text())
