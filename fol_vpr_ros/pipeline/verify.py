"""Geometric verification of a re-ranked candidate: a robust two-view fit on its mutual patch matches.

Without both cameras a fundamental matrix is fitted (USAC_MAGSAC, pixels): inliers only. With both,
the points are undistorted to normalised coordinates and an essential matrix is fitted; its pose
(recoverPose) is ROTATION_ONLY when a pure rotation explains ``ROTATION_SUPPORT`` of its inliers
within the same threshold (the parallax is then too small to trust a translation direction), else
UP_TO_SCALE. With query depth for enough inliers, PnP (3D from query pixels + depth) gives METRIC.
All transforms are T_query_match (see :class:`Verification`); covariances are residual variance times
(J^T J)^-1 of the pixel residuals w.r.t. (x, y, z, rot x, rot y, rot z), rotations about the query
frame's fixed axes; unobservable components get ``UNOBSERVED_VARIANCE``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..sources.camera import CameraIntrinsics
from ..text_enum import TextEnum

__all__ = [
    "MIN_POINTS",
    "ROTATION_SUPPORT",
    "THRESHOLD_PATCH_FRACTION",
    "UNOBSERVED_VARIANCE",
    "GeometricVerifier",
    "TransformKind",
    "Verification",
    "VerifyConfig",
    "VerifyModel",
]


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


# Variance (m^2 or rad^2) of a component the fit cannot observe: translation scale (UP_TO_SCALE), translation
# (ROTATION_ONLY). Large enough that a pose graph ignores it, small enough to stay well conditioned in float64.
UNOBSERVED_VARIANCE = 1.0e6
# ROTATION_ONLY when a pure rotation explains at least this share of the essential matrix's inliers.
ROTATION_SUPPORT = 0.9
# ransac_threshold_px 0: this fraction of a ViT patch in source pixels. A patch centre is a cell of the
# local grid (a quarter patch apart), but its descriptor sees the whole patch: a true match may sit
# anywhere in the patch, i.e. up to half a patch from the matched cell centre.
THRESHOLD_PATCH_FRACTION = 0.5
# Fewest matches each model is fitted on (OpenCV's minimal samples: 7-point F, 5-point E, P3P + 1).
MIN_POINTS = {VerifyModel.FUNDAMENTAL: 8, VerifyModel.ESSENTIAL: 5, VerifyModel.PNP: 6}
_JACOBIAN_STEP = 1e-6  # central differences, in metres / radians of the pose parameters


def _check_int(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"verification.{name} must be an integer >= {low}, got {value!r}")


def _check_float(name: str, value: Any, low: float, high: float, open_low: bool = False,
                 open_high: bool = False) -> None:
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and (value < high if open_high else value <= high)
    if not ok:
        lo, hi = "(" if open_low else "[", ")" if open_high else "]"
        raise ConfigError(f"verification.{name} must be a number in {lo}{low}, {high}{hi}, got {value!r}")


@dataclass(frozen=True)
class VerifyConfig:
    """Acceptance test and RANSAC settings (node parameters ``verification.*``)."""

    enabled: bool = True
    candidates: int = 1  # re-ranked candidates verified per query, best first (the best decides)
    min_inliers: int = 12
    min_inlier_ratio: float = 0.25
    ransac_threshold_px: float = 0.0  # 0: derived from the patch size in source-image pixels
    confidence: float = 0.999
    max_iterations: int = 2000

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigError(f"verification.enabled must be true or false, got {self.enabled!r}")
        _check_int("candidates", self.candidates, 1)
        _check_int("min_inliers", self.min_inliers, 0)
        _check_int("max_iterations", self.max_iterations, 1)
        _check_float("min_inlier_ratio", self.min_inlier_ratio, 0.0, 1.0)
        _check_float("ransac_threshold_px", self.ransac_threshold_px, 0.0, math.inf, open_high=True)
        _check_float("confidence", self.confidence, 0.0, 1.0, open_low=True, open_high=True)


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
    pose_inliers: int = 0  # matches supporting the transform (PnP inliers when METRIC)
    threshold_px: float = 0.0  # the RANSAC threshold used


# ------------------------------------------------------------------------------------------ rotations
def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _exp_so3(w: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues' formula)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3) + _skew(w)
    k = _skew(w / angle)
    return np.eye(3) + math.sin(angle) * k + (1.0 - math.cos(angle)) * (k @ k)


def _quat_xyzw(r: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w), w >= 0, of a rotation matrix."""
    import cv2

    w = cv2.Rodrigues(np.ascontiguousarray(r, np.float64))[0].reshape(3)
    angle = float(np.linalg.norm(w))
    axis = w / angle if angle > 0 else np.zeros(3)
    s = math.sin(angle / 2.0)
    return (float(axis[0] * s), float(axis[1] * s), float(axis[2] * s), math.cos(angle / 2.0))


