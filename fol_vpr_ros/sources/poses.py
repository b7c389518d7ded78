"""Poses from bag topics, interpolated to image stamps.

Sources: ``nav_msgs/Odometry``, ``geometry_msgs/PoseStamped`` and ``PoseWithCovarianceStamped`` topics
(linear position, slerp rotation), ``/tf`` + ``/tf_static`` chains (static and interpolated dynamic
transforms composed from a fixed frame to a target frame) and ``sensor_msgs/NavSatFix`` (UTM).
Quaternions are ``(x, y, z, w)`` numpy arrays throughout.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..mapping import GeoPosition, Pose
from .bag import BagError, BagTopic, header_stamp_ns, open_bag, read_topics
from .utm import UTM_MAX_LATITUDE, UTM_MIN_LATITUDE, wgs84_to_utm

__all__ = [
    "GPS_TYPES",
    "ODOMETRY_TYPES",
    "POSE_KINDS",
    "POSE_TYPES",
    "TF_TYPES",
    "GeoTrack",
    "GeoTrackBuilder",
    "PoseChoice",
    "PoseTrack",
    "PoseTrackBuilder",
    "RigidTransform",
    "StampedSample",
    "TfTree",
    "TfTreeBuilder",
    "choose_pose_source",
    "pose_from",
    "quat_angle",
    "quat_conjugate",
    "quat_from_axis_angle",
    "quat_multiply",
    "quat_normalize",
    "quat_rotate",
    "quat_slerp",
    "read_geo_track",
    "read_pose_track",
    "read_tf_tree",
]

log = logging.getLogger(__name__)

ODOMETRY_TYPES = ("nav_msgs/msg/Odometry",)
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped")
TF_TYPES = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")
GPS_TYPES = ("sensor_msgs/msg/NavSatFix",)
POSE_KINDS = ("auto", "odometry", "pose", "tf", "gps", "none")
_KIND_TYPES = {"odometry": ODOMETRY_TYPES, "pose": POSE_TYPES, "tf": TF_TYPES, "gps": GPS_TYPES}
_KIND_NAMES = {"odometry": "nav_msgs/Odometry", "pose": "geometry_msgs/PoseStamped or PoseWithCovarianceStamped",
               "tf": "tf2_msgs/TFMessage", "gps": "sensor_msgs/NavSatFix"}
NS = 1_000_000_000


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


# ---------------------------------------------------------------------------------------------- tracks
@dataclass(frozen=True)
class StampedSample:
    """One stamped pose read from a bag, before sorting."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]


def _clean_stamps(stamps: Sequence[int], what: str, stats: Counter) -> np.ndarray:
    """Stable order by stamp; later duplicates dropped. Returns the kept indices and counts in ``stats``."""
    s = np.asarray(stamps, dtype=np.int64)
    late = int(np.sum(s[1:] < np.maximum.accumulate(s)[:-1])) if len(s) > 1 else 0
    if late:
        stats[f"{what}: stamps out of order (sorted)"] += late
    order = np.argsort(s, kind="stable")
    keep = np.ones(len(order), bool)
    keep[1:] = s[order][1:] != s[order][:-1]
    if (~keep).any():
        stats[f"{what}: duplicate stamps (later dropped)"] += int((~keep).sum())
    return order[keep]


