"""How a bag replay is scored: distance thresholds, heading limit, recall N values, replay switches."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..text_enum import TextEnum

__all__ = ["DEFAULT_RECALL_NS", "DEFAULT_THRESHOLDS_M", "BagEvalConfig", "ScoreKind"]

DEFAULT_THRESHOLDS_M: tuple[float, ...] = (5.0, 10.0, 25.0)
DEFAULT_RECALL_NS: tuple[int, ...] = (1, 5, 10, 25)


class ScoreKind(TextEnum):
    """The candidate score the acceptance and the PR curves sweep (re-ranking off: the global similarity)."""

    RERANK = "rerank_score"
    GLOBAL = "global_similarity"

    @classmethod
    def for_rerank_k(cls, rerank_k: int) -> ScoreKind:
        """The score a node with ``rerank_k`` re-ranked candidates accepts on."""
        return cls.RERANK if rerank_k > 0 else cls.GLOBAL

    def of(self, candidate: object) -> float:
        """This score of a candidate (anything with ``rerank_score`` and ``global_similarity``)."""
        return float(getattr(candidate, self.value))


@dataclass(frozen=True)
class BagEvalConfig:
    """Scoring: distance thresholds (m), heading limit (deg), recall N values, and replay switches."""

    thresholds_m: tuple[float, ...] = DEFAULT_THRESHOLDS_M
    heading_limit_deg: float | None = None
    recall_ns: tuple[int, ...] = DEFAULT_RECALL_NS
    every_frame: bool = False  # switch the node's keyframe gate off (every usable frame is queried)
    feed_odometry: bool = True  # hand the bag's poses to the core as odometry
    examples: int = 3  # correct and wrong example matches drawn (0 = none)

    def __post_init__(self) -> None:
        th = tuple(sorted({float(t) for t in self.thresholds_m}))
        if not th or any(not math.isfinite(t) or t <= 0 for t in th):
            raise ConfigError(f"distance thresholds must be positive metres, got {list(self.thresholds_m)}")
        object.__setattr__(self, "thresholds_m", th)
        ns = tuple(sorted({int(n) for n in self.recall_ns}))
        if not ns or ns[0] < 1:
            raise ConfigError(f"recall N values must be >= 1, got {list(self.recall_ns)}")
        object.__setattr__(self, "recall_ns", ns)
        h = self.heading_limit_deg
        if h is not None and not (math.isfinite(h) and 0 < h <= 180):
            raise ConfigError(f"heading limit must be in (0, 180] degrees, got {h}")
        if self.examples < 0:
            raise ConfigError(f"examples must be >= 0, got {self.examples}")

    @property
    def primary_threshold_m(self) -> float:
        """The threshold used to colour the trajectory and pick examples (the largest)."""
        return self.thresholds_m[-1]

    def heading_for(self, gt_frame: str) -> float | None:
        """The heading limit that applies in ``gt_frame`` (UTM ground truth has no orientation)."""
        return self.heading_limit_deg if gt_frame == "pose" else None

    def heading_notes(self, gt_frame: str) -> tuple[str, ...]:
        """The report line saying the heading limit was ignored, where it was."""
        if self.heading_limit_deg is not None and self.heading_for(gt_frame) is None:
            return ("heading limit ignored: UTM ground truth has no orientation",)
        return ()
