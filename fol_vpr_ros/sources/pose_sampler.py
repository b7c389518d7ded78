"""The one pose sampler of a bag: choose the pose source and GPS topic, collect them during the image scan,
and interpolate them to the image stamps (a pose, GPS position and PoseStatus per frame).

Used by ``build-map --bag`` (jobs.build_map_bag) and by the evaluate-bag ground truth (sources.bag_ground_truth).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError
from ..mapping import GeoPosition
from ..stamps import sec_to_ns
from .bag import BagError, BagImageSource, BagMessage, ImageRecord, ImageScan
from .pose_choice import POSE_KINDS, PoseChoice, choose_gps_topic, choose_pose_source
from .pose_topics import GeoTrackBuilder, pose_collectors
from .tf_tree import TfTree
from .tracks import PoseStatus, PoseTrack

__all__ = ["FramePoses", "PoseOptions", "PoseSampler"]

log = logging.getLogger(__name__)
_FIXED_FRAMES = ("map", "odom")  # the default tf fixed frame: the first of these in the tree, else its root


@dataclass(frozen=True)
class PoseOptions:
    """Where the frames' poses come from in a bag (``choose_pose_source``) and how far they may be interpolated."""

    pose_source: str = "auto"
    pose_topic: str | None = None
    gps_topic: str | None = "auto"  # None: never attach GPS
    tf_fixed_frame: str | None = None
    tf_target_frame: str | None = None
    max_pose_gap: float | None = 2.0  # seconds; None: interpolate across any gap

    def __post_init__(self) -> None:
        if self.pose_source not in POSE_KINDS:
            raise ConfigError(f"unknown pose source {self.pose_source!r}; valid: {', '.join(POSE_KINDS)}")
        if self.max_pose_gap is not None and not self.max_pose_gap > 0:
            raise ConfigError(f"max_pose_gap must be > 0 seconds (or None), got {self.max_pose_gap}")

    @property
    def max_gap_ns(self) -> int | None:
        return None if self.max_pose_gap is None else sec_to_ns(self.max_pose_gap)


@dataclass(frozen=True, eq=False)
class FramePoses:
    """Per usable frame of a scan (stamp order): pose, GPS position, status and why a frame has no pose."""

    choice: PoseChoice  # kind 'none' also when a tf chain was missing and poses were optional
    gps_topic: str | None
    frame_id: str  # the poses' frame ('utm' for a GPS pose source; tf: the fixed frames, comma-separated)
    stamps_ns: np.ndarray  # [n]
    bag_indices: tuple[int, ...]  # [n] each frame's index in the bag (ImageRecord.index)
    positions: np.ndarray  # [n, 3] from odometry/pose/tf, NaN where none (GPS: see ``geo``)
    orientations: np.ndarray  # [n, 4] xyzw, NaN where none
    frame_ids: tuple[str, ...]  # per frame, the frame of its pose ('' where none)
    geo: tuple[GeoPosition | None, ...]  # from the GPS pose source or the extra GPS topic
    status: tuple[PoseStatus, ...]  # of the pose source at each frame
    reasons: tuple[str | None, ...]  # status as text ('in a gap > 2 s of /odom'), None when OK
    notes: tuple[str, ...] = ()
    stats: Mapping[str, int] = field(default_factory=dict)  # what the collectors dropped or fixed -> count

    @property
    def located(self) -> np.ndarray:
        """[n] bool: the frame has a position from the pose source (or no pose source is used)."""
        return np.array([s.located for s in self.status], bool)

    @property
    def stat_notes(self) -> list[str]:
        return [f"{k}: {v}" for k, v in sorted(self.stats.items())]


def _fixed_frame(tree: TfTree, requested: str | None, target: str) -> str:
    if requested is not None:
        return requested
    frames = tree.frames
    for f in _FIXED_FRAMES:
        if f in frames:
            return f
    return (tree.path_to_root(target) if target in frames else [target])[-1]