def _bracket(stamps: np.ndarray, query: np.ndarray,
             max_gap_ns: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, fraction, status) per query: 0 ok, 1 outside the span, 2 across a gap."""
    q = np.asarray(query, np.int64)
    n = len(stamps)
    i0 = np.clip(np.searchsorted(stamps, q, side="right") - 1, 0, max(n - 2, 0))
    status = np.zeros(len(q), np.int8)
    if n == 0:
        return i0, np.zeros(len(q)), np.ones(len(q), np.int8)
    status[(q < stamps[0]) | (q > stamps[-1])] = 1
    if n == 1:
        return np.zeros(len(q), np.int64), np.zeros(len(q)), status
    i1 = i0 + 1
    span = stamps[i1] - stamps[i0]
    frac = np.clip((q - stamps[i0]).astype(np.float64) / span, 0.0, 1.0)
    if max_gap_ns is not None:
        exact = (q == stamps[i0]) | (q == stamps[i1])
        status[(status == 0) & (span > max_gap_ns) & ~exact] = 2
    return i0, frac, status


@dataclass(frozen=True)
class PoseTrack:
    """Time-sorted poses of ``child_frame_id`` in ``frame_id`` (stamps unique, int64 ns)."""

    frame_id: str
    child_frame_id: str
    stamps_ns: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        s = np.asarray(self.stamps_ns, np.int64)
        if len(s) and np.any(np.diff(s) <= 0):
            raise ConfigError("PoseTrack stamps must be strictly increasing")
        object.__setattr__(self, "stamps_ns", s)
        object.__setattr__(self, "positions", np.asarray(self.positions, np.float64).reshape(len(s), 3))
        q = np.asarray(self.orientations, np.float64).reshape(len(s), 4)
        object.__setattr__(self, "orientations", quat_normalize(q) if len(q) else q)

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def span_ns(self) -> tuple[int, int] | None:
        return (int(self.stamps_ns[0]), int(self.stamps_ns[-1])) if len(self) else None

    def sample(self, stamps_ns: Sequence[int], max_gap_ns: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions [M, 3], orientations [M, 4], status [M]) at the stamps; status 0 ok,
        1 outside the track's time span, 2 between two poses further apart than ``max_gap_ns``."""
        q = np.asarray(stamps_ns, np.int64)
        i0, frac, status = _bracket(self.stamps_ns, q, max_gap_ns)
        if len(self) == 0:
            return np.full((len(q), 3), np.nan), np.full((len(q), 4), np.nan), status
        i1 = np.minimum(i0 + 1, len(self) - 1)
        pos = self.positions[i0] + frac[:, None] * (self.positions[i1] - self.positions[i0])
        rot = quat_slerp(self.orientations[i0], self.orientations[i1], frac)
        return pos, rot, status

    def at(self, stamp_ns: int, max_gap_ns: int | None = None) -> RigidTransform | None:
        """Interpolated ``T_frame_child`` at one stamp, or None outside the span / across a gap."""
        pos, rot, status = self.sample([stamp_ns], max_gap_ns)
        return None if status[0] else RigidTransform(pos[0], rot[0])


def _xyz(v: Any) -> tuple[float, float, float]:
    return float(v.x), float(v.y), float(v.z)


def _xyzw(q: Any) -> tuple[float, float, float, float]:
    return float(q.x), float(q.y), float(q.z), float(q.w)


def _strip(frame: str) -> str:
    return str(frame).lstrip("/")


