"""Mutual-nearest-neighbour re-ranking: batched counts vs the per-candidate loop vs numpy brute force."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fol_vpr_ros.pipeline.rerank as rr
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.pipeline.rerank import (
    RerankConfig,
    Reranker,
    mnn_scores,
    mnn_scores_loop,
    rerank_order,
)

D = 128


def numpy_brute(q: np.ndarray, nq: int, cand: np.ndarray, counts: np.ndarray, thr: float = 0.7) -> np.ndarray:
    """Independent definition: full matrix per candidate, numpy argmax both ways, strict threshold."""
    out = np.zeros(len(cand), dtype=np.int64)
    qv = q[:nq].astype(np.float32)
    for k, n in enumerate(counts):
        if n == 0 or nq == 0:
            continue
        s = cand[k, :n].astype(np.float32) @ qv.T
        to_q = s.argmax(axis=1)
        to_c = s.argmax(axis=0)
        rows = np.arange(n)
        out[k] = int(np.sum((to_c[to_q] == rows) & (s[rows, to_q] > np.float32(thr))))
    return out


def quantized(x: np.ndarray) -> np.ndarray:
    """Unit rows rounded to multiples of 1/64: every dot product is exact in float32 in any order."""
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return (np.round(x * 64) / 64).astype(np.float32)


def make_case(seed: int, k: int = 10, rows: int = 120, nq: int = 100, exact: bool = True,
              garbage: bool = True) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Query and candidates sharing noisy copies (and exact duplicates) of query rows; padding filled."""
    rng = np.random.default_rng(seed)

    def unit(a: np.ndarray) -> np.ndarray:
        if exact:
            return quantized(a)
        return (a / np.linalg.norm(a, axis=-1, keepdims=True)).astype(np.float32)

    q = unit(rng.standard_normal((rows, D)))
    q[5] = q[3]  # duplicate query rows: ties along candidate rows
    cand = unit(rng.standard_normal((k, rows, D)))
    counts = rng.integers(0, rows + 1, size=k)
    if k > 2:
        counts[0], counts[1] = 0, rows
        counts[2] = 7  # fewer rows than a GEMM block
    for i in range(k):
        n = int(counts[i])
        m = min(n, int(rng.integers(0, 40)))
        dst = rng.choice(n, m, replace=False)
        src = rng.choice(nq, m, replace=False)
        cand[i, dst] = unit(q[src] + rng.uniform(0.1, 1.2, (m, 1)) * rng.standard_normal((m, D)) / np.sqrt(D))
        if m >= 2:
            cand[i, dst[1]] = cand[i, dst[0]]  # duplicate candidate rows: ties along query rows
    if garbage:  # rows past the counts must be ignored, whatever they hold
        q[nq:] = 5 * rng.standard_normal((rows - nq, D))
        for i, n in enumerate(counts):
            cand[i, n:] = 5 * rng.standard_normal((rows - n, D))
    else:
        q[nq:] = 0
        for i, n in enumerate(counts):
            cand[i, n:] = 0
    return q, nq, cand, counts


def dense_case(seed: int, k: int = 5, rows: int = 260, nq: int = 240,
               directions: int = 4) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Rows around a few shared directions (exact in float32): many dot products above 0.7, heavy ties."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((directions, D))

    def draw(n: int) -> np.ndarray:
        noise = rng.uniform(0.3, 1.0, (n, 1)) * rng.standard_normal((n, D)) * np.linalg.norm(centers[0]) / np.sqrt(D)
        return quantized(centers[rng.integers(0, directions, n)] + noise)

    q = draw(rows)
    cand = np.stack([draw(rows) for _ in range(k)])
    counts = rng.integers(rows // 2, rows + 1, size=k)
    cand[0, 5:9] = cand[0, 3]  # duplicated candidate and query rows: ties both ways
    q[7:9] = q[2]
    return q, nq, cand, counts


def integer_case(seed: int) -> tuple[np.ndarray, int, np.ndarray, np.ndarray, float]:
    """Tiny small-integer rows: dot products are small integers, so ties are everywhere."""
    rng = np.random.default_rng(seed)
    d, k, rows, nq, lim = (int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 70)),
                           int(rng.integers(0, 70)), int(rng.integers(1, 4)))
    q = rng.integers(-lim, lim + 1, (max(nq, 1), d)).astype(np.float32)
    cand = rng.integers(-lim, lim + 1, (k, rows, d)).astype(np.float32)
    return q, nq, cand, rng.integers(0, rows + 1, k), float(rng.choice([-0.5, 0.0, 0.5, 0.9, 1.0]))


