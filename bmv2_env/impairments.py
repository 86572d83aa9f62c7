"""Network impairments on a peer's link: random packet loss and a rate-limited bottleneck.

Loss is what `tc netem loss` would do, but with nftables (`numgen random`), because kernels
built without sch_netem (this project's CI machine among them) still have nf_tables. Rules sit
in the peer's namespace, in a table of their own, on the input and output hooks, so segments
are lost in both directions of the wire: the Linux peer's data and ACKs, and p4tas's. The
bottleneck is a token bucket (`tc qdisc tbf`) on the peer veth's egress.

Both need root (the namespaces are ours); loss needs the `nft` command (Debian: nftables).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from .peers import Peer, run_in

Namespace = Peer | str | None  # a peer, a namespace's name, or None: this namespace
LOSS_TABLE = "p4tas_loss"
LOSS_RESOLUTION = 1_000_000   # loss is drawn per packet as numgen random mod this
TBF_LATENCY_MS = 50           # queueing the bucket allows before it drops
IPV4_TCP_TS_HEADERS = 52      # IPv4 + TCP + timestamps option: longer means payload


class ImpairmentError(RuntimeError):
    """An impairment could not be set; the message says what to install or fix."""


@dataclass(frozen=True)
class LossCounts:
    """Packets the loss rules dropped in each direction (as seen from the peer)."""

    peer_in: int
    peer_out: int


def nft_available() -> bool:
    """Whether the `nft` command is installed."""
    return shutil.which("nft") is not None


def set_loss(peer: Namespace, percent: float) -> None:
    """Drop `percent` % of TCP segments entering and leaving the peer (0 removes the rules)."""
    if not 0 <= percent < 100:
        raise ImpairmentError(f"loss must be in [0, 100) percent, got {percent}")
    clear_loss(peer)
    if percent == 0:
        return
    _rule_both_ways(peer, LOSS_TABLE, f"meta l4proto tcp {_random_share(percent)} counter drop",
                    "packet loss")


def _random_share(percent: float) -> str:
    """An nft expression true for `percent` % of packets, drawn per packet."""
    return f"numgen random mod {LOSS_RESOLUTION} < {round(percent / 100 * LOSS_RESOLUTION)}"


def _rule_both_ways(peer: Namespace, table: str, rule: str, what: str) -> None:
    """`rule` on the peer's input and output hooks, in a table of its own."""
    if not nft_available():
        raise ImpairmentError(f"{what} needs the nft command: apt-get install nftables")
    _nft(peer, ["-f", "-"], f"table inet {table} {{\n"
                            f"  chain peer_in {{ type filter hook input priority 0; {rule}; }}\n"
                            f"  chain peer_out {{ type filter hook output priority 0; {rule}; }}\n"
                            "}\n")


def set_silence(peer: Namespace) -> None:
    """Drop every TCP segment entering and leaving the peer (a peer gone silent: a crashed
    host, a cut cable); clear_loss removes it."""
    clear_loss(peer)
    _rule_both_ways(peer, LOSS_TABLE, "meta l4proto tcp counter drop", "silence")


def drop_first_segment(peer: Namespace, src_ip: str) -> None:
    """One-shot loss: drop the next data segment `src_ip` sends the peer, and nothing after
    it (a set remembers that it happened), so that a lone request is lost and only a
    retransmission timeout can recover it. Replaces any loss rules."""
    clear_loss(peer)
    if not nft_available():
        raise ImpairmentError("packet loss needs the nft command: apt-get install nftables")
    rule = (f"ip saddr {src_ip} ip length > {IPV4_TCP_TS_HEADERS} tcp flags & syn == 0 "
            "ip saddr != @dropped add @dropped { ip saddr } counter drop")
    _nft(peer, ["-f", "-"], f"table inet {LOSS_TABLE} {{\n"
                            "  set dropped { type ipv4_addr; flags dynamic; }\n"
                            f"  chain peer_in {{ type filter hook input priority 0; {rule}; }}\n"
                            "}\n")


ECN_TABLE = "p4tas_ecn"


def set_ecn_marking(peer: Namespace, percent: float) -> None:
    """Mark CE on `percent` % of the ECN-capable TCP segments entering and leaving the peer,
    as an AQM bottleneck would (RFC 3168; this kernel has no marking qdisc to borrow): the
    segments p4tas sends and those the Linux peer sends. 0 removes the rules."""
    if not 0 <= percent <= 100:
        raise ImpairmentError(f"marking must be in [0, 100] percent, got {percent}")
    clear_ecn_marking(peer)
    if percent == 0:
        return
    _rule_both_ways(peer, ECN_TABLE, "meta l4proto tcp ip ecn { ect0, ect1 } "
                    f"{_random_share(percent)} ip ecn set ce counter", "ECN marking")


def clear_ecn_marking(peer: Namespace) -> None:
    """Remove the marking rules, if any."""
    if nft_available():
        _run(peer, ["nft", "delete", "table", "inet", ECN_TABLE])


def clear_loss(peer: Namespace) -> None:
    """Remove the loss rules, if any."""
    if nft_available():
        _run(peer, ["nft", "delete", "table", "inet", LOSS_TABLE])


def loss_counts(peer: Namespace) -> LossCounts:
    """How many packets the loss rules have dropped so far."""
    out = _nft(peer, ["list", "table", "inet", LOSS_TABLE])
    counts: dict[str, int] = {}
    chain = None
    for line in out.splitlines():
        words = line.split()
        if words[:1] == ["chain"]:
            chain = words[1]
        elif "packets" in words and chain is not None:
            counts[chain] = int(words[words.index("packets") + 1])
    return LossCounts(counts.get("peer_in", 0), counts.get("peer_out", 0))


def set_bottleneck(ifname: str, rate_mbit: float, netns: Namespace = None,
                   burst_bytes: int = 32_000) -> None:
    """Limit what `ifname` sends to `rate_mbit` (a token bucket on its egress). For the
    direction p4tas -> peer that is the switch's end of the wire veth (root namespace)."""
    _tc(netns, ["qdisc", "replace", "dev", ifname, "root", "tbf", "rate", f"{rate_mbit}mbit",
                "burst", str(burst_bytes), "latency", f"{TBF_LATENCY_MS}ms"])


def clear_bottleneck(ifname: str, netns: Namespace = None) -> None:
    """Remove the token bucket, if any."""
    _run(netns, ["tc", "qdisc", "del", "dev", ifname, "root"])


def _nft(peer: Namespace, args: list[str], stdin: str | None = None) -> str:
    proc = _run(peer, ["nft", *args], stdin)
    if proc.returncode != 0:
        raise ImpairmentError(f"nft {' '.join(args)} in {peer}: {proc.stderr.strip()}")
    return proc.stdout


def _run(netns: Namespace, argv: list[str], stdin: str | None = None):
    if netns is None:
        return subprocess.run(argv, input=stdin, capture_output=True, text=True)
    return run_in(netns, argv, input=stdin, capture_output=True, text=True)


def _tc(netns: Namespace, args: list[str]) -> None:
    proc = _run(netns, ["tc", *args])
    if proc.returncode != 0:
        raise ImpairmentError(f"tc {' '.join(args)}: {proc.stderr.strip()} "
                              "(needs CONFIG_NET_SCH_TBF)")
