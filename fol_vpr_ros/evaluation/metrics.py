"""Retrieval metrics (pure numpy): recall@N, first correct rank, timing statistics."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = [
    "DEFAULT_NS",
    "TimingStats",
    "first_correct_rank",
    "pick_examples",
    "recall_at_n",
]

DEFAULT_NS: tuple[int, ...] = (1, 5, 10, 25, 100)


def _check(predictions: np.ndarray, positives: Sequence[object]) -> np.ndarray:
    pred = np.asarray(predictions)
    if pred.ndim == 1:
        pred = pred[:, None]
    if pred.ndim != 2:
        raise ConfigError(f"predictions must be [queries, K], got shape {pred.shape}")
    if pred.shape[0] != len(positives):
        raise ConfigError(f"{pred.shape[0]} prediction rows but {len(positives)} positive lists")
    if pred.shape[0] == 0:
        raise ConfigError("no queries to evaluate")
    return pred


def first_correct_rank(
    predictions: np.ndarray, positives: Sequence[Sequence[int] | np.ndarray]
) -> np.ndarray:
    """Per query, the 1-based rank of the first positive among its predictions, -1 when none is."""
    pred = _check(predictions, positives)
    ranks = np.full(pred.shape[0], -1, dtype=np.int64)
    for q, (row, pos) in enumerate(zip(pred, positives)):
        hits = np.flatnonzero(np.isin(row, np.asarray(pos)))
        if hits.size:
            ranks[q] = int(hits[0]) + 1
    return ranks


def recall_at_n(
    predictions: np.ndarray,
    positives: Sequence[Sequence[int] | np.ndarray],
    ns: Sequence[int] = DEFAULT_NS,
) -> dict[int, float]:
    """Recall@N in percent: a query counts for N if any of its first N predictions is a positive.

    ``predictions`` is [Q, K] of database indices (or ids); N > K uses all K. Queries without
    positives count as misses (the denominator is all queries), as in the authors' protocol.
    """
    ns = [int(n) for n in ns]
    if not ns or any(n < 1 for n in ns):
        raise ConfigError(f"recall N values must be >= 1, got {list(ns)}")
    ranks = first_correct_rank(predictions, positives)
    found = ranks > 0
    return {n: float(100.0 * np.mean(found & (ranks <= n))) for n in ns}


def pick_examples(correct: Sequence[bool], n_correct: int = 3, n_wrong: int = 3) -> list[int]:
    """Indices of up to ``n_correct`` correct and ``n_wrong`` wrong queries, spread over the sequence."""

    def spread(idx: np.ndarray, n: int) -> list[int]:
        if n <= 0 or idx.size == 0:
            return []
        if idx.size <= n:
            return idx.tolist()
        return idx[np.linspace(0, idx.size - 1, n).round().astype(int)].tolist()

    flags = np.asarray(correct, dtype=bool)
    return spread(np.flatnonzero(flags), n_correct) + spread(np.flatnonzero(~flags), n_wrong)


@dataclass(frozen=True)
class TimingStats:
    """Statistics of per-call times in milliseconds (NaN when there were no calls)."""

    mean: float
    median: float
    p95: float
    count: int

    @classmethod
    def from_ms(cls, values_ms: Sequence[float] | np.ndarray) -> TimingStats:
        """Stats of a list of millisecond values (p95 with linear interpolation)."""
        v = np.asarray(values_ms, dtype=np.float64).ravel()
        if v.size == 0:
            return cls(math.nan, math.nan, math.nan, 0)
        if not np.all(np.isfinite(v)):
            raise ConfigError("timing values must be finite milliseconds")
        return cls(float(v.mean()), float(np.median(v)), float(np.percentile(v, 95)), int(v.size))

    def to_dict(self) -> dict[str, float | int | None]:
        """JSON-ready dict; NaN becomes None."""

        def clean(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 4)

        return {"mean": clean(self.mean), "median": clean(self.median), "p95": clean(self.p95),
                "count": self.count}
