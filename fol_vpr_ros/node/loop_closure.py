"""Accepting matches: localize-mode decisions and the loop-closure policy (exclusion + consistency).

Acceptance of a candidate (both modes): it is the best after re-ranking, its ``rerank_score`` is at
least ``min_rerank_score``, its global similarity at least ``min_global_similarity`` and, when it was
geometrically verified (``verification.enabled``), it passed the inlier test. Candidates
that were not re-ranked (``rerank_k`` 0) are judged by global similarity only.

Loop-closure consistency: each keyframe of this run is decided in order. A keyframe whose best
candidate passes the score test is a *hit*; a hit is *consistent* with the previous keyframe's hit
when their matched map keyframe ids differ by at most ``max_match_gap`` (map ids follow insertion,
so nearby ids are nearby places along the earlier trajectory). ``consistent_count`` is the length of
the current run of consistent hits; a keyframe without a hit (or without candidates) ends the run.
A loop is accepted when ``consistent_count >= consistent_hits`` (every further consistent keyframe
is accepted too).

Every decision carries a ``MatchOutcome`` (why it was accepted or not) besides its ``reason`` prose.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from ..mapping import Keyframe, Pose
from ..pipeline.localizer import Candidate, QueryResult
from ..pipeline.verify import Verification
from ..stamps import NS_PER_SEC
from .outcomes import MatchOutcome

__all__ = [
    "KeyframeRef",
    "LocalizeDecision",
    "LoopClosurePolicy",
    "LoopDecision",
    "SearchRestriction",
    "decide_localize",
    "judge_candidate",
]


@dataclass(frozen=True)
class KeyframeRef:
    """The current keyframe: its id in the online map and its image stamp."""

    id: int
    stamp_ns: int


@dataclass(frozen=True)
class SearchRestriction:
    """What a loop-closure query may return: ids <= ``max_id`` (None = any) and not in ``exclude_ids``."""

    max_id: int | None
    exclude_ids: tuple[int, ...]
    eligible: int  # keyframes left as candidates
    excluded: int

    @property
    def searchable(self) -> bool:
        return self.eligible > 0


def _settle_outcome(decision: LocalizeDecision | LoopDecision) -> None:
    """Fill in an outcome left out (ACCEPTED or REJECTED); refuse one that contradicts ``accepted``."""
    if decision.outcome is None:
        object.__setattr__(decision, "outcome", MatchOutcome.ACCEPTED if decision.accepted else MatchOutcome.REJECTED)
    elif decision.accepted != (decision.outcome is MatchOutcome.ACCEPTED):
        raise ValueError(f"decision accepted={decision.accepted} contradicts its outcome {decision.outcome.value}")


@dataclass(frozen=True)
class LocalizeDecision:
    """Localize mode: the best candidate accepted or not, why (``outcome``), and in words (``reason``)."""

    accepted: bool
    match_id: int | None
    rerank_score: int
    global_similarity: float
    reason: str
    outcome: MatchOutcome | None = None  # None: ACCEPTED or REJECTED, from ``accepted``

    def __post_init__(self) -> None:
        _settle_outcome(self)


@dataclass(frozen=True)
class LoopDecision:
    """Loop-closure mode: query keyframe -> matched earlier keyframe, accepted or not, and why."""

    accepted: bool
    query_id: int
    query_stamp_ns: int
    match_id: int | None
    match_stamp_ns: int | None
    rerank_score: int
    global_similarity: float
    consistent_count: int
    reason: str
    query_pose: Pose | None = None
    match_pose: Pose | None = None
    outcome: MatchOutcome | None = None  # None: ACCEPTED or REJECTED, from ``accepted``
    verification: Verification | None = None  # geometric check of (query, match); None = not verified
    query_robot_id: str | None = None
    query_session_id: str | None = None
    match_robot_id: str | None = None
    match_session_id: str | None = None

    def __post_init__(self) -> None:
        _settle_outcome(self)

    def lio_sam_data(self) -> tuple[float, float]:
        """LIO-SAM's loop message (std_msgs/Float64MultiArray): [current stamp, previous stamp] in seconds."""
        if self.match_stamp_ns is None:
            raise ConfigError("no matched keyframe: nothing to send to LIO-SAM")
        return self.query_stamp_ns / NS_PER_SEC, self.match_stamp_ns / NS_PER_SEC


