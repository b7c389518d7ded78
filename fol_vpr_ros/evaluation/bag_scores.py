"""Scoring a replay against ground truth: localization (recall@N, PR, accepted) and loop closure (PR, accepted).

Localize: the query's position against the map keyframes' positions; recall denominators are the
processed frames with ground truth, queries without a positive count as misses. Loop closure: each
keyframe's best candidate against earlier keyframes outside the exclusion window (``loop_positives``).

Both modes give two curves when the node verified its best candidates geometrically: ``pr`` over the
score alone (as without verification: verification never reorders candidates) and ``pr_verified``,
where a best candidate that failed verification is not predicted at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..mapping import VprMap
from ..node.params import ExclusionParams
from ..node.runners import RunnerFrame, RunnerStatus
from .bag_config import BagEvalConfig, ScoreKind
from .frame_rows import FrameEval, frame_rows
from .gt_frame import QueryTruth, map_positions
from .loop_metrics import PrCurve, angle_within, loop_positives, pairwise_distances, precision_recall_curve
from .metrics import recall_at_n

__all__ = ["BagScores", "score_localize", "score_loops", "verified_scores"]


@dataclass(frozen=True)
class BagScores:
    """What scoring a replay gives, per distance threshold, and the per-frame rows."""

    pr: Mapping[float, PrCurve]  # threshold -> curve over the acceptance score
    accepted: Mapping[float, Mapping[str, Any]]  # the node's own decisions per threshold
    per_frame: tuple[FrameEval, ...]
    keyframe_positions: Mapping[int, np.ndarray]  # keyframe id -> position in the ground-truth frame
    recall: Mapping[float, Mapping[int, float]] = field(default_factory=dict)  # localize: threshold -> N -> %
    queries_without_positives: Mapping[float, int] = field(default_factory=dict)  # localize
    map_positions: np.ndarray | None = None  # localize: [M, 3] map keyframes
    notes: tuple[str, ...] = ()
    pr_verified: Mapping[float, PrCurve] = field(default_factory=dict)  # empty when nothing was verified


def verified_scores(scores: np.ndarray, best: Sequence[object | None]) -> np.ndarray | None:
    """``scores`` with NaN where the best candidate failed verification; None when none was verified."""
    checks = [getattr(c, "verification", None) for c in best]
    if all(v is None for v in checks):
        return None
    out = np.array(scores, dtype=float, copy=True)
    for j, v in enumerate(checks):
        if v is not None and not v.passed:
            out[j] = np.nan
    return out


def _recall_ns(ns: Sequence[int], k: int) -> tuple[int, ...]:
    return tuple(sorted({min(int(n), max(1, k)) for n in ns}))


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def _predictions(scored: Sequence[RunnerFrame], k: int, score_kind: ScoreKind) -> tuple[np.ndarray, np.ndarray]:
    """Top-k keyframe ids [Q, k] (-1: none) and the best candidate's score [Q] (NaN: none)."""
    pred = np.full((len(scored), max(k, 1)), -1, np.int64)
    scores = np.full(len(scored), np.nan)
    for j, r in enumerate(scored):
        cands = r.output.candidates[:k]
        pred[j, : len(cands)] = [c.keyframe_id for c in cands]
        if cands:
            scores[j] = score_kind.of(cands[0])
    return pred, scores


def _accepted_localize(scored: Sequence[RunnerFrame], near: np.ndarray, row_of: Mapping[int, int]
                       ) -> dict[str, Any]:
    acc = np.array([r.output.match is not None for r in scored], bool)
    acc_ok = np.array([r.output.match is not None and bool(near[j, row_of[r.output.match.keyframe_id]])
                       for j, r in enumerate(scored)], bool)
    return {"accepted": int(acc.sum()), "correct": int(acc_ok.sum()), "precision": _ratio(acc_ok.sum(), acc.sum()),
            "recall": _ratio(acc_ok.sum(), len(scored))}


