"""Keyframe gating (time, and distance/angle from odometry) and an odometry buffer with interpolation."""

from __future__ import annotations

import bisect
import math
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from ..mapping import Pose
from ..stamps import NS_PER_SEC
from .outcomes import SkipReason

__all__ = ["CameraGates", "KeyframeGate", "OdomBuffer", "OdomPose", "quaternion_angle", "slerp"]


class _HasPose(Protocol):
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]


@dataclass(frozen=True)
class OdomPose:
    """An odometry pose at ``stamp_ns``: position xyz (m), orientation xyzw (normalised), frame."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    frame_id: str = "odom"

    def __post_init__(self) -> None:
        if isinstance(self.stamp_ns, bool) or not isinstance(self.stamp_ns, (int, np.integer)):
            raise ConfigError(f"odometry stamp_ns must be integer nanoseconds, got {self.stamp_ns!r}")
        pos = tuple(float(v) for v in self.position)
        q = tuple(float(v) for v in self.orientation)
        if len(pos) != 3 or len(q) != 4 or not all(math.isfinite(v) for v in pos + q):
            raise ConfigError(f"odometry pose needs 3 finite position and 4 finite orientation values, "
                              f"got {self.position!r}, {self.orientation!r}")
        norm = math.sqrt(sum(v * v for v in q))
        if norm < 1e-9:
            raise ConfigError(f"odometry orientation {q} has zero norm")
        object.__setattr__(self, "stamp_ns", int(self.stamp_ns))
        object.__setattr__(self, "position", pos)
        object.__setattr__(self, "orientation", tuple(v / norm for v in q))
        object.__setattr__(self, "frame_id", str(self.frame_id))

    def to_pose(self) -> Pose:
        """As a map keyframe Pose (same frame)."""
        return Pose(self.position, self.orientation, self.frame_id or "odom")


def quaternion_angle(q0: tuple[float, ...], q1: tuple[float, ...]) -> float:
    """Rotation angle (rad, 0..pi) between two unit quaternions (xyzw)."""
    a, b = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    d = abs(float(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b))))
    return 2.0 * math.acos(min(1.0, d))


def slerp(q0: tuple[float, ...], q1: tuple[float, ...], t: float) -> tuple[float, float, float, float]:
    """Spherical interpolation of unit quaternions (xyzw), shortest path."""
    a, b = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    d = float(np.dot(a, b))
    if d < 0.0:
        b, d = -b, -d
    if d > 0.9995:
        out = a + t * (b - a)
    else:
        theta = math.acos(d)
        out = (math.sin((1 - t) * theta) * a + math.sin(t * theta) * b) / math.sin(theta)
    out /= np.linalg.norm(out)
    return (float(out[0]), float(out[1]), float(out[2]), float(out[3]))


class KeyframeGate:
    """Decides which images become keyframes.

    The first image is always accepted. Later ones need ``min_interval_sec`` since the last keyframe
    (image stamps) AND, when both this image and the last keyframe have an odometry pose, a
    displacement >= ``min_distance_m`` OR a rotation >= ``min_angle_deg``. Without poses, time only.
    A stamp earlier than the last keyframe's (bag restarted, clock jump) resets the gate and accepts.
    """

    def __init__(self, min_interval_sec: float, min_distance_m: float, min_angle_deg: float) -> None:
        for name, v in (("min_interval_sec", min_interval_sec), ("min_distance_m", min_distance_m),
                        ("min_angle_deg", min_angle_deg)):
            if not math.isfinite(v) or v < 0:
                raise ConfigError(f"keyframe.{name} must be a finite number >= 0, got {v!r}")
        self.min_interval_ns = round(min_interval_sec * NS_PER_SEC)
        self.min_distance_m = float(min_distance_m)
        self.min_angle_rad = math.radians(min_angle_deg)
        self._last_stamp: int | None = None
        self._last_pose: _HasPose | None = None

    @property
    def last_stamp_ns(self) -> int | None:
        return self._last_stamp

    def reset(self) -> None:
        self._last_stamp, self._last_pose = None, None

    def skip_reason(self, stamp_ns: int, pose: _HasPose | None = None) -> SkipReason | None:
        """Why ``accept`` would refuse this image (None: it would be a keyframe); records nothing."""
        if self._last_stamp is None or stamp_ns < self._last_stamp:
            return None
        if stamp_ns - self._last_stamp < self.min_interval_ns:
            return SkipReason.MIN_INTERVAL
        if pose is None or self._last_pose is None:
            return None
        dist = math.dist(pose.position, self._last_pose.position)
        angle = quaternion_angle(pose.orientation, self._last_pose.orientation)
        moved = dist >= self.min_distance_m or angle >= self.min_angle_rad - 1e-12
        return None if moved else SkipReason.MIN_MOTION

    def would_accept(self, stamp_ns: int, pose: _HasPose | None = None) -> bool:
        """The decision ``accept`` would take, without recording anything."""
        return self.skip_reason(stamp_ns, pose) is None

    def commit(self, stamp_ns: int, pose: _HasPose | None = None) -> None:
        """Record a keyframe (its pose, or None when it had none)."""
        self._last_stamp, self._last_pose = int(stamp_ns), pose

    def accept(self, stamp_ns: int, pose: _HasPose | None = None) -> bool:
        """Whether this image is a keyframe; records it when it is."""
        ok = self.would_accept(stamp_ns, pose)
        if ok:
            self.commit(stamp_ns, pose)
        return ok


class OdomBuffer:
    """Recent odometry (thread-safe), sorted by stamp; gives the pose at an image stamp.

    ``pose_at``: between two poses at most ``max_gap_sec`` apart -> linear position + slerp;
    otherwise the nearest pose if within ``tolerance_sec``; otherwise None (no extrapolation).
    Poses older than ``buffer_sec`` before the newest one are dropped.
    """

    def __init__(self, tolerance_sec: float = 0.1, max_gap_sec: float = 0.5, buffer_sec: float = 10.0,
                 max_size: int = 100_000) -> None:
        if tolerance_sec < 0 or max_gap_sec < 0 or buffer_sec <= 0 or max_size < 2:
            raise ConfigError("odometry buffer needs tolerance_sec >= 0, max_gap_sec >= 0, buffer_sec > 0, "
                              "max_size >= 2")
        self.tolerance_ns = round(tolerance_sec * NS_PER_SEC)
        self.max_gap_ns = round(max_gap_sec * NS_PER_SEC)
        self.buffer_ns = round(buffer_sec * NS_PER_SEC)
        self.max_size = max_size
        self._stamps: list[int] = []
        self._poses: list[OdomPose] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stamps)

    def clear(self) -> None:
        with self._lock:
            self._stamps.clear()
            self._poses.clear()

    def add(self, pose: OdomPose) -> None:
        """Insert a pose (out-of-order stamps are sorted in; an equal stamp replaces the old pose)."""
        with self._lock:
            t = pose.stamp_ns
            if self._stamps and t < self._stamps[-1] - self.buffer_ns:
                # far older than the buffer: a clock jump backwards (bag restarted) -> start over
                self._stamps.clear()
                self._poses.clear()
            i = bisect.bisect_left(self._stamps, t)
            if i < len(self._stamps) and self._stamps[i] == t:
                self._poses[i] = pose
            else:
                self._stamps.insert(i, t)
                self._poses.insert(i, pose)
            cut = bisect.bisect_left(self._stamps, self._stamps[-1] - self.buffer_ns)
            cut = max(cut, len(self._stamps) - self.max_size)
            if cut > 0:
                del self._stamps[:cut]
                del self._poses[:cut]

    def pose_at(self, stamp_ns: int) -> OdomPose | None:
        """The pose at ``stamp_ns`` (interpolated or nearest, see class doc), or None."""
        with self._lock:
            n = len(self._stamps)
            if n == 0:
                return None
            i = bisect.bisect_left(self._stamps, stamp_ns)
            if i < n and self._stamps[i] == stamp_ns:
                return self._poses[i]
            if 0 < i < n:
                a, b = self._poses[i - 1], self._poses[i]
                if b.stamp_ns - a.stamp_ns <= self.max_gap_ns:
                    t = (stamp_ns - a.stamp_ns) / (b.stamp_ns - a.stamp_ns)
                    pos = tuple(pa + t * (pb - pa) for pa, pb in zip(a.position, b.position))
                    return OdomPose(stamp_ns, pos, slerp(a.orientation, b.orientation, t), a.frame_id)
            near = [j for j in (i - 1, i) if 0 <= j < n]
            j = min(near, key=lambda k: abs(self._stamps[k] - stamp_ns))
            if abs(self._stamps[j] - stamp_ns) <= self.tolerance_ns:
                return self._poses[j]
            return None


class CameraGates:
    """One KeyframeGate per camera topic, made on first use (each camera's keyframes are spaced on their own)."""

    def __init__(self, min_interval_sec: float, min_distance_m: float, min_angle_deg: float) -> None:
        self._args = (min_interval_sec, min_distance_m, min_angle_deg)
        self._gates: dict[str, KeyframeGate] = {}

    def __getitem__(self, camera: str) -> KeyframeGate:
        if camera not in self._gates:
            self._gates[camera] = KeyframeGate(*self._args)
        return self._gates[camera]
