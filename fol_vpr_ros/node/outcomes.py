"""What the core decided about a frame, as enums: set where the decision is made, counted by diagnostics.

``FrameStatus``: what became of a frame offered to the core. ``MatchOutcome``: the decision on a
processed keyframe's best candidate (``ros.messages`` maps it to the published status code).
``SkipReason`` / ``DropReason``: why the keyframe gate let a frame pass by, why a frame was dropped.
``NodeWarning``: the input problems the core works around (counted, logged once).
"""

from __future__ import annotations

from ..text_enum import TextEnum

__all__ = ["DropReason", "FrameStatus", "MatchOutcome", "NodeWarning", "SkipReason"]


class FrameStatus(TextEnum):
    """What became of one frame handed to the core."""

    PROCESSED = "processed"  # passed the gate: described, queried and decided (``FrameOutput.outcome``)
    SKIPPED = "skipped"  # the keyframe gate let it pass by (``FrameOutput.skip_reason``)
    FAILED = "failed"  # decode, describe or search raised (``FrameOutput.error_kind``)
    DROPPED = "dropped"  # never processed (``DropReason``); no FrameOutput


class MatchOutcome(TextEnum):
    """The decision on a processed keyframe's best candidate."""

    ACCEPTED = "accepted"
    WAITING_FOR_CONSISTENCY = "waiting_for_consistency"  # loop closure: passed, but the run of hits is short
    BELOW_GLOBAL_SIMILARITY = "below_global_similarity"  # best candidate < min_global_similarity
    BELOW_RERANK_SCORE = "below_rerank_score"  # best candidate < min_rerank_score
    FAILED_VERIFICATION = "failed_verification"  # best candidate failed the geometric verification
    NO_CANDIDATES = "no_candidates"  # the search returned nothing
    EMPTY_MAP = "empty_map"  # localize: nothing to search
    EXCLUDED_RECENT = "excluded_recent"  # loop closure: every keyframe is inside the exclusion window
    REJECTED = "rejected"  # not accepted, no finer reason known (a decision rebuilt from a message)


class SkipReason(TextEnum):
    """Why the keyframe gate let a frame pass by."""

    MIN_INTERVAL = "min_interval"  # less than keyframe.min_interval_sec since the last keyframe
    MIN_MOTION = "min_motion"  # neither keyframe.min_distance_m nor keyframe.min_angle_deg of motion


class DropReason(TextEnum):
    """Why a frame was never processed."""

    REPLACED = "replaced"  # a newer frame took its place in the latest-frame slot
    STOPPED = "stopped"  # still pending when the worker stopped


class NodeWarning(TextEnum):
    """Input problems the core works around."""

    EMPTY_FRAME_ID = "empty_frame_id"  # image without header.frame_id: frames.camera is used
    STAMP_BACKWARDS = "stamp_backwards"  # image stamp went backwards: gate and consistency reset
