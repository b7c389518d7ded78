"""The latency-budget controller (pure): injected stage timings in, chosen rerank_k and misses out."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node.budget import BudgetConfig, RerankBudget


def fits(cfg: BudgetConfig, fixed: float, per: float) -> int:
    """The model's answer: the largest k with fixed + k * per <= headroom * budget, within the range."""
    return max(cfg.min_rerank_k, min(cfg.max_rerank_k, int((cfg.headroom * cfg.budget_ms - fixed) // per)))


def test_starts_at_the_configured_k_and_keeps_it_without_rerank_timings():
    b = RerankBudget(BudgetConfig(100.0, max_rerank_k=50, min_rerank_k=2))
    assert b.rerank_k == 50
    assert b.observe(0, 30.0, 0.0) == 50  # nothing re-ranked yet: no per-candidate cost known
    st = b.state()
    assert (st.rerank_k, st.frames, st.misses, st.fixed_ms) == (50, 1, 0, 30.0) and math.isnan(st.per_candidate_ms)


def test_lowers_k_to_what_the_budget_fits_and_counts_misses():
    cfg = BudgetConfig(100.0, max_rerank_k=100, min_rerank_k=1)
    b = RerankBudget(cfg)
    k = b.observe(100, 50.0, 100.0)  # 150 ms total: a miss; 1 ms per candidate
    assert k == fits(cfg, 50.0, 1.0) == 40 and b.state().misses == 1
    k = b.observe(k, 50.0, 40.0)  # 90 ms: within budget, same model, same k
    assert k == 40 and b.state().misses == 1 and b.state().frames == 2


def test_floor_when_even_no_reranking_would_miss():
    b = RerankBudget(BudgetConfig(100.0, max_rerank_k=100, min_rerank_k=3))
    for _ in range(3):
        k = b.observe(b.rerank_k, 150.0, 10.0)
    assert k == 3 and b.state().misses == 3


def test_increases_at_most_double_per_frame_and_forgets_old_frames():
    cfg = BudgetConfig(100.0, max_rerank_k=64, min_rerank_k=1, window=4)
    b = RerankBudget(cfg)
    b.observe(64, 95.0, 64.0)  # a slow frame: fixed cost leaves room for no candidate
    assert b.rerank_k == 1
    seen, window = [], [95.0]
    for _ in range(10):  # fast frames: fixed 10 ms, 0.5 ms per candidate -> 160 fit, capped at 64
        k = b.rerank_k
        seen.append(b.observe(k, 10.0, 0.5 * k))
        window = [*window, 10.0][-cfg.window:]
        assert seen[-1] == max(1, min(fits(cfg, float(np.percentile(window, 95)), 0.5), max(k + 1, 2 * k)))
    assert seen[0] == 1  # the slow frame still dominates the p95 of [95, 10]
    assert all(b2 <= max(a + 1, 2 * a) for a, b2 in itertools.pairwise(seen))  # at most doubling
    assert seen == sorted(seen) and seen[-1] == 64 and seen.index(64) > 3  # grows back once it aged out

def test_percentile_not_mean_decides():
    cfg = BudgetConfig(100.0, max_rerank_k=100, window=20, percentile=95.0)
    b = RerankBudget(cfg)
    fixed = [20.0] * 18 + [80.0, 80.0]  # two slow frames in twenty: p95 is near 80, the mean is 26
    for f in fixed:
        b.observe(10, f, 10.0)  # 1 ms per candidate
    expected = fits(cfg, float(np.percentile(fixed, 95)), 1.0)
    assert b.rerank_k == expected and expected < fits(cfg, float(np.mean(fixed)), 1.0)


@pytest.mark.parametrize("kwargs, needle", [
    ({"budget_ms": 0.0, "max_rerank_k": 5}, "latency_budget_ms"),
    ({"budget_ms": float("inf"), "max_rerank_k": 5}, "latency_budget_ms"),
    ({"budget_ms": 10.0, "max_rerank_k": 5, "min_rerank_k": 6}, "min_rerank_k"),
    ({"budget_ms": 10.0, "max_rerank_k": 5, "window": 0}, "window"),
    ({"budget_ms": 10.0, "max_rerank_k": 5, "headroom": 1.5}, "headroom"),
])
def test_bad_config(kwargs, needle):
    with pytest.raises(ConfigError, match=needle):
        BudgetConfig(**kwargs)


def test_a_warm_up_run_seeds_the_costs_without_counting_a_frame_or_a_miss():
    cfg = BudgetConfig(100.0, max_rerank_k=100, min_rerank_k=1)
    b = RerankBudget(cfg)
    k = b.calibrate(100, 50.0, 100.0)  # 150 ms: over budget, but not a frame of the camera
    st = b.state()
    assert k == fits(cfg, 50.0, 1.0) == st.rerank_k and (st.frames, st.misses) == (0, 0)
    assert b.observe(k, 50.0, 40.0) == k and b.state().frames == 1
