"""Rotations and rigid transforms: xyzw quaternion arithmetic (numpy, broadcasting) and RigidTransform."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "RigidTransform",
    "finite_pose",
    "quat_angle",
    "quat_conjugate",
    "quat_from_axis_angle",
    "quat_multiply",
    "quat_normalize",
    "quat_rotate",
    "quat_slerp",
    "xyz_of",
    "xyzw_of",
]

_MIN_QUAT_NORM = 1e-9  # quaternions in messages shorter than this are invalid (no rotation)


# ---------------------------------------------------------------------------------------------- quaternions
def quat_normalize(q: Any) -> np.ndarray:
    """Unit quaternion(s) (..., 4); raises ConfigError on a zero or non-finite quaternion."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(np.isfinite(q)) or np.any(n < 1e-12):
        raise ConfigError(f"quaternion must be finite and non-zero, got {q.tolist()}")
    return q / n


def quat_multiply(a: Any, b: Any) -> np.ndarray:
    """Hamilton product a * b (rotation b first, then a) of xyzw quaternions, broadcasting."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quat_conjugate(q: Any) -> np.ndarray:
    """Inverse rotation of unit quaternion(s)."""
    q = np.array(q, dtype=np.float64)
    q[..., :3] *= -1.0
    return q


def quat_rotate(q: Any, v: Any) -> np.ndarray:
    """Vector(s) v (..., 3) rotated by unit quaternion(s) q (..., 4)."""
    q, v = np.asarray(q, np.float64), np.asarray(v, np.float64)
    u, w = q[..., :3], q[..., 3:4]
    t = 2.0 * np.cross(u, v)
    return v + w * t + np.cross(u, t)


def quat_from_axis_angle(axis: Any, angle: Any) -> np.ndarray:
    """Quaternion(s) of a rotation by ``angle`` (rad) about ``axis``."""
    axis = np.asarray(axis, np.float64)
    axis = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    half = 0.5 * np.asarray(angle, np.float64)[..., None]
    return np.concatenate([axis * np.sin(half), np.cos(half)], axis=-1)


def quat_angle(a: Any, b: Any) -> np.ndarray:
    """Rotation angle (rad, in [0, pi]) between unit quaternions a and b."""
    d = np.abs(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64), axis=-1))
    return 2.0 * np.arccos(np.clip(d, 0.0, 1.0))


def quat_slerp(q0: Any, q1: Any, t: Any) -> np.ndarray:
    """Spherical linear interpolation along the shorter arc, broadcasting over (..., 4) and t (...)."""
    q0, q1 = quat_normalize(q0), quat_normalize(q1)
    t = np.asarray(t, np.float64)[..., None]
    d = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(d < 0.0, -q1, q1)
    d = np.abs(d)
    theta = np.arccos(np.clip(d, 0.0, 1.0))
    s = np.sin(theta)
    near = s < 1e-9
    safe = np.where(near, 1.0, s)
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / safe)
    w1 = np.where(near, t, np.sin(t * theta) / safe)
    return quat_normalize(w0 * q0 + w1 * q1)


@dataclass(frozen=True)
class RigidTransform:
    """``T_parent_child``: child-frame points to parent frame, ``p = R(rotation) @ x + translation``."""

    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    rotation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "translation", tuple(float(v) for v in np.asarray(self.translation, float)))
        object.__setattr__(self, "rotation", tuple(float(v) for v in quat_normalize(self.rotation)))

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        """``T_a_b @ T_b_c = T_a_c``."""
        t = np.asarray(self.translation) + quat_rotate(self.rotation, other.translation)
        return RigidTransform(t, quat_multiply(self.rotation, other.rotation))

    def inverse(self) -> RigidTransform:
        q = quat_conjugate(self.rotation)
        return RigidTransform(-quat_rotate(q, self.translation), q)

    def apply(self, points: Any) -> np.ndarray:
        """Points (..., 3) in the child frame -> parent frame."""
        return quat_rotate(self.rotation, points) + np.asarray(self.translation)



def xyz_of(v: Any) -> tuple[float, float, float]:
    """(x, y, z) of a message Point / Vector3."""
    return float(v.x), float(v.y), float(v.z)


def xyzw_of(q: Any) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a message Quaternion."""
    return float(q.x), float(q.y), float(q.z), float(q.w)


def finite_pose(position: tuple[float, ...], orientation: tuple[float, ...]) -> bool:
    """True when every value is finite and the quaternion is not (near) zero."""
    return all(math.isfinite(v) for v in position + orientation) and \
        math.sqrt(sum(v * v for v in orientation)) >= _MIN_QUAT_NORM
