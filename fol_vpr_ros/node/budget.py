"""A latency budget for the node: choose ``rerank_k`` per frame so the p95 frame latency stays under it.

Pure and deterministic (no clocks): the node reports each frame's measured stage times with
``observe``. The frame cost is modelled as ``fixed + k * per_candidate`` (``fixed`` = everything but
re-ranking: decode, describe, search, decisions; ``per_candidate`` = re-rank ms / candidates
re-ranked). Over the last ``window`` frames the controller takes the ``percentile`` of both and
chooses the largest k in [min_rerank_k, max_rerank_k] whose predicted latency fits
``headroom * budget_ms``. Decreases apply at once; increases at most double k per frame, so one
fast frame cannot swing it to the maximum. A frame whose total exceeded the budget is a miss.
"""

from __future__ import annotations

import collections
import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["BudgetConfig", "BudgetState", "RerankBudget"]


@dataclass(frozen=True)
class BudgetConfig:
    """Budget (ms, > 0), the range of rerank_k, and the statistics window."""

    budget_ms: float
    max_rerank_k: int
    min_rerank_k: int = 1
    window: int = 20  # frames
    percentile: float = 95.0
    headroom: float = 0.9  # fraction of the budget the predicted percentile aims at

    def __post_init__(self) -> None:
        if not (self.budget_ms > 0 and math.isfinite(self.budget_ms)):
            raise ConfigError(f"latency_budget_ms must be positive, got {self.budget_ms!r}")
        if not 0 <= self.min_rerank_k <= self.max_rerank_k:
            raise ConfigError(f"min_rerank_k must be between 0 and rerank_k ({self.max_rerank_k}), "
                              f"got {self.min_rerank_k}")
        if self.window < 1:
            raise ConfigError(f"budget window must be >= 1 frame, got {self.window}")
        if not 0 < self.percentile <= 100 or not 0 < self.headroom <= 1:
            raise ConfigError(f"percentile must be in (0, 100] and headroom in (0, 1], got "
                              f"{self.percentile}, {self.headroom}")


@dataclass(frozen=True)
class BudgetState:
    """What the controller decided and saw (for diagnostics)."""

    rerank_k: int
    frames: int
    misses: int
    fixed_ms: float  # percentile of the non-re-ranking cost over the window (nan before any frame)
    per_candidate_ms: float  # percentile of the re-rank cost per candidate (nan before any re-ranked frame)


class RerankBudget:
    """The controller: ``rerank_k`` to use next, ``observe`` after every processed frame."""

    def __init__(self, cfg: BudgetConfig) -> None:
        self.cfg = cfg
        self._k = cfg.max_rerank_k
        self._fixed: collections.deque[float] = collections.deque(maxlen=cfg.window)
        self._per_candidate: collections.deque[float] = collections.deque(maxlen=cfg.window)
        self._frames = 0
        self._misses = 0

    @property
    def rerank_k(self) -> int:
        return self._k

    def _pct(self, values: collections.deque[float]) -> float:
        return float(np.percentile(np.fromiter(values, np.float64, len(values)), self.cfg.percentile))

    def observe(self, reranked: int, fixed_ms: float, rerank_ms: float) -> int:
        """Record one frame (candidates actually re-ranked, its non-re-rank and re-rank ms); returns the next k."""
        self._frames += 1
        if fixed_ms + rerank_ms > self.cfg.budget_ms:
            self._misses += 1
        return self._update(reranked, fixed_ms, rerank_ms)

    def calibrate(self, reranked: int, fixed_ms: float, rerank_ms: float) -> int:
        """Seed the cost estimates with a warm-up run (neither a frame nor a miss); returns the next k."""
        return self._update(reranked, fixed_ms, rerank_ms)

    def _update(self, reranked: int, fixed_ms: float, rerank_ms: float) -> int:
        cfg = self.cfg
        self._fixed.append(max(0.0, fixed_ms))
        if reranked > 0:
            self._per_candidate.append(max(0.0, rerank_ms) / reranked)
        if not self._per_candidate:
            return self._k
        fixed, per = self._pct(self._fixed), self._pct(self._per_candidate)
        room = cfg.headroom * cfg.budget_ms - fixed
        fits = cfg.max_rerank_k if per <= 0 else int(max(0.0, room) // per)
        grown = max(self._k + 1, 2 * self._k)
        self._k = max(cfg.min_rerank_k, min(cfg.max_rerank_k, fits, grown))
        return self._k

    def state(self) -> BudgetState:
        nan = float("nan")
        return BudgetState(self._k, self._frames, self._misses,
                           self._pct(self._fixed) if self._fixed else nan,
                           self._pct(self._per_candidate) if self._per_candidate else nan)
