"""The pose the node publishes for an accepted match (localize mode), with a covariance from its score.

The sigmas come from the pose covariance model (``node.pose_covariance``: the mixture of true and false
matches at the match's re-rank score; without re-ranking the score is -1, i.e. a false match's sigma),
the position sigma at least ``pose.sigma_min_m``. The 6x6 covariance (x y z roll pitch yaw, row-major)
is diag(sigma_p^2 x3, sigma_r^2 x3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .params import NodeParams
from .pose_covariance import DEFAULT_COVARIANCE, PoseCovarianceModel, load_covariance_model

if TYPE_CHECKING:
    from .frames import CandidateInfo

__all__ = ["PoseEstimate", "covariance_model", "estimate_pose", "pose_sigmas"]

Point = tuple[float, float, float]
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


def covariance_model(params: NodeParams) -> PoseCovarianceModel:
    """The model named by ``pose.covariance_file``, else the built-in prior (one ConfigError line for a bad file)."""
    path = params.pose.covariance_file
    return load_covariance_model(path) if path else DEFAULT_COVARIANCE


def pose_sigmas(rerank_score: int, params: NodeParams,
                model: PoseCovarianceModel = DEFAULT_COVARIANCE) -> tuple[float, float]:
    """(position sigma m, orientation sigma rad) for a match score (see module doc)."""
    sp, sr = model.sigmas(float(rerank_score))
    return max(sp, params.pose.sigma_min_m), sr


def estimate_pose(stamp_ns: int, match: CandidateInfo | None, params: NodeParams,
                  model: PoseCovarianceModel = DEFAULT_COVARIANCE) -> PoseEstimate | None:
    """The pose of an accepted match that has one (in its keyframe pose's frame, else frames.map), else None."""
    if match is None or match.pose is None:
        return None
    sp, sr = pose_sigmas(match.rerank_score, params, model)
    cov = [0.0] * (_POSE_DOF * _POSE_DOF)
    for i, s in enumerate((sp, sp, sp, sr, sr, sr)):
        cov[i * (_POSE_DOF + 1)] = s * s
    frame = match.pose.frame_id or params.frames.map  # the keyframe pose's frame (odom for bag maps)
    return PoseEstimate(stamp_ns, frame, match.pose.position, match.pose.orientation, tuple(cov), sp, sr,
                        match.keyframe_id)