# ------------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize("thr", [0.7, 0.5, 0.9, 0.0, -0.3, 1.0])
def test_batched_equals_loop_and_numpy(thr: float) -> None:
    q, nq, cand, counts = make_case(seed=1)
    want = numpy_brute(q, nq, cand, counts, thr)
    assert np.array_equal(mnn_scores_loop(q, nq, cand, counts, thr), want)
    got = mnn_scores(q, nq, cand, counts, thr)
    assert got.dtype == np.int64 and got.shape == (len(cand),)
    assert np.array_equal(got, want)
    if thr == 0.7:
        assert want[0] == 0 and want.max() >= 5  # non-trivial counts


def test_batched_equals_loop_unquantized() -> None:
    for seed in range(3):
        q, nq, cand, counts = make_case(seed=10 + seed, k=8, rows=150, nq=150, exact=False)
        assert np.array_equal(mnn_scores(q, nq, cand, counts), mnn_scores_loop(q, nq, cand, counts))


def test_ties_take_the_first_index() -> None:
    q = quantized(np.random.default_rng(2).standard_normal((4, D)))
    # candidate rows 0 and 2 both equal query row 1; row 1 equals query row 3
    cand = np.stack([q[1], q[3], q[1], -q[0]])[None]
    counts = np.array([4])
    # query row 1 -> first of the tied rows (0), which maps back to it: one pair; row 2 is shadowed
    assert mnn_scores(q, 4, cand, counts).tolist() == [2]
    assert mnn_scores_loop(q, 4, cand, counts).tolist() == [2]
    # a duplicated query row: candidate row 0 -> first tied query row (1); query row 2 is left out
    q2 = np.stack([q[0], q[1], q[1], q[2]])
    cand2 = np.stack([q[1], q[2]])[None]
    assert mnn_scores(q2, 4, cand2, [2]).tolist() == numpy_brute(q2, 4, cand2, np.array([2])).tolist() == [2]


def test_hand_computed_case() -> None:
    e = np.eye(D, dtype=np.float32)
    q = np.stack([e[0], e[1], e[2]])
    cand = np.zeros((2, 3, D), dtype=np.float32)
    cand[0, 0] = e[0]  # dot 1.0 with q0: mutual, passes
    cand[0, 1] = 0.8 * e[1] + 0.6 * e[3]  # dot 0.8 with q1: mutual, passes
    cand[0, 2] = 0.6 * e[2] + 0.8 * e[3]  # dot 0.6 with q2: mutual, below the threshold
    cand[1, 0] = 0.9 * e[0] + np.sqrt(0.19) * e[3]  # q0 prefers row 1: not mutual
    cand[1, 1] = 0.95 * e[0] + np.sqrt(0.0975) * e[3]  # the single pair (the authors would report 0)
    counts = np.array([3, 2])
    assert mnn_scores(q, 3, cand, counts).tolist() == [2, 1]
    assert mnn_scores_loop(q, 3, cand, counts).tolist() == [2, 1]
    res = Reranker().rerank([10, 20], [0.5, 0.9], q, 3, cand, counts)
    assert res.ids.tolist() == [10, 20] and res.scores.tolist() == [2, 1] and res.order.tolist() == [0, 1]
    assert res.global_sims.tolist() == [0.5, 0.9]


