"""Sequence-number arithmetic (RFC 9293 3.4) and the window scale our rings need (RFC 7323)."""

MAX_UNSCALED_WINDOW = 0xFFFF
MAX_WINDOW_SHIFT = 14
SEQ_MOD = 1 << 32


def window_shift_for(ring_size: int) -> int:
    """Smallest window scale that lets the whole RX ring be advertised."""
    shift = 0
    while (ring_size >> shift) > MAX_UNSCALED_WINDOW and shift < MAX_WINDOW_SHIFT:
        shift += 1
    return shift


def seq_add(seq: int, n: int) -> int:
    return (seq + n) % SEQ_MOD


def seq_in_window(seq: int, start: int, size: int) -> bool:
    """start <= seq < start + size in sequence space."""
    return (seq - start) % SEQ_MOD < size
