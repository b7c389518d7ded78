"""Loop-closure and acceptance metrics (pure numpy): ground truth by distance, precision-recall, AUC.

Conventions:

* A *prediction* is a query's best candidate with its acceptance score (the re-rank score, or the
  global similarity without re-ranking); queries without a candidate have a NaN score and are
  never predicted. Sweeping a threshold ``t`` accepts every prediction with ``score >= t``; tied
  scores enter together, so one curve point per distinct score (highest first).
* ``precision = TP / accepted``, ``recall = TP / positives``; ``positives`` are the queries that
  have at least one correct answer (loop closure: an earlier keyframe within the distance threshold
  and outside the exclusion window).
* AUC is the average precision ``sum_k (R_k - R_{k-1}) P_k`` (``R_0 = 0``): the area under the
  step-wise PR curve, without interpolation (as scikit-learn's ``average_precision_score``).
* Recall at 100 % precision is the highest recall of a curve point with precision exactly 1 (0 when
  even the top score admits a false loop); a tie between a correct and a wrong prediction cannot be
  split by a threshold, so it ends the 100 % precision range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..stamps import sec_to_ns

__all__ = [
    "PrCurve",
    "angle_within",
    "loop_eligible",
    "loop_positives",
    "pairwise_distances",
    "precision_recall_curve",
]


@dataclass(frozen=True)
class PrCurve:
    """A precision-recall curve over an acceptance-score threshold (one point per distinct score)."""

    thresholds: tuple[float, ...]  # descending distinct scores
    precision: tuple[float, ...]  # fractions in [0, 1]
    recall: tuple[float, ...]  # fractions in [0, 1]; NaN when there are no positives
    true_positives: tuple[int, ...]
    accepted: tuple[int, ...]
    num_positives: int
    num_predictions: int
    auc: float  # average precision; NaN without positives
    recall_at_full_precision: float  # fraction; NaN without positives
    threshold_at_full_precision: float | None  # lowest threshold with precision 1, None when none

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: fractions rounded, NaN as None."""

        def clean(x: float) -> float | None:
            return None if not math.isfinite(x) else round(float(x), 6)

        return {
            "auc": clean(self.auc),
            "recall_at_100_precision": clean(self.recall_at_full_precision),
            "threshold_at_100_precision": self.threshold_at_full_precision,
            "positives": self.num_positives,
            "predictions": self.num_predictions,
            "thresholds": [clean(t) for t in self.thresholds],
            "precision": [clean(p) for p in self.precision],
            "recall": [clean(r) for r in self.recall],
            "true_positives": list(self.true_positives),
            "accepted": list(self.accepted),
        }


