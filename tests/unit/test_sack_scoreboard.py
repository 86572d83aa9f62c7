"""The SACK scoreboard (runtime.sack_scoreboard): blocks, RFC 6675 IsLost, partial ACKs,
timeouts and reneging."""

from __future__ import annotations

from runtime.sack_scoreboard import MAX_BLOCKS, SackScoreboard

MSS = 1000


def holes(board: SackScoreboard, acked: int) -> list[tuple[int, int]]:
    """Every hole the board would resend now, in order (marking each resent)."""
    out = []
    while (hole := board.next_hole(acked, MSS)) is not None:
        out.append(hole)
        board.resent(hole[0], hole[1], 10_000)
    return out


def test_blocks_merge_and_stay_sorted() -> None:
    board = SackScoreboard()
    assert board.add(5000, 6000, 0, 10_000)
    assert board.add(2000, 3000, 0, 10_000)
    assert board.add(3000, 4000, 0, 10_000)   # touches: merged
    assert board.blocks == [(2000, 4000), (5000, 6000)]
    assert board.sacked_bytes() == 3000 and board.highest_sacked(0) == 6000


def test_blocks_outside_what_is_in_flight_are_refused() -> None:
    board = SackScoreboard()
    assert not board.add(9000, 11_000, 0, 10_000)   # beyond anything sent
    assert not board.add(0, 0, 0, 10_000)
    assert board.add(500, 1500, 1000, 10_000)      # below snd_una: clipped (D-SACK-like)
    assert board.blocks == [(1000, 1500)]


def test_fast_recovery_resends_the_first_hole_then_only_holes_that_are_lost() -> None:
    """Lost: 0-1000 and 3000-4000; SACKed 1000-3000 and 4000-8000; 8000-10000 in flight."""
    board = SackScoreboard()
    board.add(1000, 3000, 0, 10_000)
    board.add(4000, 8000, 0, 10_000)
    assert board.enter_fast_recovery(0, 10_000, MSS)
    # 4000 bytes SACKed above 3000 > (DupThresh - 1) * MSS: that hole is lost too; what is
    # above the highest SACK is only in flight, never resent.
    assert holes(board, 0) == [(0, 1000), (3000, 4000)]
    assert not board.enter_fast_recovery(0, 10_000, MSS)   # one recovery at a time


def test_a_hole_becomes_lost_when_enough_is_sacked_above_it() -> None:
    board = SackScoreboard()
    board.add(1000, 2000, 0, 10_000)
    board.enter_fast_recovery(0, 10_000, MSS)
    board.add(3000, 4000, 0, 10_000)
    board.update_lost(MSS)
    assert holes(board, 0) == [(0, 1000)]          # 2000 SACKed above 2000-3000: not yet
    board.add(5000, 6000, 0, 10_000)
    board.update_lost(MSS)
    assert holes(board, 0) == []                   # two ranges, 2 MSS above: not yet
    board.add(7000, 8000, 0, 10_000)
    board.update_lost(MSS)
    assert holes(board, 0) == [(2000, 3000)]       # three ranges above it now


def test_a_partial_ack_resends_the_next_hole_and_the_recovery_point_ends_it() -> None:
    board = SackScoreboard()
    board.add(1000, 2000, 0, 10_000)
    board.enter_fast_recovery(0, 10_000, MSS)
    assert holes(board, 0) == [(0, 1000)]
    board.on_ack(2000, MSS)                        # partial: 2000-3000 is the next hole
    assert board.blocks == [] and board.in_recovery
    assert holes(board, 2000) == [(2000, 3000)]
    board.on_ack(10_000, MSS)
    assert not board.in_recovery and holes(board, 10_000) == []


def test_a_timeout_resends_everything_not_sacked_and_a_second_one_forgets_the_blocks() -> None:
    board = SackScoreboard()
    board.add(1000, 2000, 0, 4000)
    board.on_timeout(0, 4000)
    assert holes(board, 0) == [(0, 1000), (2000, 3000), (3000, 4000)]
    board.on_timeout(0, 4000)                       # the peer may have reneged
    assert board.blocks == []
    assert holes(board, 0) == [(0, 1000), (1000, 2000), (2000, 3000), (3000, 4000)]


def test_the_number_of_blocks_is_bounded() -> None:
    board = SackScoreboard()
    for i in range(MAX_BLOCKS + 10):
        board.add(2 * i * MSS + MSS, 2 * i * MSS + 2 * MSS, 0, 1 << 30)
    assert len(board.blocks) == MAX_BLOCKS


def test_a_lost_resend_goes_again_once_later_data_is_sacked() -> None:
    """0-1000 lost, resent while 10,000 was the highest byte sent; the peer then SACKs data
    sent after the resend (up to 14,000) but not the hole: the resend was lost too."""
    board = SackScoreboard()
    board.add(1000, 10_000, 0, 10_000)
    board.enter_fast_recovery(0, 10_000, MSS)
    hole = board.next_hole(0, MSS)
    assert hole == (0, 1000)
    board.resent(0, 1000, 10_000)
    assert board.next_hole(0, MSS) is None
    board.add(10_000, 12_000, 0, 14_000)
    board.find_lost_resends(MSS)
    assert board.next_hole(0, MSS) is None          # 2000 past it: could be reordering
    board.add(12_000, 14_000, 0, 14_000)
    board.find_lost_resends(MSS)
    assert board.next_hole(0, MSS) == (0, 1000)     # 4000 past it: lost
    board.resent(0, 1000, 14_000)
    assert board.next_hole(0, MSS) is None


def test_the_first_hole_is_lost_once_enough_is_sacked_above_it() -> None:
    board = SackScoreboard()
    assert not board.first_hole_lost(0, MSS)
    board.add(1000, 3000, 0, 10_000)
    assert not board.first_hole_lost(0, MSS)      # 2 MSS above: could be reordering
    board.add(4000, 5000, 0, 10_000)
    assert board.first_hole_lost(0, MSS)          # 3 MSS above
