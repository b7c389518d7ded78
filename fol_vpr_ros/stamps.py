"""Time stamps: ROS 2 time is integer nanoseconds; the one conversion constant everyone uses."""

from __future__ import annotations

__all__ = ["NS_PER_SEC", "ns_to_sec", "sec_to_ns"]

NS_PER_SEC = 1_000_000_000


def sec_to_ns(seconds: float) -> int:
    """Seconds (float) -> integer nanoseconds, rounded."""
    return round(seconds * NS_PER_SEC)


def ns_to_sec(ns: int) -> float:
    """Integer nanoseconds -> seconds (float)."""
    return ns / NS_PER_SEC
