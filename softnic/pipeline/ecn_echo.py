"""ecn_echo.p4: the ECN receiver (EcnEcho, RFC 3168 6.1.3): ECE on every ACK from a CE mark
until the peer's CWR; CWR is taken before CE."""

from __future__ import annotations

from .constants import ECN_CE, TCP_CWR
from .headers import Headers, Metadata


def ecn_echo(hdr: Headers, meta: Metadata) -> None:
    if hdr.tcp.flags & TCP_CWR:
        meta.dyn.ece_echo = 0
    if hdr.ipv4.ecn == ECN_CE:
        meta.dyn.ece_echo = 1