class PoseTrackBuilder:
    """Collects Odometry / PoseStamped / PoseWithCovarianceStamped messages of one topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.samples: list[StampedSample] = []
        self.frames: Counter[tuple[str, str]] = Counter()
        self.stats: Counter[str] = Counter()

    def add(self, msgtype: str, msg: Any, bag_ns: int) -> None:
        stamp = header_stamp_ns(msg)
        if stamp == 0:
            stamp = bag_ns
            self.stats[f"{self.topic}: zero header stamps (bag time used)"] += 1
        if msgtype in ODOMETRY_TYPES:
            pose, child = msg.pose.pose, _strip(msg.child_frame_id)
        elif msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped":
            pose, child = msg.pose.pose, ""
        elif msgtype == "geometry_msgs/msg/PoseStamped":
            pose, child = msg.pose, ""
        else:
            raise ConfigError(f"{self.topic}: {msgtype} is not a pose type ({', '.join(ODOMETRY_TYPES + POSE_TYPES)})")
        q = _xyzw(pose.orientation)
        p = _xyz(pose.position)
        if not all(math.isfinite(v) for v in p + q) or math.sqrt(sum(v * v for v in q)) < 1e-9:
            self.stats[f"{self.topic}: invalid poses (NaN or zero quaternion) dropped"] += 1
            return
        self.frames[(_strip(msg.header.frame_id), child)] += 1
        self.samples.append(StampedSample(stamp, p, q))

    def finish(self) -> PoseTrack:
        if not self.samples:
            raise BagError(f"{self.topic}: no usable pose messages")
        if len(self.frames) > 1:
            raise BagError(f"{self.topic}: poses in several frames {sorted(self.frames)}; "
                           "cannot interpolate between them")
        frame, child = next(iter(self.frames))
        keep = _clean_stamps([s.stamp_ns for s in self.samples], self.topic, self.stats)
        ss = [self.samples[i] for i in keep]
        return PoseTrack(frame or "map", child, [s.stamp_ns for s in ss], [s.position for s in ss],
                         [s.orientation for s in ss], source=self.topic)


# ---------------------------------------------------------------------------------------------- tf
@dataclass(frozen=True)
class TfTree:
    """Static and dynamic transforms: ``child -> (parent, transform or track)`` from /tf and /tf_static."""

    static: Mapping[str, tuple[str, RigidTransform]] = field(default_factory=dict)
    dynamic: Mapping[str, PoseTrack] = field(default_factory=dict)

    @property
    def frames(self) -> set[str]:
        out = set(self.static) | set(self.dynamic)
        out |= {p for p, _ in self.static.values()} | {t.frame_id for t in self.dynamic.values()}
        return out

    def parent(self, frame: str) -> str | None:
        if frame in self.static:
            return self.static[frame][0]
        if frame in self.dynamic:
            return self.dynamic[frame].frame_id
        return None

    def path_to_root(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        path = [frame]
        while (p := self.parent(path[-1])) is not None:
            if p in path:
                raise BagError(f"tf: the frames {' -> '.join([*path, p])} form a loop")
            path.append(p)
        return path

    def chain(self, fixed_frame: str, target_frame: str) -> tuple[list[str], list[str]]:
        """Frames from ``fixed_frame`` and ``target_frame`` up to their common ancestor (inclusive)."""
        fixed_frame, target_frame = _strip(fixed_frame), _strip(target_frame)
        known = self.frames
        for f in (fixed_frame, target_frame):
            if f not in known:
                raise BagError(f"tf: frame {f!r} is not in /tf or /tf_static; known frames: {', '.join(sorted(known))}")
        up_fixed, up_target = self.path_to_root(fixed_frame), self.path_to_root(target_frame)
        common = next((f for f in up_target if f in up_fixed), None)
        if common is None:
            raise BagError(f"tf: no transform chain between {fixed_frame!r} (root {up_fixed[-1]!r}) and "
                           f"{target_frame!r} (root {up_target[-1]!r}): they are in separate trees")
        return up_fixed[: up_fixed.index(common) + 1], up_target[: up_target.index(common) + 1]

    def describe_chain(self, fixed_frame: str, target_frame: str) -> str:
        """E.g. 'map -> odom (dynamic) -> base_link (dynamic) -> camera (static)'."""
        up_fixed, up_target = self.chain(fixed_frame, target_frame)
        parts = [up_fixed[0]]
        for f in up_fixed[1:]:
            parts.append(f"{f} (inverse)")
        for f in reversed(up_target[:-1]):
            parts.append(f"{f} ({'static' if f in self.static else 'dynamic'})")
        return " -> ".join(parts)

    def _up(self, path: list[str], stamp_ns: int, max_gap_ns: int | None) -> RigidTransform | str:
        """T_ancestor_frame for path [frame, ..., ancestor], or a skip reason."""
        t = RigidTransform()
        for child in path[:-1]:
            if child in self.static:
                edge = self.static[child][1]
            else:
                track = self.dynamic[child]
                edge = track.at(stamp_ns, max_gap_ns)
                if edge is None:
                    _, _, status = track.sample([stamp_ns], max_gap_ns)
                    what = "outside the time span of" if status[0] == 1 else "in a gap of"
                    return f"tf {what} {track.frame_id} -> {child}"
            t = edge @ t
        return t

    def lookup(self, fixed_frame: str, target_frame: str, stamp_ns: int,
               max_gap_ns: int | None = None) -> RigidTransform | str:
        """``T_fixed_target`` at the stamp (dynamic edges interpolated), or a skip reason."""
        up_fixed, up_target = self.chain(fixed_frame, target_frame)
        a = self._up(up_target, stamp_ns, max_gap_ns)
        if isinstance(a, str):
            return a
        b = self._up(up_fixed, stamp_ns, max_gap_ns)
        if isinstance(b, str):
            return b
        return b.inverse() @ a


class TfTreeBuilder:
    """Collects TFMessage transforms from /tf (dynamic) and /tf_static (static) topics."""

    def __init__(self, static_topics: Iterable[str] = ("/tf_static",)) -> None:
        self.static_topics = set(static_topics)
        self.static: dict[str, tuple[str, RigidTransform]] = {}
        self.dyn: dict[str, dict[str, list[StampedSample]]] = {}
        self.stats: Counter[str] = Counter()

    def add_topic_message(self, topic: str, msg: Any, bag_ns: int) -> None:
        is_static = topic in self.static_topics
        for tr in msg.transforms:
            parent, child = _strip(tr.header.frame_id), _strip(tr.child_frame_id)
            t, q = _xyz(tr.transform.translation), _xyzw(tr.transform.rotation)
            if not parent or not child or parent == child:
                self.stats[f"{topic}: transforms with empty or equal frame ids dropped"] += 1
                continue
            if not all(math.isfinite(v) for v in t + q) or math.sqrt(sum(v * v for v in q)) < 1e-9:
                self.stats[f"{topic}: invalid transforms (NaN or zero quaternion) dropped"] += 1
                continue
            if is_static:
                old = self.static.get(child)
                if old is not None and old[0] != parent:
                    raise BagError(f"tf: frame {child!r} has two static parents, {old[0]!r} and {parent!r}")
                self.static[child] = (parent, RigidTransform(t, q))  # latest static transform wins
                continue
            stamp = header_stamp_ns(tr)
            if stamp == 0:
                stamp = bag_ns
                self.stats[f"{topic}: zero header stamps (bag time used)"] += 1
            self.dyn.setdefault(child, {}).setdefault(parent, []).append(StampedSample(stamp, t, q))

    def finish(self) -> TfTree:
        dynamic: dict[str, PoseTrack] = {}
        for child, by_parent in self.dyn.items():
            if len(by_parent) > 1:
                raise BagError(f"tf: frame {child!r} has several parents on /tf: {', '.join(sorted(by_parent))}")
            if child in self.static:
                raise BagError(f"tf: frame {child!r} is published on both /tf and /tf_static")
            parent, samples = next(iter(by_parent.items()))
            keep = _clean_stamps([s.stamp_ns for s in samples], f"tf {parent} -> {child}", self.stats)
            ss = [samples[i] for i in keep]
            dynamic[child] = PoseTrack(parent, child, [s.stamp_ns for s in ss], [s.position for s in ss],
                                       [s.orientation for s in ss], source="/tf")
        if not dynamic and not self.static:
            raise BagError("tf: no transforms found")
        return TfTree(dict(self.static), dynamic)


# ---------------------------------------------------------------------------------------------- GPS
@dataclass(frozen=True)
class GeoTrack:
    """Time-sorted GNSS fixes (degrees; altitude NaN where unknown)."""

    stamps_ns: np.ndarray
    latitudes: np.ndarray
    longitudes: np.ndarray
    altitudes: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def sample(self, stamps_ns: Sequence[int], max_gap_ns: int | None = None
               ) -> tuple[list[GeoPosition | None], np.ndarray]:
        """(GeoPosition with UTM and lat/lon, or None; status) per stamp; status as PoseTrack.sample,
        3 for a latitude outside the UTM range (the position then has lat/lon only)."""
        q = np.asarray(stamps_ns, np.int64)
        i0, frac, status = _bracket(self.stamps_ns, q, max_gap_ns)
        out: list[GeoPosition | None] = []
        if len(self) == 0:
            return [None] * len(q), status
        i1 = np.minimum(i0 + 1, len(self) - 1)
        dlon = (self.longitudes[i1] - self.longitudes[i0] + 180.0) % 360.0 - 180.0  # across the antimeridian
        lat = self.latitudes[i0] + frac * (self.latitudes[i1] - self.latitudes[i0])
        lon = (self.longitudes[i0] + frac * dlon + 180.0) % 360.0 - 180.0
        alt = self.altitudes[i0] + frac * (self.altitudes[i1] - self.altitudes[i0])
        for k in range(len(q)):
            if status[k]:
                out.append(None)
                continue
            a = float(alt[k]) if math.isfinite(alt[k]) else None
            if not UTM_MIN_LATITUDE <= lat[k] <= UTM_MAX_LATITUDE:
                status[k] = 3
                out.append(GeoPosition(latitude=float(lat[k]), longitude=float(lon[k]), altitude=a))
                continue
            u = wgs84_to_utm(float(lat[k]), float(lon[k]))
            out.append(GeoPosition(u.easting, u.northing, u.zone, float(lat[k]), float(lon[k]), a))
        return out, status


class GeoTrackBuilder:
    """Collects NavSatFix messages; fixes with status < 0 (no fix) or invalid values are dropped and counted."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.rows: list[tuple[int, float, float, float]] = []
        self.stats: Counter[str] = Counter()

    def add(self, msgtype: str, msg: Any, bag_ns: int) -> None:
        if msg.status.status < 0:
            self.stats[f"{self.topic}: fixes with status < 0 (no fix) dropped"] += 1
            return
        lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            self.stats[f"{self.topic}: fixes with invalid latitude/longitude dropped"] += 1
            return
        stamp = header_stamp_ns(msg)
        if stamp == 0:
            stamp = bag_ns
            self.stats[f"{self.topic}: zero header stamps (bag time used)"] += 1
        self.rows.append((stamp, lat, lon, alt if math.isfinite(alt) else math.nan))

    def finish(self) -> GeoTrack:
        if not self.rows:
            raise BagError(f"{self.topic}: no usable NavSatFix messages (all without a fix or invalid)")
        keep = _clean_stamps([r[0] for r in self.rows], self.topic, self.stats)
        a = np.array([self.rows[i] for i in keep], dtype=np.float64)
        return GeoTrack(np.array([self.rows[i][0] for i in keep], np.int64), a[:, 1], a[:, 2], a[:, 3],
                        source=self.topic)


