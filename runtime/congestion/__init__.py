"""Congestion control in the slow path: one module per algorithm, one registry.

Adding an algorithm is one file: a CongestionControl subclass with a `name`, listed in
ALGORITHMS. "none" means no rate limit (the flow is paced only by the peer's window).
"""

from __future__ import annotations

from runtime.congestion.algorithm import CongestionControl, IntervalFeedback, RateLimits
from runtime.congestion.dctcp import RateDctcp
from runtime.congestion.timely import Timely

ALGORITHMS: dict[str, type[CongestionControl]] = {cls.name: cls for cls in (RateDctcp, Timely)}
UNLIMITED = "none"
CHOICES = (*ALGORITHMS, UNLIMITED)


def reacts_to_ecn(name: str) -> bool:
    """Whether flows under this algorithm may negotiate ECN ("none" never reacts)."""
    cls = ALGORITHMS.get(name)
    return cls is not None and cls.uses_ecn


def make(name: str, limits: RateLimits = RateLimits()) -> CongestionControl | None:
    """A fresh controller for one flow; None for "none"; ValueError for an unknown name."""
    if name == UNLIMITED:
        return None
    try:
        return ALGORITHMS[name](limits)
    except KeyError:
        raise ValueError(f"unknown congestion control {name!r}: choose one of "
                         f"{', '.join(CHOICES)}") from None


__all__ = ["ALGORITHMS", "CHOICES", "UNLIMITED", "CongestionControl", "IntervalFeedback",
           "RateLimits", "make", "reacts_to_ecn"]
