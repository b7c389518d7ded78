"""Build a map from a ROS bag: image topic + poses (odometry, pose, tf or GPS) -> keyframes -> VprMap."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..mapping import GeoPosition, IndexConfig, Keyframe, Pose, VprMap
from ..mapping.store import check_map_target
from ..node.params import KeyframeParams
from ..pipeline.describe import Describer, DescriberConfig, map_for_describer
from ..precision import Precision
from ..progress import progress_bar
from ..signals import deferred_signals
from ..sources.bag import BagError, BagImage, BagImageSource, BagTopic
from ..sources.bag_cameras import CameraTrack, camera_track
from ..sources.keyframes import KeyframePolicy, select_keyframes
from ..sources.pose_sampler import FramePoses, PoseOptions, PoseSampler
from ..stamps import NS_PER_SEC
from .describe import default_input_size

__all__ = ["BagBuildResult", "build_map_from_bag", "default_session_id"]

log = logging.getLogger(__name__)


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
    camera_info_topic: str | None
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
    with_camera: int = 0
    session_id: str | None = None
    robot_id: str | None = None

    def summary(self) -> str:
        """A plain-text table of what was read, skipped and why, and what went into the map."""
        pose = self.pose_source + (f" ({self.pose_topic})" if self.pose_topic else "")
        p = self.policy
        rows = [
            ("bag", str(self.bag)),
            ("image topic", f"{self.image_topic} [{self.image_type}]"),
            ("pose source", pose),
            ("gps", self.gps_topic or "-"),
            ("camera info", f"{self.camera_info_topic} ({self.with_camera} keyframe(s) with a camera)"
             if self.camera_info_topic else "-"),
            ("robot / session", f"{self.robot_id or '-'} / {self.session_id or '-'}"),
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
        return "\n".join(lines)


NODE_KEYFRAMES = KeyframeParams()  # the node's keyframe gate: a map from a bag is spaced as the node spaces one

_KeyframeData = dict[int, tuple[Pose | None, GeoPosition | None]]  # bag index -> (pose, GPS) of a keyframe


def _keyframes(frames: FramePoses, policy: KeyframePolicy, notes: list[str], skipped: Counter[str],
               path: Path) -> _KeyframeData:
    """The keyframes among the frames that have a pose (all frames without a pose source), by bag index.

    Frames outside the pose span or in a pose gap are counted in ``skipped``."""
    located = frames.located
    geos = [g if located[i] else None for i, g in enumerate(frames.geo)]
    if frames.gps_topic is not None:
        missing = sum(1 for i, g in enumerate(geos) if located[i] and g is None)
        if missing:
            notes.append(f"{missing} kept frame(s) have no GPS position (outside the span of {frames.gps_topic} "
                         "or in a gap)")
    skipped.update(r for r, ok in zip(frames.reasons, located) if not ok and r is not None)
    kept = np.flatnonzero(located)
    stamps = frames.stamps_ns
    if not len(kept):
        span = f"images span {stamps[0] / NS_PER_SEC:.3f}-{stamps[-1] / NS_PER_SEC:.3f} s"
        raise BagError(f"{path}: no frame has a pose from {frames.choice.kind} ({span}): "
                       + "; ".join(f"{c} x {r}" for r, c in skipped.most_common()))
    pos_k, rot_k = frames.positions[kept].copy(), frames.orientations[kept]
    if frames.choice.kind == "gps":
        for j, i in enumerate(kept):
            g = geos[i]
            if g is not None and g.easting is not None:
                pos_k[j] = (g.easting, g.northing, g.altitude or 0.0)
    if frames.choice.kind == "none" and (policy.min_distance or policy.min_angle):
        notes.append("min distance/angle ignored: no poses (only the min interval applies)")
    out: _KeyframeData = {}
    for j in select_keyframes(stamps[kept], pos_k, rot_k, policy):
        i = int(kept[j])
        has_pose = bool(np.all(np.isfinite(frames.positions[i])))
        pose = Pose(frames.positions[i], frames.orientations[i], frames.frame_ids[i]) if has_pose else None
        out[frames.bag_indices[i]] = (pose, geos[i])
    return out


def default_session_id(bag: str | os.PathLike) -> str:
    """The session id of a map built from ``bag`` when none is given: the bag's name without its suffix."""
    p = Path(os.path.abspath(bag))
    return p.stem if p.suffix in (".mcap", ".db3", ".bag") else p.name


