"""ARP for the slow path: codec, responder for our local IPs, and a resolving cache with expiry.

ARP is answered by the runtime (PacketIn -> ArpResponder.handle -> PacketOut): it is rare, needs
the local IP/MAC table the runtime already owns, and keeps the data plane free of one more parser
branch and table. The same handle() call learns replies to our own requests into the ArpCache,
which wakes the coroutines waiting in ArpCache.resolve().
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from nic_contract.constants import ETHERTYPE_ARP, ETHERTYPE_IPV4
from runtime.tcp_segments import ETH_HEADER, ip_to_bytes, mac_to_bytes, mac_to_str

log = logging.getLogger(__name__)

ARP_HEADER = struct.Struct("!HHBBH6s4s6s4s")
ARP_FRAME_BYTES = ETH_HEADER.size + ARP_HEADER.size  # 42, unpadded
HTYPE_ETHERNET = 1
BROADCAST_MAC = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ZERO_IP = "0.0.0.0"
_BROADCAST_TEXT = "ff:ff:ff:ff:ff:ff"


class ArpOp(IntEnum):
    """ARP operation codes."""

    REQUEST = 1
    REPLY = 2


class ArpError(ValueError):
    """A frame that is not a valid Ethernet/IPv4 ARP packet."""


class ArpTimeout(OSError):
    """No ARP reply for an IP within the resolution bound (errno EHOSTUNREACH)."""

    def __init__(self, ip: str, waited_s: float, requests: int) -> None:
        super().__init__(
            errno.EHOSTUNREACH,
            f"host {ip} unreachable: no ARP reply after {waited_s:.2f} s "
            f"({requests} requests sent)",
        )
        self.ip = ip
        self.waited_s = waited_s
        self.requests = requests

    def __reduce__(self):
        return type(self), (self.ip, self.waited_s, self.requests)


@dataclass(frozen=True)
class ArpPacket:
    """One parsed ARP packet (Ethernet/IPv4 only); MACs as lowercase "aa:bb:..." strings."""

    op: ArpOp
    sender_mac: str
    sender_ip: str
    target_mac: str
    target_ip: str


def parse_arp(frame: bytes | bytearray | memoryview) -> ArpPacket:
    """Parse an Ethernet ARP frame (padding ignored); raise ArpError saying what is wrong."""
    if len(frame) < ARP_FRAME_BYTES:
        raise ArpError(
            f"frame of {len(frame)} bytes is shorter than an ARP frame ({ARP_FRAME_BYTES})"
        )
    _, _, ether_type = ETH_HEADER.unpack_from(frame)
    if ether_type != ETHERTYPE_ARP:
        raise ArpError(f"not ARP: EtherType 0x{ether_type:04x}")
    fields = ARP_HEADER.unpack_from(frame, ETH_HEADER.size)
    htype, ptype, hlen, plen, op, sha, spa, tha, tpa = fields
    if htype != HTYPE_ETHERNET or hlen != 6:
        raise ArpError(f"ARP hardware type {htype} / length {hlen} is not Ethernet (1 / 6)")
    if ptype != ETHERTYPE_IPV4 or plen != 4:
        raise ArpError(f"ARP protocol type 0x{ptype:04x} / length {plen} is not IPv4 (0x0800 / 4)")
    try:
        arp_op = ArpOp(op)
    except ValueError:
        raise ArpError(f"unknown ARP operation {op} (known: 1 request, 2 reply)") from None
    return ArpPacket(
        arp_op, mac_to_str(sha), socket.inet_ntoa(spa), mac_to_str(tha), socket.inet_ntoa(tpa)
    )


def _build_arp(
    op: ArpOp, eth_dst: bytes, sender_mac: bytes, sender_ip: str, target_mac: bytes, target_ip: str
) -> bytes:
    """A 42-byte Ethernet ARP frame sent from `sender_mac`."""
    return ETH_HEADER.pack(eth_dst, sender_mac, ETHERTYPE_ARP) + ARP_HEADER.pack(
        HTYPE_ETHERNET, ETHERTYPE_IPV4, 6, 4, op, sender_mac, ip_to_bytes(sender_ip), target_mac,
        ip_to_bytes(target_ip),
    )


def build_arp_request(src_mac: str | bytes, src_ip: str, target_ip: str) -> bytes:
    """Broadcast "who has target_ip? tell src_ip" frame."""
    mac = mac_to_bytes(src_mac)
    return _build_arp(ArpOp.REQUEST, BROADCAST_MAC, mac, src_ip, ZERO_MAC, target_ip)


def build_arp_reply(src_mac: str | bytes, src_ip: str, dst_mac: str | bytes, dst_ip: str) -> bytes:
    """Unicast "src_ip is at src_mac" frame to dst_mac/dst_ip."""
    dst = mac_to_bytes(dst_mac)
    return _build_arp(ArpOp.REPLY, dst, mac_to_bytes(src_mac), src_ip, dst, dst_ip)


@dataclass
class _Entry:
    mac: str
    expires: float


@dataclass
class _Pending:
    """One in-flight resolution shared by every resolver of the same IP."""

    future: asyncio.Future[str]
    deadline: float
    requests: int = 0
    task: asyncio.Task[None] | None = None


def _retrieve_exception(future: asyncio.Future[str]) -> None:
    """Mark a finished future's exception as retrieved (waiters may all have timed out)."""
    if not future.cancelled():
        future.exception()


