"""The client's StreamChannel to one device: requests go out through a queue; a reader thread
owned by the stream sorts what comes in (arbitration updates, PacketIns) into queues. A stream
failure is logged by the reader and raised as StreamError on the user's next call."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable, Iterator, NoReturn

import grpc

from nic_contract.p4rt.errors import (Code, NotPrimaryError, P4RuntimeError, StreamError,
                                      code_name, rpc_code_name)
from nic_contract.p4rt.proto import p4runtime_pb2

log = logging.getLogger(__name__)

_CLOSED = object()  # queue sentinel: the stream has ended
_MIN_JOIN = 1.0     # seconds close() waits for the reader at least


class StreamChannel:
    """One StreamChannel: arbitration of this client and its PacketOuts and PacketIns."""

    def __init__(self, device_id: int = 0, address: str = "") -> None:
        self.device_id, self.address = device_id, address   # for messages
        self.error: str | None = None   # why the stream failed (close() sets none)
        self._primary = False
        self._arbitrated = False
        self._closing = False
        self._requests: queue.Queue = queue.Queue()
        self._arbitration: queue.Queue = queue.Queue()
        self._packets: queue.Queue = queue.Queue()
        self._call: Any = None
        self._reader: threading.Thread | None = None

    @property
    def is_primary(self) -> bool:
        """Whether the last arbitration update said this client is primary."""
        return self._primary and self.error is None

    def check(self) -> None:
        """Raise StreamError if the stream has failed."""
        if self.error is not None:
            raise StreamError(f"{self.error}; reconnect (close() then connect())")

    def start(self, stub: Callable[[Iterator[p4runtime_pb2.StreamMessageRequest]], Any]) -> None:
        """Open the stream with the StreamChannel stub and start its reader thread."""
        self._call = stub(self._request_iter())
        self._reader = threading.Thread(target=self._read_stream, name="p4rt-stream",
                                        daemon=True)
        self._reader.start()

    def close(self, timeout: float) -> None:
        """End the stream and join the reader thread (idempotent)."""
        self._closing = True
        if self._call is not None:
            self._requests.put(_CLOSED)
            self._call.cancel()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=max(timeout, _MIN_JOIN))
            if self._reader.is_alive():
                log.warning("P4Runtime stream reader did not stop within %.1f s", timeout)
        self._call, self._reader = None, None
        self._primary = False

    def arbitrate(self, election_id: tuple[int, int], timeout: float) -> None:
        """Become primary with `election_id`; NotPrimaryError if another controller is."""
        high, low = election_id
        req = p4runtime_pb2.StreamMessageRequest()
        req.arbitration.device_id = self.device_id
        req.arbitration.election_id.high = high
        req.arbitration.election_id.low = low
        self._requests.put(req)
        try:
            arb = self._arbitration.get(timeout=timeout)
        except queue.Empty:
            raise P4RuntimeError(f"no arbitration answer from {self.address} within "
                                 f"{timeout:g} s (device id {self.device_id}?)") from None
        if arb is _CLOSED:
            reason = self.error or "stream closed"
            if "election" in reason.lower():
                raise NotPrimaryError(f"arbitration refused: {reason}; another controller "
                                      f"uses election id {election_id}")
            raise P4RuntimeError(f"arbitration failed on device {self.device_id}: {reason}")
        if arb.status.code != Code.OK:
            theirs = (arb.election_id.high, arb.election_id.low)
            raise NotPrimaryError(
                f"another controller is primary on device {self.device_id} with election id "
                f"{theirs} >= ours {election_id}: stop it or use a higher election_id")

    def send(self, request: p4runtime_pb2.StreamMessageRequest) -> None:
        """Queue a message (a PacketOut, ...) for the stream."""
        self._requests.put(request)

    def packet_in(self, timeout: float) -> p4runtime_pb2.PacketIn | None:
        """Next PacketIn, or None after `timeout` seconds; StreamError once the stream ended."""
        try:
            item = self._packets.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _CLOSED:
            self._ended(self._packets)
        return item

    def queued_packet_ins(self) -> Iterator[p4runtime_pb2.PacketIn]:
        """The PacketIns queued so far, taken one by one without waiting."""
        while True:
            try:
                item = self._packets.get_nowait()
            except queue.Empty:
                return
            if item is _CLOSED:
                self._packets.put(_CLOSED)
                return
            yield item

    def _ended(self, q: queue.Queue) -> NoReturn:
        q.put(_CLOSED)  # keep waking later callers
        self.check()
        raise StreamError("P4Runtime stream closed")

    def _request_iter(self) -> Iterator[p4runtime_pb2.StreamMessageRequest]:
        while True:
            item = self._requests.get()
            if item is _CLOSED:
                return
            yield item

    def _read_stream(self) -> None:
        """Reader thread: dispatch stream messages to queues until the stream ends."""
        reason = "the switch closed the P4Runtime stream"
        try:
            for msg in self._call:
                self._dispatch(msg)
        except grpc.RpcError as err:
            reason = f"P4Runtime stream failed: {rpc_code_name(err)}: {err.details()}"
        except Exception as err:  # noqa: BLE001 - the thread must report, not die silently
            reason = f"P4Runtime stream reader crashed: {err!r}"
            log.exception("P4Runtime stream reader crashed")
        if not self._closing:
            # Before the first arbitration answer, connect() raises this reason itself.
            level = logging.ERROR if self._arbitrated else logging.DEBUG
            log.log(level, "%s (device %d at %s)", reason, self.device_id, self.address)
            self.error = reason
        for q in (self._arbitration, self._packets):
            q.put(_CLOSED)

    def _dispatch(self, msg: p4runtime_pb2.StreamMessageResponse) -> None:
        kind = msg.WhichOneof("update")
        if kind == "packet":
            self._packets.put(msg.packet)
        elif kind == "arbitration":
            self._on_arbitration(msg.arbitration)
        elif kind == "error":
            err = msg.error
            log.error("P4Runtime stream error %s: %s", code_name(err.canonical_code), err.message)
        else:
            log.debug("ignoring stream message %s", kind)

    def _on_arbitration(self, arb: p4runtime_pb2.MasterArbitrationUpdate) -> None:
        was_primary = self._primary
        self._primary = arb.status.code == Code.OK
        self._arbitrated = True
        if was_primary and not self._primary:
            log.warning("lost primary role on device %d: %s", self.device_id, arb.status.message)
        self._arbitration.put(arb)
