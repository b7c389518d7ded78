"""The REP-105 map->odom correction from accepted place matches: computed, smoothed and rate-limited (no ROS).

An accepted localize-mode match gives the pose of the odometry body in the map frame (``PoseEstimate``,
the matched keyframe's pose: keyframe poses are the mapping run's odometry body poses); the odometry
gives the same body in the odom frame at the same stamp (``OdomPose``). Their combination is the
correction ``T_map_odom = T_map_base * inverse(T_odom_base)``. Each new correction moves the broadcast
one toward it by ``smoothing`` (lerp of the translation, slerp of the rotation; the first one is
taken as is); with ``max_jump_m`` / ``max_jump_deg`` a correction that far from the current one is
refused. ``MapOdomBroadcaster.due`` hands out the current correction at most ``rate_hz`` times per
second of the caller's clock, restamped with that time so the transform stays fresh on /tf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..sources.geometry import RigidTransform, quat_angle, quat_slerp
from ..stamps import NS_PER_SEC
from ..text_enum import TextEnum
from .gating import OdomPose
from .pose import PoseEstimate

__all__ = ["CorrectionOutcome", "MapOdomBroadcaster", "MapOdomConfig", "MapOdomTransform", "map_odom_correction"]


class CorrectionOutcome(TextEnum):
    """What ``MapOdomBroadcaster.update`` did with a match."""

    FIRST = "first"  # the first correction, taken as is
    SMOOTHED = "smoothed"  # the current correction moved toward it
    NO_ODOMETRY = "no_odometry"  # no odometry pose at the match stamp
    SAME_FRAME = "same_frame"  # the match pose is in the odom frame itself: nothing to correct
    JUMP_REFUSED = "jump_refused"  # farther than max_jump_m / max_jump_deg from the current correction


@dataclass(frozen=True)
class MapOdomConfig:
    """Node parameters ``tf.*``: broadcast rate, smoothing weight and jump limits (0 = no limit)."""

    rate_hz: float = 10.0
    smoothing: float = 0.5  # weight of each new correction (1 = take it as is)
    max_jump_m: float = 0.0
    max_jump_deg: float = 0.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.rate_hz) or self.rate_hz <= 0:
            raise ConfigError(f"parameter tf.rate_hz must be > 0, got {self.rate_hz!r}")
        if not 0.0 < self.smoothing <= 1.0:
            raise ConfigError(f"parameter tf.smoothing must be in (0, 1], got {self.smoothing!r}")
        for name in ("max_jump_m", "max_jump_deg"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"parameter tf.{name} must be >= 0 (0 = no limit), got {value!r}")

    @classmethod
    def from_params(cls, params) -> MapOdomConfig:
        """From NodeParams (group ``tf``)."""
        t = params.tf
        return cls(t.rate_hz, t.smoothing, t.max_jump_m, t.max_jump_deg)


@dataclass(frozen=True)
class MapOdomTransform:
    """``T_parent_child`` (parent: the map frame, child: the odom frame) stamped at ``stamp_ns``."""

    stamp_ns: int
    parent_frame: str
    child_frame: str
    transform: RigidTransform


def map_odom_correction(pose: PoseEstimate, odom: OdomPose) -> MapOdomTransform:
    """``T_map_odom = T_map_base * inverse(T_odom_base)`` at the match stamp (parent: pose's frame, child: odom's)."""
    t_map_base = RigidTransform(pose.position, pose.orientation)
    t_odom_base = RigidTransform(odom.position, odom.orientation)
    return MapOdomTransform(pose.stamp_ns, pose.frame_id, odom.frame_id or "odom", t_map_base @ t_odom_base.inverse())


def _blend(current: RigidTransform, new: RigidTransform, weight: float) -> RigidTransform:
    t = (1.0 - weight) * np.asarray(current.translation) + weight * np.asarray(new.translation)
    return RigidTransform(t, quat_slerp(current.rotation, new.rotation, weight))


class MapOdomBroadcaster:
    """The current map->odom correction: updated from accepted matches, handed out at most ``rate_hz``."""

    def __init__(self, config: MapOdomConfig) -> None:
        self.config = config
        self._period_ns = round(NS_PER_SEC / config.rate_hz)
        self._current: MapOdomTransform | None = None
        self._last_sent_ns: int | None = None

    @property
    def current(self) -> MapOdomTransform | None:
        """The smoothed correction (stamped with the last accepted match), None before the first."""
        return self._current

    def update(self, pose: PoseEstimate | None, odom: OdomPose | None) -> CorrectionOutcome:
        """Take the correction implied by an accepted match (``pose``) and the odometry at its stamp."""
        if pose is None or odom is None:
            return CorrectionOutcome.NO_ODOMETRY
        new = map_odom_correction(pose, odom)
        if new.parent_frame == new.child_frame:
            return CorrectionOutcome.SAME_FRAME
        cur = self._current
        if cur is None or (cur.parent_frame, cur.child_frame) != (new.parent_frame, new.child_frame):
            self._current = new
            return CorrectionOutcome.FIRST
        c = self.config
        step_m = float(np.linalg.norm(np.subtract(new.transform.translation, cur.transform.translation)))
        step_deg = math.degrees(float(quat_angle(new.transform.rotation, cur.transform.rotation)))
        if (c.max_jump_m > 0 and step_m > c.max_jump_m) or (c.max_jump_deg > 0 and step_deg > c.max_jump_deg):
            return CorrectionOutcome.JUMP_REFUSED
        self._current = MapOdomTransform(new.stamp_ns, new.parent_frame, new.child_frame,
                                         _blend(cur.transform, new.transform, c.smoothing))
        return CorrectionOutcome.SMOOTHED

    def due(self, now_ns: int) -> MapOdomTransform | None:
        """The current correction stamped ``now_ns`` when one exists and the last was sent a period ago, else None."""
        if self._current is None:
            return None
        if self._last_sent_ns is not None and 0 <= now_ns - self._last_sent_ns < self._period_ns:
            return None
        self._last_sent_ns = now_ns
        cur = self._current
        return MapOdomTransform(int(now_ns), cur.parent_frame, cur.child_frame, cur.transform)