# ---------------------------------------------------------------------------------------------- choosing
@dataclass(frozen=True)
class PoseChoice:
    """Which pose source to use: kind (odometry/pose/tf/gps/none), its topic(s) and why."""

    kind: str
    topic: str | None = None
    static_topic: str | None = None
    reason: str = ""


def _of_kind(topics: Sequence[BagTopic], kind: str) -> list[BagTopic]:
    return [t for t in topics if t.msgtype in _KIND_TYPES[kind]]


def _topic_list(topics: Sequence[BagTopic]) -> str:
    return "\n".join(f"  {t.name}  [{t.msgtype}]  ({t.count} msgs)" for t in topics) or "  (no topics)"


def _tf_choice(topics: Sequence[BagTopic], pose_topic: str | None, reason: str) -> PoseChoice:
    names = {t.name: t for t in topics}
    dyn = pose_topic or ("/tf" if "/tf" in names else None)
    static = "/tf_static" if "/tf_static" in names else None
    if dyn is not None and dyn not in names:
        raise ConfigError(f"tf topic {dyn!r} is not in the bag; topics:\n{_topic_list(topics)}")
    return PoseChoice("tf", dyn, static, reason)


def choose_pose_source(topics: Sequence[BagTopic], pose_source: str = "auto",
                       pose_topic: str | None = None) -> PoseChoice:
    """Resolve ``pose_source``/``pose_topic`` against the bag's topics.

    ``auto`` with a topic takes its kind from the topic's type; ``auto`` without one prefers a single
    Odometry topic, then a single PoseStamped/PoseWithCovarianceStamped, then /tf(+/tf_static), then a
    single NavSatFix, else ``none``. Several candidates of the chosen kind raise ConfigError (pass a topic).
    """
    if pose_source not in POSE_KINDS:
        raise ConfigError(f"unknown pose source {pose_source!r}; valid: {', '.join(POSE_KINDS)}")
    names = {t.name: t for t in topics}
    if pose_source == "none":
        return PoseChoice("none", reason="--pose-source none")
    if pose_topic is not None:
        if pose_topic not in names:
            raise ConfigError(f"pose topic {pose_topic!r} is not in the bag; topics:\n{_topic_list(topics)}")
        msgtype = names[pose_topic].msgtype
        kind = next((k for k, types in _KIND_TYPES.items() if msgtype in types), None)
        if kind is None:
            raise ConfigError(f"pose topic {pose_topic!r} has type {msgtype}; supported: "
                              + ", ".join(t for ts in _KIND_TYPES.values() for t in ts))
        if pose_source not in ("auto", kind):
            raise ConfigError(f"pose topic {pose_topic!r} is a {msgtype}, not {_KIND_NAMES[pose_source]} "
                              f"(--pose-source {pose_source})")
        if kind == "tf":
            return _tf_choice(topics, pose_topic, f"{pose_topic} ({msgtype})")
        return PoseChoice(kind, pose_topic, reason=f"{pose_topic} ({msgtype})")
    kinds = ("odometry", "pose", "tf", "gps") if pose_source == "auto" else (pose_source,)
    for kind in kinds:
        found = _of_kind(topics, kind)
        if kind == "tf":
            if any(t.name in ("/tf", "/tf_static") for t in found):
                return _tf_choice(topics, None, "/tf and /tf_static" if len(found) > 1 else found[0].name)
            found = []
        if len(found) > 1:
            raise ConfigError(f"several {_KIND_NAMES[kind]} topics: {', '.join(t.name for t in found)}; "
                              "pass --pose-topic to pick one")
        if found:
            return PoseChoice(kind, found[0].name, reason=f"{found[0].name} ({found[0].msgtype})")
    if pose_source != "auto":
        raise ConfigError(f"--pose-source {pose_source}: the bag has no {_KIND_NAMES[pose_source]} topic; "
                          f"topics:\n{_topic_list(topics)}")
    return PoseChoice("none", reason="no pose topic in the bag")