def precision_recall_curve(scores: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
                           num_positives: int) -> PrCurve:
    """PR curve of per-query predictions (see module doc); ``correct`` only matters where a score is set."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    c = np.asarray(correct, dtype=bool).reshape(-1)
    if s.shape != c.shape:
        raise ConfigError(f"{len(s)} scores but {len(c)} correctness flags")
    if isinstance(num_positives, bool) or int(num_positives) != num_positives or num_positives < 0:
        raise ConfigError(f"num_positives must be a non-negative integer, got {num_positives!r}")
    num_positives = int(num_positives)
    has = ~np.isnan(s)
    if np.isinf(s[has]).any():
        raise ConfigError("scores must be finite (NaN = no prediction)")
    s, c = s[has], c[has]
    tp_total = int(c.sum())
    if tp_total > num_positives:
        raise ConfigError(f"{tp_total} correct predictions but only {num_positives} positives")
    thresholds = np.unique(s)[::-1]
    # cumulative counts at each distinct score (ties enter together)
    order = np.argsort(-s, kind="stable")
    s_sorted, c_sorted = s[order], c[order]
    last_of_group = np.searchsorted(-s_sorted, -thresholds, side="right")  # accepted count per threshold
    cum_tp = np.concatenate([[0], np.cumsum(c_sorted)])
    accepted = last_of_group.astype(np.int64)
    tp = cum_tp[accepted].astype(np.int64)
    precision = tp / np.maximum(accepted, 1)
    if num_positives:
        recall = tp / num_positives
        prev = np.concatenate([[0.0], recall[:-1]])
        auc = float(np.sum((recall - prev) * precision))
        # precision 1 holds on a prefix of the curve: once a wrong prediction enters, it stays
        full = np.flatnonzero(tp == accepted)
        r_full = float(recall[full[-1]]) if len(full) else 0.0
        t_full = float(thresholds[full[-1]]) if len(full) else None
    else:
        recall = np.full(len(thresholds), math.nan)
        auc, r_full = math.nan, math.nan
        t_full = None
    return PrCurve(tuple(float(t) for t in thresholds), tuple(float(p) for p in precision),
                   tuple(float(r) for r in recall), tuple(int(t) for t in tp), tuple(int(a) for a in accepted),
                   num_positives, len(s), auc, r_full, t_full)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [len(a), len(b)] between position rows (NaN rows give NaN)."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1]:
        raise ConfigError(f"positions of different dimension: {a.shape[1]} and {b.shape[1]}")
    return np.sqrt(np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1))


def angle_within(qa: np.ndarray, qb: np.ndarray, limit_deg: float | None) -> np.ndarray:
    """[len(qa), len(qb)] bool: rotation angle between xyzw quaternions <= limit (all True when None).

    NaN quaternions (unknown orientation) never pass a limit."""
    qa = np.asarray(qa, np.float64).reshape(-1, 4)
    qb = np.asarray(qb, np.float64).reshape(-1, 4)
    if limit_deg is None:
        return np.ones((len(qa), len(qb)), bool)
    dot = np.abs(qa @ qb.T)
    with np.errstate(invalid="ignore"):
        angle = 2.0 * np.degrees(np.arccos(np.clip(dot, 0.0, 1.0)))
    return np.nan_to_num(angle, nan=np.inf) <= float(limit_deg) + 1e-9


def loop_eligible(stamps_ns: Sequence[int] | np.ndarray, min_time_sec: float, min_keyframes: int) -> np.ndarray:
    """[n, n] bool: keyframe i may close a loop with query j (the node's exclusion window).

    Keyframes are in processing order; for query j the candidates are the earlier keyframes i < j
    that are not among the last ``min_keyframes`` (``i < j - min_keyframes``) and at least
    ``min_time_sec`` older (``stamp_i <= stamp_j - min_time``).
    """
    s = np.asarray(stamps_ns, np.int64).reshape(-1)
    n = len(s)
    if min_time_sec < 0 or min_keyframes < 0:
        raise ConfigError("exclusion window values must be >= 0")
    i = np.arange(n)
    earlier = i[:, None] < (i[None, :] - int(min_keyframes))
    old = s[:, None] <= s[None, :] - sec_to_ns(min_time_sec)
    return (earlier & old).T  # [query j, keyframe i]


def loop_positives(positions: np.ndarray, stamps_ns: Sequence[int] | np.ndarray, radius_m: float,
                   min_time_sec: float, min_keyframes: int, orientations: np.ndarray | None = None,
                   heading_limit_deg: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(positives [n] bool, near [n, n] bool): query j has an eligible earlier keyframe i within
    ``radius_m`` (and the heading limit); ``near[j, i]`` says whether keyframe i is a correct loop for j."""
    pos = np.asarray(positions, np.float64)
    n = len(pos)
    with np.errstate(invalid="ignore"):
        close = pairwise_distances(pos, pos) <= radius_m
    if heading_limit_deg is not None:
        q = np.full((n, 4), np.nan) if orientations is None else np.asarray(orientations, np.float64)
        close &= angle_within(q, q, heading_limit_deg)
    near = close & loop_eligible(stamps_ns, min_time_sec, min_keyframes)
    return near.any(axis=1), near
