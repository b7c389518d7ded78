"""Per-frame rows of a scored replay: what happened to each frame and how its best candidate scored."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..node.runners import RunnerFrame, RunnerStatus
from ..text_enum import TextEnum
from .bag_config import ScoreKind

__all__ = ["FrameEval", "Outcome", "frame_rows"]


class Outcome(TextEnum):
    """A frame's outcome at the primary threshold (processed frames), else the runner's status."""

    CORRECT = "correct"
    WRONG = "wrong"
    NO_MATCH = "no_match"
    NO_GROUND_TRUTH = "no_ground_truth"
    SKIPPED = RunnerStatus.SKIPPED.value
    FAILED = RunnerStatus.FAILED.value
    DROPPED = RunnerStatus.DROPPED.value


@dataclass(frozen=True)
class FrameEval:
    """One replayed frame as scored (``outcome`` at the primary threshold)."""

    index: int
    stamp_ns: int
    status: RunnerStatus
    outcome: Outcome
    position: tuple[float, float, float] | None
    best_id: int | None
    best_score: float | None
    accepted: bool
    best_distance_m: float | None
    best_position: tuple[float, float, float] | None
    total_ms: float | None = None
    error: str | None = None


def _finite_tuple(p: np.ndarray | None) -> tuple[float, ...] | None:
    return tuple(float(v) for v in p) if p is not None and np.all(np.isfinite(p)) else None


def _outcome(status: RunnerStatus, scored: bool, accepted: bool, correct: bool) -> Outcome:
    if status != RunnerStatus.PROCESSED:
        return Outcome(status.value)
    if not scored:
        return Outcome.NO_GROUND_TRUTH
    if not accepted:
        return Outcome.NO_MATCH
    return Outcome.CORRECT if correct else Outcome.WRONG


def _row(r: RunnerFrame, q_pos: np.ndarray, ok_of: Mapping[int, bool], positions: Mapping[int, np.ndarray],
         score_kind: ScoreKind, loop: bool) -> FrameEval:
    i, out = r.frame.index, r.output
    position = _finite_tuple(q_pos[i])
    best = out.candidates[0] if out is not None and out.candidates else None
    accepted = out is not None and (out.loop_closure is not None if loop else out.match is not None)
    best_pos = _finite_tuple(positions.get(int(best.keyframe_id))) if best is not None else None
    dist = float(math.dist(position, best_pos)) if position and best_pos else None
    processed = r.status == RunnerStatus.PROCESSED
    return FrameEval(i, r.frame.stamp_ns, r.status, _outcome(r.status, i in ok_of, accepted, ok_of.get(i, False)),
                     position, int(best.keyframe_id) if best is not None else None,
                     score_kind.of(best) if best is not None else None, accepted, dist, best_pos,
                     out.latency.total if out is not None and processed else None,
                     out.error_kind if out is not None else None)


def frame_rows(runs: Sequence[RunnerFrame], q_pos: np.ndarray, scored: Mapping[int, int], best_ok: np.ndarray,
               positions: Mapping[int, np.ndarray], score_kind: ScoreKind, loop: bool = False) -> list[FrameEval]:
    """Per-frame rows; ``scored`` maps row j of ``best_ok`` to the frame index, ``positions`` keyframe id ->
    position in the ground-truth frame."""
    ok_of = {fi: bool(best_ok[j]) for j, fi in scored.items()}
    return [_row(r, q_pos, ok_of, positions, score_kind, loop) for r in runs]