# ---------------------------------------------------------------------------------------------- readers
def _read(path: Any, topics: Mapping[str, Callable[[str, str, Any, int], None]], stats: Counter) -> None:
    with open_bag(path) as (reader, resolved, bag_topics):
        names = {t.name for t in bag_topics}
        missing = [t for t in topics if t not in names]
        if missing:
            raise BagError(f"{resolved}: topic(s) {', '.join(missing)} not in the bag; "
                           f"topics:\n{_topic_list(bag_topics)}")
        for m in read_topics(reader, resolved, list(topics)):
            if m.msg is None:
                stats[f"{m.topic}: messages that could not be deserialised"] += 1
            else:
                topics[m.topic](m.topic, m.msgtype, m.msg, m.bag_ns)


def read_pose_track(path: Any, topic: str) -> PoseTrack:
    """The interpolatable track of one Odometry / PoseStamped / PoseWithCovarianceStamped topic."""
    b = PoseTrackBuilder(topic)
    _read(path, {topic: lambda _t, mt, m, ns: b.add(mt, m, ns)}, b.stats)
    return b.finish()


def read_tf_tree(path: Any, tf_topic: str = "/tf", static_topic: str | None = "/tf_static") -> TfTree:
    """All transforms of the bag's /tf and /tf_static topics."""
    b = TfTreeBuilder([static_topic] if static_topic else [])
    with open_bag(path) as (_r, _p, bag_topics):
        present = {t.name for t in bag_topics}
    wanted = [t for t in (tf_topic, static_topic) if t and t in present]
    if not wanted:
        raise BagError(f"{path}: no {tf_topic} or {static_topic} topic")
    _read(path, {t: lambda tp, _mt, m, ns: b.add_topic_message(tp, m, ns) for t in wanted}, b.stats)
    return b.finish()


