"""The core's counters (keyed by the outcome enums), latency windows, health and ``DiagnosticsSnapshot``."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..stamps import NS_PER_SEC
from .frames import STAGES, FrameOutput
from .outcomes import DropReason, FrameStatus, MatchOutcome, NodeWarning, SkipReason

__all__ = ["DiagnosticsSnapshot", "FrameCounters", "LatencyStats", "health"]

_LATENCY_SAMPLES = 200  # frames per stage kept for the latency statistics
_LATENCY_PERCENTILE = 95


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one stage over the recent frames (ms)."""

    mean: float
    p95: float
    max: float
    count: int


@dataclass(frozen=True)
class DiagnosticsSnapshot:
    """Counters and rates of the node; ``level`` is 'ok', 'warn' or 'error' with a short ``message``."""

    mode: str
    rate_hz: float
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_skipped: int
    frames_failed: int
    pending: int
    errors: dict[str, int]
    warnings: dict[str, int]
    latency_ms: dict[str, LatencyStats]
    map_size: int
    localized: bool
    last_stamp_ns: int | None
    last_accepted_stamp_ns: int | None
    accepted: int
    loop_closures: int
    worker_running: bool
    level: str
    message: str
    rerank_k: int = 0  # re-ranked candidates the next frame uses (rerank_k, or the budget's choice)
    latency_budget_ms: float = 0.0  # 0 = no budget
    budget_misses: int = 0  # processed frames whose total latency exceeded the budget
    outcomes: dict[MatchOutcome, int] = field(default_factory=dict)  # processed keyframes per decision
    skipped_by: dict[SkipReason, int] = field(default_factory=dict)
    dropped_by: dict[DropReason, int] = field(default_factory=dict)

    def key_values(self) -> list[tuple[str, str]]:
        """Flat (key, value) strings, e.g. for diagnostic_msgs/KeyValue."""
        out = [("mode", self.mode), ("rate_hz", f"{self.rate_hz:.2f}")]
        for name in ("frames_received", "frames_processed", "frames_dropped", "frames_skipped", "frames_failed",
                     "pending", "map_size", "accepted", "loop_closures"):
            out.append((name, str(getattr(self, name))))
        out.append(("localized", str(self.localized).lower()))
        out.append(("rerank_k", str(self.rerank_k)))
        if self.latency_budget_ms > 0:
            out += [("latency_budget_ms", f"{self.latency_budget_ms:g}"), ("budget_misses", str(self.budget_misses))]
        out += [(f"error.{k}", str(v)) for k, v in sorted(self.errors.items())]
        out += [(f"warning.{k}", str(v)) for k, v in sorted(self.warnings.items())]
        for stage, st in self.latency_ms.items():
            out.append((f"latency_ms.{stage}", f"mean {st.mean:.1f} p95 {st.p95:.1f}"))
        return out


def health(worker_died: bool, failed_recent: int, processed_recent: int, window_sec: float,
           errors: dict[str, int], not_localized: bool, localized_timeout_sec: float) -> tuple[str, str]:
    """Diagnostic level and message: error when the worker died or every recent frame failed, warn when some
    recent frames failed or localize mode lost its match, ok otherwise (older errors are still named)."""
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
    if worker_died:
        return "error", "worker thread stopped unexpectedly"
    if failed_recent and not processed_recent:
        return "error", f"every frame of the last {window_sec:g} s failed ({failed_recent}); errors: {kinds}"
    if failed_recent:
        return "warn", (f"{failed_recent} of {failed_recent + processed_recent} frames of the last {window_sec:g} s "
                        f"failed; errors: {kinds}")
    if not_localized:
        return "warn", f"not localized: no match accepted in the last {localized_timeout_sec:g} s"
    if errors:
        return "ok", f"running; earlier frames with errors: {kinds}"
    return "ok", "ok"


class FrameCounters:
    """Frames per ``FrameStatus``, decisions per ``MatchOutcome``, skips and drops per reason, errors per kind,
    warnings, the recent processed / failed frames and the per-stage latencies. Not locked: the core holds
    its lock around every call."""

    def __init__(self, start: float) -> None:
        self.start = start
        self.received = 0
        self.frames: collections.Counter[FrameStatus] = collections.Counter()
        self.outcomes: collections.Counter[MatchOutcome] = collections.Counter()
        self.skipped_by: collections.Counter[SkipReason] = collections.Counter()
        self.dropped_by: collections.Counter[DropReason] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.warnings: collections.Counter[NodeWarning] = collections.Counter()
        self.loop_closures = 0
        self.last_accepted_stamp: int | None = None
        self.latency = {s: collections.deque(maxlen=_LATENCY_SAMPLES) for s in STAGES}
        self.done_times: collections.deque[float] = collections.deque()
        self.fail_times: collections.deque[float] = collections.deque()

    def dropped(self, reason: DropReason) -> None:
        self.frames[FrameStatus.DROPPED] += 1
        self.dropped_by[reason] += 1

    def skipped(self, reason: SkipReason) -> None:
        self.frames[FrameStatus.SKIPPED] += 1
        self.skipped_by[reason] += 1

    def failed(self, now: float) -> None:
        self.frames[FrameStatus.FAILED] += 1
        self.fail_times.append(now)

    def processed(self, out: FrameOutput, ran: Iterable[str], now: float) -> None:
        """Count a processed keyframe; ``ran`` names the stages that ran (for the latency windows)."""
        self.frames[FrameStatus.PROCESSED] += 1
        self.done_times.append(now)
        for stage in ran:
            self.latency[stage].append(getattr(out.latency, stage))
        if out.outcome is not None:
            self.outcomes[out.outcome] += 1
        if out.match is not None:
            self.last_accepted_stamp = out.stamp_ns
        if out.loop_closure is not None:
            self.loop_closures += 1

    @property
    def accepted(self) -> int:
        return self.outcomes[MatchOutcome.ACCEPTED]

    def expire(self, now: float, window_sec: float) -> None:
        """Forget processed / failed frames older than the window."""
        for times in (self.done_times, self.fail_times):
            while times and now - times[0] > window_sec:
                times.popleft()

    def rate_hz(self, now: float, window_sec: float) -> float:
        span = min(window_sec, now - self.start)
        return len(self.done_times) / span if span > 0 else 0.0

    def latency_stats(self) -> dict[str, LatencyStats]:
        out = {}
        for stage, values in self.latency.items():
            if values:
                a = np.fromiter(values, np.float64, len(values))
                out[stage] = LatencyStats(float(a.mean()), float(np.percentile(a, _LATENCY_PERCENTILE)),
                                          float(a.max()), len(a))
        return out

    def localized(self, last_stamp: int | None, timeout_sec: float) -> bool:
        """A match was accepted within ``timeout_sec`` (image stamps) of the last image."""
        acc = self.last_accepted_stamp
        return acc is not None and last_stamp is not None and 0 <= last_stamp - acc <= round(timeout_sec * NS_PER_SEC)
