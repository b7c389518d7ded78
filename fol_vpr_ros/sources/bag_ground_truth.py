"""Ground truth from a bag: the image topic and the pose/GPS topics in one pass, a pose per usable frame."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from .bag import BagError, BagImageSource, BagTopic, ImageScan, format_topics
from .poses import GPS_TYPES, POSE_KINDS, choose_pose_source, pose_collectors

__all__ = ["GT_FRAMES", "BagGroundTruth", "GroundTruthOptions", "read_ground_truth"]

NS = 1_000_000_000
GT_FRAMES = ("auto", "pose", "utm")


@dataclass(frozen=True)
class GroundTruthOptions:
    """Where ground truth comes from in the bag (as ``build-map --bag``) and which frame to compare in."""

    pose_source: str = "auto"
    pose_topic: str | None = None
    gps_topic: str | None = "auto"  # None: never attach GPS
    tf_fixed_frame: str | None = None
    tf_target_frame: str | None = None
    max_pose_gap: float | None = 2.0
    gt_frame: str = "auto"

    def __post_init__(self) -> None:
        if self.pose_source not in POSE_KINDS:
            raise ConfigError(f"unknown pose source {self.pose_source!r}; valid: {', '.join(POSE_KINDS)}")
        if self.pose_source == "none":
            raise ConfigError("evaluate-bag needs ground-truth poses: --pose-source none is not allowed")
        if self.gt_frame not in GT_FRAMES:
            raise ConfigError(f"unknown ground-truth frame {self.gt_frame!r}; valid: {', '.join(GT_FRAMES)}")
        if self.max_pose_gap is not None and not self.max_pose_gap > 0:
            raise ConfigError(f"max_pose_gap must be > 0 seconds (or None), got {self.max_pose_gap}")



@dataclass(frozen=True, eq=False)
class BagGroundTruth:
    """Per usable image frame (stamp order): pose-source position/orientation and UTM, NaN where unknown."""

    kind: str  # odometry, pose, tf or gps
    topic: str | None
    gps_topic: str | None
    frame_id: str  # frame of ``positions`` ('utm' for a GPS pose source, zone in ``utm_zone``)
    stamps_ns: np.ndarray  # [n]
    positions: np.ndarray  # [n, 3]
    orientations: np.ndarray  # [n, 4] xyzw
    utm: np.ndarray  # [n, 3] easting, northing, 0
    utm_zone: str | None
    reasons: tuple[str | None, ...]  # why a frame has no pose (None: it has one)
    notes: tuple[str, ...] = ()

    @property
    def has_pose(self) -> np.ndarray:
        return np.all(np.isfinite(self.positions), axis=1)

    @property
    def has_utm(self) -> np.ndarray:
        return np.all(np.isfinite(self.utm[:, :2]), axis=1)


def _gps_choice(topics: Sequence[BagTopic], kind: str, gps_topic: str | None, notes: list[str]) -> str | None:
    if kind == "gps" or gps_topic is None:
        return None
    found = [t.name for t in topics if t.msgtype in GPS_TYPES]
    if gps_topic != "auto":
        if gps_topic not in found:
            raise ConfigError(f"GPS topic {gps_topic!r} is not a NavSatFix topic of the bag (NavSatFix topics: "
                              f"{', '.join(found) or 'none'})")
        return gps_topic
    if len(found) > 1:
        notes.append(f"several NavSatFix topics ({', '.join(found)}): no GPS used; pass a GPS topic")
        return None
    return found[0] if found else None


def _fixed_frame(tree: Any, requested: str | None, target: str) -> str:
    if requested is not None:
        return requested
    for f in ("map", "odom"):
        if f in tree.frames:
            return f
    return (tree.path_to_root(target) if target in tree.frames else [target])[-1]


def read_ground_truth(source: BagImageSource, opts: GroundTruthOptions | None = None
                      ) -> tuple[ImageScan, BagGroundTruth]:
    """Scan the image topic and the pose/GPS topics in one pass; ground truth per usable frame.

    Raises BagError when the bag has no pose source or no frame gets a pose (the reasons listed)."""
    opts = opts or GroundTruthOptions()
    topics = source.topics
    choice = choose_pose_source(topics, opts.pose_source, opts.pose_topic)
    if choice.kind == "none":
        raise BagError(f"{source.path}: evaluate-bag needs ground-truth poses, but the bag has no pose topic "
                       "(nav_msgs/Odometry, geometry_msgs/PoseStamped or PoseWithCovarianceStamped, /tf, "
                       f"sensor_msgs/NavSatFix); topics:\n{format_topics(topics)}")
    notes: list[str] = []
    gps = _gps_choice(topics, choice.kind, opts.gps_topic, notes)
    gap_ns = None if opts.max_pose_gap is None else round(opts.max_pose_gap * NS)
    collectors = pose_collectors(choice, gps)
    stats, others = collectors.stats, collectors.routes
    pose_b, tf_b, geo_b, gps_b = collectors.pose, collectors.tf, collectors.geo, collectors.gps

    scan = source.scan(others)
    stamps = np.array([r.stamp_ns for r in scan.records], np.int64)
    n = len(stamps)
    pos = np.full((n, 3), np.nan)
    rot = np.full((n, 4), np.nan)
    utm = np.full((n, 3), np.nan)
    reasons: list[str | None] = [None] * n
    zones: set[str] = set()
    gap_text = f"{opts.max_pose_gap:g} s" if opts.max_pose_gap is not None else ""
    frame_id = ""

    def mark(status: np.ndarray, what: str) -> None:
        for i in range(n):
            if status[i] == 1:
                reasons[i] = f"outside the time span of {what}"
            elif status[i] == 2:
                reasons[i] = f"in a gap > {gap_text} of {what}"
            elif status[i] == 3:
                reasons[i] = f"{what}: latitude outside the UTM range"

    def geo_rows(track: Any) -> tuple[np.ndarray, np.ndarray]:
        geo, status = track.sample(stamps, gap_ns)
        out = np.full((n, 3), np.nan)
        for i, g in enumerate(geo):
            if g is not None and g.easting is not None:
                out[i] = (g.easting, g.northing, 0.0)
                zones.add(str(g.zone))
        return out, status

    if pose_b is not None:
        track = pose_b.finish()
        stats.update(pose_b.stats)
        p, q, status = track.sample(stamps, gap_ns)
        ok = status == 0
        pos[ok], rot[ok] = p[ok], q[ok]
        mark(status, track.source)
        frame_id = track.frame_id
    elif tf_b is not None:
        tree = tf_b.finish()
        stats.update(tf_b.stats)
        targets = {opts.tf_target_frame or r.frame_id for r in scan.records}
        if "" in targets:
            raise BagError(f"{source.path} {source.topic}: images without a header frame_id; pass a tf target frame")
        fixed = {t: _fixed_frame(tree, opts.tf_fixed_frame, t) for t in targets}
        for t in sorted(targets):
            notes.append(f"tf chain: {tree.describe_chain(fixed[t], t)}")
        for i, r in enumerate(scan.records):
            target = opts.tf_target_frame or r.frame_id
            res = tree.lookup(fixed[target], target, r.stamp_ns, gap_ns)
            if isinstance(res, str):
                reasons[i] = res
            else:
                pos[i], rot[i] = res.translation, res.rotation
        frame_id = ", ".join(sorted(set(fixed.values())))
    else:
        gtrack = geo_b.finish()
        stats.update(geo_b.stats)
        utm, status = geo_rows(gtrack)
        mark(status, gtrack.source)
        pos = utm.copy()
    if gps_b is not None:
        gtrack = gps_b.finish()
        stats.update(gps_b.stats)
        utm, _ = geo_rows(gtrack)
        missing = int(np.sum(~np.all(np.isfinite(utm[:, :2]), axis=1)))
        if missing:
            notes.append(f"{missing} frame(s) have no GPS position (outside the span of {gps} or in a gap)")
    if len(zones) > 1:
        raise BagError(f"{source.path}: GPS positions span several UTM zones ({', '.join(sorted(zones))}); "
                       "ground truth across zones is not supported")
    zone = next(iter(zones), None)
    if choice.kind == "gps":
        frame_id = "utm"
    if not np.any(np.all(np.isfinite(pos), axis=1)):
        counts = Counter(r for r in reasons if r)
        raise BagError(f"{source.path}: no frame has a ground-truth pose from {choice.kind} "
                       f"({choice.topic}): " + "; ".join(f"{c} x {r}" for r, c in counts.most_common()))
    notes += [f"{k}: {v}" for k, v in sorted(stats.items())]
    gt = BagGroundTruth(choice.kind, choice.topic, gps, frame_id, stamps, pos, rot, utm, zone, tuple(reasons),
                        tuple(notes))
    return scan, gt


