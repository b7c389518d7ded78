"""The covariance of a published place match: a mixture of true and false matches, calibrated on data.

A match with re-rank score ``s`` is right (within ``true_radius_m`` of the query) with probability
``p(s) = 1 / (1 + exp(-(a + b log(1 + s))))``, fitted by ``fol-vpr evaluate-bag`` on a bag with ground
truth (``evaluation.covariance_fit``). Right matches are off by ``sigma_true_m`` (RMS of their
errors), wrong ones by ``sigma_false_m`` (RMS of theirs, kilometres on a long route). The published
variance is the mixture's second moment, ``p sigma_true^2 + (1 - p) sigma_false^2`` per axis, so a
weak match is published as what it is (hundreds of metres), not as the 0.8 m the score alone gave.
Orientation: ``p sigma_rot_true^2 + (1 - p) pi^2 / 3`` (a wrong match says nothing about heading:
the variance of a uniform angle), capped at pi.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import yaml

from ..atomic import atomic_write_text
from ..errors import ConfigError

__all__ = ["DEFAULT_COVARIANCE", "PoseCovarianceModel", "load_covariance_model", "save_covariance_model"]

_UNIFORM_ANGLE_VAR = math.pi**2 / 3.0


@dataclass(frozen=True)
class PoseCovarianceModel:
    """p(true | score) as a logistic curve in log(1 + score), and the RMS errors of true and false matches."""

    a: float
    b: float
    sigma_true_m: float
    sigma_false_m: float
    orientation_sigma_true_rad: float
    true_radius_m: float
    samples_true: int = 0
    samples_false: int = 0
    source: str = "built-in prior"
    synthetic: bool = False

    def __post_init__(self) -> None:
        for f in ("a", "b", "sigma_true_m", "sigma_false_m", "orientation_sigma_true_rad", "true_radius_m"):
            v = getattr(self, f)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"pose covariance model: {f} must be a finite number, got {v!r}")
        for f in ("sigma_true_m", "sigma_false_m", "orientation_sigma_true_rad", "true_radius_m"):
            if getattr(self, f) <= 0:
                raise ConfigError(f"pose covariance model: {f} must be > 0, got {getattr(self, f)}")

    def p_true(self, score: float) -> float:
        """Probability that a match with this re-rank score is within ``true_radius_m`` (0 for no score)."""
        if score is None or not math.isfinite(score) or score < 0:
            return 0.0
        z = self.a + self.b * math.log1p(score)
        return 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0

    def sigmas(self, score: float) -> tuple[float, float]:
        """(position sigma m per axis, orientation sigma rad) published for a match with ``score``."""
        p = self.p_true(score)
        pos = math.sqrt(p * self.sigma_true_m**2 + (1.0 - p) * self.sigma_false_m**2)
        rot = math.sqrt(p * self.orientation_sigma_true_rad**2 + (1.0 - p) * _UNIFORM_ANGLE_VAR)
        return pos, min(rot, math.pi)


# Without a calibration file: a prior, not a measurement. p = 0.5 at score 60 (twice the shipped
# min_rerank_score), p = 0.2 at 30, 0.96 at 300; true matches off by up to a keyframe spacing
# (sigma 5 m), false ones anywhere on a route of kilometres (1 km). Calibrate with evaluate-bag.
DEFAULT_COVARIANCE = PoseCovarianceModel(a=-2.0 * math.log(61.0), b=2.0, sigma_true_m=5.0, sigma_false_m=1000.0,
                                         orientation_sigma_true_rad=0.2, true_radius_m=25.0)


def save_covariance_model(model: PoseCovarianceModel, path: str | os.PathLike) -> Path:
    """Write the model as YAML (atomically), with a comment saying what it is."""
    head = ("# fol_vpr_ros pose covariance model (node parameter pose.covariance_file); written by "
            "`fol-vpr evaluate-bag`\n")
    if model.synthetic:
        head += "# SYNTHETIC WEIGHTS: fitted on a random model's scores; meaningless for a real checkpoint\n"
    return atomic_write_text(path, head + yaml.safe_dump(asdict(model), sort_keys=False))


def load_covariance_model(path: str | os.PathLike) -> PoseCovarianceModel:
    """Read a model written by :func:`save_covariance_model`; one ConfigError line naming the file otherwise."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"pose.covariance_file {p}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"pose.covariance_file {p}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"pose.covariance_file {p}: expected a mapping of the model's fields")
    known = {f.name for f in fields(PoseCovarianceModel)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"pose.covariance_file {p}: unknown field(s) {', '.join(unknown)}")
    try:
        return PoseCovarianceModel(**data)
    except TypeError as exc:
        raise ConfigError(f"pose.covariance_file {p}: {exc}") from None
    except ConfigError as exc:
        raise ConfigError(f"pose.covariance_file {p}: {exc}") from None
