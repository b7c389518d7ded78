"""Keyframe selection along a trajectory by minimum distance, rotation and time since the last keyframe."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..stamps import sec_to_ns
from .geometry import quat_angle

__all__ = ["KeyframePolicy", "select_keyframes"]


@dataclass(frozen=True)
class KeyframePolicy:
    """Thresholds relative to the last keyframe: distance (m), rotation (deg), time (s); 0 disables one.

    A frame becomes a keyframe when at least ``min_interval`` has passed since the last keyframe and,
    if a motion threshold is enabled and can be evaluated (the frame and the last keyframe both have
    a position, resp. orientation), it has moved at least ``min_distance`` (straight-line, not path
    length) or turned at least ``min_angle``. Frames where no enabled motion threshold can be
    evaluated are judged on time alone. The first frame is always kept.
    """

    min_distance: float = 0.0
    min_angle: float = 0.0
    min_interval: float = 0.0

    def __post_init__(self) -> None:
        for name in ("min_distance", "min_angle", "min_interval"):
            v = float(getattr(self, name))
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"keyframe {name} must be a finite number >= 0, got {getattr(self, name)!r}")
            object.__setattr__(self, name, v)

    @property
    def keeps_all(self) -> bool:
        return self.min_distance == 0 and self.min_angle == 0 and self.min_interval == 0


def select_keyframes(stamps_ns: Sequence[int], positions: np.ndarray | None = None,
                     orientations: np.ndarray | None = None, policy: KeyframePolicy | None = None) -> list[int]:
    """Indices (into the time-ordered inputs) of the keyframes; NaN rows mean 'unknown'."""
    policy = policy or KeyframePolicy()
    stamps = np.asarray(stamps_ns, np.int64)
    n = len(stamps)
    if n == 0:
        return []
    if np.any(np.diff(stamps) < 0):
        raise ConfigError("select_keyframes needs stamps in time order")
    pos = np.full((n, 3), np.nan) if positions is None else np.asarray(positions, np.float64).reshape(n, -1)
    rot = np.full((n, 4), np.nan) if orientations is None else np.asarray(orientations, np.float64).reshape(n, 4)
    if policy.keeps_all:
        return list(range(n))
    has_pos = np.all(np.isfinite(pos), axis=1)
    has_rot = np.all(np.isfinite(rot), axis=1)
    min_dt = sec_to_ns(policy.min_interval)
    min_rad = math.radians(policy.min_angle)
    keep = [0]
    for i in range(1, n):
        last = keep[-1]
        if stamps[i] - stamps[last] < min_dt:
            continue
        checks = []
        if policy.min_distance > 0 and has_pos[i] and has_pos[last]:
            checks.append(float(np.linalg.norm(pos[i] - pos[last])) >= policy.min_distance - 1e-9)
        if policy.min_angle > 0 and has_rot[i] and has_rot[last]:
            checks.append(float(quat_angle(rot[i], rot[last])) >= min_rad - 1e-9)
        if not checks or any(checks):
            keep.append(i)
    return keep
