"""The frame a bag replay is scored in (pose or UTM): its choice, the positions on both sides, its wording."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MapError
from ..mapping import VprMap
from ..sources.bag import BagError
from ..sources.bag_ground_truth import BagGroundTruth

__all__ = ["MapPositions", "QueryTruth", "choose_gt_frame", "ground_truth_text", "map_frame_notes", "map_positions",
           "query_truth"]


@dataclass(frozen=True)
class QueryTruth:
    """The query frames' ground truth in the scoring frame: positions [N, 3], orientations [N, 4] (NaN: none)."""

    frame: str  # pose or utm
    positions: np.ndarray
    orientations: np.ndarray

    def has_position(self) -> np.ndarray:
        """[N] bool: frames with a finite position."""
        return np.all(np.isfinite(self.positions), axis=1)


@dataclass(frozen=True)
class MapPositions:
    """The map keyframes in the ground-truth frame: ids [M], positions [M, 3], orientations [M, 4], UTM zone."""

    ids: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray
    zone: str | None


def _choose_loop_frame(requested: str, gt: BagGroundTruth) -> str:
    """Loop closure (the run against itself): poses, or UTM when asked for and present."""
    if requested == "utm":
        if not gt.has_utm.any():
            raise BagError("--gt-frame utm: the bag has no GPS (NavSatFix) positions")
        return "utm"
    return "pose"


def choose_gt_frame(requested: str, gt: BagGroundTruth, vmap: VprMap | None) -> str:
    """``pose`` or ``utm`` for ``requested`` (auto, pose, utm); an error naming what is missing on which side."""
    if vmap is None:
        return _choose_loop_frame(requested, gt)
    kfs = vmap.keyframes()
    map_utm = bool(kfs) and all(k.geo is not None and k.geo.easting is not None for k in kfs)
    map_pose = any(k.pose is not None for k in kfs)
    if requested == "auto":
        if map_utm and gt.has_utm.any():
            return "utm"
        if map_pose and gt.kind != "gps":
            return "pose"
        raise MapError(f"{vmap.path}: no common ground truth between the map and the query bag: map keyframes "
                       f"{'have UTM' if map_utm else 'lack UTM'} and {'have' if map_pose else 'lack'} poses; the "
                       f"query bag has {'GPS' if gt.has_utm.any() else 'no GPS'} and poses from {gt.kind}")
    if requested == "utm":
        if not map_utm:
            raise MapError(f"{vmap.path}: --gt-frame utm but not every map keyframe has a UTM position")
        if not gt.has_utm.any():
            raise BagError("--gt-frame utm: the query bag has no GPS (NavSatFix) positions")
        return "utm"
    if not map_pose:
        raise MapError(f"{vmap.path}: --gt-frame pose but the map keyframes have no poses")
    return "pose"


def map_frame_notes(frame: str, gt: BagGroundTruth, vmap: VprMap | None) -> tuple[str, ...]:
    """A report line when map and query poses name different frames (they are compared as one)."""
    if frame != "pose" or vmap is None:
        return ()
    map_frames = {k.pose.frame_id for k in vmap.keyframes() if k.pose is not None}
    if map_frames and map_frames != {gt.frame_id}:
        return (f"map poses are in {', '.join(sorted(map_frames))}, query poses in {gt.frame_id}: "
                "assumed to be the same frame",)
    return ()


def query_truth(frame: str, gt: BagGroundTruth) -> QueryTruth:
    """The query frames' ground truth in ``frame`` (UTM has no orientation)."""
    if frame == "utm":
        return QueryTruth(frame, gt.utm, np.full_like(gt.orientations, np.nan))
    return QueryTruth(frame, gt.positions, gt.orientations)


def map_positions(vmap: VprMap, frame: str) -> MapPositions:
    """The map keyframes' positions in the ground-truth frame; keyframes across UTM zones are an error."""
    kfs = vmap.keyframes()
    ids = np.array([int(k.id) for k in kfs], np.int64)
    pos = np.full((len(kfs), 3), np.nan)
    rot = np.full((len(kfs), 4), np.nan)
    zones = set()
    for i, k in enumerate(kfs):
        if frame == "utm":
            if k.geo is not None and k.geo.easting is not None:
                pos[i] = (k.geo.easting, k.geo.northing, 0.0)
                zones.add(k.geo.zone)
        elif k.pose is not None:
            pos[i], rot[i] = k.pose.position, k.pose.orientation
    if len(zones) > 1:
        raise MapError(f"{vmap.path}: map keyframes span several UTM zones ({', '.join(sorted(zones))}); "
                       "use --gt-frame pose")
    return MapPositions(ids, pos, rot, next(iter(zones), None))


def ground_truth_text(gt: BagGroundTruth, frame: str) -> str:
    """E.g. 'odometry (/odom), compared in pose frame odom' or '... + GPS /fix, compared in UTM 33W'."""
    text = f"{gt.kind} ({gt.topic})" + (f" + GPS {gt.gps_topic}" if gt.gps_topic else "")
    if frame == "utm":
        return text + ", compared in UTM" + (f" {gt.utm_zone}" if gt.utm_zone else "")
    return text + f", compared in pose frame {gt.frame_id}"
