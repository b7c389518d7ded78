"""Fit the pose covariance model (``node.pose_covariance``) to scored matches: score vs true/false and errors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..node.pose_covariance import DEFAULT_COVARIANCE, PoseCovarianceModel

__all__ = ["calibration_table", "fit_pose_covariance"]

NEWTON_STEPS = 50
RIDGE = 1e-3  # keeps the logistic fit finite when true and false matches separate perfectly


def _logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) of p = 1 / (1 + exp(-(a + b x))) by Newton's method on the ridge-penalised log likelihood."""
    w = np.zeros(2)
    design = np.stack([np.ones_like(x), x], axis=1)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -700, 700)))
        grad = design.T @ (p - y) + RIDGE * w
        hess = design.T @ (design * (p * (1 - p))[:, None]) + RIDGE * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return float(w[0]), float(w[1])


def _rms(v: np.ndarray, fallback: float) -> float:
    return float(np.sqrt(np.mean(v**2))) if v.size else fallback


def fit_pose_covariance(scores: Sequence[float], errors_m: Sequence[float], true_radius_m: float, *,
                        orientation_errors_rad: Sequence[float] | None = None, source: str = "",
                        synthetic: bool = False) -> PoseCovarianceModel:
    """The model from the best candidate's score and position error of each scored frame.

    A match is true when its error is within ``true_radius_m``. Without true or without false matches
    the logistic curve cannot be fitted: the built-in prior's curve is kept and only the measured RMS
    errors replace its sigmas (``samples_*`` say how much data there was)."""
    s = np.asarray(scores, dtype=np.float64)
    e = np.asarray(errors_m, dtype=np.float64)
    ok = np.isfinite(s) & np.isfinite(e) & (s >= 0)
    s, e = s[ok], e[ok]
    true = e <= true_radius_m
    prior = DEFAULT_COVARIANCE
    if true.any() and (~true).any():
        a, b = _logistic(np.log1p(s), true.astype(np.float64))
    else:
        a, b = prior.a, prior.b
    rot = prior.orientation_sigma_true_rad
    if orientation_errors_rad is not None:
        r = np.asarray(orientation_errors_rad, dtype=np.float64)[ok][true]
        r = r[np.isfinite(r)]
        rot = max(_rms(r, rot), 1e-3)
    sigma_true = max(_rms(e[true], prior.sigma_true_m), 1e-3)
    sigma_false = max(_rms(e[~true], max(prior.sigma_false_m, sigma_true)), sigma_true)
    return PoseCovarianceModel(a=a, b=b, sigma_true_m=sigma_true, sigma_false_m=sigma_false,
                               orientation_sigma_true_rad=rot, true_radius_m=float(true_radius_m),
                               samples_true=int(true.sum()), samples_false=int((~true).sum()),
                               source=source or "evaluate-bag", synthetic=synthetic)


def calibration_table(model: PoseCovarianceModel, scores: Sequence[float] = (0, 10, 30, 60, 100, 300, 1000)) -> str:
    """Markdown rows: score -> p(true), published position and orientation sigma."""
    rows = ["| re-rank score | p(true) | sigma position (m) | sigma orientation (deg) |", "|---|---|---|---|"]
    for sc in scores:
        sp, sr = model.sigmas(sc)
        rows.append(f"| {sc:g} | {model.p_true(sc):.3f} | {sp:.1f} | {math.degrees(sr):.1f} |")
    return "\n".join(rows)
