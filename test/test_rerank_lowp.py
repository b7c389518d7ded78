"""Low-precision re-ranking: counts equal the fp32 reference exactly; the error bound holds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fol_vpr_ros.bench.rerank_bench import dense_rerank_inputs, synthetic_rerank_inputs
from fol_vpr_ros.pipeline.rerank import mnn_scores_loop
from fol_vpr_ros.pipeline.rerank_lowp import error_bound, mnn_scores_lowp
from fol_vpr_ros.precision import Precision


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("make", [synthetic_rerank_inputs, dense_rerank_inputs])
def test_random_data_counts_equal_fp32(make, precision):
    q, nq, c, counts = make(k=5, rows=300, dim=128, seed=3)
    want = mnn_scores_loop(q, nq, c, counts)
    assert want.sum() > 0
    assert np.array_equal(mnn_scores_lowp(q, nq, c, counts, precision=precision), want)


def test_threshold_edges_ties_empty_rows_and_k1():
    rng = np.random.default_rng(0)
    q = unit(rng.standard_normal((40, 128)))
    c = np.zeros((4, 40, 128), np.float32)
    c[0, :40] = q  # exact copies: dot products of 1 (ties with nothing), every row pairs
    c[1, :20] = q[:20]
    c[1, 20:40] = q[:20]  # duplicated rows: column ties, first row wins
    counts = np.array([40, 40, 0, 10])  # candidate 2 empty
    c[3, :10] = unit(q[:10] + 0.3 * rng.standard_normal((10, 128)) / np.sqrt(128))
    ref = mnn_scores_loop(q, 40, c, counts)
    assert np.array_equal(mnn_scores_lowp(q, 40, c, counts), ref)
    assert ref[0] == 40 and ref[1] == 20 and ref[2] == 0
    # thresholds exactly at the fp32 dot products of candidate 3 (strictly greater counts)
    sims = (c[3, :10] @ q.T).max(axis=1)
    for thr in [float(s) for s in sims[:4]] + [float(np.nextafter(sims[0], 0))]:
        assert np.array_equal(mnn_scores_lowp(q, 40, c, counts, threshold=thr),
                              mnn_scores_loop(q, 40, c, counts, threshold=thr))
    # K = 1 and an empty query
    assert np.array_equal(mnn_scores_lowp(q, 40, c[:1], counts[:1]), ref[:1])
    assert mnn_scores_lowp(q, 0, c, counts).tolist() == [0, 0, 0, 0]


def test_adversarial_near_ties_at_the_threshold():
    """Rows whose best dot products sit within bf16 rounding of the threshold and of each other."""
    rng = np.random.default_rng(1)
    q = unit(rng.standard_normal((64, 128)))
    c = np.zeros((3, 64, 128), np.float32)
    for k in range(3):
        for i in range(64):
            # cos ~ 0.7 +- 1e-3 to query row i: t q_i + sqrt(1-t^2) orthogonal part
            t = 0.7 + rng.uniform(-1e-3, 1e-3)
            o = rng.standard_normal(128)
            o -= o @ q[i] * q[i]
            c[k, i] = unit(t * q[i] + np.sqrt(1 - t * t) * o / np.linalg.norm(o))
        c[k, 32:] = c[k, :32] + 1e-4 * rng.standard_normal((32, 128)).astype(np.float32)  # near-duplicate rows
        c[k] = unit(c[k])
    counts = np.array([64, 64, 40])
    for thr in (0.699, 0.7, 0.7005):
        ref = mnn_scores_loop(q, 64, c, counts, threshold=thr)
        assert np.array_equal(mnn_scores_lowp(q, 64, c, counts, threshold=thr), ref)
        assert np.array_equal(mnn_scores_lowp(q, 64, c, counts, threshold=thr, precision="fp16"), ref)


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
def test_measured_error_stays_under_the_bound(precision):
    rng = np.random.default_rng(2)
    q = torch.from_numpy(unit(rng.standard_normal((256, 128))))
    # adversarial: rows aligned with the query rows (largest products, same signs), and random ones
    c = torch.cat([q[:128] + 1e-3 * torch.randn(128, 128), torch.randn(128, 128)])
    c = torch.nn.functional.normalize(c, dim=1)
    q_low, c_low = q.to(precision.dtype), c.to(precision.dtype)
    eps = error_bound(q, q_low, c, c_low, precision)
    exact = c @ q.T
    low = (c_low @ q_low.T).float()
    worst = float((low - exact).abs().max())
    assert 0 < worst <= eps
    assert eps < {Precision.BF16: 0.02, Precision.FP16: 3e-3}[precision]  # tight enough to screen with


def test_bad_input_is_reported():
    from fol_vpr_ros.errors import ConfigError

    q = unit(np.random.default_rng(0).standard_normal((20, 128)))
    c = np.stack([q, q])
    c[1, 3, 5] = np.nan
    with pytest.raises(ConfigError, match="cand_local contains NaN"):
        mnn_scores_lowp(q, 20, c, [20, 20])