def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation R minimising sum |b_i - R a_i|^2 (unit bearings [n, 3])."""
    u, _, vt = np.linalg.svd(b.T @ a)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


# ------------------------------------------------------------------------------------------ residuals
def _bearings(xy: np.ndarray) -> np.ndarray:
    b = np.column_stack((xy, np.ones(len(xy))))
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def _perturb(r: np.ndarray, t: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """T_query_match moved by p = (dx, dy, dz, rx, ry, rz): t + dt, exp(r) R (fixed query axes)."""
    return _exp_so3(p[3:]) @ r, t + p[:3]


def _reprojection(r: np.ndarray, t: np.ndarray, xyz_q: np.ndarray, px_m: np.ndarray,
                  cam_m: CameraIntrinsics) -> np.ndarray:
    """Match-image pixel residuals of query-frame points under T_query_match = (r, t)."""
    xyz_m = (xyz_q - t) @ r  # R^T (X - t), row-wise
    return (cam_m.project(xyz_m) - px_m).reshape(-1)


def _sampson_px(r: np.ndarray, t: np.ndarray, xq: np.ndarray, xm: np.ndarray, focal: float) -> np.ndarray:
    """Signed Sampson distances (pixels via ``focal``) of normalised points under T_query_match = (r, t)."""
    r_mq, t_mq = r.T, -r.T @ t
    e = _skew(t_mq) @ r_mq
    hq, hm = np.column_stack((xq, np.ones(len(xq)))), np.column_stack((xm, np.ones(len(xm))))
    exq, etxm = hq @ e.T, hm @ e
    num = np.einsum("ij,ij->i", hm, exq)
    den = np.sqrt(exq[:, 0] ** 2 + exq[:, 1] ** 2 + etxm[:, 0] ** 2 + etxm[:, 1] ** 2) + 1e-300
    return focal * num / den


def _covariance(residual, dof_basis: np.ndarray, extra: np.ndarray) -> tuple[float, ...]:
    """36 values: s^2 B (J_B^T J_B)^-1 B^T + ``extra``; J by central differences along the columns of B."""
    r0 = residual(np.zeros(6))
    cols = []
    for k in range(dof_basis.shape[1]):
        step = _JACOBIAN_STEP * dof_basis[:, k]
        cols.append((residual(step) - residual(-step)) / (2.0 * _JACOBIAN_STEP))
    jac = np.column_stack(cols)
    dof = len(r0) - jac.shape[1]
    var = float(r0 @ r0) / dof if dof > 0 else UNOBSERVED_VARIANCE
    try:
        inner = np.linalg.inv(jac.T @ jac) * var
    except np.linalg.LinAlgError:
        inner = np.eye(jac.shape[1]) * UNOBSERVED_VARIANCE
    cov = dof_basis @ inner @ dof_basis.T + extra
    cov = np.minimum((cov + cov.T) / 2.0, UNOBSERVED_VARIANCE) if np.all(np.isfinite(cov)) else \
        np.eye(6) * UNOBSERVED_VARIANCE
    return tuple(float(v) for v in cov.reshape(-1))


def _translation_block(m: np.ndarray) -> np.ndarray:
    out = np.zeros((6, 6))
    out[:3, :3] = m
    return out


# ------------------------------------------------------------------------------------------ verifier
@dataclass
class _Fit:
    mask: np.ndarray  # [n] bool inliers of the two-view model
    model: VerifyModel
    essential: np.ndarray | None = None


class GeometricVerifier:
    """Fits the two-view geometry of mutual patch matches and applies the acceptance test."""

    def __init__(self, cfg: VerifyConfig | None = None) -> None:
        self.cfg = cfg or VerifyConfig()

    def threshold_px(self, patch_px: float = 0.0) -> float:
        """The RANSAC threshold in source pixels: the configured one, else ``THRESHOLD_PATCH_FRACTION`` x patch."""
        if self.cfg.ransac_threshold_px > 0:
            return float(self.cfg.ransac_threshold_px)
        if not (patch_px > 0 and math.isfinite(patch_px)):
            raise ConfigError("verification.ransac_threshold_px is 0 (derived from the patch size), but no "
                              f"patch size in pixels was given (patch_px={patch_px!r})")
        return THRESHOLD_PATCH_FRACTION * float(patch_px)

    def verify(self, query_pts: np.ndarray, match_pts: np.ndarray, query_camera: CameraIntrinsics | None = None,
               match_camera: CameraIntrinsics | None = None, query_depth: np.ndarray | None = None,
               patch_px: float = 0.0) -> Verification:
        """Verify one pair from its matched points [n, 2] (pixels of each source image); never raises on data.

        ``query_depth`` [n] metres (z) per query point, NaN where unknown; ``patch_px`` the ViT patch side
        in source pixels (:func:`sources.camera.patch_size_px`), needed when ransac_threshold_px is 0.
        """
        thr = self.threshold_px(patch_px)
        q = np.asarray(query_pts, np.float64).reshape(-1, 2)
        m = np.asarray(match_pts, np.float64).reshape(-1, 2)
        if len(q) != len(m):
            raise ConfigError(f"query_pts ({len(q)}) and match_pts ({len(m)}) must pair up")
        n = len(q)
        cameras = query_camera is not None and match_camera is not None
        model = VerifyModel.ESSENTIAL if cameras else VerifyModel.FUNDAMENTAL
        if n < MIN_POINTS[model]:
            return Verification(n, 0, 0.0, False, model, TransformKind.NONE, threshold_px=thr,
                                reason=f"{n} matches, fewer than the {MIN_POINTS[model]} a {model} fit needs")
        if cameras:
            xq, xm = query_camera.normalised(q), match_camera.normalised(m)
            focal = float(np.mean([query_camera.fx, query_camera.fy, match_camera.fx, match_camera.fy]))
            fit = self._fit_essential(xq, xm, thr / focal)
        else:
            fit = self._fit_fundamental(q, m, thr)
        inliers = int(fit.mask.sum())
        ratio = inliers / n
        passed = inliers >= self.cfg.min_inliers and ratio >= self.cfg.min_inlier_ratio
        base = dict(matches=n, inliers=inliers, inlier_ratio=ratio, passed=passed, threshold_px=thr)
        if not passed:
            return Verification(**base, model=fit.model, kind=TransformKind.NONE,
                                reason=f"{inliers} inliers of {n} (need {self.cfg.min_inliers} and a ratio of "
                                       f"{self.cfg.min_inlier_ratio:g})")
        if not cameras or fit.essential is None:
            return Verification(**base, model=fit.model, kind=TransformKind.NONE,
                                reason="no camera model: inliers only" if not cameras else "no essential matrix")
        metric = self._metric(q, m, xq, xm, fit.mask, query_camera, match_camera, query_depth, thr)
        if metric is not None:
            return Verification(**base, **metric)
        return Verification(**base, **self._relative(xq, xm, fit, match_camera, focal, thr))

    # -------------------------------------------------------------------------------------- fits
    def _fit_fundamental(self, q: np.ndarray, m: np.ndarray, thr: float) -> _Fit:
        import cv2

        f, mask = cv2.findFundamentalMat(q, m, cv2.USAC_MAGSAC, thr, self.cfg.confidence, self.cfg.max_iterations)
        if f is None or mask is None:
            return _Fit(np.zeros(len(q), bool), VerifyModel.FUNDAMENTAL)
        return _Fit(mask.reshape(-1).astype(bool), VerifyModel.FUNDAMENTAL)

    def _fit_essential(self, xq: np.ndarray, xm: np.ndarray, thr: float) -> _Fit:
        import cv2

        e, mask = cv2.findEssentialMat(xq, xm, np.eye(3), cv2.USAC_MAGSAC, self.cfg.confidence, thr,
                                       self.cfg.max_iterations)
        if e is None or mask is None or e.shape[0] < 3:
            return _Fit(np.zeros(len(xq), bool), VerifyModel.ESSENTIAL)
        return _Fit(mask.reshape(-1).astype(bool), VerifyModel.ESSENTIAL, e[:3])

    def _relative(self, xq: np.ndarray, xm: np.ndarray, fit: _Fit, cam_m: CameraIntrinsics, focal: float,
                  thr: float) -> dict[str, Any]:
        """ROTATION_ONLY or UP_TO_SCALE T_query_match from the essential matrix's inliers."""
        import cv2

        inl = np.flatnonzero(fit.mask)
        qi, mi = xq[inl], xm[inl]
        good, r_mq, t_mq, pose_mask = cv2.recoverPose(fit.essential, qi, mi, np.eye(3),
                                                      mask=fit.mask[inl].astype(np.uint8)[:, None] * 255)
        rot, support = self._rotation_fit(qi, mi, cam_m, thr)
        if support >= ROTATION_SUPPORT * len(inl):
            keep = self._rotation_inliers(rot, qi, mi, cam_m, thr)
            px_m = cam_m.project(_bearings(mi[keep]))
            xyz_q = _bearings(qi[keep])
            cov = _covariance(lambda p: _reprojection(_perturb(rot, np.zeros(3), p)[0], np.zeros(3), xyz_q, px_m,
                                                      cam_m),
                              np.eye(6)[:, 3:], _translation_block(np.eye(3) * UNOBSERVED_VARIANCE))
            return dict(model=VerifyModel.ESSENTIAL, kind=TransformKind.ROTATION_ONLY, rotation_xyzw=_quat_xyzw(rot),
                        covariance=cov, pose_inliers=int(keep.sum()),
                        reason=f"rotation explains {support} of {len(inl)} inliers: too little parallax")
        r = r_mq.T  # recoverPose: X_m = R X_q + t (T_match_query); T_query_match is its inverse
        t = -r @ t_mq.reshape(3)
        t = t / (np.linalg.norm(t) or 1.0)
        sel = pose_mask.reshape(-1) > 0
        if not sel.any():
            sel = np.ones(len(inl), bool)
        qs, ms = qi[sel], mi[sel]
        basis = np.zeros((6, 5))
        u, _, _ = np.linalg.svd(t.reshape(3, 1))
        basis[:3, :2] = u[:, 1:]  # translation directions orthogonal to t (its length is unobservable)
        basis[3:, 2:] = np.eye(3)
        cov = _covariance(lambda p: _sampson_px(*_perturb(r, t, p), qs, ms, focal), basis,
                          _translation_block(np.outer(t, t) * UNOBSERVED_VARIANCE))
        return dict(model=VerifyModel.ESSENTIAL, kind=TransformKind.UP_TO_SCALE, rotation_xyzw=_quat_xyzw(r),
                    translation=tuple(float(v) for v in t), covariance=cov, pose_inliers=int(good))

    @staticmethod
    def _rotation_inliers(r: np.ndarray, xq: np.ndarray, xm: np.ndarray, cam_m: CameraIntrinsics,
                          thr: float) -> np.ndarray:
        """Matches a pure rotation T_query_match = (r, 0) explains within ``thr`` match pixels."""
        err = _reprojection(r, np.zeros(3), _bearings(xq), cam_m.project(_bearings(xm)), cam_m).reshape(-1, 2)
        return np.linalg.norm(err, axis=1) <= thr

    def _rotation_fit(self, xq: np.ndarray, xm: np.ndarray, cam_m: CameraIntrinsics,
                      thr: float) -> tuple[np.ndarray, int]:
        """The best pure rotation (T_query_match, Kabsch, refitted once on its inliers) and its support."""
        bq, bm = _bearings(xq), _bearings(xm)
        r = _kabsch(bm, bq)  # X_q = R X_m for bearings: R = R_query_match
        keep = self._rotation_inliers(r, xq, xm, cam_m, thr)
        if keep.sum() >= MIN_POINTS[VerifyModel.ESSENTIAL]:
            r = _kabsch(bm[keep], bq[keep])
            keep = self._rotation_inliers(r, xq, xm, cam_m, thr)
        return r, int(keep.sum())

    def _metric(self, q: np.ndarray, m: np.ndarray, xq: np.ndarray, xm: np.ndarray, mask: np.ndarray,
                cam_q: CameraIntrinsics, cam_m: CameraIntrinsics, depth: np.ndarray | None,
                thr: float) -> dict[str, Any] | None:
        """METRIC T_query_match by PnP on the inliers with query depth, or None when too few support it."""
        import cv2

        if depth is None:
            return None
        z = np.asarray(depth, np.float64).reshape(-1)
        if len(z) != len(q):
            raise ConfigError(f"query_depth ({len(z)}) must have one value per match ({len(q)})")
        use = np.flatnonzero(mask & np.isfinite(z) & (z > 0))
        if len(use) < max(MIN_POINTS[VerifyModel.PNP], self.cfg.min_inliers):
            return None
        xyz_q = np.column_stack((xq[use], np.ones(len(use)))) * z[use, None]
        focal = 0.5 * (cam_m.fx + cam_m.fy)
        ok, rvec, tvec, idx = cv2.solvePnPRansac(
            xyz_q, xm[use], np.eye(3), None, iterationsCount=self.cfg.max_iterations,
            reprojectionError=thr / focal, confidence=self.cfg.confidence, flags=cv2.SOLVEPNP_EPNP)
        if not ok or idx is None or len(idx) < max(MIN_POINTS[VerifyModel.PNP], self.cfg.min_inliers):
            return None
        idx = idx.reshape(-1)
        rvec, tvec = cv2.solvePnPRefineLM(xyz_q[idx], xm[use][idx], np.eye(3), None, rvec, tvec)
        r_mq = cv2.Rodrigues(rvec)[0]
        r, t = r_mq.T, -r_mq.T @ tvec.reshape(3)  # solvePnP gives T_match_query
        pts, px = xyz_q[idx], m[use][idx]
        cov = _covariance(lambda p: _reprojection(*_perturb(r, t, p), pts, px, cam_m), np.eye(6), np.zeros((6, 6)))
        return dict(model=VerifyModel.PNP, kind=TransformKind.METRIC, rotation_xyzw=_quat_xyzw(r),
                    translation=tuple(float(v) for v in t), covariance=cov, pose_inliers=len(idx))
