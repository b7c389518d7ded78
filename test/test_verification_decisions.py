"""Geometric verification in the decisions and the scores: a failed fit rejects, PR with and without it."""

from __future__ import annotations

import math

import numpy as np

from fol_vpr_ros.evaluation.bag_scores import verified_scores
from fol_vpr_ros.evaluation.loop_metrics import precision_recall_curve
from fol_vpr_ros.node.loop_closure import KeyframeRef, LoopClosurePolicy, judge_candidate
from fol_vpr_ros.node.outcomes import MatchOutcome
from fol_vpr_ros.pipeline.localizer import Candidate, QueryResult
from fol_vpr_ros.pipeline.verify import TransformKind, Verification, VerifyModel


def _check(passed: bool, inliers: int = 40, matches: int = 60) -> Verification:
    return Verification(matches, inliers, inliers / matches, passed, VerifyModel.FUNDAMENTAL, TransformKind.NONE,
                        reason="" if passed else "too few inliers")


def _cand(kid: int, score: int, check: Verification | None) -> Candidate:
    return Candidate(kid, 0, 0, 0.9, score, check)


def test_a_failed_verification_rejects_an_otherwise_accepted_candidate() -> None:
    ok, _ = judge_candidate(_cand(3, 80, _check(True)), min_rerank_score=30)
    bad, reason = judge_candidate(_cand(3, 80, _check(False, 5)), min_rerank_score=30)
    off, _ = judge_candidate(_cand(3, 80, None), min_rerank_score=30)  # verification disabled
    assert ok is MatchOutcome.ACCEPTED and off is MatchOutcome.ACCEPTED
    assert bad is MatchOutcome.FAILED_VERIFICATION
    assert "5/60 inliers" in reason and "too few inliers" in reason
    # the score test still comes first: a low score is reported as such, verified or not
    low, _ = judge_candidate(_cand(3, 10, _check(False)), min_rerank_score=30)
    assert low is MatchOutcome.BELOW_RERANK_SCORE


def test_a_failed_verification_ends_the_run_of_consistent_loop_hits() -> None:
    policy = LoopClosurePolicy(0.0, 0, min_rerank_score=30, consistent_hits=2, max_match_gap=3)

    def decide(i: int, check: Verification) -> MatchOutcome:
        result = QueryResult([_cand(10 + i, 90, check)], np.array([10 + i]), np.array([0.9]))
        return policy.decide(KeyframeRef(100 + i, i), result).outcome

    assert decide(0, _check(True)) is MatchOutcome.WAITING_FOR_CONSISTENCY
    assert decide(1, _check(False)) is MatchOutcome.FAILED_VERIFICATION
    assert decide(2, _check(True)) is MatchOutcome.WAITING_FOR_CONSISTENCY  # the run restarted
    assert decide(3, _check(True)) is MatchOutcome.ACCEPTED


def test_verified_scores_drop_failed_best_candidates_only() -> None:
    scores = np.array([50.0, 40.0, 30.0, np.nan])
    best = [_cand(1, 50, _check(True)), _cand(2, 40, _check(False)), _cand(3, 30, None), None]
    out = verified_scores(scores, best)
    assert out is not None
    np.testing.assert_array_equal(np.isnan(out), [False, True, False, True])
    assert out[0] == 50.0 and out[2] == 30.0
    assert verified_scores(scores, [_cand(1, 50, None), None, None, None]) is None  # nothing verified


def test_rejecting_a_confident_false_match_raises_recall_at_full_precision() -> None:
    # the best-scored prediction is wrong: without verification, 100 % precision is never reached
    scores = np.array([90.0, 80.0, 70.0, 60.0])
    correct = np.array([False, True, True, True])
    best = [_cand(1, 90, _check(False, 3)), _cand(2, 80, _check(True)), _cand(3, 70, _check(True)),
            _cand(4, 60, _check(True))]
    without = precision_recall_curve(scores, correct, 3)
    with_check = precision_recall_curve(verified_scores(scores, best), correct, 3)
    assert without.recall_at_full_precision == 0.0
    assert math.isclose(with_check.recall_at_full_precision, 1.0)
    assert with_check.auc > without.auc
