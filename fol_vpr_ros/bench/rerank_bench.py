"""Re-ranking benchmark: batched mutual-NN counts vs the per-candidate loop vs the bare matmul floor.

Data are synthetic unit vectors, in two regimes:

* sparse: each candidate shares a random fraction (0-10 %) of the query's rows, perturbed by noise so
  that their dot products spread around the 0.7 threshold, and has a few padding rows; the other rows
  are random, so few dot products exceed the threshold and counts run from zero to a few hundred pairs.
* dense: every row (query and candidates) lies at a cosine a ~ U(0.75, 0.95) from one of 25 shared
  directions (a random unit direction orthogonal to it supplies the rest). Two rows of the same
  direction have a cosine near a1 * a2 (0.56-0.90), about half of them above 0.7, and rows of different
  directions are nearly orthogonal: about 2.5 % of all dot products exceed 0.7 (as with the model's
  synthetic weights on real images), almost every row has one above it, and a few percent of the rows
  pair up (mutual nearest neighbours among many near-equal candidates).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..pipeline.rerank import _CPU_TILE_BYTES, DEFAULT_THRESHOLD, mnn_scores, mnn_scores_loop
from ..pipeline.rerank_lowp import mnn_scores_lowp
from .common import BenchTable, time_call

__all__ = [
    "REGIMES",
    "bench_rerank",
    "dense_rerank_inputs",
    "floor_tile_rows",
    "matmul_floors",
    "synthetic_rerank_inputs",
]

REGIMES = ("sparse", "dense")


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_rerank_inputs(k: int = 100, rows: int = 3400, dim: int = 128, seed: int = 0,
                            max_shared: float = 0.1) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """(query [rows, dim], query count, candidates [k, rows, dim] zero-padded, counts [k]), float32."""
    rng = np.random.default_rng(seed)
    query = _unit(rng.standard_normal((rows, dim)))
    cand = np.zeros((k, rows, dim), dtype=np.float32)
    counts = rows - rng.integers(0, max(1, rows // 20), size=k)
    for i, n in enumerate(counts):
        cand[i, :n] = _unit(rng.standard_normal((n, dim)))
        m = int(rng.integers(0, int(max_shared * n) + 1))
        src = rng.choice(rows, m, replace=False)
        dst = rng.choice(n, m, replace=False)
        noise = rng.uniform(0.2, 1.0, (m, 1)) * rng.standard_normal((m, dim)) / np.sqrt(dim)
        cand[i, dst] = _unit(query[src] + noise)
    return query, rows, cand, counts.astype(np.int64)


def dense_rerank_inputs(k: int = 100, rows: int = 3400, dim: int = 128, seed: int = 0, directions: int = 25,
                        cosine: tuple[float, float] = (0.75, 0.95)) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """Like :func:`synthetic_rerank_inputs`, with rows around ``directions`` shared unit directions (module doc)."""
    rng = np.random.default_rng(seed)
    centers = _unit(rng.standard_normal((directions, dim)))

    def draw(n: int) -> np.ndarray:
        center = centers[rng.integers(0, directions, n)]
        cos = rng.uniform(*cosine, (n, 1))
        other = rng.standard_normal((n, dim))
        other = _unit(other - (other * center).sum(axis=1, keepdims=True) * center)
        return _unit(cos * center + np.sqrt(1 - cos * cos) * other)

    query = draw(rows)
    cand = np.zeros((k, rows, dim), dtype=np.float32)
    counts = rows - rng.integers(0, max(1, rows // 20), size=k)
    for i, n in enumerate(counts):
        cand[i, :n] = draw(int(n))
    return query, rows, cand, counts.astype(np.int64)


def _above(query: torch.Tensor, cand: torch.Tensor, counts: np.ndarray, sample: int = 4) -> float:
    """Share of the dot products above the threshold, over the first ``sample`` candidates."""
    above = total = 0
    for i in range(min(sample, len(counts))):
        sim = cand[i, : int(counts[i])] @ query.T
        above += int((sim > DEFAULT_THRESHOLD).sum())
        total += sim.numel()
    return above / max(1, total)


def matmul_floors(query: torch.Tensor, cand: torch.Tensor, tile_rows: int) -> dict[str, Callable[[], object]]:
    """Bare float32 matmuls of the same sizes, three ways (the fastest one is the floor)."""
    k, rows, dim = cand.shape
    qt = query.T
    per_cand_out = torch.empty(rows, query.shape[0], device=query.device)
    flat = cand.reshape(-1, dim)
    tile_out = torch.empty(tile_rows, query.shape[0], device=query.device)
    bmm_k = 4
    bmm_out = torch.empty(bmm_k, rows, query.shape[0], device=query.device)

    def per_candidate() -> None:
        for i in range(k):
            torch.mm(cand[i], qt, out=per_cand_out)

    def tiled() -> None:
        for t0 in range(0, flat.shape[0], tile_rows):
            part = flat[t0:t0 + tile_rows]
            torch.mm(part, qt, out=tile_out[: part.shape[0]])

    def bmm() -> None:
        for i in range(0, k, bmm_k):
            part = cand[i:i + bmm_k]
            torch.bmm(part, qt.expand(part.shape[0], -1, -1), out=bmm_out[: part.shape[0]])

    return {
        "floor: mm per candidate": per_candidate,
        f"floor: mm in {tile_rows}-row tiles": tiled,
        f"floor: bmm of {bmm_k} candidates": bmm,
    }


def floor_tile_rows(rows: int, device: torch.device) -> int:
    """Candidate rows per tile of the tiled floor: the CPU kernel's tile bytes, one candidate on a GPU."""
    return max(16, _CPU_TILE_BYTES // (rows * 4)) if device.type == "cpu" else rows


def bench_rerank(device: str = "cpu", k: int = 100, rows: int = 3400, dim: int = 128, repeats: int = 3,
                 out_dir: str | Path | None = None, regimes: tuple[str, ...] = REGIMES,
                 precisions: tuple[str, ...] = ("bf16",)) -> BenchTable:
    """Time one query's re-ranking of ``k`` candidates in each data regime (module doc); rows: batched,
    loop, float16 input (sparse only), matmul floors."""
    dev = torch.device(device)
    tile_rows = floor_tile_rows(rows, dev)
    runs: dict[tuple[str, str], Callable[[], object]] = {}
    references: dict[tuple[str, str], object] = {}  # what each run's counts must equal
    above: dict[str, float] = {}
    for regime in regimes:
        make = {"sparse": synthetic_rerank_inputs, "dense": dense_rerank_inputs}[regime]
        query_np, nq, cand_np, counts = make(k, rows, dim)
        query = torch.from_numpy(query_np).to(dev)
        cand = torch.from_numpy(cand_np).to(dev)
        above[regime] = _above(query, cand, counts)
        loop = (regime, "per-candidate loop (reference)")
        runs[(regime, "batched mnn_scores")] = partial(mnn_scores, query, nq, cand, counts, device=dev)
        references[(regime, "batched mnn_scores")] = loop
        if regime == "sparse":
            # float16 rows are other data than their float32 originals: checked against the loop on float16
            q16, c16 = query_np.astype(np.float16), cand_np.astype(np.float16)
            runs[(regime, "batched, float16 numpy input")] = partial(mnn_scores, q16, nq, c16, counts, device=dev)
            references[(regime, "batched, float16 numpy input")] = partial(mnn_scores_loop, q16, nq, c16, counts,
                                                                           device=dev)
        for p in precisions:  # low-precision screening, exact fp32 counts (rerank_lowp)
            runs[(regime, f"{p} screened, exact counts")] = partial(mnn_scores_lowp, query, nq, cand, counts,
                                                                    device=dev, precision=p)
            references[(regime, f"{p} screened, exact counts")] = loop
        low_floor = {"bf16": torch.bfloat16, "fp16": torch.float16}
        for p in precisions:  # the bare low-precision matmul, for comparison with the fp32 floor
            qt_low, cand_low = query.T.to(low_floor[p]).contiguous(), cand.to(low_floor[p])
            runs[(regime, f"{p} bare matmul (no counts)")] = partial(
                lambda c, qt: [torch.mm(c[i], qt) for i in range(c.shape[0])], cand_low, qt_low)
        runs[loop] = partial(mnn_scores_loop, query, nq, cand, counts, device=dev)
        runs.update({(regime, name): fn for name, fn in matmul_floors(query, cand, tile_rows).items()})
    results = {key: fn() for key, fn in runs.items()}  # warm-up, and the counts to check
    times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
    for _ in range(max(1, repeats)):  # interleaved rounds, so that load changes hit every row alike
        for key, fn in runs.items():
            times[key].append(time_call(fn, repeats=1, warmup=0, device=dev).min_ms)

    best = {key: min(t) for key, t in times.items()}
    table = BenchTable(
        f"Re-ranking one query: K={k} candidates, {rows} x {dim} rows, threshold {DEFAULT_THRESHOLD}, "
        f"device {dev}, {torch.get_num_threads()} threads",
        ["data", "implementation", "ms/query (min)", "ms/query (median)", "x floor", "speedup vs loop", "pairs",
         "counts equal"],
    )
    for regime in regimes:
        floor = min(v for (r, name), v in best.items() if r == regime and name.startswith("floor"))
        loop = best[(regime, "per-candidate loop (reference)")]
        for key in (key for key in runs if key[0] == regime):
            counts_out = results[key]
            is_counts = isinstance(counts_out, np.ndarray)
            if key in references:
                ref = references[key]
                want = results[ref] if isinstance(ref, tuple) else ref()  # type: ignore[operator]
                equal: object = bool(np.array_equal(counts_out, want))
            else:
                equal = "(reference)" if is_counts else ""
            table.add(**{
                "data": regime,
                "implementation": key[1],
                "ms/query (min)": best[key],
                "ms/query (median)": statistics.median(times[key]),
                "x floor": best[key] / floor,
                "speedup vs loop": loop / best[key],
                "pairs": int(counts_out.sum()) if is_counts else "",
                "counts equal": equal,
            })
        table.notes.append(f"{regime}: {100 * above[regime]:.2g} % of the dot products exceed {DEFAULT_THRESHOLD} "
                           f"(first candidates); floor {floor:.0f} ms")
    table.notes.append(f"min and median over {max(1, repeats)} interleaved rounds after one warm-up call; "
                       "x floor is relative to the fastest matmul floor of the same data")
    table.notes.append("floors: the same K similarity matmuls [rows,dim]x[dim,rows] in float32, nothing else")
    table.notes.append("counts equal: the same per-candidate counts as the loop on the same data")
    if out_dir is not None:
        table.write(out_dir, "rerank")
    return table
