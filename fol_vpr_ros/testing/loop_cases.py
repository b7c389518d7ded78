"""Hand-made loop-closure outputs with verification, robot/session ids and a known relative transform (tests)."""

from __future__ import annotations

import math

from ..mapping import Pose
from ..node.frames import CandidateInfo, FrameOutput, StageLatency
from ..node.loop_closure import LoopDecision
from ..node.outcomes import MatchOutcome
from ..pipeline.verify import TransformKind, Verification, VerifyModel

__all__ = ["KNOWN_ROTATION", "KNOWN_TRANSLATION", "verification", "verified_loop_output"]

S = 1_000_000_000
KNOWN_ROTATION = (0.0, math.sin(math.radians(10.0)), 0.0, math.cos(math.radians(10.0)))  # 20 deg about y
KNOWN_TRANSLATION = (0.5, -0.1, 2.0)


def verification(kind: TransformKind = TransformKind.METRIC, passed: bool = True) -> Verification:
    """A verification of 80 matches / 60 inliers with T_query_match = (KNOWN_TRANSLATION, KNOWN_ROTATION)."""
    cov = [0.0] * 36
    for i, var in enumerate((0.04, 0.04, 0.09, 0.001, 0.001, 0.002)):
        cov[i * 7] = var
    model = VerifyModel.PNP if kind is TransformKind.METRIC else VerifyModel.ESSENTIAL
    return Verification(80, 60, 0.75, passed, model, kind, KNOWN_ROTATION, KNOWN_TRANSLATION, tuple(cov), "hand-made")


def verified_loop_output(stamp_ns: int = 1_700_000_123 * S, kind: TransformKind = TransformKind.METRIC,
                         accepted: bool = True, query_robot: str = "alpha", match_robot: str = "bravo") -> FrameOutput:
    """Loop-closure output: keyframe 9 (robot ``query_robot``, camera cam_q) closes on keyframe 1 (``match_robot``)."""
    v = verification(kind)
    decision = LoopDecision(accepted, 9, stamp_ns, 1, 2 * S + 5, 120, 0.97, 2 if accepted else 1,
                            "accepted: ..." if accepted else "waiting for consistency: ...",
                            Pose((9.0, 0.0, 0.0), frame_id="odom"), Pose((1.0, 0.0, 0.0), frame_id="odom"),
                            MatchOutcome.ACCEPTED if accepted else MatchOutcome.WAITING_FOR_CONSISTENCY,
                            verification=v, query_robot_id=query_robot, query_session_id="run-q",
                            match_robot_id=match_robot, match_session_id="run-m")
    cands = (CandidateInfo(1, 0, 0, 0.97, 120, 2 * S + 5, "run-m", "cam_m", Pose((1.0, 0.0, 0.0), frame_id="odom"),
                           v, match_robot),
             CandidateInfo(2, 1, 1, 0.9, 60, 3 * S, "run-m", "cam_m", None, None, match_robot))
    return FrameOutput(11, stamp_ns, "cam_q", "loop_closure", True, 9, cands, cands[0] if accepted else None,
                       decision.reason, decision, None, None, StageLatency(total=3.0), None, 10)
