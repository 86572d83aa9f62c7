"""A flow's SACK scoreboard (RFC 2018, RFC 6675): which bytes above the cumulative ACK the
peer holds, and which holes to resend.

Positions are the TX ring's stream positions (FlowChannel.tx_acked, tx_high...). The NIC
reports the first SACK block of every duplicate ACK (a SACK frame); the blocks accumulate
here. Recovery starts on the third duplicate ACK (the NIC's fast retransmit) or a
retransmission timeout:

- fast retransmit (the NIC's third duplicate ACK, or IsLost(snd_una) by the scoreboard
  itself, RFC 6675 5 (4), whichever comes first): the first hole (at snd_una) is lost at once (RFC 6675 5 (4.3)); any
  other hole once more than (DupThresh - 1) * MSS SACKed bytes lie above it (IsLost, RFC
  6675 4); a partial ACK makes the segment at the new snd_una lost too (RFC 6582 3.2 (5));
- timeout: everything not SACKed below the highest byte sent is lost (RFC 6675 5.1); a
  repeated timeout clears the scoreboard first, since the peer may have reneged.

Each lost hole is resent once per recovery (`rtx_next` walks up), unless its resend is lost
too: once the peer SACKs more than (DupThresh - 1) * MSS beyond what had been sent when the
hole was resent, and the hole is still open, the resend was lost and it goes again (as RACK
would see it, RFC 8985; without this only the timer recovers a lost retransmission).
Recovery ends when the cumulative ACK reaches the recovery point (tx_high at its start). Per
SACK frame the work is bounded by MAX_BLOCKS, and amortized O(1) for the resends.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from nic_contract.constants import DUPACK_THRESHOLD

MAX_BLOCKS = 64     # SACKed ranges kept; beyond, the lowest are forgotten (resent at worst)


@dataclass
class SackScoreboard:
    """SACKed ranges above the cumulative ACK and the state of the current recovery."""

    blocks: list[tuple[int, int]] = field(default_factory=list)  # sorted, disjoint [start, end)
    in_recovery: bool = False
    recovery_point: int = 0   # RFC 6675 RecoveryPoint: tx_high when recovery started
    lost_end: int = 0         # bytes not SACKed below this are lost
    rtx_next: int = 0         # holes below this were resent in this recovery
    timeouts: int = 0         # retransmission timeouts since the last new ACK
    # Resends in the order sent: (start, end, tx_high when sent); and resends found lost.
    resends: deque[tuple[int, int, int]] = field(default_factory=deque)
    lost_resends: list[tuple[int, int]] = field(default_factory=list)

    def add(self, start: int, end: int, acked: int, high: int) -> bool:
        """Record the SACKed range [start, end); False if it lies outside (acked, high]."""
        start = max(start, acked)
        if not acked <= start < end <= high:
            return False
        kept = []
        for left, right in self.blocks:
            if right < start or left > end:
                kept.append((left, right))
            else:
                start, end = min(start, left), max(end, right)
        kept.append((start, end))
        kept.sort()
        self.blocks = kept[-MAX_BLOCKS:]
        return True

    def on_ack(self, acked: int, mss: int) -> None:
        """A new cumulative ACK: forget what it covers; a partial ACK during recovery makes
        the segment it now starts at lost (RFC 6582); reaching the recovery point ends it."""
        self.timeouts = 0
        self.blocks = [(max(left, acked), right) for left, right in self.blocks if right > acked]
        while self.resends and self.resends[0][1] <= acked:
            self.resends.popleft()
        if not self.in_recovery:
            self.resends.clear()
            self.lost_resends.clear()
            return
        if acked - self.recovery_point >= 0:
            self.in_recovery = False
        else:
            self.lost_end = max(self.lost_end, acked + mss)

    def highest_sacked(self, acked: int) -> int:
        """One past the highest SACKed byte (acked when nothing is SACKed)."""
        return self.blocks[-1][1] if self.blocks else acked

    def sacked_bytes(self) -> int:
        """Bytes the peer holds above the cumulative ACK."""
        return sum(right - left for left, right in self.blocks)

    def first_hole_lost(self, acked: int, mss: int) -> bool:
        """IsLost(HighACK + 1) (RFC 6675 4): DupThresh ranges, or more than
        (DupThresh - 1) * MSS bytes, SACKed above snd_una."""
        if not self.blocks or self.blocks[0][0] <= acked:
            return False
        return (len(self.blocks) >= DUPACK_THRESHOLD
                or self.sacked_bytes() > (DUPACK_THRESHOLD - 1) * mss)

    def enter_fast_recovery(self, acked: int, high: int, mss: int) -> bool:
        """Third duplicate ACK: start a recovery unless one is running; whether it started."""
        if self.in_recovery:
            return False
        self.in_recovery = True
        self.recovery_point = high
        self.rtx_next = acked
        self.resends.clear()
        self.lost_resends.clear()
        self.lost_end = acked + mss   # the first hole at once (RFC 6675 5 (4.3))
        self.update_lost(mss)
        return True

    def on_timeout(self, acked: int, high: int) -> None:
        """Retransmission timeout: every byte not SACKed is lost; a repeated one clears the
        scoreboard first (the peer may have discarded what it SACKed, RFC 2018 8)."""
        self.timeouts += 1
        if self.timeouts > 1:
            self.blocks.clear()
        self.in_recovery = True
        self.recovery_point = high
        self.rtx_next = acked
        self.resends.clear()
        self.lost_resends.clear()
        self.lost_end = high

    def find_lost_resends(self, mss: int) -> None:
        """Resends whose hole is still open though the peer SACKed well past what had been
        sent when they went out: lost too (see the module docstring)."""
        beyond = self.highest_sacked(0) - (DUPACK_THRESHOLD - 1) * mss
        while self.resends and self.resends[0][2] < beyond:
            start, end, _ = self.resends.popleft()
            if not self._sacked(start, end):
                self.lost_resends.append((start, end))

    def _sacked(self, start: int, end: int) -> bool:
        """Whether [start, end) lies inside one SACKed range."""
        return any(left <= start and end <= right for left, right in self.blocks)

    def update_lost(self, mss: int) -> None:
        """IsLost (RFC 6675 4): a hole is lost once DupThresh discontiguous SACKed ranges or
        more than (DupThresh - 1) * MSS SACKed bytes lie above it; holes below the block
        where either is reached qualify."""
        if not self.in_recovery:
            return
        above = 0
        for count, (left, right) in enumerate(reversed(self.blocks), 1):
            above += right - left
            if count >= DUPACK_THRESHOLD or above > (DUPACK_THRESHOLD - 1) * mss:
                self.lost_end = max(self.lost_end, left)
                return

    def next_hole(self, acked: int, mss: int) -> tuple[int, int] | None:
        """The next lost range to resend, at most one MSS: [start, end); None if there is none."""
        if not self.in_recovery:
            return None
        while self.lost_resends:
            start, end = self.lost_resends.pop(0)
            if end > acked and not self._sacked(start, end):
                self.lost_resends.insert(0, (start, end))
                return max(start, acked), end
        start = max(self.rtx_next, acked)
        for left, right in self.blocks:
            if right <= start:
                continue
            if left <= start:
                start = right          # inside a SACKed range: skip it
                continue
            return self._hole(start, min(left, start + mss))
        return self._hole(start, start + mss)

    def _hole(self, start: int, end: int) -> tuple[int, int] | None:
        end = min(end, self.lost_end)
        return (start, end) if start < end else None

    def resent(self, start: int, end: int, high: int) -> None:
        """[start, end) was resent while `high` was the highest byte sent."""
        if self.lost_resends and self.lost_resends[0][0] <= start < self.lost_resends[0][1]:
            self.lost_resends.pop(0)
        self.rtx_next = max(self.rtx_next, end)
        self.resends.append((start, end, high))

    def clear(self) -> None:
        """Forget everything (the flow's TX stream starts over)."""
        self.blocks.clear()
        self.in_recovery = False
        self.timeouts = 0
        self.resends.clear()
        self.lost_resends.clear()
