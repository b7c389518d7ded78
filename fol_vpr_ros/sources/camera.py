"""Pinhole camera intrinsics (from sensor_msgs/CameraInfo or a map record) and patch centres in pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["CameraIntrinsics"]


@dataclass(frozen=True)
class CameraIntrinsics:
    """Image size and pinhole matrix (fx, fy, cx, cy) of one camera, plus its distortion model/coefficients."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = ""  # CameraInfo.distortion_model ("plumb_bob", "rational_polynomial", ...)
    distortion: tuple[float, ...] = ()  # CameraInfo.d

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ConfigError(f"camera size must be positive, got {self.width}x{self.height}")
        vals = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in vals) or self.fx <= 0 or self.fy <= 0:
            raise ConfigError(f"camera matrix needs finite fx, fy > 0, got fx={self.fx} fy={self.fy} "
                              f"cx={self.cx} cy={self.cy}")

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])
