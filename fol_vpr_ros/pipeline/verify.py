"""Geometric verification of a re-ranked candidate: a robust two-view fit on its mutual patch matches.

CONTRACT (types only; the implementation lands with issue 14's geometry work).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..text_enum import TextEnum

__all__ = ["TransformKind", "Verification", "VerifyConfig", "VerifyModel"]


class TransformKind(TextEnum):
    """What the relative transform of a verified pair holds."""

    NONE = "none"  # no transform (not verified, or no camera model)
    ROTATION_ONLY = "rotation_only"  # rotation only (too little parallax for a translation direction)
    UP_TO_SCALE = "up_to_scale"  # rotation and the direction of translation (unit vector)
    METRIC = "metric"  # full 6-DoF with metric translation (depth + PnP)


class VerifyModel(TextEnum):
    """The two-view model that was fitted."""

    NONE = "none"
    FUNDAMENTAL = "fundamental"  # no intrinsics: inliers only
    ESSENTIAL = "essential"  # intrinsics of both cameras
    PNP = "pnp"  # query depth + match intrinsics


@dataclass(frozen=True)
class VerifyConfig:
    """Acceptance test and RANSAC settings (node parameters ``verification.*``)."""

    enabled: bool = True
    candidates: int = 3  # re-ranked candidates verified per query, best first
    min_inliers: int = 12
    min_inlier_ratio: float = 0.25
    ransac_threshold_px: float = 0.0  # 0: derived from the patch size in source-image pixels
    confidence: float = 0.999
    max_iterations: int = 2000


@dataclass(frozen=True)
class Verification:
    """Result of verifying one (query, candidate) pair.

    The relative transform is the pose of the candidate's camera in the query camera's optical frame
    (T_query_match; REP-103 optical axes: x right, y down, z forward).
    """

    matches: int  # mutual matches fitted
    inliers: int
    inlier_ratio: float  # inliers / matches (0 when no matches)
    passed: bool  # min_inliers and min_inlier_ratio met
    model: VerifyModel
    kind: TransformKind
    rotation_xyzw: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)  # metres when METRIC, unit vector when UP_TO_SCALE
    covariance: tuple[float, ...] = ()  # 36 row-major (x, y, z, rot x, rot y, rot z); () when kind is NONE
    reason: str = ""
