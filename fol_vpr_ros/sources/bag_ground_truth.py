"""Ground truth from a bag: the image topic and the pose/GPS topics in one pass, a pose per usable frame."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .bag import BagError, BagImageSource, ImageScan, format_topics
from .bag_cameras import CameraTrack, camera_track
from .pose_sampler import FramePoses, PoseOptions, PoseSampler

__all__ = ["GT_FRAMES", "BagGroundTruth", "GroundTruthOptions", "read_ground_truth"]

GT_FRAMES = ("auto", "pose", "utm")


@dataclass(frozen=True)
class GroundTruthOptions(PoseOptions):
    """Where ground truth comes from in the bag (as ``build-map --bag``) and which frame to compare in."""

    gt_frame: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pose_source == "none":
            raise ConfigError("evaluate-bag needs ground-truth poses: --pose-source none is not allowed")
        if self.gt_frame not in GT_FRAMES:
            raise ConfigError(f"unknown ground-truth frame {self.gt_frame!r}; valid: {', '.join(GT_FRAMES)}")


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
    cameras: CameraTrack | None = None  # the image topic's CameraInfo, when the bag has it

    @property
    def has_pose(self) -> np.ndarray:
        return np.all(np.isfinite(self.positions), axis=1)

    @property
    def has_utm(self) -> np.ndarray:
        return np.all(np.isfinite(self.utm[:, :2]), axis=1)


def _utm_rows(frames: FramePoses, path: object) -> tuple[np.ndarray, str | None]:
    """[n, 3] (easting, northing, 0) from the frames' GPS, NaN where none; and the one UTM zone."""
    utm = np.full((len(frames.stamps_ns), 3), np.nan)
    zones: set[str] = set()
    for i, g in enumerate(frames.geo):
        if g is not None and g.easting is not None:
            utm[i] = (g.easting, g.northing, 0.0)
            zones.add(str(g.zone))
    if len(zones) > 1:
        raise BagError(f"{path}: GPS positions span several UTM zones ({', '.join(sorted(zones))}); "
                       "ground truth across zones is not supported")
    return utm, next(iter(zones), None)


def read_ground_truth(source: BagImageSource, opts: GroundTruthOptions | None = None
                      ) -> tuple[ImageScan, BagGroundTruth]:
    """Scan the image topic and the pose/GPS topics in one pass; ground truth per usable frame.

    Raises BagError when the bag has no pose source or no frame gets a pose (the reasons listed)."""
    opts = opts or GroundTruthOptions()
    sampler = PoseSampler(source, opts)
    choice = sampler.choice
    if choice.kind == "none":
        raise BagError(f"{source.path}: evaluate-bag needs ground-truth poses, but the bag has no pose topic "
                       "(nav_msgs/Odometry, geometry_msgs/PoseStamped or PoseWithCovarianceStamped, /tf, "
                       f"sensor_msgs/NavSatFix); topics:\n{format_topics(source.topics)}")
    cameras = camera_track(source)
    scan = source.scan({**sampler.routes, **({cameras.topic: cameras.add} if cameras else {})})
    frames = sampler.sample(scan)
    utm, zone = _utm_rows(frames, source.path)
    pos = utm.copy() if choice.kind == "gps" else frames.positions
    notes = [*sampler.notes, *frames.notes]
    if frames.gps_topic is not None:
        missing = int(np.sum(~np.all(np.isfinite(utm[:, :2]), axis=1)))
        if missing:
            notes.append(f"{missing} frame(s) have no GPS position (outside the span of {frames.gps_topic} or in "
                         "a gap)")
    if not np.any(np.all(np.isfinite(pos), axis=1)):
        counts = Counter(r for r in frames.reasons if r)
        raise BagError(f"{source.path}: no frame has a ground-truth pose from {choice.kind} "
                       f"({choice.topic}): " + "; ".join(f"{c} x {r}" for r, c in counts.most_common()))
    notes += frames.stat_notes
    gt = BagGroundTruth(choice.kind, choice.topic, frames.gps_topic, frames.frame_id, frames.stamps_ns, pos,
                        frames.orientations, utm, zone, frames.reasons, tuple(notes), cameras)
    return scan, gt
