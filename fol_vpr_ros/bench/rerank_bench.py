"""Re-ranking benchmark: batched mutual-NN counts vs the per-candidate loop vs the bare matmul floor.

Data are synthetic unit vectors: each candidate shares a random fraction (0-10 %) of the query's rows,
perturbed by noise so that their dot products spread around the 0.7 threshold, and has a few padding
rows; the other rows are random, so counts run from zero to a few hundred pairs.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..rerank import _CPU_TILE_BYTES, DEFAULT_THRESHOLD, mnn_scores, mnn_scores_loop
from .common import BenchTable, time_call

__all__ = ["bench_rerank", "synthetic_rerank_inputs"]


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


def _floors(query: torch.Tensor, cand: torch.Tensor, tile_rows: int) -> dict[str, Callable[[], object]]:
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


def bench_rerank(device: str = "cpu", k: int = 100, rows: int = 3400, dim: int = 128, repeats: int = 3,
                 out_dir: str | Path | None = None) -> BenchTable:
    """Time one query's re-ranking of ``k`` candidates; rows: batched, loop, float16 input, matmul floors."""
    dev = torch.device(device)
    query_np, nq, cand_np, counts = synthetic_rerank_inputs(k, rows, dim)
    query = torch.from_numpy(query_np).to(dev)
    cand = torch.from_numpy(cand_np).to(dev)
    cand16 = cand_np.astype(np.float16)
    query16 = query_np.astype(np.float16)
    tile_rows = max(16, _CPU_TILE_BYTES // (rows * 4)) if dev.type == "cpu" else rows

    runs: dict[str, Callable[[], object]] = {
        "batched mnn_scores": lambda: mnn_scores(query, nq, cand, counts, device=dev),
        "batched, float16 numpy input": lambda: mnn_scores(query16, nq, cand16, counts, device=dev),
        "per-candidate loop (reference)": lambda: mnn_scores_loop(query, nq, cand, counts, device=dev),
        **_floors(query, cand, tile_rows),
    }
    results = {name: fn() for name, fn in runs.items()}  # warm-up, and the counts to check
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(max(1, repeats)):  # interleaved rounds, so that load changes hit every row alike
        for name, fn in runs.items():
            times[name].append(time_call(fn, repeats=1, warmup=0, device=dev).min_ms)

    reference = results["per-candidate loop (reference)"]
    # float16 rows are other data than their float32 originals: check them against the loop on float16
    references = {"batched, float16 numpy input": mnn_scores_loop(query16, nq, cand16, counts, device=dev)}
    best = {name: min(t) for name, t in times.items()}
    floor = min(v for name, v in best.items() if name.startswith("floor"))
    loop = best["per-candidate loop (reference)"]
    table = BenchTable(
        f"Re-ranking one query: K={k} candidates, {rows} x {dim} rows, threshold {DEFAULT_THRESHOLD}, "
        f"device {dev}, {torch.get_num_threads()} threads",
        ["implementation", "ms/query (min)", "ms/query (median)", "x floor", "speedup vs loop", "pairs",
         "counts equal"],
    )
    for name in runs:
        counts_out = results[name]
        is_counts = isinstance(counts_out, np.ndarray)
        table.add(**{
            "implementation": name,
            "ms/query (min)": best[name],
            "ms/query (median)": statistics.median(times[name]),
            "x floor": best[name] / floor,
            "speedup vs loop": loop / best[name],
            "pairs": int(counts_out.sum()) if is_counts else "",
            "counts equal": (bool(np.array_equal(counts_out, references.get(name, reference)))
                             if is_counts else ""),
        })
    table.notes.append(f"min and median over {max(1, repeats)} interleaved rounds after one warm-up call; "
                       f"x floor is relative to the fastest matmul floor ({floor:.0f} ms)")
    table.notes.append("floors: the same K similarity matmuls [rows,dim]x[dim,rows] in float32, nothing else")
    table.notes.append("counts equal: the same per-candidate counts as the loop on the same data")
    if out_dir is not None:
        table.write(out_dir, "rerank")
    return table