class ArpCache:
    """IPv4 -> MAC cache with expiry, and asyncio resolution that shares in-flight requests."""

    def __init__(self, ttl_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, ip: str) -> str | None:
        """The MAC of `ip` if known and not expired (expired entries are removed)."""
        entry = self._entries.get(ip)
        if entry is None:
            return None
        if self._clock() >= entry.expires:
            del self._entries[ip]
            return None
        return entry.mac

    def learn(self, ip: str, mac: str | bytes) -> None:
        """Record (or refresh) `ip` at `mac` and wake the resolvers waiting for it."""
        text = mac_to_str(mac_to_bytes(mac))
        self._entries[ip] = _Entry(text, self._clock() + self.ttl_s)
        pending = self._pending.pop(ip, None)
        if pending is None:
            return
        if not pending.future.done():
            pending.future.set_result(text)
        if pending.task is not None:
            pending.task.cancel()

    def forget(self, ip: str) -> None:
        """Drop the entry of `ip`, if any."""
        self._entries.pop(ip, None)

    def purge(self) -> int:
        """Remove every expired entry; return how many were removed."""
        now = self._clock()
        expired = [ip for ip, entry in self._entries.items() if now >= entry.expires]
        for ip in expired:
            del self._entries[ip]
        return len(expired)

    async def resolve(
        self,
        ip: str,
        send_request: Callable[[], None],
        timeout_s: float = 3.0,
        retries: int = 3,
    ) -> str:
        """The MAC of `ip`: cached, or learnt after ARP requests; ArpTimeout after `timeout_s`.

        Sends 1 + `retries` requests at doubling intervals that add up to `timeout_s`. A resolver
        arriving while one is in flight shares its requests and waits at most its own timeout_s.
        """
        mac = self.get(ip)
        if mac is not None:
            return mac
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = self._pending.get(ip)
        wait: float | None = timeout_s
        if pending is None or started >= pending.deadline:
            pending = self._start(ip, send_request, timeout_s, retries)
            wait = None  # the request task fails the future at its deadline
        try:
            return await asyncio.wait_for(asyncio.shield(pending.future), wait)
        except (TimeoutError, ArpTimeout):
            raise ArpTimeout(ip, loop.time() - started, pending.requests) from None

    def _start(
        self, ip: str, send_request: Callable[[], None], timeout_s: float, retries: int
    ) -> _Pending:
        """Register a pending resolution of `ip` and start its request task."""
        loop = asyncio.get_running_loop()
        pending = _Pending(loop.create_future(), loop.time() + timeout_s)
        pending.future.add_done_callback(_retrieve_exception)
        self._pending[ip] = pending
        pending.task = loop.create_task(
            self._drive(ip, pending, send_request, timeout_s, retries), name=f"arp-resolve-{ip}"
        )
        return pending

    async def _drive(
        self,
        ip: str,
        pending: _Pending,
        send_request: Callable[[], None],
        timeout_s: float,
        retries: int,
    ) -> None:
        """Send the requests with exponential backoff; fail the future when the bound is reached."""
        attempts = 1 + max(0, retries)
        base = timeout_s / (2**attempts - 1)
        started = asyncio.get_running_loop().time()
        try:
            for attempt in range(attempts):
                pending.requests += 1
                try:
                    send_request()
                except Exception:  # a failed PacketOut must not strand the waiters
                    log.exception("sending ARP request %d for %s failed", attempt + 1, ip)
                await asyncio.sleep(base * 2**attempt)
        finally:
            if self._pending.get(ip) is pending:
                del self._pending[ip]
            if not pending.future.done():
                waited = asyncio.get_running_loop().time() - started
                log.info("ARP resolution of %s failed after %.2f s", ip, waited)
                pending.future.set_exception(ArpTimeout(ip, waited, pending.requests))


class ArpResponder:
    """Answers ARP requests for our local IPs and learns senders that talk to us."""

    def __init__(self, local: dict[str, str], cache: ArpCache | None = None) -> None:
        self.local = {ip: mac_to_str(mac_to_bytes(mac)) for ip, mac in local.items()}
        self.cache = cache

    def handle(self, frame: bytes | bytearray | memoryview) -> bytes | None:
        """The reply frame for a request for one of our IPs; None for anything else."""
        try:
            packet = parse_arp(frame)
        except ArpError as error:
            log.debug("ignoring ARP frame: %s", error)
            return None
        self._learn(packet)
        if packet.op != ArpOp.REQUEST:
            return None
        our_mac = self.local.get(packet.target_ip)
        if our_mac is None:
            return None
        return build_arp_reply(our_mac, packet.target_ip, packet.sender_mac, packet.sender_ip)

    def _learn(self, packet: ArpPacket) -> None:
        """RFC 826 merge: learn the sender if it addresses us or is already cached."""
        if self.cache is None or packet.sender_ip == ZERO_IP:
            return
        if packet.sender_mac == _BROADCAST_TEXT:
            return
        if packet.sender_ip in self.local:
            log.warning("ARP from %s claims our address %s", packet.sender_mac, packet.sender_ip)
            return
        if packet.target_ip in self.local or self.cache.get(packet.sender_ip) is not None:
            self.cache.learn(packet.sender_ip, packet.sender_mac)
