"""Build a map from a ROS bag: image topic + poses (odometry, pose, tf or GPS) -> keyframes -> VprMap."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..errors import ConfigError
from ..mapping import GeoPosition, IndexConfig, Keyframe, Pose
from ..mapping.store import check_map_target
from ..pipeline.describe import Describer, DescriberConfig, map_for_describer
from ..precision import Precision
from ..signals import deferred_signals
from ..sources.bag import BagError, BagImage, BagImageSource, BagTopic, ImageRecord
from ..sources.keyframes import KeyframePolicy, select_keyframes
from ..sources.poses import GPS_TYPES, POSE_KINDS, PoseChoice, choose_pose_source, pose_collectors
from .describe import default_input_size

__all__ = ["BagBuildResult", "build_map_from_bag"]

log = logging.getLogger(__name__)
NS = 1_000_000_000


@dataclass(frozen=True)
class BagBuildResult:
    """What ``build_map_from_bag`` read, skipped (reason -> frames), selected and wrote."""

    out: Path
    bag: Path
    image_topic: str
    image_type: str
    pose_source: str
    pose_topic: str | None
    gps_topic: str | None
    frames: int
    usable: int
    with_pose: int
    keyframes: int
    local_rows: int
    seconds: float
    synthetic: bool
    skipped: Mapping[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    policy: KeyframePolicy = field(default_factory=KeyframePolicy)
    topics: tuple[BagTopic, ...] = ()

    def summary(self) -> str:
        """A plain-text table of what was read, skipped and why, and what went into the map."""
        pose = self.pose_source + (f" ({self.pose_topic})" if self.pose_topic else "")
        p = self.policy
        rows = [
            ("bag", str(self.bag)),
            ("image topic", f"{self.image_topic} [{self.image_type}]"),
            ("pose source", pose),
            ("gps", self.gps_topic or "-"),
            ("frames on the topic", str(self.frames)),
            ("usable frames", str(self.usable)),
            ("frames with a pose", str(self.with_pose) if self.pose_source != "none" else "- (no pose source)"),
            ("keyframes in the map", f"{self.keyframes}  (min distance {p.min_distance:g} m, min angle "
                                     f"{p.min_angle:g} deg, min interval {p.min_interval:g} s)"),
            ("local feature rows", str(self.local_rows)),
            ("time", f"{self.seconds:.1f} s"),
        ]
        width = max(len(k) for k, _ in rows)
        lines = [f"{k:<{width}}  {v}" for k, v in rows]
        if self.skipped:
            lines.append("skipped frames:")
            w = max(len(str(n)) for n in self.skipped.values())
            lines += [f"  {n:>{w}}  {reason}" for reason, n in sorted(self.skipped.items(), key=lambda kv: -kv[1])]
        lines += [f"note: {n}" for n in self.notes]
        if self.synthetic:
            lines.append("note: SYNTHETIC weights: descriptors are meaningless for accuracy")
        return "\n".join(lines)


def _gps_topic(topics: list[BagTopic], choice: PoseChoice, gps_topic: str | None, notes: list[str]) -> str | None:
    if choice.kind == "gps" or gps_topic is None:
        return None
    by_name = {t.name: t for t in topics}
    if gps_topic != "auto":
        t = by_name.get(gps_topic)
        if t is None or t.msgtype not in GPS_TYPES:
            have = ", ".join(x.name for x in topics if x.msgtype in GPS_TYPES) or "none"
            raise ConfigError(f"GPS topic {gps_topic!r} is not a NavSatFix topic of the bag (NavSatFix topics: {have})")
        return gps_topic
    found = [t.name for t in topics if t.msgtype in GPS_TYPES]
    if len(found) > 1:
        notes.append(f"several NavSatFix topics ({', '.join(found)}): no GPS attached; pass a GPS topic")
        return None
    return found[0] if found else None


def _fixed_frame(tree: Any, requested: str | None, target: str) -> str:
    if requested is not None:
        return requested
    frames = tree.frames
    for f in ("map", "odom"):
        if f in frames:
            return f
    up = tree.path_to_root(target) if target in frames else [target]
    return up[-1]


def build_map_from_bag(
    bag: str | os.PathLike,
    image_topic: str,
    out: str | os.PathLike,
    weights: str,
    *,
    pose_topic: str | None = None,
    pose_source: str = "auto",
    gps_topic: str | None = "auto",
    tf_fixed_frame: str | None = None,
    tf_target_frame: str | None = None,
    max_pose_gap: float | None = 2.0,
    min_distance: float = 0.0,
    min_angle: float = 0.0,
    min_interval: float = 0.0,
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    device: str = "cpu",
    batch_size: int = 8,
    index: IndexConfig | None = None,
    local_dtype: str = "float16",
    session_id: str | None = None,
    robot_id: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
    backend: str = "torch",
    precision: Precision | str = Precision.FP32,
) -> BagBuildResult:
    """Describe the keyframes of a bag's image topic into a map saved atomically at ``out``.

    Poses come from ``pose_source`` (see ``choose_pose_source``; ``auto`` without a pose topic in the
    bag builds a map without poses and warns). ``tf``: ``T_fixed_target`` with ``tf_fixed_frame``
    (default 'map', else 'odom', else the tree's root) and ``tf_target_frame`` (default: each image's
    frame_id). ``gps_topic='auto'`` attaches UTM from the bag's only NavSatFix topic (None: never).
    Frames outside the pose span or across a pose gap longer than ``max_pose_gap`` s are skipped and
    counted. Keyframes are then selected by ``min_distance`` (m), ``min_angle`` (deg) and
    ``min_interval`` (s); 0 disables a threshold (all 0: every frame).
    """
    t_start = time.perf_counter()
    policy = KeyframePolicy(min_distance, min_angle, min_interval)
    if pose_source not in POSE_KINDS:
        raise ConfigError(f"unknown pose source {pose_source!r}; valid: {', '.join(POSE_KINDS)}")
    if max_pose_gap is not None and not max_pose_gap > 0:
        raise ConfigError(f"max_pose_gap must be > 0 seconds (or None), got {max_pose_gap}")
    gap_ns = None if max_pose_gap is None else round(max_pose_gap * NS)
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise ConfigError(f"{out}: a map already exists; pass --overwrite or choose another --out")
    check_map_target(out)

    source = BagImageSource(bag, image_topic)
    topics = source.topics
    choice = choose_pose_source(topics, pose_source, pose_topic)
    notes: list[str] = []
    if choice.kind == "none" and pose_source == "auto":
        log.warning("%s: no pose topic (Odometry, PoseStamped, tf or NavSatFix) found; building a map without "
                    "poses", source.path)
        notes.append("no pose topic in the bag: keyframes have no pose")
    gps = _gps_topic(topics, choice, gps_topic, notes)
    # load the model before the (possibly long) scan, so bad weights fail fast
    describer = Describer.from_config(DescriberConfig(weights, arch, resize or default_input_size(weights, backend),
                                                      device, batch_size, backend=backend,
                                                      precision=precision))

    collectors = pose_collectors(choice, gps)
    stats, others = collectors.stats, collectors.routes
    pose_b, tf_b, geo_b, gps_b = collectors.pose, collectors.tf, collectors.geo, collectors.gps

    scan = source.scan(others, progress=progress)
    notes += scan.notes
    skipped: Counter[str] = Counter(scan.skipped)
    frames = list(scan.records)
    stamps = np.array([r.stamp_ns for r in frames], np.int64)
    n = len(frames)
    poses: list[Pose | None] = [None] * n
    geos: list[GeoPosition | None] = [None] * n
    reasons: list[str | None] = [None] * n
    gap_text = f"{max_pose_gap:g} s" if max_pose_gap is not None else ""

    if pose_b is not None:
        track = pose_b.finish()
        stats.update(pose_b.stats)
        pos, rot, status = track.sample(stamps, gap_ns)
        for i in range(n):
            if status[i] == 1:
                reasons[i] = f"outside the time span of {track.source}"
            elif status[i] == 2:
                reasons[i] = f"in a gap > {gap_text} of {track.source}"
            else:
                poses[i] = Pose(tuple(pos[i]), tuple(rot[i]), track.frame_id)
        if track.child_frame_id:
            notes.append(f"poses are of {track.child_frame_id!r} in {track.frame_id!r} ({track.source}), not of the "
                         "camera frame")
    elif tf_b is not None:
        tree = tf_b.finish()
        stats.update(tf_b.stats)
        targets = {tf_target_frame or r.frame_id for r in frames}
        if "" in targets:
            raise BagError(f"{source.path} {image_topic}: images without a header frame_id; pass a tf target frame")
        fixed = {t: _fixed_frame(tree, tf_fixed_frame, t) for t in targets}
        for t in sorted(targets):
            try:
                notes.append(f"tf chain: {tree.describe_chain(fixed[t], t)}")
            except BagError:
                if pose_source == "auto" and pose_topic is None:
                    log.warning("tf has no chain %s -> %s; building a map without poses", fixed[t], t)
                    notes.append(f"tf has no chain {fixed[t]} -> {t}: keyframes have no pose")
                    tree = None
                    break
                raise
        if tree is not None:
            for i, r in enumerate(frames):
                target = tf_target_frame or r.frame_id
                res = tree.lookup(fixed[target], target, r.stamp_ns, gap_ns)
                if isinstance(res, str):
                    reasons[i] = res
                else:
                    poses[i] = Pose(res.translation, res.rotation, fixed[target])
        else:
            choice = PoseChoice("none", reason="tf chain missing")
    elif geo_b is not None:
        gtrack = geo_b.finish()
        stats.update(geo_b.stats)
        geo, status = gtrack.sample(stamps, gap_ns)
        for i in range(n):
            if status[i] == 1:
                reasons[i] = f"outside the time span of {gtrack.source}"
            elif status[i] == 2:
                reasons[i] = f"in a gap > {gap_text} of {gtrack.source}"
            else:
                geos[i] = geo[i]
        if any(s == 3 for s in status):
            notes.append("some GPS positions are outside the UTM latitude range: latitude/longitude only")
    if gps_b is not None:
        gtrack = gps_b.finish()
        stats.update(gps_b.stats)
        geo, status = gtrack.sample(stamps, gap_ns)
        geos = [g if reasons[i] is None else None for i, g in enumerate(geo)]
        missing = sum(1 for i in range(n) if reasons[i] is None and geo[i] is None)
        if missing:
            notes.append(f"{missing} kept frame(s) have no GPS position (outside the span of {gps} or in a gap)")

    for r in reasons:
        if r is not None:
            skipped[r] += 1
    kept = [i for i in range(n) if reasons[i] is None]
    if not kept:
        span = f"images span {stamps[0] / NS:.3f}-{stamps[-1] / NS:.3f} s"
        raise BagError(f"{source.path}: no frame has a pose from {choice.kind} ({span}): "
                       + "; ".join(f"{c} x {r}" for r, c in skipped.most_common()))

    pos_k = np.full((len(kept), 3), np.nan)
    rot_k = np.full((len(kept), 4), np.nan)
    for j, i in enumerate(kept):
        if poses[i] is not None:
            pos_k[j], rot_k[j] = poses[i].position, poses[i].orientation
        elif geos[i] is not None and geos[i].easting is not None and choice.kind == "gps":
            pos_k[j] = (geos[i].easting, geos[i].northing, geos[i].altitude or 0.0)
    if choice.kind == "none" and (policy.min_distance or policy.min_angle):
        notes.append("min distance/angle ignored: no poses (only the min interval applies)")
    chosen = [kept[j] for j in select_keyframes(stamps[kept], pos_k, rot_k, policy)]
    by_index: dict[int, tuple[ImageRecord, Pose | None, GeoPosition | None]] = {
        frames[i].index: (frames[i], poses[i], geos[i]) for i in chosen}

    vpr_map = map_for_describer(describer, out, index, local_dtype, overwrite=True)
    bar = tqdm(total=len(by_index), desc="build-map", unit="frame", disable=not progress)
    batch: list[BagImage] = []

    def flush() -> None:
        if not batch:
            return
        descs = describer.describe_arrays([b.rgb for b in batch])
        kfs = []
        for b in batch:
            _, pose, geo = by_index[b.index]
            kfs.append(Keyframe(stamp_ns=b.stamp_ns, frame_id=b.frame_id, source=f"{source.path}#{image_topic}@"
                                f"{b.stamp_ns}", pose=pose, geo=geo, session_id=session_id, robot_id=robot_id))
        vpr_map.add(kfs, [d.global_desc for d in descs], [d.local for d in descs], [d.local_rc for d in descs])
        bar.update(len(batch))
        batch.clear()

    for image in source.images(by_index):
        batch.append(image)
        if len(batch) >= batch_size:
            flush()
    flush()
    bar.close()
    for reason, count in source.decode_skipped.items():
        skipped[f"cannot decode: {reason}"] += count
    notes += [f"{k}: {v}" for k, v in sorted(stats.items())]
    with deferred_signals("saving the map"):  # Ctrl-C waits until the atomic save is complete
        vpr_map.save(out)
    result = BagBuildResult(
        out=out, bag=source.path, image_topic=image_topic, image_type=scan.msgtype, pose_source=choice.kind,
        pose_topic=choice.topic, gps_topic=gps, frames=scan.total, usable=n, with_pose=len(kept),
        keyframes=len(vpr_map), local_rows=vpr_map.num_local_rows, seconds=time.perf_counter() - t_start,
        synthetic=describer.synthetic, skipped=dict(skipped), notes=tuple(notes), policy=policy,
        topics=tuple(topics))
    log.info("build-map from bag:\n%s", result.summary())
    return result