def test_threshold_is_strict() -> None:
    e = np.eye(D, dtype=np.float32)
    q = e[:1]
    for dot in (0.75, 0.7):
        b = np.float32(dot) * e[0] + np.float32(np.sqrt(1 - dot * dot)) * e[1]
        cand = b[None, None, :]
        assert float(cand[0, 0] @ q[0]) == np.float32(dot)
        for fn in (mnn_scores, mnn_scores_loop):
            assert fn(q, 1, cand, [1], threshold=dot).tolist() == [0]
            below = float(np.nextafter(np.float32(dot), np.float32(0)))
            assert fn(q, 1, cand, [1], threshold=below).tolist() == [1]
    # the default threshold is float32(0.7), so a dot of exactly float32(0.7) does not count
    assert mnn_scores(q, 1, cand, [1]).tolist() == [0]


def test_exactly_one_pair_scores_one() -> None:
    q, nq, cand, _ = make_case(seed=3, k=1, rows=40, nq=40, garbage=False)
    cand[0] = -q  # nothing passes
    cand[0, 7] = q[11]
    assert mnn_scores(q, nq, cand, [40]).tolist() == [1]
    assert mnn_scores_loop(q, nq, cand, [40]).tolist() == [1]


def test_empty_rows_score_zero() -> None:
    q, nq, cand, counts = make_case(seed=4, k=5)
    assert mnn_scores(q, 0, cand, counts).tolist() == [0] * 5
    assert mnn_scores_loop(q, 0, cand, counts).tolist() == [0] * 5
    assert mnn_scores(q, nq, cand, np.zeros(5, dtype=np.int64)).tolist() == [0] * 5
    empty = np.zeros((3, 0, D), dtype=np.float32)
    assert mnn_scores(q, nq, empty, [0, 0, 0]).tolist() == [0, 0, 0]


def test_single_candidate_and_small_query() -> None:
    q, _, cand, counts = make_case(seed=5, k=6)
    for nq in (1, 3, 17):
        for i in range(6):
            one, cnt = cand[i:i + 1], counts[i:i + 1]
            want = numpy_brute(q, nq, one, cnt)
            assert np.array_equal(mnn_scores(q, nq, one, cnt), want)
            assert np.array_equal(mnn_scores_loop(q, nq, one, cnt), want)


def test_padding_content_is_ignored() -> None:
    q, nq, cand, counts = make_case(seed=6, garbage=False)
    clean = mnn_scores(q, nq, cand, counts)
    q2, _, cand2, counts2 = make_case(seed=6, garbage=True)
    assert np.array_equal(counts2, counts)
    assert np.array_equal(mnn_scores(q2, nq, cand2, counts), clean)
    q2[nq:] = np.nan
    for i, n in enumerate(counts):
        cand2[i, n:] = np.inf
    assert np.array_equal(mnn_scores(q2, nq, cand2, counts), clean)
    assert np.array_equal(mnn_scores_loop(q2, nq, cand2, counts), clean)


def test_float16_and_torch_inputs() -> None:
    q, nq, cand, counts = make_case(seed=7)  # multiples of 1/64: exact in float16
    want = numpy_brute(q, nq, cand, counts)
    q16, c16 = q.astype(np.float16), cand.astype(np.float16)
    assert np.array_equal(q16.astype(np.float32)[:nq], q[:nq])
    assert np.array_equal(mnn_scores(q16, nq, c16, counts), want)
    assert np.array_equal(mnn_scores_loop(q16, nq, c16, counts), want)
    tq, tc, tn = torch.from_numpy(q16), torch.from_numpy(c16), torch.from_numpy(counts)
    assert np.array_equal(mnn_scores(tq, torch.tensor(nq), tc, tn, device="cpu"), want)
    ro = c16.copy()
    ro.setflags(write=False)
    assert np.array_equal(mnn_scores(q.astype(np.float64), nq, ro, counts.tolist()), want)


