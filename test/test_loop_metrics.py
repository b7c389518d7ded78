"""Loop-closure metrics against hand-computed values: PR curve points, AUC, recall at 100 % precision, ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.evaluation.loop_metrics import (
    angle_within,
    loop_eligible,
    loop_positives,
    pairwise_distances,
    precision_recall_curve,
)
from fol_vpr_ros.sources.geometry import quat_from_axis_angle

S = 1_000_000_000


def test_pr_curve_points_auc_and_full_precision():
    # scores 0.9 (ok), 0.8 (ok), 0.8 (wrong), 0.7 (ok), 0.6 (wrong), no prediction; 5 positives
    c = precision_recall_curve([0.9, 0.8, 0.8, 0.7, 0.6, math.nan], [True, True, False, True, False, True], 5)
    assert c.thresholds == (0.9, 0.8, 0.7, 0.6)
    assert c.accepted == (1, 3, 4, 5)  # the tie at 0.8 enters together
    assert c.true_positives == (1, 2, 3, 3)
    assert c.precision == pytest.approx((1.0, 2 / 3, 0.75, 0.6))
    assert c.recall == pytest.approx((0.2, 0.4, 0.6, 0.6))
    # AP = 0.2 * 1 + 0.2 * 2/3 + 0.2 * 0.75 + 0 * 0.6
    assert c.auc == pytest.approx(0.2 + 0.2 * 2 / 3 + 0.15)
    assert c.recall_at_full_precision == pytest.approx(0.2)
    assert c.threshold_at_full_precision == 0.9
    assert (c.num_positives, c.num_predictions) == (5, 5)
    d = c.to_dict()
    assert d["auc"] == pytest.approx(0.483333, abs=1e-6) and d["recall_at_100_precision"] == pytest.approx(0.2)


def test_full_precision_tie_between_correct_and_wrong_at_the_top():
    # the best score is shared by a correct and a wrong loop: no threshold keeps precision at 1
    c = precision_recall_curve([5, 5, 3], [True, False, True], 2)
    assert c.thresholds == (5.0, 3.0)
    assert c.precision == pytest.approx((0.5, 2 / 3))
    assert c.recall == pytest.approx((0.5, 1.0))
    assert c.recall_at_full_precision == 0.0 and c.threshold_at_full_precision is None
    assert c.auc == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)


def test_full_precision_with_tied_correct_scores():
    # ties among correct loops keep precision 1; the first wrong loop (score 1) ends the range
    c = precision_recall_curve(np.array([4, 4, 2, 1]), np.array([True, True, True, False]), 4)
    assert c.accepted == (2, 3, 4) and c.true_positives == (2, 3, 3)
    assert c.precision == pytest.approx((1.0, 1.0, 0.75))
    assert c.recall == pytest.approx((0.5, 0.75, 0.75))
    assert c.recall_at_full_precision == pytest.approx(0.75) and c.threshold_at_full_precision == 2.0
    assert c.auc == pytest.approx(0.5 + 0.25)


def test_wrong_prediction_tied_below_full_precision():
    # 3 (ok), 2 (ok), 2 (wrong): precision 1 only at threshold 3
    c = precision_recall_curve([3, 2, 2], [True, True, False], 3)
    assert c.recall_at_full_precision == pytest.approx(1 / 3) and c.threshold_at_full_precision == 3.0
    assert c.auc == pytest.approx(1 / 3 * 1.0 + 1 / 3 * 2 / 3)


def test_pr_curve_edge_cases():
    c = precision_recall_curve([0.5, 0.4], [False, False], 0)  # no positives: recall and AUC undefined
    assert math.isnan(c.auc) and math.isnan(c.recall_at_full_precision)
    assert c.to_dict()["auc"] is None and c.precision == (0.0, 0.0)
    empty = precision_recall_curve([math.nan, math.nan], [False, False], 2)  # no predictions
    assert empty.thresholds == () and empty.auc == 0.0 and empty.recall_at_full_precision == 0.0
    with pytest.raises(ConfigError, match="correct predictions but only"):
        precision_recall_curve([1, 2], [True, True], 1)
    with pytest.raises(ConfigError, match="scores but"):
        precision_recall_curve([1, 2], [True], 1)
    with pytest.raises(ConfigError, match="finite"):
        precision_recall_curve([math.inf], [True], 1)


def test_loop_exclusion_window_and_positives():
    stamps = [k * S for k in range(6)]
    pos = np.array([[0, 0, 0], [10, 0, 0], [20, 0, 0], [10, 0, 0], [0.5, 0, 0], [30, 0, 0]], float)
    elig = loop_eligible(stamps, min_time_sec=2.0, min_keyframes=1)
    # query j may use keyframes i < j - 1 that are at least 2 s older
    assert elig[4].tolist() == [True, True, True, False, False, False]
    assert elig[3].tolist() == [True, True, False, False, False, False]
    assert elig[2].tolist() == [True, False, False, False, False, False]
    assert not elig[:2].any()
    positives, near = loop_positives(pos, stamps, 5.0, 2.0, 1)
    assert positives.tolist() == [False, False, False, True, True, False]
    assert np.flatnonzero(near[4]).tolist() == [0] and np.flatnonzero(near[3]).tolist() == [1]
    assert loop_eligible(stamps, 0.0, 0)[3].tolist() == [True, True, True, False, False, False]
    # a heading limit: the revisit at frame 3 faces the other way
    q = quat_from_axis_angle((0, 0, 1), np.array([0, 0, 0, math.pi, 0, 0]))
    positives, _ = loop_positives(pos, stamps, 5.0, 2.0, 1, q, heading_limit_deg=30.0)
    assert positives.tolist() == [False, False, False, False, True, False]


def test_distances_and_angles():
    d = pairwise_distances(np.array([[0, 0, 0], [3, 4, 0]]), np.array([[0, 0, 0], [np.nan, 0, 0]]))
    assert d[1, 0] == pytest.approx(5.0) and math.isnan(d[0, 1])
    qa = quat_from_axis_angle((0, 0, 1), np.array([0.0]))
    qb = np.vstack([quat_from_axis_angle((0, 0, 1), np.array([math.pi / 2])), [np.nan] * 4])
    assert angle_within(qa, qb, 100.0).tolist() == [[True, False]]
    assert angle_within(qa, qb, 45.0).tolist() == [[False, False]]
    assert angle_within(qa, qb, None).tolist() == [[True, True]]
