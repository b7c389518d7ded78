"""Pinhole camera intrinsics (from sensor_msgs/CameraInfo or a map record) and patch centres in pixels."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..model.config import LocalHeadConfig

__all__ = [
    "DISTORTION_MODELS",
    "CameraIntrinsics",
    "intrinsics_or_none",
    "local_cell_px",
    "patch_centres",
    "patch_size_px",
]

# CameraInfo distortion models we can undistort: "" / plumb_bob / rational_polynomial (cv2.undistortPoints),
# equidistant (cv2.fisheye). An empty or all-zero coefficient list means no distortion.
DISTORTION_MODELS = ("", "plumb_bob", "rational_polynomial", "equidistant")
_FISHEYE_COEFFS = 4  # equidistant: k1..k4


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
        if self.distortion_model not in DISTORTION_MODELS:
            raise ConfigError(f"camera distortion_model {self.distortion_model!r} is not supported; "
                              f"valid: {', '.join(repr(m) for m in DISTORTION_MODELS)}")
        if not all(math.isfinite(v) for v in self.distortion):
            raise ConfigError(f"camera distortion coefficients must be finite, got {list(self.distortion)}")
        if self.distortion_model == "equidistant" and self.has_distortion \
                and len(self.distortion) != _FISHEYE_COEFFS:
            raise ConfigError(f"equidistant distortion needs {_FISHEYE_COEFFS} coefficients, "
                              f"got {len(self.distortion)}")

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float], distortion_model: str,
                         width: int, height: int) -> CameraIntrinsics:
        """From CameraInfo fields (``k``: the 9 values of K, row-major); ConfigError when uncalibrated."""
        vals = [float(v) for v in k]
        if len(vals) != 9:
            raise ConfigError(f"CameraInfo.k must hold 9 values (3x3 row-major), got {len(vals)}")
        if not any(vals):
            raise ConfigError("CameraInfo.k is all zeros: the camera is uncalibrated")
        if vals[1] != 0.0 or vals[3] != 0.0 or vals[6] != 0.0 or vals[7] != 0.0 or vals[8] != 1.0:
            raise ConfigError(f"CameraInfo.k is not a pinhole matrix [fx 0 cx; 0 fy cy; 0 0 1]: {vals}")
        return cls(int(width), int(height), vals[0], vals[4], vals[2], vals[5], str(distortion_model),
                   tuple(float(v) for v in d))

    @property
    def has_distortion(self) -> bool:
        return any(v != 0.0 for v in self.distortion)

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def scaled(self, width: int, height: int) -> CameraIntrinsics:
        """The same camera for an image resized to ``width`` x ``height`` (pixel-centre convention kept)."""
        if width <= 0 or height <= 0:
            raise ConfigError(f"scaled camera size must be positive, got {width}x{height}")
        sx, sy = width / self.width, height / self.height
        # pixel i covers [i - 0.5, i + 0.5): a resize maps u -> (u + 0.5) * s - 0.5
        return CameraIntrinsics(int(width), int(height), self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                                (self.cy + 0.5) * sy - 0.5, self.distortion_model, self.distortion)

    def normalised(self, pts: np.ndarray) -> np.ndarray:
        """Undistorted normalised image coordinates [n, 2] (x/z, y/z) of pixel points [n, 2]."""
        import cv2  # the run-time dependency, imported where it is used

        p = np.ascontiguousarray(np.asarray(pts, np.float64).reshape(-1, 1, 2))
        if len(p) == 0:
            return np.zeros((0, 2))
        if not self.has_distortion:
            return np.column_stack(((p[:, 0, 0] - self.cx) / self.fx, (p[:, 0, 1] - self.cy) / self.fy))
        d = np.asarray(self.distortion, np.float64)
        if self.distortion_model == "equidistant":
            return cv2.fisheye.undistortPoints(p, self.matrix(), d).reshape(-1, 2)
        return cv2.undistortPoints(p, self.matrix(), d).reshape(-1, 2)

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """Pixel points [n, 2] of camera-frame points [n, 3] (z forward), through the distortion model."""
        import cv2

        x = np.ascontiguousarray(np.asarray(xyz, np.float64).reshape(-1, 1, 3))
        if len(x) == 0:
            return np.zeros((0, 2))
        zero = np.zeros(3)
        if not self.has_distortion:
            uv = x[:, 0, :2] / x[:, 0, 2:3]
            return np.column_stack((uv[:, 0] * self.fx + self.cx, uv[:, 1] * self.fy + self.cy))
        d = np.asarray(self.distortion, np.float64)
        if self.distortion_model == "equidistant":
            return cv2.fisheye.projectPoints(x, zero, zero, self.matrix(), d)[0].reshape(-1, 2)
        return cv2.projectPoints(x, zero, zero, self.matrix(), d)[0].reshape(-1, 2)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for map records (inverse: :meth:`from_json`)."""
        return {"width": self.width, "height": self.height, "fx": self.fx, "fy": self.fy, "cx": self.cx,
                "cy": self.cy, "distortion_model": self.distortion_model, "distortion": list(self.distortion)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CameraIntrinsics:
        """Inverse of :meth:`to_json`, types checked; ConfigError naming the missing or bad field."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"camera must be an object, got {data!r}")
        for name in ("width", "height", "fx", "fy", "cx", "cy"):
            if name not in data:
                raise ConfigError(f"camera record lacks field {name!r}")
            v = data[name]
            integral = name in ("width", "height")
            if isinstance(v, bool) or not isinstance(v, int if integral else (int, float)):
                raise ConfigError(f"camera {name} must be {'an integer' if integral else 'a number'}, got {v!r}")
        model = data.get("distortion_model", "")
        dist = data.get("distortion", [])
        if not isinstance(model, str):
            raise ConfigError(f"camera distortion_model must be a string, got {model!r}")
        if not isinstance(dist, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in dist):
            raise ConfigError(f"camera distortion must be a list of finite numbers, got {dist!r}")
        return cls(data["width"], data["height"], float(data["fx"]), float(data["fy"]), float(data["cx"]),
                   float(data["cy"]), model, tuple(float(v) for v in dist))


def intrinsics_or_none(k: Sequence[float], d: Sequence[float], distortion_model: str, width: int,
                       height: int) -> CameraIntrinsics | None:
    """:meth:`CameraIntrinsics.from_camera_info`, or None for an uncalibrated camera (K all zeros)."""
    if not any(float(v) for v in k):
        return None
    return CameraIntrinsics.from_camera_info(k, d, distortion_model, width, height)


# ------------------------------------------------------------------------------------ patch geometry
def _head(head: LocalHeadConfig | None) -> LocalHeadConfig:
    if head is not None:
        return head
    from ..model.config import LocalHeadConfig  # lazily: the model package imports torch

    return LocalHeadConfig()


def _patch_grid_side(local_side: int, input_side: int, head: LocalHeadConfig) -> int:
    """The patch grid side whose local map (``head.output_side``) is ``local_side``; ConfigError if none."""
    if 2 * head.padding != head.kernel_size - 1:
        raise ConfigError(f"local head kernel {head.kernel_size} / padding {head.padding} is not centred")
    for side in range(1, local_side + 1):
        if head.output_side(side) == local_side:
            if input_side % side:
                raise ConfigError(f"input side {input_side} is not a multiple of the {side} patches")
            return side
    raise ConfigError(f"local grid side {local_side} is no output of the local head")


def _axis_map(local_side: int, input_side: int, source_side: int, head: LocalHeadConfig) -> tuple[float, float]:
    """(offset, step): source pixel = offset + step * local index, along one axis."""
    g = _patch_grid_side(local_side, input_side, head)
    patch = input_side / g  # input pixels per patch
    # centred transposed convolutions put local cell 0 on patch 0's centre and the last cell on the last
    # patch's centre: patch position u = o (g - 1) / (L - 1), input coordinate (u + 0.5) * patch, in a
    # frame where pixel i covers [i, i + 1). The bilinear resize (align_corners=False) scales that frame
    # by source / input; pixel indices (centre at i) are then half a pixel lower.
    per_cell = (g - 1) / (local_side - 1) if local_side > 1 else 0.0
    scale = source_side / input_side
    return 0.5 * patch * scale - 0.5, per_cell * patch * scale


def patch_centres(local_rc: np.ndarray, local_grid: tuple[int, int], image_size: tuple[int, int],
                  input_size: tuple[int, int], head: LocalHeadConfig | None = None) -> np.ndarray:
    """[n, 2] float64 (x, y) centres, in pixels of the source image, of local-grid cells (row, col).

    ``local_grid`` (H, W) as Description.local_grid, ``image_size`` (height, width) of the source
    image, ``input_size`` (height, width) of the model input (a plain bilinear resize of the source,
    see model.preprocess); ``head`` the model's local head (default: the FoL one).
    """
    rc = np.asarray(local_rc)
    if rc.ndim != 2 or rc.shape[1] != 2:
        raise ConfigError(f"local_rc must be [n, 2] (row, col), got shape {rc.shape}")
    if min(image_size) <= 0:
        raise ConfigError(f"image_size must be positive (height, width), got {tuple(image_size)}")
    h = _head(head)
    oy, sy = _axis_map(int(local_grid[0]), int(input_size[0]), int(image_size[0]), h)
    ox, sx = _axis_map(int(local_grid[1]), int(input_size[1]), int(image_size[1]), h)
    rc = rc.astype(np.float64)
    return np.column_stack((ox + sx * rc[:, 1], oy + sy * rc[:, 0]))


def local_cell_px(local_grid: tuple[int, int], image_size: tuple[int, int], input_size: tuple[int, int],
                  head: LocalHeadConfig | None = None) -> float:
    """Spacing of neighbouring local cells in source pixels (the larger of x and y)."""
    h = _head(head)
    sy = _axis_map(int(local_grid[0]), int(input_size[0]), int(image_size[0]), h)[1]
    sx = _axis_map(int(local_grid[1]), int(input_size[1]), int(image_size[1]), h)[1]
    return float(max(sx, sy))


def patch_size_px(local_grid: tuple[int, int], image_size: tuple[int, int], input_size: tuple[int, int],
                  head: LocalHeadConfig | None = None) -> float:
    """Side of one ViT patch in source pixels (the larger of x and y)."""
    h = _head(head)
    gy = _patch_grid_side(int(local_grid[0]), int(input_size[0]), h)
    gx = _patch_grid_side(int(local_grid[1]), int(input_size[1]), h)
    return float(max(image_size[0] / gy, image_size[1] / gx))