def test_chunking_does_not_change_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    q, nq, cand, counts = make_case(seed=8, k=12)
    want = mnn_scores_loop(q, nq, cand, counts)
    calls = []
    real = rr._score_chunk

    def spy(inp, k0, k1, tile_rows):  # type: ignore[no-untyped-def]
        calls.append((k1 - k0, tile_rows))
        return real(inp, k0, k1, tile_rows)

    monkeypatch.setattr(rr, "_score_chunk", spy)
    assert np.array_equal(mnn_scores(q, nq, cand, counts), want)
    assert len(calls) == 1
    calls.clear()
    assert np.array_equal(mnn_scores(q, nq, cand, counts, memory_budget_mb=0.02), want)
    assert len(calls) > 3 and all(t == 16 for _, t in calls)  # many chunks, 16-row tiles
    calls.clear()
    for thr in (0.7, 0.0):  # one candidate per chunk, sparse and dense tiles
        got = mnn_scores(q, nq, cand, counts, thr, memory_budget_mb=1e-5)
        assert np.array_equal(got, numpy_brute(q, nq, cand, counts, thr))
    assert all(k == 1 and t == 16 for k, t in calls)


def test_dense_matches_loop_and_numpy() -> None:
    for seed in range(3):
        q, nq, cand, counts = dense_case(seed=20 + seed)
        sim = cand[1, : counts[1]] @ q[:nq].T
        assert (sim > 0.7).mean() > 0.05 and (sim.max(axis=1) > 0.7).mean() > 0.75  # dense above the threshold
        want = numpy_brute(q, nq, cand, counts)
        assert want.sum() > 20
        assert np.array_equal(mnn_scores_loop(q, nq, cand, counts), want)
        assert np.array_equal(mnn_scores(q, nq, cand, counts), want)
        assert np.array_equal(mnn_scores(q, nq, cand, counts, memory_budget_mb=0.3), want)  # several tiles


@pytest.mark.parametrize("fraction", [0.0, 2.0])  # every tile examined in place / gathered
@pytest.mark.parametrize("block", [1, 3, 32])
def test_in_place_and_gathered_paths_agree(monkeypatch: pytest.MonkeyPatch, fraction: float, block: int) -> None:
    monkeypatch.setattr(rr, "_DENSE_FRACTION", fraction)
    monkeypatch.setattr(rr, "_BLOCK", block)
    cases = [(*make_case(seed=30), 0.7), (*make_case(seed=31), 0.0), (*dense_case(seed=32, rows=150, nq=140), 0.7)]
    cases += [integer_case(seed) for seed in range(40, 50)]
    for q, nq, cand, counts, thr in cases:
        want = numpy_brute(q, nq, cand, counts, thr)
        for budget in (256, 0.05, 1e-5):  # one tile, a few, 16-row tiles with one candidate per chunk
            assert np.array_equal(mnn_scores(q, nq, cand, counts, thr, memory_budget_mb=budget), want)