def judge_candidate(c: Candidate | None, min_rerank_score: float,
                    min_global_similarity: float = -1.0) -> tuple[MatchOutcome, str]:
    """(outcome, reason) for a best candidate under the thresholds (see module doc); ACCEPTED when it passes."""
    if c is None:
        return MatchOutcome.NO_CANDIDATES, "no candidates"
    if c.global_similarity < min_global_similarity:
        return MatchOutcome.BELOW_GLOBAL_SIMILARITY, (
            f"best candidate {c.keyframe_id}: global similarity {c.global_similarity:.3f} < "
            f"min_global_similarity {min_global_similarity:g}")
    if c.rerank_score >= 0 and c.rerank_score < min_rerank_score:
        return MatchOutcome.BELOW_RERANK_SCORE, (
            f"best candidate {c.keyframe_id}: rerank score {c.rerank_score} < min_rerank_score {min_rerank_score:g}")
    v = c.verification
    if v is not None and not v.passed:
        return MatchOutcome.FAILED_VERIFICATION, (
            f"best candidate {c.keyframe_id}: failed geometric verification ({v.inliers}/{v.matches} inliers"
            f"{': ' + v.reason if v.reason else ''})")
    how = f"rerank score {c.rerank_score}" if c.rerank_score >= 0 else "not re-ranked"
    if v is not None:
        how += f", {v.inliers}/{v.matches} inliers"
    return MatchOutcome.ACCEPTED, f"candidate {c.keyframe_id}: {how}, global similarity {c.global_similarity:.3f}"


def decide_localize(result: QueryResult | None, min_rerank_score: float,
                    min_global_similarity: float = -1.0) -> LocalizeDecision:
    """Localize mode: accept the best candidate when it passes the thresholds (``result`` None: empty map)."""
    best = result.best if result is not None else None
    outcome, reason = judge_candidate(best, min_rerank_score, min_global_similarity)
    if best is None:
        outcome = MatchOutcome.EMPTY_MAP if result is None else outcome
        return LocalizeDecision(False, None, -1, math.nan, reason, outcome)
    ok = outcome is MatchOutcome.ACCEPTED
    return LocalizeDecision(ok, best.keyframe_id, best.rerank_score, best.global_similarity,
                            ("accepted: " if ok else "") + reason, outcome)