class PoseSampler:
    """Chooses the pose source and GPS topic of a bag; ``routes`` feed its collectors during
    ``BagImageSource.scan``; ``sample(scan)`` then gives the FramePoses.

    ``optional``: poses may be missing (build-map): ``auto`` without a pose topic, or a tf tree without a
    chain to the image frame, then samples no poses and warns, instead of raising BagError.
    """

    def __init__(self, source: BagImageSource, opts: PoseOptions, *, optional: bool = False) -> None:
        self.source, self.opts, self.optional = source, opts, optional
        self.choice = choose_pose_source(source.topics, opts.pose_source, opts.pose_topic)
        self.notes: list[str] = []  # about the choice, before the scan
        if optional and self.choice.kind == "none" and opts.pose_source == "auto":
            log.warning("%s: no pose topic (Odometry, PoseStamped, tf or NavSatFix) found; building a map without "
                        "poses", source.path)
            self.notes.append("no pose topic in the bag: keyframes have no pose")
        self.gps_topic = choose_gps_topic(source.topics, self.choice, opts.gps_topic, self.notes)
        self.collectors = pose_collectors(self.choice, self.gps_topic)

    @property
    def routes(self) -> dict[str, Callable[[BagMessage], None]]:
        """topic -> callback (BagMessage) for ``BagImageSource.scan``."""
        return self.collectors.routes

    def sample(self, scan: ImageScan) -> FramePoses:
        """Finish the collectors and interpolate them to the scan's frames."""
        c = self.collectors
        self._stats: Counter[str] = c.stats
        self._out = _Rows(scan.records)
        choice, frame_id = self.choice, ""
        if c.pose is not None:
            frame_id = self._track(c.pose.finish(), c.pose.stats)
        elif c.tf is not None:
            frame_id = self._tf(c.tf.finish(), c.tf.stats, scan.records)
            if frame_id is None:
                choice, frame_id = PoseChoice("none", reason="tf chain missing"), ""
        elif c.geo is not None:
            self._geo(c.geo, set_status=True)
            frame_id = "utm"
        if c.gps is not None:
            self._geo(c.gps, set_status=False)
        o = self._out
        return FramePoses(choice, self.gps_topic, frame_id, o.stamps, tuple(r.index for r in scan.records), o.pos,
                          o.rot, tuple(o.frame_ids), tuple(o.geo), tuple(o.status), tuple(o.reasons), tuple(o.notes),
                          dict(self._stats))

    def _track(self, track: PoseTrack, stats: Counter[str]) -> str:
        self._stats.update(stats)
        o = self._out
        pos, rot, status = track.sample(o.stamps, self.opts.max_gap_ns)
        for i, code in enumerate(status):
            if o.mark(i, PoseStatus(int(code)), track.source, self.opts.max_pose_gap):
                o.pos[i], o.rot[i], o.frame_ids[i] = pos[i], rot[i], track.frame_id
        if track.child_frame_id:
            o.notes.append(f"poses are of {track.child_frame_id!r} in {track.frame_id!r} ({track.source}), not of "
                           "the camera frame")
        return track.frame_id

    def _tf(self, tree: TfTree, stats: Counter[str], records: tuple[ImageRecord, ...]) -> str | None:
        """Poses from tf chains; None when a chain is missing and poses are optional (no poses then)."""
        self._stats.update(stats)
        target_of = self.opts.tf_target_frame
        targets = {target_of or r.frame_id for r in records}
        if "" in targets:
            raise BagError(f"{self.source.path} {self.source.topic}: images without a header frame_id; pass a tf "
                           "target frame")
        fixed = {t: _fixed_frame(tree, self.opts.tf_fixed_frame, t) for t in targets}
        o = self._out
        for t in sorted(targets):
            try:
                o.notes.append(f"tf chain: {tree.describe_chain(fixed[t], t)}")
            except BagError:
                if not (self.optional and self.opts.pose_source == "auto" and self.opts.pose_topic is None):
                    raise
                log.warning("tf has no chain %s -> %s; building a map without poses", fixed[t], t)
                o.notes.append(f"tf has no chain {fixed[t]} -> {t}: keyframes have no pose")
                return None
        for i, r in enumerate(records):
            target = target_of or r.frame_id
            res, code, reason = tree.lookup_status(fixed[target], target, r.stamp_ns, self.opts.max_gap_ns)
            o.status[i], o.reasons[i] = code, reason
            if res is not None:
                o.pos[i], o.rot[i], o.frame_ids[i] = res.translation, res.rotation, fixed[target]
        return ", ".join(sorted(set(fixed.values())))

    def _geo(self, builder: GeoTrackBuilder, set_status: bool) -> None:
        """GPS positions per frame; ``set_status``: the GPS track is the pose source."""
        track = builder.finish()
        self._stats.update(builder.stats)
        o = self._out
        geo, status = track.sample(o.stamps, self.opts.max_gap_ns)
        o.geo = list(geo)
        if set_status:
            for i, code in enumerate(status):
                o.mark(i, PoseStatus(int(code)), track.source, self.opts.max_pose_gap)
            if any(code == PoseStatus.OUTSIDE_UTM for code in status):
                o.notes.append("some GPS positions are outside the UTM latitude range: latitude/longitude only")


class _Rows:
    """The per-frame arrays a PoseSampler fills."""

    def __init__(self, records: tuple[ImageRecord, ...]) -> None:
        n = len(records)
        self.stamps = np.array([r.stamp_ns for r in records], np.int64)
        self.pos = np.full((n, 3), np.nan)
        self.rot = np.full((n, 4), np.nan)
        self.frame_ids = [""] * n
        self.geo: list[GeoPosition | None] = [None] * n
        self.status = [PoseStatus.OK] * n
        self.reasons: list[str | None] = [None] * n
        self.notes: list[str] = []

    def mark(self, i: int, code: PoseStatus, source: str, max_gap_s: float | None) -> bool:
        """Record frame i's status and reason; True when it is OK."""
        self.status[i], self.reasons[i] = code, code.reason(source, max_gap_s)
        return code is PoseStatus.OK