def test_ties_everywhere() -> None:
    for seed in range(60):
        q, nq, cand, counts, thr = integer_case(seed)
        want = numpy_brute(q, nq, cand, counts, thr)
        assert np.array_equal(mnn_scores(q, nq, cand, counts, thr), want)
        assert np.array_equal(mnn_scores_loop(q, nq, cand, counts, thr), want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu() -> None:
    q, nq, cand, counts = make_case(seed=12)  # exact dot products, also under TF32
    want = numpy_brute(q, nq, cand, counts)
    assert np.array_equal(mnn_scores(q, nq, cand, counts, device="cuda"), want)
    assert np.array_equal(mnn_scores(q, nq, cand, counts, device="cuda", memory_budget_mb=0.02), want)
    assert np.array_equal(mnn_scores_loop(q, nq, cand, counts, device="cuda"), want)


# ------------------------------------------------------------------------------------------- order
def test_rerank_order_tie_breaking() -> None:
    scores = np.array([3, 5, 5, 0, 5])
    sims = np.array([0.1, 0.2, 0.9, 0.5, 0.2])
    assert rerank_order(scores, sims).tolist() == [2, 1, 4, 0, 3]
    assert rerank_order(np.zeros(4, dtype=np.int64), np.zeros(4)).tolist() == [0, 1, 2, 3]
    assert rerank_order(np.zeros(0, dtype=np.int64), np.zeros(0)).tolist() == []


def test_reranker_top_k_and_reorder() -> None:
    q, nq, cand, counts = make_case(seed=9, k=6)
    ids = np.array([40, 41, 42, 43, 44, 45])
    sims = np.linspace(0.9, 0.4, 6)
    r = Reranker(RerankConfig(top_k=4))
    res = r.rerank(ids, sims, q, nq, cand, counts)
    scores = numpy_brute(q, nq, cand[:4], counts[:4])
    order = rerank_order(scores, sims[:4])
    assert res.order.tolist() == order.tolist()
    assert res.ids.tolist() == ids[order].tolist() and res.scores.tolist() == scores[order].tolist()
    assert np.array_equal(r.score(q, nq, cand, counts), numpy_brute(q, nq, cand, counts))


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs_raise_config_error() -> None:
    q, nq, cand, counts = make_case(seed=11, k=3, rows=20, nq=20)
    bad = [
        ((q[None], nq, cand, counts), {}, "query_local"),
        ((q, nq, cand[0], counts), {}, "cand_local"),
        ((q[:, :64], nq, cand, counts), {}, "dims"),
        ((q, 21, cand, counts), {}, "query_count"),
        ((q, -1, cand, counts), {}, "query_count"),
        ((q, 2.5, cand, counts), {}, "query_count"),
        ((q, nq, cand, [1, 2, 21]), {}, "cand_count"),
        ((q, nq, cand, [1, -2, 3]), {}, "cand_count"),
        ((q, nq, cand, [1, 2]), {}, "cand_count"),
        ((q, nq, cand, [1.5, 2, 3]), {}, "cand_count"),
        ((q, nq, cand[:0], counts[:0]), {}, "K = 0"),
        ((q, nq, cand.astype(np.int32), counts), {}, "floating"),
        ((q, nq, cand, counts), {"threshold": 1.5}, "threshold"),
        ((q, nq, cand, counts), {"threshold": -1.0}, "threshold"),
        ((q, nq, cand, counts), {"threshold": float("nan")}, "threshold"),
        ((q, nq, cand, counts), {"memory_budget_mb": 0}, "memory_budget_mb"),
        ((q, nq, cand, counts), {"device": "nonsense"}, "device"),
    ]
    for fn in (mnn_scores, mnn_scores_loop):
        for args, kw, msg in bad:
            with pytest.raises(ConfigError, match=msg):
                fn(*args, **kw)
    nan = cand.copy()
    nan[1, 0, 0] = np.nan
    for fn in (mnn_scores, mnn_scores_loop):
        with pytest.raises(ConfigError, match="NaN"):
            fn(q, nq, nan, [1, 1, 1])
    with pytest.raises(ConfigError, match="top_k"):
        RerankConfig(top_k=0)
    with pytest.raises(ConfigError, match="threshold"):
        RerankConfig(threshold=2.0)
    with pytest.raises(ConfigError, match="same length"):
        Reranker().rerank([1, 2], [0.5, 0.4, 0.3], q, nq, cand, counts)
    with pytest.raises(ValueError):
        rerank_order(np.zeros(3), np.zeros(2))


# ------------------------------------------------------------------------------------------- bench
def test_bench_small(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from fol_vpr_ros.bench.rerank_bench import bench_rerank

    table = bench_rerank(k=4, rows=80, repeats=1, out_dir=tmp_path)
    checks = [r["counts equal"] for r in table.rows if isinstance(r["counts equal"], bool)]
    # batched and bf16-screened (both data regimes), float16 input
    assert len(checks) == 5 and all(checks)
    assert sum("bf16 screened" in r["implementation"] for r in table.rows) == 2
    assert {r["data"] for r in table.rows} == {"sparse", "dense"}
    assert (tmp_path / "rerank.md").is_file()
    assert json.loads((tmp_path / "rerank.json").read_text())["rows"]
