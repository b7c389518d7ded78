"""Deferring SIGINT/SIGTERM while a critical section (an atomic map save) runs; no ROS here."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = ["DEFERRED_SIGNALS", "deferred_signals"]

log = logging.getLogger(__name__)

DEFERRED_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
_depth = threading.local()


@contextlib.contextmanager
def deferred_signals(what: str = "the map save", signals: tuple[signal.Signals, ...] = DEFERRED_SIGNALS,
                     redeliver: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM until the block ends, then re-deliver the first one that arrived.

    Works on the main thread only (Python runs signal handlers there); elsewhere, and when nested,
    it is a no-op. Signals whose handler was installed outside Python (e.g. by rclpy) are left
    alone: they never raise in Python code. ``redeliver=False`` only logs them (a shutdown that is
    already stopping the process). Yields the list of signal numbers received so far.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread() or getattr(_depth, "n", 0):
        yield received
        return

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        log.warning("%s received during %s: it is deferred until the save is complete",
                    signal.Signals(signum).name, what)

    previous = {}
    try:
        for sig in signals:
            if signal.getsignal(sig) is None:  # a C-level handler (rclpy): nothing raises, keep it
                continue
            previous[sig] = signal.signal(sig, hold)
    except ValueError:  # not the main interpreter / main thread after all
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        yield received
        return
    _depth.n = 1
    try:
        yield received
    finally:
        _depth.n = 0
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received and redeliver:
            os.kill(os.getpid(), received[0])