class LoopClosurePolicy:
    """Search restriction (exclusion of recent history) and consistency-checked loop acceptance."""

    def __init__(self, exclusion_min_time_sec: float, exclusion_min_keyframes: int, min_rerank_score: float,
                 consistent_hits: int, max_match_gap: int = 3, min_global_similarity: float = -1.0) -> None:
        if not math.isfinite(exclusion_min_time_sec) or exclusion_min_time_sec < 0:
            raise ConfigError(f"exclusion.min_time_sec must be >= 0, got {exclusion_min_time_sec!r}")
        if exclusion_min_keyframes < 0:
            raise ConfigError(f"exclusion.min_keyframes must be >= 0, got {exclusion_min_keyframes!r}")
        if consistent_hits < 1:
            raise ConfigError(f"loop_closure.consistent_hits must be >= 1, got {consistent_hits!r}")
        if max_match_gap < 0:
            raise ConfigError(f"loop_closure.max_match_gap must be >= 0, got {max_match_gap!r}")
        self.min_time_ns = round(exclusion_min_time_sec * NS_PER_SEC)
        self.min_keyframes = int(exclusion_min_keyframes)
        self.min_rerank_score = float(min_rerank_score)
        self.min_global_similarity = float(min_global_similarity)
        self.consistent_hits = int(consistent_hits)
        self.max_match_gap = int(max_match_gap)
        self._prev_match: int | None = None
        self._count = 0

    @classmethod
    def from_params(cls, params) -> LoopClosurePolicy:
        """From NodeParams."""
        return cls(params.exclusion.min_time_sec, params.exclusion.min_keyframes, params.min_rerank_score,
                   params.loop_closure.consistent_hits, params.loop_closure.max_match_gap,
                   params.min_global_similarity)

    def reset(self) -> None:
        """Forget the current run of consistent hits."""
        self._prev_match, self._count = None, 0

    def restriction(self, keyframes: Sequence[Keyframe], query_stamp_ns: int,
                    session_id: str | None = None) -> SearchRestriction:
        """Candidates allowed for a query at ``query_stamp_ns`` among ``keyframes`` (map row order).

        Keyframes of this session (``session_id``; all keyframes when None) are excluded when they
        are among the last ``min_keyframes`` of the session or less than ``min_time_sec`` older
        than the query (stamps after the query count as too young). Keyframes of other sessions
        (a loaded map) are always eligible. Returns ``max_id`` when the excluded ids are exactly
        the highest ones (the usual case), else an explicit ``exclude_ids`` list.
        """
        own = [k for k in keyframes if session_id is None or k.session_id == session_id]
        excluded: set[int] = set()
        if self.min_keyframes:
            excluded.update(int(k.id) for k in own[-self.min_keyframes:])  # type: ignore[arg-type]
        limit = query_stamp_ns - self.min_time_ns
        excluded.update(int(k.id) for k in own if k.stamp_ns > limit)  # type: ignore[arg-type]
        n = len(keyframes)
        if not excluded:
            return SearchRestriction(None, (), n, 0)
        lowest = min(excluded)
        above = sum(1 for k in keyframes if k.id >= lowest)  # type: ignore[operator]
        if above == len(excluded):
            return SearchRestriction(lowest - 1, (), n - len(excluded), len(excluded))
        return SearchRestriction(None, tuple(sorted(excluded)), n - len(excluded), len(excluded))

    def decide(self, query: KeyframeRef, result: QueryResult | None,
               match_stamp_ns: Callable[[int], int] | None = None) -> LoopDecision:
        """Decide one keyframe (call for every keyframe in order; ``result`` None = nothing searchable)."""
        best = result.best if result is not None else None
        outcome, reason = judge_candidate(best, self.min_rerank_score, self.min_global_similarity)
        if best is None:
            self.reset()
            if result is None:
                outcome, reason = MatchOutcome.EXCLUDED_RECENT, "no eligible candidates (exclusion window)"
            return LoopDecision(False, query.id, query.stamp_ns, None, None, -1, math.nan, 0, reason,
                                outcome=outcome)
        stamp = match_stamp_ns(best.keyframe_id) if match_stamp_ns is not None else None
        if outcome is not MatchOutcome.ACCEPTED:
            self.reset()
            return LoopDecision(False, query.id, query.stamp_ns, best.keyframe_id, stamp, best.rerank_score,
                                best.global_similarity, 0, reason, outcome=outcome)
        if self._prev_match is not None and abs(best.keyframe_id - self._prev_match) <= self.max_match_gap:
            self._count += 1
        else:
            self._count = 1
        self._prev_match = best.keyframe_id
        accepted = self._count >= self.consistent_hits
        outcome = MatchOutcome.ACCEPTED if accepted else MatchOutcome.WAITING_FOR_CONSISTENCY
        status = "accepted" if accepted else "waiting for consistency"
        reason = f"{status}: {reason}; {self._count}/{self.consistent_hits} consistent hit(s)"
        return LoopDecision(accepted, query.id, query.stamp_ns, best.keyframe_id, stamp, best.rerank_score,
                            best.global_similarity, self._count, reason, outcome=outcome)
