"""Low-precision re-ranking with the exact fp32 counts: bf16/fp16 screening, fp32 only where it can matter.

A candidate row whose float32 maximum over the query rows is <= the threshold can neither count nor block
a pair (a blocking row needs a larger value in the column of a counted pair, which exceeds the threshold).
The similarities are computed in low precision, and a row is dropped only when its low-precision maximum
``m~`` satisfies ``m~ + eps <= threshold``, where ``eps`` bounds ``|s~ - s32|`` for every pair of the tile:

    s - s~ = q.r_c + r_q.c~ - (accumulation error) - (output rounding), with r = x - round(x), so
    |s~ - s32| <= |q|max |r_c|max + |r_q|max |c~|max            (input rounding, Cauchy-Schwarz)
                  + 2 gamma_D |q~|max |c~|max                   (fp32 accumulation, ours and the reference's)
                  + u_out (|q~|max |c~|max)                     (rounding of the output to bf16 / fp16)

with the norms measured on the actual rows (rounded up), gamma_D = D u32 / (1 - D u32), u32 = 2^-24 and
u_out = 2^-8 (bf16) or 2^-11 (fp16). Products of two bf16/fp16 numbers are exact in fp32, and the oneDNN
kernels accumulate in fp32 (the tests measure the worst case on adversarial data and check it against the
bound). The remaining ("live") rows, in order, go through the exact fp32 kernel (:func:`mnn_scores`), so
the counts equal the fp32 definition exactly, under the same GEMM assumption as that kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import ConfigError
from ..precision import Precision, parse_precision, resolve_precision
from .rerank import (
    DEFAULT_MEMORY_BUDGET_MB,
    DEFAULT_THRESHOLD,
    ArrayLike,
    _check_counts,
    _check_threshold,
    _resolve_device,
    _to_float32,
    mnn_scores,
)

__all__ = ["error_bound", "mnn_scores_lowp"]

_U32 = 2.0 ** -24
_UNIT_ROUNDOFF = {Precision.BF16: 2.0 ** -8, Precision.FP16: 2.0 ** -11}
_SLACK = 1.0 + 2.0 ** -12  # covers the float32 rounding of the norms (<= 2 D u32 relative) and of the bound
_TILE_ROWS = 8192  # candidate rows per low-precision GEMM (about 16 MiB of bf16 similarities at 1000 columns)


def _norm_max(x: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(x, dim=1).max()) if x.numel() else 0.0


def _row_stats(x: torch.Tensor, x_low: torch.Tensor) -> tuple[float, float, float]:
    """(max row norm, max row norm after rounding, max norm of the rounding residual), float32."""
    low = x_low.float()
    return _norm_max(x), _norm_max(low), _norm_max(x - low)


def error_bound(q: torch.Tensor, q_low: torch.Tensor, c: torch.Tensor, c_low: torch.Tensor,
                precision: Precision, q_stats: tuple[float, float, float] | None = None) -> float:
    """An upper bound of |s~ - s32| over all pairs of rows ``c`` x ``q`` (module docstring)."""
    dim = int(q.shape[1])
    gamma = dim * _U32 / (1 - dim * _U32)
    nq, nql, rq = q_stats if q_stats is not None else _row_stats(q, q_low)
    nc, ncl, rc = _row_stats(c, c_low)
    prod = max(nq, nql) * max(nc, ncl)
    return _SLACK * (nq * rc + rq * ncl + 2 * gamma * prod + _UNIT_ROUNDOFF[precision] * prod)


def mnn_scores_lowp(query_local: ArrayLike, query_count: int, cand_local: ArrayLike,
                    cand_count: ArrayLike | Sequence[int], threshold: float = DEFAULT_THRESHOLD,
                    device: str | torch.device | None = None, precision: Precision | str = Precision.BF16,
                    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> np.ndarray:
    """:func:`~fol_vpr_ros.pipeline.rerank.mnn_scores` counts (exactly), screened in bf16/fp16 (``auto``: device)."""
    dev = _resolve_device(device)
    p = resolve_precision(parse_precision(precision), dev)
    if p is Precision.FP32:
        return mnn_scores(query_local, query_count, cand_local, cand_count, threshold, dev, memory_budget_mb)
    thr = _check_threshold(threshold)
    if not isinstance(cand_local, torch.Tensor | np.ndarray) or cand_local.ndim != 3:
        # the exact kernel validates and reports every other input problem
        return mnn_scores(query_local, query_count, cand_local, cand_count, threshold, dev, memory_budget_mb)
    k, rows, dim = (int(s) for s in cand_local.shape)
    counts = _check_counts(cand_count, k, rows)
    nq = int(query_count)
    if k == 0 or nq <= 0 or counts.sum() == 0:
        return mnn_scores(query_local, query_count, cand_local, cand_count, threshold, dev, memory_budget_mb)
    q = _to_float32(query_local[:nq], dev)
    if not bool(torch.isfinite(q).all()):
        raise ConfigError("query_local contains NaN or infinite values in its valid rows")
    q_low = q.to(p.dtype)
    q_low_t = q_low.T.contiguous()
    q_stats = _row_stats(q, q_low)
    live_rows: list[torch.Tensor] = []
    live_counts = np.zeros(k, np.int64)
    for i in range(k):
        n = int(counts[i])
        kept = []
        for a in range(0, n, _TILE_ROWS):
            c = _to_float32(cand_local[i, a:min(n, a + _TILE_ROWS)], dev)
            c_low = c.to(p.dtype)
            eps = error_bound(q, q_low, c, c_low, p, q_stats)
            row_max = torch.mm(c_low, q_low_t).amax(dim=1).float()
            if not bool(torch.isfinite(row_max).all()):
                raise ConfigError("cand_local contains NaN or infinite values in its valid rows "
                                  "(or its dot products overflow)")
            live = (row_max + eps > thr).nonzero().squeeze(1)
            if live.numel():
                kept.append(c.index_select(0, live))
        if kept:
            live_rows.append(torch.cat(kept))
            live_counts[i] = live_rows[-1].shape[0]
        else:
            live_rows.append(q.new_zeros(0, dim))
    width = max(1, int(live_counts.max()))
    stack = q.new_zeros(k, width, dim)
    for i, r in enumerate(live_rows):
        stack[i, : r.shape[0]] = r
    return mnn_scores(q, nq, stack, live_counts, threshold, dev, memory_budget_mb)
