"""Arbitration of softnic's P4Runtime server, by PI's rules: the StreamChannels of one device,
each with its election id once arbitrated; the highest is primary, and only the primary (or,
while no stream is open, a request without election id) may change the device."""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Any

from nic_contract.p4rt.proto import p4runtime_pb2
from softnic.p4runtime.encoding import set_u128, u128
from softnic.p4runtime.failures import Code, RpcFailure, check_device, invalid

pb = p4runtime_pb2
_MAX_CONNECTIONS = 16              # PI's limit of StreamChannels per device


@dataclass
class Hangup:
    """Ends a StreamChannel: with an error status, or OK when code is None."""

    code: int | None = None
    message: str = ""


class Connection:
    """One StreamChannel: its election id once arbitrated, and what to send on it."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.election_id: int | None = None
        self.device_id: int | None = None
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()

    def send(self, msg: pb.StreamMessageResponse) -> None:
        self.outbox.put(msg)

    def hang_up(self, code: int | None = None, message: str = "") -> None:
        self.outbox.put(Hangup(code, message))


class Arbitration:
    """The controllers connected to one device and which of them is primary."""

    def __init__(self, device_id: int) -> None:
        self.device_id = device_id
        self.primary: Connection | None = None
        self._lock = threading.Lock()      # connections and the primary
        self._connections: list[Connection] = []
        self._numbers = itertools.count(1)

    def open(self) -> Connection:
        """A new StreamChannel, not arbitrated yet."""
        return Connection(next(self._numbers))

    def check_primary(self, request: Any) -> None:
        """PI's rule: with no stream open, only requests without an election id pass."""
        with self._lock:
            primary = self.primary
            if primary is None:
                if request.HasField("election_id"):
                    raise RpcFailure(Code.PERMISSION_DENIED, "Not primary: no controller has "
                                     "arbitrated on the StreamChannel")
                return
            theirs = u128(request.election_id)
            if theirs != primary.election_id:
                raise RpcFailure(Code.PERMISSION_DENIED, f"Not primary: election id {theirs} is "
                                 f"not the primary's ({primary.election_id})")

    def arbitrate(self, conn: Connection, arb: pb.MasterArbitrationUpdate) -> None:
        """Add or update a controller; the highest election id is primary (PI's rules)."""
        if conn.device_id is not None and arb.device_id != conn.device_id:
            raise RpcFailure(Code.FAILED_PRECONDITION, "Invalid device id")
        check_device(arb.device_id, self.device_id)
        election = u128(arb.election_id)
        with self._lock:
            others = [c for c in self._connections if c is not conn]
            if any(c.election_id == election for c in others):
                raise invalid("Election id already exists")
            if conn.election_id is None and len(others) >= _MAX_CONNECTIONS:
                raise RpcFailure(Code.RESOURCE_EXHAUSTED, "Too many connections")
            old_primary = self.primary
            conn.device_id, conn.election_id = arb.device_id, election
            if conn not in self._connections:
                self._connections.append(conn)
            self.primary = max(self._connections, key=lambda c: c.election_id)
            if self.primary is not old_primary:
                self._notify_all()
            else:
                self._notify(conn)

    def remove(self, conn: Connection) -> None:
        """A StreamChannel ended: if it was the primary, the next highest takes over."""
        with self._lock:
            if conn not in self._connections:
                return
            self._connections.remove(conn)
            if conn is self.primary:
                self.primary = (max(self._connections, key=lambda c: c.election_id)
                                if self._connections else None)
                self._notify_all()

    def hang_up_all(self) -> None:
        """End every arbitrated StreamChannel with OK."""
        with self._lock:
            for conn in self._connections:
                conn.hang_up()

    def _notify_all(self) -> None:
        for conn in self._connections:
            self._notify(conn)

    def _notify(self, conn: Connection) -> None:
        """Tell `conn` whether it is primary (OK) or a backup (ALREADY_EXISTS)."""
        primary = self.primary
        msg = pb.StreamMessageResponse()
        arb = msg.arbitration
        arb.device_id = self.device_id
        set_u128(arb.election_id, primary.election_id)
        if conn is primary:
            arb.status.code, arb.status.message = Code.OK, "Is primary"
        else:
            arb.status.code, arb.status.message = Code.ALREADY_EXISTS, "Is backup"
        conn.send(msg)
