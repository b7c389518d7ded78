"""The result of a bag evaluation (what summary.json and report.md say) and its terminal table."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..console import fraction, percent
from .bag_config import ScoreKind
from .bag_examples import ExampleSpec
from .frame_rows import FrameEval
from .loop_metrics import PrCurve
from .metrics import TimingStats
from .replay_stats import FrameCounts, RealtimeStats

__all__ = ["BagEvalResult"]


def _pct_of(x: float | None) -> str:
    """A fraction (0..1) shown in percent, as every recall of the CLI's tables."""
    return percent(None if x is None else 100.0 * x)


@dataclass(frozen=True)
class BagEvalResult:
    """Everything summary.json and report.md say about one bag evaluation."""

    mode: str
    bag: Path
    image_topic: str
    map_path: Path | None
    out: Path
    runner: str
    ground_truth: str  # e.g. 'odometry (/odom), compared in pose frame odom'
    gt_frame: str  # pose or utm
    thresholds_m: tuple[float, ...]
    heading_limit_deg: float | None
    recall: Mapping[float, Mapping[int, float]]  # localize: threshold -> N -> percent
    queries_without_positives: Mapping[float, int]
    pr: Mapping[float, PrCurve]  # threshold -> curve over the acceptance score
    score_kind: ScoreKind
    accepted: Mapping[float, Mapping[str, int | float | None]]  # the node's decisions per threshold
    latency_ms: Mapping[str, TimingStats]
    frames: FrameCounts
    realtime: RealtimeStats
    map_size: int
    synthetic: bool
    weights: str
    input_size: tuple[int, int]
    notes: tuple[str, ...] = ()
    per_frame: tuple[FrameEval, ...] = ()
    map_positions: np.ndarray | None = field(default=None, repr=False)  # [M, 3] map keyframes (localize)
    examples: tuple[ExampleSpec, ...] = ()
    config: Mapping[str, object] = field(default_factory=dict)
    summary_path: Path | None = None
    report_path: Path | None = None
    results_bag: Path | None = None
    results_counts: Mapping[str, int] = field(default_factory=dict)
    pr_verified: Mapping[float, PrCurve] = field(default_factory=dict)  # best candidates failing verification dropped

    def _recall_lines(self) -> list[str]:
        """Recall@N (percent), PR AUC (fraction) and recall at 100 % precision (percent) per threshold."""
        ns = sorted({n for r in self.recall.values() for n in r})
        lines = [f"{'threshold':>10s} " + " ".join(f"{'R@' + str(n):>8s}" for n in ns) + f" {'PR AUC':>7s} "
                 f"{'R@P100':>8s}"]
        for t in self.thresholds_m:
            pr = self.pr.get(t)
            lines.append(f"{t:>8g} m " + " ".join(f"{percent(self.recall[t].get(n)):>8s}" for n in ns)
                         + f" {fraction(pr.auc if pr else None):>7s} "
                         f"{_pct_of(pr.recall_at_full_precision if pr else None):>8s}")
        return lines

    def _loop_lines(self) -> list[str]:
        """Positives, loops accepted and correct, PR AUC (fraction), recall at 100 % precision (percent)."""
        lines = [f"{'threshold':>10s} {'positives':>9s} {'loops':>6s} {'correct':>7s} {'PR AUC':>7s} {'R@P100':>8s}"]
        for t in self.thresholds_m:
            pr, acc = self.pr[t], self.accepted.get(t, {})
            lines.append(f"{t:>8g} m {pr.num_positives:9d} {acc.get('accepted', 0):6d} "
                         f"{acc.get('correct', 0):7d} {fraction(pr.auc):>7s} "
                         f"{_pct_of(pr.recall_at_full_precision):>8s}")
        return lines

    def _verification_lines(self) -> list[str]:
        """AP and recall at 100 % precision without and with geometric verification (when it ran)."""
        if not self.pr_verified:
            return []
        lines = ["geometric verification (AP / R@P100):"]
        for t in self.thresholds_m:
            a, b = self.pr.get(t), self.pr_verified.get(t)
            if a is None or b is None:
                continue
            lines.append(f"{t:>8g} m without {fraction(a.auc)} / {_pct_of(a.recall_at_full_precision)}, "
                         f"with {fraction(b.auc)} / {_pct_of(b.recall_at_full_precision)}")
        return lines

    def table(self) -> str:
        """A short plain-text summary for the terminal."""
        f, rt = self.frames, self.realtime
        lines = [f"mode {self.mode}, runner {self.runner}, ground truth: {self.ground_truth}",
                 f"frames: {f.on_topic} on the topic, {f.usable} usable, {f.processed} processed, "
                 f"{f.skipped_by_gate} skipped by the keyframe gate, {sum(f.failed.values())} failed, "
                 f"{f.dropped} dropped, {f.without_ground_truth} without ground truth, {f.evaluated} scored"]
        lines += self._recall_lines() if self.recall else self._loop_lines()
        lines += self._verification_lines()
        tot = self.latency_ms.get("total")
        if tot is not None and tot.count:
            lines.append(f"latency total: mean {tot.mean:.0f} ms, median {tot.median:.0f} ms, p95 {tot.p95:.0f} ms; "
                         f"camera {rt.camera_rate_hz:.2f} Hz, {rt.realtime_factor:.2f}x real time")
        lines += [f"note: {n}" for n in self.notes]  # synthetic weights: the CLI's banner says it, once
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        if self.results_bag:
            lines.append(f"results bag: {self.results_bag}")
        return "\n".join(lines)
