"""The one SYN cookie format (nic_contract/syn_cookie.py): HalfSipHash-2-4 as its reference
computes it, and cookies that carry the MSS and expire after two epochs."""

from __future__ import annotations

import pytest

from nic_contract.syn_cookie import (HASH_BITS, MSS_TABLE, STAMP_BITS, check_cookie,
                                     halfsiphash24, make_cookie, mss_index)

# The reference implementation's vectors_hsip32 (key 00..07, message 00..len-1), by length.
REFERENCE = {0: "a9359f5b", 1: "27475ab8", 2: "fa62a603", 3: "8afee704", 4: "2a6e4689",
             7: "8bcf63c5", 8: "d0b8848f", 12: "57f0872f", 16: "d9b5ac84", 19: "7befe387",
             20: "e34d1045"}
KEY = (0x03020100, 0x07060504)
CONN = (0x0A630101, 0x0A630102, 80, 40000)   # local, peer address; local, peer port


@pytest.mark.parametrize("length", sorted(REFERENCE))
def test_halfsiphash_matches_the_reference_vectors(length: int) -> None:
    tag = halfsiphash24(*KEY, bytes(range(length)))
    assert tag.to_bytes(4, "little").hex() == REFERENCE[length]


def test_a_cookie_carries_the_mss_and_its_epoch() -> None:
    cookie = make_cookie(*KEY, *CONN, 12345, 70, 1460)
    assert cookie >> (32 - STAMP_BITS) == 70 % 32
    assert check_cookie(*KEY, *CONN, 12345, cookie, 70) == 1460
    assert check_cookie(*KEY, *CONN, 12345, cookie, 71) == 1460   # the next epoch still
    assert check_cookie(*KEY, *CONN, 12345, cookie, 72) is None   # then no more
    assert check_cookie(*KEY, *CONN, 12345, cookie, 69) is None   # nor from the future
    assert check_cookie(*KEY, *CONN, 12346, cookie, 70) is None   # another SYN's ISN
    assert check_cookie(KEY[0] ^ 1, KEY[1], *CONN, 12345, cookie, 70) is None   # another key
    assert check_cookie(*KEY, *CONN, 12345, cookie ^ (1 << HASH_BITS - 1), 70) is None
    assert check_cookie(*KEY, *CONN, 12345, make_cookie(*KEY, *CONN, 12345, 70, 1400), 70) == 1300


def test_the_mss_rounds_down_to_the_table() -> None:
    assert [MSS_TABLE[mss_index(m)] for m in (0, 536, 1299, 1300, 1459, 1460, 9000)] == \
        [536, 536, 536, 1300, 1440, 1460, 1460]
