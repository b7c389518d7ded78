"""Localizer: a query description -> ranked map candidates (global search, then local re-ranking)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from ..mapping import VprMap
from .describe import Description
from .rerank import DEFAULT_THRESHOLD, RerankConfig, Reranker

if TYPE_CHECKING:
    from .verify import Verification

__all__ = ["Candidate", "Localizer", "LocalizerConfig", "QueryResult"]


@dataclass(frozen=True)
class LocalizerConfig:
    """Retrieval depth (``top_k``), how many of those are re-ranked (``rerank_k``, 0 = off), threshold."""

    top_k: int = 100
    rerank_k: int = 100
    rerank_threshold: float = DEFAULT_THRESHOLD
    device: str = "cpu"
    memory_budget_mb: int = 256

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, got {self.top_k}")
        if not 0 <= self.rerank_k <= self.top_k:
            raise ConfigError(f"rerank_k must be between 0 and top_k ({self.top_k}), got {self.rerank_k}")


@dataclass(frozen=True)
class Candidate:
    """One map keyframe proposed for a query."""

    keyframe_id: int
    rank: int  # 0-based position after re-ranking
    global_rank: int  # 0-based position by global similarity
    global_similarity: float
    rerank_score: int  # mutual matches (-1 when not re-ranked)
    verification: Verification | None = None  # geometric verification, when it ran


@dataclass
class QueryResult:
    """Candidates best first, plus the global-only order and per-stage timings in ms."""

    candidates: list[Candidate]
    global_ids: np.ndarray  # [K] ids by global similarity
    global_similarities: np.ndarray  # [K]
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def ranked_ids(self) -> np.ndarray:
        return np.array([c.keyframe_id for c in self.candidates], dtype=np.int64)

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


class Localizer:
    """Queries a map: FAISS top-K by global descriptor, then mutual-NN re-ranking of the first ``rerank_k``."""

    def __init__(self, vpr_map: VprMap, cfg: LocalizerConfig | None = None) -> None:
        self.map = vpr_map
        self.cfg = cfg or LocalizerConfig()
        self.reranker = Reranker(RerankConfig(threshold=self.cfg.rerank_threshold, top_k=max(1, self.cfg.rerank_k),
                                              device=self.cfg.device, memory_budget_mb=self.cfg.memory_budget_mb))

    def query(self, desc: Description, *, max_id: int | None = None,
              exclude_ids: Iterable[int] | None = None, allow_fewer: bool = True,
              rerank_k: int | None = None) -> QueryResult:
        """Candidates for one description (restricted by ``max_id``/``exclude_ids`` in loop-closure mode).

        ``rerank_k`` re-ranks fewer candidates than configured for this query (a latency budget).
        """
        t0 = time.perf_counter()
        k = self.cfg.top_k if allow_fewer else min(self.cfg.top_k, len(self.map))
        ids, sims = self.map.search(desc.global_desc[None], k, max_id=max_id, exclude_ids=exclude_ids,
                                    allow_fewer=allow_fewer)
        valid = ids[0] >= 0
        ids, sims = ids[0][valid], sims[0][valid]
        t1 = time.perf_counter()
        timing = {"search": (t1 - t0) * 1e3}
        limit = self.cfg.rerank_k if rerank_k is None else min(max(0, rerank_k), self.cfg.rerank_k)
        nr = min(limit, len(ids))
        order = np.arange(len(ids))
        scores = np.full(len(ids), -1, dtype=np.int64)
        if nr > 0:
            cand_local, cand_count, _ = self.map.local_batch(ids[:nr])
            head = self.reranker.rerank(ids[:nr], sims[:nr], desc.local, desc.local_count, cand_local, cand_count)
            order = np.concatenate([head.order, np.arange(nr, len(ids))])
            scores[:nr] = self.reranker_scores_in_input_order(head)
            timing["rerank"] = (time.perf_counter() - t1) * 1e3
        cands = [
            Candidate(int(ids[j]), rank, int(j), float(sims[j]), int(scores[j])) for rank, j in enumerate(order)
        ]
        return QueryResult(cands, ids, sims, timing)

    @staticmethod
    def reranker_scores_in_input_order(head) -> np.ndarray:
        """Scores of a RerankResult put back in the candidates' original (global) order."""
        out = np.empty(len(head.order), dtype=np.int64)
        out[head.order] = head.scores
        return out
