"""What a replay did with the bag's frames and how fast: frame counts, latency per stage, real-time factor."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..node.frames import STAGES
from ..node.runners import RunnerFrame, RunnerStatus
from ..sources.bag import REASON_DUPLICATE, ImageScan
from ..stamps import NS_PER_SEC
from .metrics import TimingStats

__all__ = ["FrameCounts", "RealtimeStats", "failures_by_kind", "frame_counts", "latency_stats", "realtime_stats"]

MS_PER_S = 1e3


@dataclass(frozen=True)
class FrameCounts:
    """Frames of the image topic: read, skipped by the source (reason -> n), replayed, and what the runner did."""

    on_topic: int
    usable: int
    skipped_by_source: Mapping[str, int]
    out_of_order: int
    zero_stamps: int
    duplicate_stamps: int
    replayed: int
    processed: int
    skipped_by_gate: int
    failed: Mapping[str, int]
    dropped: int
    without_ground_truth: int
    evaluated: int

    def to_dict(self) -> dict[str, object]:
        """The summary.json ``frames`` entry."""
        return {"on_topic": self.on_topic, "usable": self.usable, "skipped_by_source": dict(self.skipped_by_source),
                "out_of_order_stamps": self.out_of_order, "zero_stamps": self.zero_stamps,
                "duplicate_stamps": self.duplicate_stamps, "replayed": self.replayed, "processed": self.processed,
                "skipped_by_keyframe_gate": self.skipped_by_gate, "failed": sum(self.failed.values()),
                "failed_by_kind": dict(self.failed), "dropped": self.dropped,
                "without_ground_truth": self.without_ground_truth, "evaluated": self.evaluated}


def failures_by_kind(runs: Sequence[RunnerFrame]) -> Counter[str]:
    """Failed frames per error kind."""
    return Counter(r.output.error_kind for r in runs if r.status == RunnerStatus.FAILED and r.output is not None)


def frame_counts(scan: ImageScan, decode_skipped: Mapping[str, int], runs: Sequence[RunnerFrame],
                 has_gt: np.ndarray) -> FrameCounts:
    """Counts of the scan (source skips, with frames the source could not decode) and of the runner."""
    status = Counter(r.status for r in runs)
    processed = [r for r in runs if r.status == RunnerStatus.PROCESSED]
    without = sum(1 for r in processed if not has_gt[r.frame.index])
    skipped_src = dict(scan.skipped)
    for reason, n in decode_skipped.items():
        skipped_src[f"cannot decode: {reason}"] = skipped_src.get(f"cannot decode: {reason}", 0) + n
    return FrameCounts(
        on_topic=scan.total, usable=len(scan.records), skipped_by_source=skipped_src, out_of_order=scan.out_of_order,
        zero_stamps=scan.stamps_from_bag_time, duplicate_stamps=int(scan.skipped.get(REASON_DUPLICATE, 0)),
        replayed=len(runs), processed=len(processed), skipped_by_gate=status[RunnerStatus.SKIPPED],
        failed=dict(failures_by_kind(runs)), dropped=status[RunnerStatus.DROPPED], without_ground_truth=without,
        evaluated=len(processed) - without)


@dataclass(frozen=True)
class RealtimeStats:
    """Bag duration and camera rate vs processing; ``realtime_factor`` > 1 is faster than the camera."""

    bag_duration_s: float
    camera_rate_hz: float
    processing_s: float  # sum of the node's per-frame total latency
    wall_s: float  # replay wall time (bag reading, processing, result writing)
    realtime_factor: float  # bag_duration_s / processing_s
    processing_rate_hz: float  # processed frames / processing_s
    frames_over_budget: int  # processed frames slower than the camera period

    def to_dict(self) -> dict[str, float | int | None]:
        """The summary.json ``realtime`` entry (non-finite values as null)."""
        def clean(x: float) -> float | None:
            return round(float(x), 4) if math.isfinite(x) else None

        return {"bag_duration_s": clean(self.bag_duration_s), "camera_rate_hz": clean(self.camera_rate_hz),
                "processing_s": clean(self.processing_s), "wall_s": clean(self.wall_s),
                "realtime_factor": clean(self.realtime_factor), "processing_rate_hz": clean(self.processing_rate_hz),
                "frames_over_budget": self.frames_over_budget}


def latency_stats(frames: Sequence[RunnerFrame]) -> dict[str, TimingStats]:
    """Latency per stage over the processed frames (re-ranking only where it ran)."""
    outs = [r.output for r in frames if r.status == RunnerStatus.PROCESSED and r.output is not None]
    stats = {}
    for stage in STAGES:
        vals = [getattr(o.latency, stage) for o in outs]
        if stage == "rerank":
            vals = [v for v in vals if v > 0]  # 0 = re-ranking did not run
        stats[stage] = TimingStats.from_ms(vals)
    return stats


def realtime_stats(stamps: np.ndarray, frames: Sequence[RunnerFrame], wall_s: float) -> RealtimeStats:
    """Bag duration and median camera rate from the stamps, against the node's summed processing time."""
    duration = float(stamps[-1] - stamps[0]) / NS_PER_SEC if len(stamps) > 1 else 0.0
    dt = np.diff(stamps) / NS_PER_SEC
    dt = dt[dt > 0]
    rate = 1.0 / float(np.median(dt)) if len(dt) else math.nan
    totals = np.array([r.output.latency.total for r in frames if r.output is not None], np.float64)
    processing = float(totals.sum()) / MS_PER_S
    processed = [r for r in frames if r.status == RunnerStatus.PROCESSED]
    period_ms = MS_PER_S / rate if math.isfinite(rate) else math.inf
    over = sum(1 for r in processed if r.output.latency.total > period_ms)
    return RealtimeStats(duration, rate, processing, wall_s,
                         duration / processing if processing > 0 else math.nan,
                         len(processed) / processing if processing > 0 else math.nan, over)
