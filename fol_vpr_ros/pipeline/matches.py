"""The mutual nearest-neighbour pairs FoL re-ranking counts, for one candidate (the input of verification)."""

from __future__ import annotations

import numpy as np
import torch

from .rerank import (
    DEFAULT_MEMORY_BUDGET_MB,
    DEFAULT_THRESHOLD,
    ArrayLike,
    _check_finite,
    _prepare,
    _similarity,
    _to_float32,
)

__all__ = ["mutual_matches"]


def mutual_matches(query_local: ArrayLike, query_count: int, cand_local: ArrayLike, cand_count: int,
                   threshold: float = DEFAULT_THRESHOLD,
                   device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query_idx, cand_idx) int64 arrays of the pairs :func:`rerank.mnn_scores` counts for one candidate.

    ``query_local`` [Lq, D], ``cand_local`` [Lc, D] (rows past the counts ignored); the definition,
    input checks and float32 GEMM are rerank's, so the length equals that candidate's score.
    Pairs come in candidate-row order.
    """
    cand = cand_local[None] if hasattr(cand_local, "shape") else np.asarray(cand_local)[None]
    inp = _prepare(query_local, query_count, cand, [cand_count], threshold, device, DEFAULT_MEMORY_BUDGET_MB)
    n = int(inp.counts[0])
    empty = np.zeros(0, dtype=np.int64)
    if n == 0 or inp.nq == 0:
        return empty, empty.copy()
    rows = _to_float32(inp.cand[0, :n], inp.device)
    _check_finite(rows, "cand_local")
    sim = _similarity(rows, inp.query.T)[:, : inp.nq]
    best_col = sim.argmax(dim=1)  # nearest query row of each candidate row (first on ties)
    best_row = sim.argmax(dim=0)  # nearest candidate row of each query row
    idx = torch.arange(n, device=inp.device)
    keep = (best_row[best_col] == idx) & (sim[idx, best_col] > inp.threshold)
    cand_idx = idx[keep]
    return best_col[keep].cpu().numpy().astype(np.int64), cand_idx.cpu().numpy().astype(np.int64)