def score_localize(runs: Sequence[RunnerFrame], truth: QueryTruth, vmap: VprMap, cfg: BagEvalConfig, top_k: int,
                   score_kind: ScoreKind) -> BagScores:
    """Recall@N, PR curves and the node's accepted matches against the map, per distance threshold."""
    q_pos = truth.positions
    m = map_positions(vmap, truth.frame)
    ids = m.ids
    row_of = {int(i): r for r, i in enumerate(ids)}
    scored = [r for r in runs if r.status == RunnerStatus.PROCESSED and np.all(np.isfinite(q_pos[r.frame.index]))]
    qi = np.array([r.frame.index for r in scored], np.int64)
    k = min(top_k, len(ids))
    ns = _recall_ns(cfg.recall_ns, k)
    pred, scores = _predictions(scored, k, score_kind)
    checked = verified_scores(scores, [r.output.candidates[0] if r.output.candidates else None for r in scored])
    prs_verified: dict[float, PrCurve] = {}
    with np.errstate(invalid="ignore"):
        dist = pairwise_distances(q_pos[qi], m.positions) if len(qi) else np.zeros((0, len(ids)))
    ok_heading = angle_within(truth.orientations[qi], m.orientations, cfg.heading_for(truth.frame))
    recall: dict[float, dict[int, float]] = {}
    no_pos: dict[float, int] = {}
    prs: dict[float, PrCurve] = {}
    accepted: dict[float, dict[str, Any]] = {}
    correct_best: dict[float, np.ndarray] = {}
    for t in cfg.thresholds_m:
        near = (np.nan_to_num(dist, nan=np.inf) <= t) & ok_heading  # [Q, M]
        positives = [ids[np.flatnonzero(row)] for row in near]
        no_pos[t] = int(sum(1 for p in positives if len(p) == 0))
        recall[t] = recall_at_n(pred, positives, ns) if len(scored) else dict.fromkeys(ns, math.nan)
        correct_best[t] = np.array([bool(pred[j, 0] >= 0 and near[j, row_of[int(pred[j, 0])]])
                                    for j in range(len(scored))], bool)
        prs[t] = precision_recall_curve(scores, correct_best[t], int(np.sum(near.any(axis=1))))
        if checked is not None:
            prs_verified[t] = precision_recall_curve(checked, correct_best[t], int(np.sum(near.any(axis=1))))
        accepted[t] = _accepted_localize(scored, near, row_of)
    positions = {int(i): m.positions[r] for r, i in enumerate(ids)}
    rows = frame_rows(runs, q_pos, {j: r.frame.index for j, r in enumerate(scored)},
                      correct_best[cfg.primary_threshold_m], positions, score_kind)
    return BagScores(prs, accepted, tuple(rows), positions, recall, no_pos, m.positions,
                     cfg.heading_notes(truth.frame), prs_verified)


def _accepted_loops(kf: Sequence[RunnerFrame], ok: np.ndarray, positives: np.ndarray, has_gt: np.ndarray
                    ) -> dict[str, Any]:
    loops = np.array([r.output.loop_closure is not None for r in kf], bool) & has_gt
    n_pos = positives[has_gt].sum()
    return {"accepted": int(loops.sum()), "correct": int((loops & ok).sum()),
            "precision": _ratio((loops & ok).sum(), loops.sum()), "recall": _ratio((loops & ok).sum(), n_pos),
            "positives": int(n_pos)}


def score_loops(runs: Sequence[RunnerFrame], truth: QueryTruth, cfg: BagEvalConfig, exclusion: ExclusionParams,
                score_kind: ScoreKind) -> BagScores:
    """PR curves over the best candidate's score and the node's accepted loops, per distance threshold."""
    q_pos = truth.positions
    kf = [r for r in runs if r.status == RunnerStatus.PROCESSED and r.output.keyframe_id is not None]
    row_of = {int(r.output.keyframe_id): j for j, r in enumerate(kf)}
    idx = np.array([r.frame.index for r in kf], np.int64)
    pos = q_pos[idx] if len(idx) else np.zeros((0, 3))
    rot = truth.orientations[idx] if len(idx) else np.zeros((0, 4))
    stamps = np.array([r.output.stamp_ns for r in kf], np.int64)
    has_gt = np.all(np.isfinite(pos), axis=1)
    scores = np.full(len(kf), np.nan)
    best_row = np.full(len(kf), -1, np.int64)
    for j, r in enumerate(kf):
        if r.output.candidates:
            c = r.output.candidates[0]
            scores[j] = score_kind.of(c)
            best_row[j] = row_of.get(int(c.keyframe_id), -1)
    checked = verified_scores(scores, [r.output.candidates[0] if r.output.candidates else None for r in kf])
    prs: dict[float, PrCurve] = {}
    prs_verified: dict[float, PrCurve] = {}
    accepted: dict[float, dict[str, Any]] = {}
    correct_primary = np.zeros(len(kf), bool)
    for t in cfg.thresholds_m:
        positives, near = loop_positives(pos, stamps, t, exclusion.min_time_sec, exclusion.min_keyframes, rot,
                                         cfg.heading_for(truth.frame))
        ok = np.array([best_row[j] >= 0 and bool(near[j, best_row[j]]) for j in range(len(kf))], bool)
        prs[t] = precision_recall_curve(scores[has_gt], ok[has_gt], int(positives[has_gt].sum()))
        if checked is not None:
            prs_verified[t] = precision_recall_curve(checked[has_gt], ok[has_gt], int(positives[has_gt].sum()))
        accepted[t] = _accepted_loops(kf, ok, positives, has_gt)
        if t == cfg.primary_threshold_m:
            correct_primary = ok
    positions = {kid: pos[j] for kid, j in row_of.items()}
    scored = {j: int(idx[j]) for j in range(len(kf)) if has_gt[j]}
    rows = frame_rows(runs, q_pos, scored, correct_primary, positions, score_kind, loop=True)
    return BagScores(prs, accepted, tuple(rows), positions, notes=cfg.heading_notes(truth.frame),
                     pr_verified=prs_verified)