def _describe_keyframes(describer: Describer, source: BagImageSource, keyframes: _KeyframeData, vpr_map: VprMap,
                        batch_size: int, ids: tuple[str | None, str | None], cameras: CameraTrack | None,
                        progress: bool) -> None:
    """Decode, describe and add the keyframes (ids: session and robot) to the map, in batches."""
    session_id, robot_id = ids
    bar = progress_bar(total=len(keyframes), desc="build-map", unit="frame", enabled=progress)
    batch: list[BagImage] = []

    def flush() -> None:
        if not batch:
            return
        descs = describer.describe_arrays([b.rgb for b in batch])
        kfs = [Keyframe(stamp_ns=b.stamp_ns, frame_id=b.frame_id, source=f"{source.path}#{source.topic}@{b.stamp_ns}",
                        pose=keyframes[b.index][0], geo=keyframes[b.index][1], session_id=session_id,
                        robot_id=robot_id, camera=cameras.at(b.stamp_ns) if cameras is not None else None)
               for b in batch]
        vpr_map.add(kfs, [d.global_desc for d in descs], [d.local for d in descs], [d.local_rc for d in descs])
        bar.update(len(batch))
        batch.clear()

    for image in source.images(keyframes):
        batch.append(image)
        if len(batch) >= batch_size:
            flush()
    flush()
    bar.close()


def build_map_from_bag(
    bag: str | os.PathLike,
    image_topic: str,
    out: str | os.PathLike,
    weights: str,
    *,
    pose_topic: str | None = None,
    pose_source: str = "auto",
    gps_topic: str | None = "auto",
    camera_info_topic: str | None = "auto",
    tf_fixed_frame: str | None = None,
    tf_target_frame: str | None = None,
    max_pose_gap: float | None = 2.0,
    min_distance: float = NODE_KEYFRAMES.min_distance_m,
    min_angle: float = NODE_KEYFRAMES.min_angle_deg,
    min_interval: float = NODE_KEYFRAMES.min_interval_sec,
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
    counted. Each keyframe gets the camera of the latest CameraInfo at or before it (``camera_info_topic``
    'auto': the image topic's sibling if in the bag); ``session_id`` defaults to the bag's name, ``robot_id`` to none.
    Keyframes are then selected by ``min_distance`` (m), ``min_angle`` (deg) and
    ``min_interval`` (s), by default the node's ``keyframe.*`` parameters; 0 disables a threshold (all 0:
    every frame).
    """
    t_start = time.perf_counter()
    policy = KeyframePolicy(min_distance, min_angle, min_interval)
    opts = PoseOptions(pose_source, pose_topic, gps_topic, tf_fixed_frame, tf_target_frame, max_pose_gap)
    out = Path(out)
    if (out / "manifest.json").exists() and not overwrite:
        raise ConfigError(f"{out}: a map already exists; pass --overwrite or choose another --out")
    check_map_target(out)
    source = BagImageSource(bag, image_topic)
    cameras = camera_track(source, camera_info_topic)
    session_id, robot_id = session_id or default_session_id(bag), robot_id or None
    sampler = PoseSampler(source, opts, optional=True)
    # load the model before the (possibly long) scan, so bad weights fail fast
    describer = Describer.from_config(DescriberConfig(weights, arch, resize or default_input_size(weights, backend),
                                                      device, batch_size, backend=backend, precision=precision))
    scan = source.scan({**sampler.routes, **({cameras.topic: cameras.add} if cameras else {})}, progress=progress)
    frames = sampler.sample(scan)
    notes = [*sampler.notes, *scan.notes, *frames.notes]
    skipped: Counter[str] = Counter(scan.skipped)
    keyframes = _keyframes(frames, policy, notes, skipped, source.path)
    vpr_map = map_for_describer(describer, out, index, local_dtype, overwrite=True)
    _describe_keyframes(describer, source, keyframes, vpr_map, batch_size, (session_id, robot_id), cameras, progress)
    for reason, count in source.decode_skipped.items():
        skipped[f"cannot decode: {reason}"] += count
    notes += frames.stat_notes + (cameras.notes if cameras is not None else [])
    with deferred_signals("saving the map"):  # Ctrl-C waits until the atomic save is complete
        vpr_map.save(out)
    result = BagBuildResult(
        out=out, bag=source.path, image_topic=image_topic, image_type=scan.msgtype, pose_source=frames.choice.kind,
        pose_topic=frames.choice.topic, gps_topic=frames.gps_topic,
        camera_info_topic=cameras.topic if cameras is not None else None, frames=scan.total,
        usable=len(frames.stamps_ns), with_pose=int(frames.located.sum()), keyframes=len(vpr_map),
        local_rows=vpr_map.num_local_rows,
        seconds=time.perf_counter() - t_start, synthetic=describer.synthetic, skipped=dict(skipped),
        notes=tuple(notes), policy=policy, topics=tuple(source.topics),
        with_camera=sum(1 for k in vpr_map.keyframes() if k.camera is not None),
        session_id=session_id, robot_id=robot_id)
    log.debug("build-map from bag:\n%s", result.summary())  # callers print it (the CLI does)
    return result
