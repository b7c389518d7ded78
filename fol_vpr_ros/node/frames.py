"""What the core hands out per frame: ``FrameOutput`` with its candidates, stage latencies and marker data.

Every output carries the enums of the decisions taken for its frame: ``status`` (``FrameStatus``),
``skip_reason`` for skipped frames, and through ``decision`` the ``MatchOutcome`` of a processed one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..mapping import Pose
from ..pipeline.verify import Verification
from ..sources.image_decode import CompressedPayload, ImagePayload
from .gating import OdomPose
from .loop_closure import LocalizeDecision, LoopDecision
from .outcomes import FrameStatus, MatchOutcome, SkipReason
from .pose import Point, PoseEstimate

__all__ = ["STAGES", "CandidateInfo", "FrameObserver", "FrameOutput", "MarkerData", "StageLatency"]

STAGES = ("decode", "describe", "search", "rerank", "verify", "total")


@dataclass(frozen=True)
class StageLatency:
    """Milliseconds per stage of one frame (0 for stages that did not run)."""

    decode: float = 0.0
    describe: float = 0.0
    search: float = 0.0
    rerank: float = 0.0
    total: float = 0.0
    verify: float = 0.0  # geometric verification (after total in the field order: positional callers keep working)

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in STAGES}


@dataclass(frozen=True)
class CandidateInfo:
    """A map keyframe proposed for the query, with its record's stamp, session, robot, pose and verification."""

    keyframe_id: int
    rank: int
    global_rank: int
    global_similarity: float
    rerank_score: int
    stamp_ns: int
    session_id: str | None
    frame_id: str
    pose: Pose | None
    verification: Verification | None = None  # None: not verified
    robot_id: str | None = None


@dataclass(frozen=True)
class MarkerData:
    """Plain data for visualisation markers in ``frame_id``.

    ``map_points`` (positions of map keyframes with poses) is only set when due (first output, then
    every ``markers.map_period_sec`` of image time), None otherwise. ``match_line`` joins the query
    keyframe's odometry position and its match, when both have poses in the same frame.
    """

    frame_id: str
    map_points: tuple[Point, ...] | None
    match_point: Point | None
    match_line: tuple[Point, Point] | None


@dataclass(frozen=True)
class FrameOutput:
    """The result of one image."""

    query_id: int  # running counter over every frame handed to processing
    stamp_ns: int  # the image stamp
    frame_id: str  # the camera frame (never empty)
    mode: str
    is_keyframe: bool  # passed the gate and was described/queried (loop_closure: added to the map)
    keyframe_id: int | None  # id of this frame in the online map (loop_closure mode)
    candidates: tuple[CandidateInfo, ...]  # best first
    match: CandidateInfo | None  # the accepted candidate
    reason: str  # the decision in words (logs, reports)
    decision: LocalizeDecision | LoopDecision | None
    pose: PoseEstimate | None
    odom_pose: OdomPose | None
    latency: StageLatency
    markers: MarkerData | None
    map_size: int
    error_kind: str | None = None
    status: FrameStatus | None = None  # None: from error_kind and is_keyframe
    skip_reason: SkipReason | None = None  # set for skipped frames

    def __post_init__(self) -> None:
        if self.status is None:
            status = (FrameStatus.FAILED if self.error_kind is not None
                      else FrameStatus.PROCESSED if self.is_keyframe else FrameStatus.SKIPPED)
            object.__setattr__(self, "status", status)
        elif self.status is FrameStatus.DROPPED:
            raise ValueError("a dropped frame has no FrameOutput")

    @property
    def accepted(self) -> bool:
        return self.match is not None

    @property
    def outcome(self) -> MatchOutcome | None:
        """The decision on the best candidate (processed keyframes), else None."""
        return self.decision.outcome if self.decision is not None else None

    @property
    def loop_closure(self) -> LoopDecision | None:
        """The loop-closure event, when this keyframe closed a loop."""
        d = self.decision
        return d if isinstance(d, LoopDecision) and d.accepted else None


class FrameObserver(Protocol):
    """Sees every frame offered to the core and every frame the worker finished (evaluation replays)."""

    def on_submitted(self, payload: ImagePayload | CompressedPayload) -> None:
        """A frame entered the latest-frame slot (called on the middleware's thread)."""

    def on_processed(self, payload: ImagePayload | CompressedPayload, out: FrameOutput) -> None:
        """A frame was processed, skipped or failed (called on the worker's thread)."""
