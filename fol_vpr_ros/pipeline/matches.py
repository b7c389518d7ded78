"""The mutual nearest-neighbour pairs FoL re-ranking counts, for one candidate (the input of verification)."""

from __future__ import annotations

import numpy as np
import torch

from .rerank import DEFAULT_THRESHOLD, ArrayLike, mnn_pairs

__all__ = ["mutual_matches"]


def mutual_matches(query_local: ArrayLike, query_count: int, cand_local: ArrayLike, cand_count: int,
                   threshold: float = DEFAULT_THRESHOLD,
                   device: str | torch.device | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(query_idx, cand_idx) int64 arrays of the pairs :func:`rerank.mnn_scores` counts for one candidate.

    ``query_local`` [Lq, D], ``cand_local`` [Lc, D] (rows past the counts ignored); re-ranking's own tiled
    kernel (:func:`rerank.mnn_pairs`), so the length equals that candidate's score. Pairs come in
    candidate-row order.
    """
    return mnn_pairs(query_local, query_count, cand_local, cand_count, threshold, device)
