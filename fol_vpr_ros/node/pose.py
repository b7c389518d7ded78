"""The pose the node publishes for an accepted match (localize mode), with a covariance from its score.

With the match's rerank score ``s``: ``sigma_p = clip(pose.sigma_base_m / sqrt(max(s, 1)),
pose.sigma_min_m, pose.sigma_max_m)`` and ``sigma_r = clip(pose.orientation_sigma_base_rad /
sqrt(max(s, 1)), 0.01, pi)``; without re-ranking ``sigma_p = pose.sigma_max_m``, ``sigma_r = pi``.
The 6x6 covariance (x y z roll pitch yaw, row-major) is diag(sigma_p^2 x3, sigma_r^2 x3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .params import NodeParams

if TYPE_CHECKING:
    from .frames import CandidateInfo

__all__ = ["PoseEstimate", "estimate_pose", "pose_sigmas"]

Point = tuple[float, float, float]
_MIN_SIGMA_RAD = 0.01
_POSE_DOF = 6  # x y z roll pitch yaw


@dataclass(frozen=True)
class PoseEstimate:
    """Where the query was taken: the accepted match's map pose, stamped with the query stamp."""

    stamp_ns: int
    frame_id: str
    position: Point
    orientation: tuple[float, float, float, float]
    covariance: tuple[float, ...]  # 36 values, row-major 6x6 (x y z roll pitch yaw)
    sigma_position_m: float
    sigma_orientation_rad: float
    match_id: int


def pose_sigmas(rerank_score: int, params: NodeParams) -> tuple[float, float]:
    """(position sigma m, orientation sigma rad) for a match score (see module doc)."""
    p = params.pose
    if rerank_score < 0:
        return p.sigma_max_m, math.pi
    root = math.sqrt(max(rerank_score, 1))
    sp = min(max(p.sigma_base_m / root, p.sigma_min_m), p.sigma_max_m)
    sr = min(max(p.orientation_sigma_base_rad / root, _MIN_SIGMA_RAD), math.pi)
    return sp, sr


def estimate_pose(stamp_ns: int, match: CandidateInfo | None, params: NodeParams) -> PoseEstimate | None:
    """The pose of an accepted match that has one (in its keyframe pose's frame, else frames.map), else None."""
    if match is None or match.pose is None:
        return None
    sp, sr = pose_sigmas(match.rerank_score, params)
    cov = [0.0] * (_POSE_DOF * _POSE_DOF)
    for i, s in enumerate((sp, sp, sp, sr, sr, sr)):
        cov[i * (_POSE_DOF + 1)] = s * s
    frame = match.pose.frame_id or params.frames.map  # the keyframe pose's frame (odom for bag maps)
    return PoseEstimate(stamp_ns, frame, match.pose.position, match.pose.orientation, tuple(cov), sp, sr,
                        match.keyframe_id)