def read_geo_track(path: Any, topic: str) -> GeoTrack:
    """GNSS fixes of one NavSatFix topic (no-fix messages dropped)."""
    b = GeoTrackBuilder(topic)
    _read(path, {topic: lambda _t, mt, m, ns: b.add(mt, m, ns)}, b.stats)
    return b.finish()


def pose_from(position: Any, orientation: Any, frame_id: str) -> Pose:
    """A mapping Pose from numpy position/orientation."""
    return Pose(tuple(float(v) for v in position), tuple(float(v) for v in orientation), frame_id)


@dataclass
class PoseCollectors:
    """Builders fed during one bag scan: the chosen pose source and an optional extra GPS topic.

    ``routes`` maps topic -> callback for ``BagImageSource.scan``; unreadable messages are counted in
    ``stats`` instead of reaching a builder.
    """

    pose: PoseTrackBuilder | None = None
    tf: TfTreeBuilder | None = None
    geo: GeoTrackBuilder | None = None
    gps: GeoTrackBuilder | None = None
    routes: dict[str, Callable[[Any], None]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)


def pose_collectors(choice: PoseChoice, gps_topic: str | None) -> PoseCollectors:
    """Collectors (and scan routes) for a pose choice plus an optional NavSatFix topic for UTM."""
    from .bag import REASON_UNREADABLE

    out = PoseCollectors()

    def route(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        def handle(m: Any) -> None:
            if m.msg is None:
                out.stats[f"{m.topic}: {REASON_UNREADABLE}"] += 1
            else:
                fn(m)
        return handle

    if choice.kind in ("odometry", "pose"):
        pose_b = out.pose = PoseTrackBuilder(choice.topic)
        out.routes[choice.topic] = route(lambda m: pose_b.add(m.msgtype, m.msg, m.bag_ns))
    elif choice.kind == "tf":
        tf_b = out.tf = TfTreeBuilder([choice.static_topic] if choice.static_topic else [])
        for t in (choice.topic, choice.static_topic):
            if t:
                out.routes[t] = route(lambda m: tf_b.add_topic_message(m.topic, m.msg, m.bag_ns))
    elif choice.kind == "gps":
        geo_b = out.geo = GeoTrackBuilder(choice.topic)
        out.routes[choice.topic] = route(lambda m: geo_b.add(m.msgtype, m.msg, m.bag_ns))
    if gps_topic is not None:
        gps_b = out.gps = GeoTrackBuilder(gps_topic)
        out.routes[gps_topic] = route(lambda m: gps_b.add(m.msgtype, m.msg, m.bag_ns))
    return out
