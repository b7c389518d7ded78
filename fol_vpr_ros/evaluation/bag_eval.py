"""`fol-vpr evaluate-bag`: replay a bag through the node core and score it against the bag's poses.

Two modes:

* **localize** (``map_path``): every frame of the query bag is matched against a prebuilt map.
  Ground truth: the query's position (bag poses or GPS/UTM, interpolated to the image stamp) against
  the map keyframes' poses or UTM. Recall@N per distance threshold (and optional heading limit),
  the node's accepted matches, and a precision-recall curve over the acceptance score.
* **loop_closure**: one run against itself with the node's exclusion window; a precision-recall
  curve over the best candidate's score, its AUC and the recall at 100 % precision (see
  ``loop_metrics``), plus the node's own decisions (after ``min_rerank_score`` and consistency).

Frames come from a ``FrameRunner``: ``OfflineRunner`` hands every usable frame to
``NodeCore.process_now`` in stamp order (no drops; the keyframe gate still applies unless
``every_frame``). The bag's poses are also fed to the core as odometry (keyframe gating by distance,
keyframe poses, markers) unless ``feed_odometry`` is off. ``through_node=True`` uses ``RclpyReplayRunner``
(``ros.replay``): the deployed path, the rclpy node in-process fed over ROS 2 topics at bag rate times
``rate_factor``, results read back from its topics and matched by stamp; frames the node cannot keep up
with are ``dropped`` and counted; the node's own counters go into the summary (``config.node``).
Other runners can be plugged in through ``runner_factory``.

Ground-truth frame (``gt_frame``): ``utm`` compares UTM easting/northing (2-D) of GPS fixes,
``pose`` compares 3-D positions of the pose source (the map's keyframe poses and the query bag's
poses must then be in the same frame, e.g. both in a shared ``map`` frame); ``auto`` takes UTM when
every map keyframe and some query frames have it, else poses (loop closure: poses, or UTM when the
pose source is GPS). The heading limit compares full rotation angles of the pose orientations (for
planar motion, the heading difference); with UTM ground truth it is ignored (no orientation).
Query frames without ground truth (outside the pose span, across gaps) are counted and not scored.
Recall denominators are the processed frames with ground truth; queries without any positive count
as misses.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import ConfigError, FolVprError, MapError
from ..mapping import VprMap
from ..node.core import NodeCore
from ..node.frames import STAGES, FrameOutput
from ..node.gating import OdomPose
from ..node.params import NodeParams, load_params
from ..ros.results_bag import LOOP_TOPIC, MARKERS_TOPIC, POSE_TOPIC, RESULT_TOPIC, ResultsBagWriter
from ..sources.bag import (
    REASON_DUPLICATE,
    BagError,
    BagImageSource,
    ImageScan,
)
from ..sources.bag_ground_truth import GT_FRAMES, BagGroundTruth, GroundTruthOptions, read_ground_truth
from ..sources.image_decode import CompressedPayload, ImagePayload
from .loop_metrics import PrCurve, angle_within, loop_positives, pairwise_distances, precision_recall_curve
from .metrics import TimingStats, recall_at_n

__all__ = [
    "DEFAULT_RECALL_NS",
    "DEFAULT_THRESHOLDS_M",
    "GT_FRAMES",
    "BagEvalConfig",
    "BagEvalResult",
    "BagGroundTruth",
    "ExampleSpec",
    "FrameCounts",
    "FrameEval",
    "FrameRunner",
    "GroundTruthOptions",
    "ImageRef",
    "OfflineRunner",
    "RealtimeStats",
    "ReplayFrame",
    "RunnerFrame",
    "ThroughNodeNotAvailable",
    "eval_params",
    "evaluate_bag",
    "read_ground_truth",
    "replay_frames",
]

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_THRESHOLDS_M: tuple[float, ...] = (5.0, 10.0, 25.0)
DEFAULT_RECALL_NS: tuple[int, ...] = (1, 5, 10, 25)
STATUSES = ("processed", "skipped", "failed", "dropped")


class ThroughNodeNotAvailable(FolVprError, NotImplementedError):
    """Replay through the node (``--through-node``) needs rclpy and the colcon-built ``fol_vpr_ros.msg``."""


# ---------------------------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class BagEvalConfig:
    """Scoring: distance thresholds (m), heading limit (deg), recall N values, and replay switches."""

    thresholds_m: tuple[float, ...] = DEFAULT_THRESHOLDS_M
    heading_limit_deg: float | None = None
    recall_ns: tuple[int, ...] = DEFAULT_RECALL_NS
    every_frame: bool = False  # switch the node's keyframe gate off (every usable frame is queried)
    feed_odometry: bool = True  # hand the bag's poses to the core as odometry
    examples: int = 3  # correct and wrong example matches drawn (0 = none)

    def __post_init__(self) -> None:
        th = tuple(sorted({float(t) for t in self.thresholds_m}))
        if not th or any(not math.isfinite(t) or t <= 0 for t in th):
            raise ConfigError(f"distance thresholds must be positive metres, got {list(self.thresholds_m)}")
        object.__setattr__(self, "thresholds_m", th)
        ns = tuple(sorted({int(n) for n in self.recall_ns}))
        if not ns or ns[0] < 1:
            raise ConfigError(f"recall N values must be >= 1, got {list(self.recall_ns)}")
        object.__setattr__(self, "recall_ns", ns)
        h = self.heading_limit_deg
        if h is not None and not (math.isfinite(h) and 0 < h <= 180):
            raise ConfigError(f"heading limit must be in (0, 180] degrees, got {h}")
        if self.examples < 0:
            raise ConfigError(f"examples must be >= 0, got {self.examples}")

    @property
    def primary_threshold_m(self) -> float:
        """The threshold used to colour the trajectory and pick examples (the largest)."""
        return self.thresholds_m[-1]


def eval_params(mode: str, weights: str, *, params_file: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None, arch: str = "auto",
                input_size: tuple[int, int] | None = None, device: str = "cpu", map_path: str = "",
                every_frame: bool = False, precision: str | None = None) -> NodeParams:
    """NodeParams for a replay: the parameter file (default: the node's defaults), then ``overrides``
    (dotted names, ROS typing), then model, mode and map from the arguments. A ``top_k`` override
    without ``rerank_k`` clips the file's ``rerank_k`` to it."""
    if mode not in ("localize", "loop_closure"):
        raise ConfigError(f"mode must be localize or loop_closure, got {mode!r}")
    forced: dict[str, Any] = {"weights": str(weights), "arch": arch, "device": device, "mode": mode,
                              "map_path": str(map_path or "")}
    if precision is not None:
        forced["precision"] = str(getattr(precision, "value", precision))
    given = (overrides or {}).get("input_size")
    if input_size is not None:
        size = [int(input_size[0]), int(input_size[1])]
        if given is not None and list(given) != size:
            raise ConfigError(f"-p input_size={list(given)} conflicts with --resize {size[0]} {size[1]} (or the "
                              "map's input size); give one of them")
        forced["input_size"] = size
    if every_frame:
        forced.update({"keyframe.min_interval_sec": 0.0, "keyframe.min_distance_m": 0.0,
                       "keyframe.min_angle_deg": 0.0})
    if mode == "loop_closure":
        forced["loop_closure.save_on_shutdown"] = False
        forced["loop_closure.save_period_sec"] = 0.0
    merged = {**dict(overrides or {}), **forced}
    if "top_k" in merged and "rerank_k" not in merged and isinstance(merged["top_k"], int):
        base = load_params(params_file)
        if base.rerank_k > merged["top_k"]:
            merged["rerank_k"] = merged["top_k"]
    return load_params(params_file, overrides=merged)


# ---------------------------------------------------------------------------------------------- replay
@dataclass(frozen=True, eq=False)
class ReplayFrame:
    """One usable frame of the bag, in stamp order, ready for the node."""

    index: int  # position among the usable frames (stamp order)
    stamp_ns: int
    bag_ns: int
    frame_id: str
    payload: ImagePayload | CompressedPayload | None  # None once used (evaluate_bag keeps no pixels)
    odom: OdomPose | None = None


@dataclass(frozen=True, eq=False)
class RunnerFrame:
    """What a runner did with one frame: processed, skipped (keyframe gate), failed or dropped."""

    frame: ReplayFrame
    status: str
    output: FrameOutput | None = None
    messages: tuple[tuple[str, Any], ...] = ()  # through the node: (role, message) as published, result last


class FrameRunner(Protocol):
    """Turns replayed frames into node outputs (offline core, or the rclpy node at bag rate)."""

    name: str

    def run(self, frames: Iterable[ReplayFrame]) -> Iterator[RunnerFrame]:
        """One RunnerFrame per input frame, in order."""
        ...


class OfflineRunner:
    """Every frame through ``NodeCore.process_now`` (synchronous, nothing dropped)."""

    name = "offline"

    def __init__(self, core: NodeCore, feed_odometry: bool = True) -> None:
        self.core = core
        self.feed_odometry = feed_odometry

    def run(self, frames: Iterable[ReplayFrame]) -> Iterator[RunnerFrame]:
        for f in frames:
            if self.feed_odometry and f.odom is not None:
                self.core.submit_odometry(f.odom)
            out = self.core.process_now(f.payload)
            status = "failed" if out.error_kind is not None else "processed" if out.is_keyframe else "skipped"
            yield RunnerFrame(f, status, out)


RunnerFactory = Callable[[NodeParams, Any, "VprMap | None"], FrameRunner]
_RECEIVED_TOPICS = {"result": RESULT_TOPIC, "loop_closure": LOOP_TOPIC, "pose": POSE_TOPIC, "markers": MARKERS_TOPIC}


class _ReplayResultsWriter(ResultsBagWriter):
    """ResultsBagWriter that also takes the messages a node published, as received."""

    def add_run(self, r: RunnerFrame) -> None:
        """The frame's image and its outputs (the received messages when there are any)."""
        f = r.frame
        if not r.messages:
            self.add_frame(f.stamp_ns, f.frame_id, f.payload, r.output)
            return
        self.add_frame(f.stamp_ns, f.frame_id, f.payload, None)  # the image only
        for role, msg in r.messages:
            topic = _RECEIVED_TOPICS.get(role)
            if topic in self._conns and msg is not None:
                self._write(topic, msg, f.stamp_ns)


def _payload(msgtype: str, msg: Any, stamp_ns: int) -> ImagePayload | CompressedPayload:
    frame_id = str(msg.header.frame_id)
    if msgtype == "sensor_msgs/msg/CompressedImage":
        return CompressedPayload(stamp_ns, frame_id, str(msg.format), msg.data)
    return ImagePayload(stamp_ns, frame_id, str(msg.encoding), int(msg.height), int(msg.width), int(msg.step),
                        bool(msg.is_bigendian), msg.data)


def replay_frames(source: BagImageSource, scan: ImageScan, gt: BagGroundTruth | None = None) -> Iterator[ReplayFrame]:
    """The scan's usable frames in stamp order (one pass over the bag; out-of-order frames are buffered),
    with the ground-truth pose as odometry where known."""
    for nxt, (rec, msg) in enumerate(source.ordered_messages(scan.records)):
        odom = None
        if gt is not None and np.all(np.isfinite(gt.positions[nxt])):
            q = gt.orientations[nxt]
            odom = OdomPose(rec.stamp_ns, tuple(gt.positions[nxt]),
                            tuple(q) if np.all(np.isfinite(q)) else (0.0, 0.0, 0.0, 1.0), gt.frame_id or "odom")
        yield ReplayFrame(nxt, rec.stamp_ns, rec.bag_ns, rec.frame_id, _payload(msg.msgtype, msg.msg, rec.stamp_ns),
                          odom)


# ---------------------------------------------------------------------------------------------- results
@dataclass(frozen=True)
class FrameCounts:
    """Frames of the image topic: read, skipped by the source (reason -> n), replayed, and what the runner did."""

    on_topic: int
    usable: int
    skipped_by_source: Mapping[str, int]
    out_of_order: int
    zero_stamps: int
    duplicate_stamps: int
    replayed: int
    processed: int
    skipped_by_gate: int
    failed: Mapping[str, int]
    dropped: int
    without_ground_truth: int
    evaluated: int

    def to_dict(self) -> dict[str, object]:
        return {"on_topic": self.on_topic, "usable": self.usable, "skipped_by_source": dict(self.skipped_by_source),
                "out_of_order_stamps": self.out_of_order, "zero_stamps": self.zero_stamps,
                "duplicate_stamps": self.duplicate_stamps, "replayed": self.replayed, "processed": self.processed,
                "skipped_by_keyframe_gate": self.skipped_by_gate, "failed": sum(self.failed.values()),
                "failed_by_kind": dict(self.failed), "dropped": self.dropped,
                "without_ground_truth": self.without_ground_truth, "evaluated": self.evaluated}


@dataclass(frozen=True)
class RealtimeStats:
    """Bag duration and camera rate vs processing; ``realtime_factor`` > 1 is faster than the camera."""

    bag_duration_s: float
    camera_rate_hz: float
    processing_s: float  # sum of the node's per-frame total latency
    wall_s: float  # replay wall time (bag reading, processing, result writing)
    realtime_factor: float  # bag_duration_s / processing_s
    processing_rate_hz: float  # processed frames / processing_s
    frames_over_budget: int  # processed frames slower than the camera period

    def to_dict(self) -> dict[str, float | int | None]:
        def clean(x: float) -> float | None:
            return round(float(x), 4) if math.isfinite(x) else None

        return {"bag_duration_s": clean(self.bag_duration_s), "camera_rate_hz": clean(self.camera_rate_hz),
                "processing_s": clean(self.processing_s), "wall_s": clean(self.wall_s),
                "realtime_factor": clean(self.realtime_factor), "processing_rate_hz": clean(self.processing_rate_hz),
                "frames_over_budget": self.frames_over_budget}


@dataclass(frozen=True)
class FrameEval:
    """One replayed frame as scored (``outcome`` at the primary threshold: correct, wrong, no_match,
    no_ground_truth, skipped, failed or dropped)."""

    index: int
    stamp_ns: int
    status: str
    outcome: str
    position: tuple[float, float, float] | None
    best_id: int | None
    best_score: float | None
    accepted: bool
    best_distance_m: float | None
    best_position: tuple[float, float, float] | None
    total_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class ImageRef:
    """Where an image can be read back: a bag topic at a stamp, or a file."""

    bag: Path | None = None
    topic: str | None = None
    stamp_ns: int | None = None
    file: Path | None = None


@dataclass(frozen=True)
class ExampleSpec:
    """A query and its top candidates for the example montage (``correct``: the best candidate)."""

    query: ImageRef
    candidates: tuple[ImageRef | None, ...]
    scores: tuple[float, ...]
    candidate_correct: tuple[bool, ...]
    correct: bool
    title: str


@dataclass(frozen=True)
class BagEvalResult:
    """Everything summary.json and report.md say about one bag evaluation."""

    mode: str
    bag: Path
    image_topic: str
    map_path: Path | None
    out: Path
    runner: str
    ground_truth: str  # e.g. 'odometry (/odom), compared in pose frame odom'
    gt_frame: str  # pose or utm
    thresholds_m: tuple[float, ...]
    heading_limit_deg: float | None
    recall: Mapping[float, Mapping[int, float]]  # localize: threshold -> N -> percent
    queries_without_positives: Mapping[float, int]
    pr: Mapping[float, PrCurve]  # threshold -> curve over the acceptance score
    score_kind: str  # rerank_score or global_similarity
    accepted: Mapping[float, Mapping[str, int | float | None]]  # the node's decisions per threshold
    latency_ms: Mapping[str, TimingStats]
    frames: FrameCounts
    realtime: RealtimeStats
    map_size: int
    synthetic: bool
    weights: str
    input_size: tuple[int, int]
    notes: tuple[str, ...] = ()
    per_frame: tuple[FrameEval, ...] = ()
    map_positions: np.ndarray | None = field(default=None, repr=False)  # [M, 3] map keyframes (localize)
    examples: tuple[ExampleSpec, ...] = ()
    config: Mapping[str, object] = field(default_factory=dict)
    summary_path: Path | None = None
    report_path: Path | None = None
    results_bag: Path | None = None
    results_counts: Mapping[str, int] = field(default_factory=dict)

    def table(self) -> str:
        """A short plain-text summary for the terminal."""
        f, rt = self.frames, self.realtime
        lines = [f"mode {self.mode}, runner {self.runner}, ground truth: {self.ground_truth}",
                 f"frames: {f.on_topic} on the topic, {f.usable} usable, {f.processed} processed, "
                 f"{f.skipped_by_gate} skipped by the keyframe gate, {sum(f.failed.values())} failed, "
                 f"{f.dropped} dropped, {f.without_ground_truth} without ground truth, {f.evaluated} scored"]
        if self.recall:
            ns = sorted({n for r in self.recall.values() for n in r})
            lines.append(f"{'threshold':>10s} " + " ".join(f"{'R@' + str(n):>7s}" for n in ns)
                         + f" {'PR AUC':>7s} {'R@P100':>7s}")
            for t in self.thresholds_m:
                pr = self.pr.get(t)
                lines.append(f"{t:>8g} m " + " ".join(f"{self.recall[t].get(n, math.nan):7.1f}" for n in ns)
                             + f" {_pct(pr.auc if pr else math.nan):>7s} "
                             f"{_pct(pr.recall_at_full_precision if pr else math.nan):>7s}")
        else:
            lines.append(f"{'threshold':>10s} {'positives':>9s} {'loops':>6s} {'correct':>7s} {'PR AUC':>7s} "
                         f"{'R@P100':>7s}")
            for t in self.thresholds_m:
                pr, acc = self.pr[t], self.accepted.get(t, {})
                lines.append(f"{t:>8g} m {pr.num_positives:9d} {acc.get('accepted', 0):6d} "
                             f"{acc.get('correct', 0):7d} {_pct(pr.auc):>7s} {_pct(pr.recall_at_full_precision):>7s}")
        tot = self.latency_ms.get("total")
        if tot is not None and tot.count:
            lines.append(f"latency total: mean {tot.mean:.0f} ms, median {tot.median:.0f} ms, p95 {tot.p95:.0f} ms; "
                         f"camera {rt.camera_rate_hz:.2f} Hz, {rt.realtime_factor:.2f}x real time")
        lines += [f"note: {n}" for n in self.notes]
        if self.synthetic:
            lines.append("WARNING: SYNTHETIC weights: accuracy numbers are meaningless")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        if self.results_bag:
            lines.append(f"results bag: {self.results_bag}")
        return "\n".join(lines)


def _pct(x: float) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{100.0 * x:.1f}"


# ---------------------------------------------------------------------------------------------- scoring
def _score(c: Any, kind: str) -> float:
    return float(c.rerank_score) if kind == "rerank_score" else float(c.global_similarity)


def _latency(frames: Sequence[RunnerFrame]) -> dict[str, TimingStats]:
    outs = [r.output for r in frames if r.status == "processed" and r.output is not None]
    stats = {}
    for stage in STAGES:
        vals = [getattr(o.latency, stage) for o in outs]
        if stage == "rerank":
            vals = [v for v in vals if v > 0]  # 0 = re-ranking did not run
        stats[stage] = TimingStats.from_ms(vals)
    return stats


def _realtime(stamps: np.ndarray, frames: Sequence[RunnerFrame], wall_s: float) -> RealtimeStats:
    duration = float(stamps[-1] - stamps[0]) / NS if len(stamps) > 1 else 0.0
    dt = np.diff(stamps) / NS
    dt = dt[dt > 0]
    rate = 1.0 / float(np.median(dt)) if len(dt) else math.nan
    totals = np.array([r.output.latency.total for r in frames if r.output is not None], np.float64)
    processing = float(totals.sum()) / 1e3
    n_proc = sum(1 for r in frames if r.status == "processed")
    period_ms = 1e3 / rate if math.isfinite(rate) else math.inf
    over = sum(1 for r in frames if r.status == "processed" and r.output.latency.total > period_ms)
    return RealtimeStats(duration, rate, processing, wall_s,
                         duration / processing if processing > 0 else math.nan,
                         n_proc / processing if processing > 0 else math.nan, over)


def _positions_of_map(vmap: VprMap, frame: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """(ids [M], positions [M, 3], orientations [M, 4], UTM zone) of the map keyframes in the GT frame."""
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
    return ids, pos, rot, next(iter(zones), None)


def _choose_frame(requested: str, gt: BagGroundTruth, vmap: VprMap | None) -> str:
    if vmap is None:  # loop closure: the run against itself
        if requested == "utm":
            if not gt.has_utm.any():
                raise BagError("--gt-frame utm: the bag has no GPS (NavSatFix) positions")
            return "utm"
        return "pose"
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


def _recall_ns(ns: Sequence[int], k: int) -> tuple[int, ...]:
    return tuple(sorted({min(int(n), max(1, k)) for n in ns}))


def _evaluate_localize(runs: Sequence[RunnerFrame], q_pos: np.ndarray, q_rot: np.ndarray, vmap: VprMap,
                       frame: str, cfg: BagEvalConfig, params: NodeParams, score_kind: str, notes: list[str]
                       ) -> tuple[dict, dict, dict, dict, list[FrameEval], np.ndarray, Callable]:
    ids, m_pos, m_rot, _ = _positions_of_map(vmap, frame)
    row_of = {int(i): r for r, i in enumerate(ids)}
    heading = cfg.heading_limit_deg if frame == "pose" else None
    if cfg.heading_limit_deg is not None and heading is None:
        notes.append("heading limit ignored: UTM ground truth has no orientation")
    scored = [r for r in runs if r.status == "processed" and np.all(np.isfinite(q_pos[r.frame.index]))]
    qi = np.array([r.frame.index for r in scored], np.int64)
    k = min(params.top_k, len(ids))
    ns = _recall_ns(cfg.recall_ns, k)
    pred = np.full((len(scored), max(k, 1)), -1, np.int64)
    scores = np.full(len(scored), np.nan)
    for j, r in enumerate(scored):
        cands = r.output.candidates[:k]
        pred[j, : len(cands)] = [c.keyframe_id for c in cands]
        if cands:
            scores[j] = _score(cands[0], score_kind)
    with np.errstate(invalid="ignore"):
        dist = pairwise_distances(q_pos[qi], m_pos) if len(qi) else np.zeros((0, len(ids)))
    ok_heading = angle_within(q_rot[qi], m_rot, heading)
    recall: dict[float, dict[int, float]] = {}
    no_pos: dict[float, int] = {}
    prs: dict[float, PrCurve] = {}
    accepted: dict[float, dict[str, Any]] = {}
    correct_best: dict[float, np.ndarray] = {}
    for t in cfg.thresholds_m:
        near = (np.nan_to_num(dist, nan=np.inf) <= t) & ok_heading  # [Q, M]
        positives = [ids[np.flatnonzero(row)] for row in near]
        no_pos[t] = int(sum(1 for p in positives if len(p) == 0))
        recall[t] = recall_at_n(pred, positives, ns) if len(scored) else dict.fromkeys(ns, math.nan)
        best_ok = np.array([bool(pred[j, 0] >= 0 and near[j, row_of[int(pred[j, 0])]]) for j in range(len(scored))],
                           bool)
        correct_best[t] = best_ok
        prs[t] = precision_recall_curve(scores, best_ok, int(np.sum(near.any(axis=1))))
        acc = np.array([r.output.match is not None for r in scored], bool)
        acc_ok = np.array([r.output.match is not None and bool(near[j, row_of[r.output.match.keyframe_id]])
                           for j, r in enumerate(scored)], bool)
        accepted[t] = {"accepted": int(acc.sum()), "correct": int(acc_ok.sum()),
                       "precision": float(acc_ok.sum() / acc.sum()) if acc.sum() else None,
                       "recall": float(acc_ok.sum() / len(scored)) if len(scored) else None}
    def where(i: int) -> np.ndarray | None:
        return m_pos[row_of[i]] if i in row_of else None

    per_frame = _frame_rows(runs, q_pos, {j: r.frame.index for j, r in enumerate(scored)},
                            correct_best[cfg.primary_threshold_m], where, score_kind)
    return recall, no_pos, prs, accepted, per_frame, m_pos, where


def _evaluate_loops(runs: Sequence[RunnerFrame], q_pos: np.ndarray, q_rot: np.ndarray, frame: str,
                    cfg: BagEvalConfig, params: NodeParams, score_kind: str, notes: list[str]
                    ) -> tuple[dict, dict, list[FrameEval], Callable]:
    kf = [r for r in runs if r.status == "processed" and r.output.keyframe_id is not None]
    row_of = {int(r.output.keyframe_id): j for j, r in enumerate(kf)}
    idx = np.array([r.frame.index for r in kf], np.int64)
    pos = q_pos[idx] if len(idx) else np.zeros((0, 3))
    rot = q_rot[idx] if len(idx) else np.zeros((0, 4))
    stamps = np.array([r.output.stamp_ns for r in kf], np.int64)
    has_gt = np.all(np.isfinite(pos), axis=1)
    heading = cfg.heading_limit_deg if frame == "pose" else None
    if cfg.heading_limit_deg is not None and heading is None:
        notes.append("heading limit ignored: UTM ground truth has no orientation")
    ex = params.exclusion
    scores = np.full(len(kf), np.nan)
    best_row = np.full(len(kf), -1, np.int64)
    for j, r in enumerate(kf):
        if r.output.candidates:
            c = r.output.candidates[0]
            scores[j] = _score(c, score_kind)
            best_row[j] = row_of.get(int(c.keyframe_id), -1)
    prs: dict[float, PrCurve] = {}
    accepted: dict[float, dict[str, Any]] = {}
    correct_primary = np.zeros(len(kf), bool)
    for t in cfg.thresholds_m:
        positives, near = loop_positives(pos, stamps, t, ex.min_time_sec, ex.min_keyframes, rot, heading)
        ok = np.array([best_row[j] >= 0 and bool(near[j, best_row[j]]) for j in range(len(kf))], bool)
        prs[t] = precision_recall_curve(scores[has_gt], ok[has_gt], int(positives[has_gt].sum()))
        loops = np.array([r.output.loop_closure is not None for r in kf], bool) & has_gt
        accepted[t] = {"accepted": int(loops.sum()), "correct": int((loops & ok).sum()),
                       "precision": float((loops & ok).sum() / loops.sum()) if loops.sum() else None,
                       "recall": float((loops & ok).sum() / positives[has_gt].sum()) if positives[has_gt].sum()
                       else None, "positives": int(positives[has_gt].sum())}
        if t == cfg.primary_threshold_m:
            correct_primary = ok
    def where(i: int) -> np.ndarray | None:
        return pos[row_of[i]] if i in row_of else None

    scored = {j: int(idx[j]) for j in range(len(kf)) if has_gt[j]}
    per_frame = _frame_rows(runs, q_pos, scored, correct_primary, where, score_kind, loop=True)
    return prs, accepted, per_frame, where


def _image_ref(source: str) -> ImageRef | None:
    """A map keyframe's image: '<bag>#<topic>@<stamp_ns>' (maps built from bags) or an image file."""
    if "#" in source:
        path, rest = source.rsplit("#", 1)
        topic, _, stamp = rest.rpartition("@")
        if topic and stamp.isdigit():
            return ImageRef(bag=Path(path), topic=topic, stamp_ns=int(stamp))
    p = Path(source)
    return ImageRef(file=p) if source and p.is_file() else None


def _examples(runs: Sequence[RunnerFrame], rows: Sequence[FrameEval], where: Callable[[int], np.ndarray | None],
              threshold: float, n: int, source: BagImageSource, vmap: VprMap | None, score_kind: str,
              max_candidates: int = 3) -> tuple[ExampleSpec, ...]:
    """Up to ``n`` queries whose best candidate is within ``threshold`` and ``n`` whose is not, spread over the run."""
    from .metrics import pick_examples

    usable = [(r, row) for r, row in zip(runs, rows) if row.best_id is not None and row.position is not None]
    if n <= 0 or not usable:
        return ()
    flags = [row.best_distance_m is not None and row.best_distance_m <= threshold for _, row in usable]
    specs = []
    for k in pick_examples(flags, n, n):
        r, row = usable[k]
        cands = r.output.candidates[:max_candidates]
        refs: list[ImageRef | None] = []
        ok: list[bool] = []
        for c in cands:
            if vmap is not None:
                refs.append(_image_ref(vmap.keyframe(c.keyframe_id).source))
            else:
                refs.append(ImageRef(bag=source.path, topic=source.topic, stamp_ns=c.stamp_ns))
            p = where(int(c.keyframe_id))
            ok.append(bool(p is not None and np.all(np.isfinite(p))
                           and math.dist(row.position, tuple(p)) <= threshold))
        title = f"frame {row.index}, stamp {row.stamp_ns / NS:.3f} s, best {row.best_distance_m:.1f} m away" \
            if row.best_distance_m is not None else f"frame {row.index}"
        specs.append(ExampleSpec(ImageRef(bag=source.path, topic=source.topic, stamp_ns=row.stamp_ns), tuple(refs),
                                 tuple(_score(c, score_kind) for c in cands), tuple(ok), flags[k], title))
    return tuple(specs)


def _frame_rows(runs: Sequence[RunnerFrame], q_pos: np.ndarray, scored: Mapping[int, int], best_ok: np.ndarray,
                where: Callable[[int], np.ndarray | None], score_kind: str, loop: bool = False) -> list[FrameEval]:
    """Per-frame rows; ``scored`` maps row j of ``best_ok`` to the frame index."""
    ok_of = {fi: bool(best_ok[j]) for j, fi in scored.items()}
    rows = []
    for r in runs:
        i, out = r.frame.index, r.output
        p = q_pos[i]
        position = tuple(float(v) for v in p) if np.all(np.isfinite(p)) else None
        best = out.candidates[0] if out is not None and out.candidates else None
        accepted = out is not None and (out.loop_closure is not None if loop else out.match is not None)
        bpos = where(int(best.keyframe_id)) if best is not None else None
        bpos_t = tuple(float(v) for v in bpos) if bpos is not None and np.all(np.isfinite(bpos)) else None
        dist = float(math.dist(position, bpos_t)) if position and bpos_t else None
        if r.status != "processed":
            outcome = r.status
        elif i not in ok_of:
            outcome = "no_ground_truth"
        elif not accepted:
            outcome = "no_match"
        else:
            outcome = "correct" if ok_of[i] else "wrong"
        rows.append(FrameEval(i, r.frame.stamp_ns, r.status, outcome, position,
                              int(best.keyframe_id) if best is not None else None,
                              _score(best, score_kind) if best is not None else None, accepted, dist, bpos_t,
                              out.latency.total if out is not None and r.status == "processed" else None,
                              out.error_kind if out is not None else None))
    return rows


# ---------------------------------------------------------------------------------------------- entry point
def evaluate_bag(
    bag: str | os.PathLike,
    image_topic: str,
    out: str | os.PathLike,
    weights: str,
    *,
    map_path: str | os.PathLike | None = None,
    loop_closure: bool = False,
    gt: GroundTruthOptions | None = None,
    cfg: BagEvalConfig | None = None,
    params_file: str | os.PathLike | None = None,
    param_overrides: Mapping[str, Any] | None = None,
    params: NodeParams | None = None,
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    device: str = "cpu",
    write_results: str | os.PathLike | None = None,
    overwrite: bool = False,
    through_node: bool = False,
    rate_factor: float = 1.0,
    domain_id: int | None = None,
    runner_factory: RunnerFactory | None = None,
    describer: Any = None,
    progress: bool = True,
    precision: str | None = None,
) -> BagEvalResult:
    """Replay ``bag``'s ``image_topic`` through the node core and write a report to ``out``.

    Localize mode with ``map_path``; ``loop_closure=True`` runs the bag against itself. ``params``
    (or ``params_file`` + ``param_overrides``) configure the node; model, mode and map come from the
    arguments (``resize`` defaults to the map's input size, else 322 x 322). ``write_results``
    also writes a rosbag2 (mcap) with the images and the node's outputs. ``through_node`` replays
    through the rclpy node (``RclpyReplayRunner``) at bag rate x ``rate_factor`` on ROS domain
    ``domain_id`` (default $ROS_DOMAIN_ID, else 0). ``describer`` reuses a loaded
    Describer (tests). Returns the result with ``summary_path`` (summary.json) set.
    """
    from tqdm import tqdm

    from ..pipeline.describe import Describer, DescriberConfig
    from .bag_report import write_bag_report

    replay = None
    if through_node:
        if runner_factory is not None:
            raise ConfigError("through_node and runner_factory exclude each other")
        if not (isinstance(rate_factor, (int, float)) and math.isfinite(rate_factor) and rate_factor > 0):
            raise ConfigError(f"rate factor must be a positive number (1.0 = bag rate), got {rate_factor!r}")
        try:
            from ..ros import replay
        except ImportError as exc:
            raise ThroughNodeNotAvailable(
                f"--through-node needs ROS 2 (rclpy) and this package built with colcon ({exc}): run `make ros` "
                "and source its install/setup.bash (README, 'The ROS 2 node'), or run without --through-node "
                "for the offline replay") from exc
    if loop_closure and map_path is not None:
        raise ConfigError("--loop-closure evaluates a bag against itself; do not pass --map")
    if not loop_closure and map_path is None:
        raise ConfigError("give --map MAP (localization against a map) or --loop-closure")
    gt_opts = gt or GroundTruthOptions()
    cfg = cfg or BagEvalConfig()
    t_start = time.perf_counter()
    out = Path(out)
    mode = "loop_closure" if loop_closure else "localize"
    notes: list[str] = []

    vmap = None
    if map_path is not None:
        vmap = VprMap.open(map_path)
        if len(vmap) == 0:
            raise MapError(f"{map_path}: the map has no keyframes")
        if resize is None and param_overrides and "input_size" in param_overrides:
            size = param_overrides["input_size"]
            if list(size) != list(vmap.manifest.input_size):
                raise ConfigError(f"-p input_size={list(size)}: the map {map_path} was built at "
                                  f"{list(vmap.manifest.input_size)}; rebuild the map at that size or drop -p "
                                  "input_size")
        if resize is None:
            resize = tuple(vmap.manifest.input_size)
    if params is None:
        params = eval_params(mode, weights, params_file=params_file, overrides=param_overrides, arch=arch,
                             input_size=resize, device=device, map_path=str(map_path or ""),
                             every_frame=cfg.every_frame, precision=precision)
    elif params.mode != mode:
        raise ConfigError(f"params.mode is {params.mode!r} but this evaluation is {mode}")
    source = BagImageSource(bag, image_topic)  # BagError listing the topics when the topic is missing
    scan, truth = read_ground_truth(source, gt_opts)
    if describer is None:
        describer = Describer.from_config(DescriberConfig(params.weights, params.arch, params.input_size,
                                                          params.device, batch_size=1, backend=params.backend,
                                                          precision=params.precision))
    frame = _choose_frame(gt_opts.gt_frame, truth, vmap)
    if frame == "pose" and vmap is not None:
        map_frames = {k.pose.frame_id for k in vmap.keyframes() if k.pose is not None}
        if map_frames and map_frames != {truth.frame_id}:
            notes.append(f"map poses are in {', '.join(sorted(map_frames))}, query poses in {truth.frame_id}: "
                         "assumed to be the same frame")
    q_pos = truth.utm if frame == "utm" else truth.positions
    q_rot = np.full_like(truth.orientations, np.nan) if frame == "utm" else truth.orientations

    if runner_factory is not None:
        runner = runner_factory(params, describer, vmap)
    elif replay is not None:
        runner = replay.RclpyReplayRunner(params, describer, vmap, image_msgtype=source.msgtype,
                                          rate_factor=rate_factor, feed_odometry=cfg.feed_odometry,
                                          domain_id=domain_id)
    else:
        runner = OfflineRunner(NodeCore(params, describer, vmap), feed_odometry=cfg.feed_odometry)
    score_kind = "rerank_score" if params.rerank_k > 0 else "global_similarity"

    runs: list[RunnerFrame] = []
    t_replay = time.perf_counter()
    with contextlib.ExitStack() as stack:
        writer = (stack.enter_context(_ReplayResultsWriter(write_results, params, image_topic, source.msgtype,
                                                           overwrite=overwrite))
                  if write_results is not None else None)
        bar = stack.enter_context(tqdm(total=len(scan.records), desc="evaluate-bag", unit="frame",
                                       disable=not progress))
        for r in runner.run(replay_frames(source, scan, truth)):
            if writer is not None and r.status != "dropped":
                writer.add_run(r)
            runs.append(replace(r, frame=replace(r.frame, payload=None)))  # keep no pixels in memory
            bar.update(1)
    wall = time.perf_counter() - t_replay
    node_info = runner.summary() if callable(getattr(runner, "summary", None)) else {}
    if callable(getattr(runner, "notes", None)):
        notes += list(runner.notes())
    if not runs:
        raise BagError(f"{source.path}: no frame was replayed")

    status = Counter(r.status for r in runs)
    failed = Counter(r.output.error_kind for r in runs if r.status == "failed" and r.output is not None)
    processed = [r for r in runs if r.status == "processed"]
    has = np.all(np.isfinite(q_pos), axis=1)
    without = sum(1 for r in processed if not has[r.frame.index])
    if not processed:
        raise FolVprError(f"{source.path}: no frame was processed by the node ({dict(status)}; failures: "
                          f"{dict(failed)})")
    if without == len(processed):
        raise BagError(f"{source.path}: none of the processed frames has a ground-truth position in the {frame} "
                       "frame")
    recall: dict = {}
    no_pos: dict = {}
    m_pos = None
    if mode == "localize":
        recall, no_pos, prs, accepted, per_frame, m_pos, where = _evaluate_localize(
            runs, q_pos, q_rot, vmap, frame, cfg, params, score_kind, notes)
    else:
        prs, accepted, per_frame, where = _evaluate_loops(runs, q_pos, q_rot, frame, cfg, params, score_kind, notes)
    examples = _examples(runs, per_frame, where, cfg.primary_threshold_m, cfg.examples, source, vmap, score_kind)
    skipped_src = dict(scan.skipped)
    for reason, n in source.decode_skipped.items():
        skipped_src[f"cannot decode: {reason}"] = skipped_src.get(f"cannot decode: {reason}", 0) + n
    counts = FrameCounts(
        on_topic=scan.total, usable=len(scan.records), skipped_by_source=skipped_src, out_of_order=scan.out_of_order,
        zero_stamps=scan.stamps_from_bag_time, duplicate_stamps=int(scan.skipped.get(REASON_DUPLICATE, 0)),
        replayed=len(runs), processed=len(processed), skipped_by_gate=status["skipped"], failed=dict(failed),
        dropped=status["dropped"], without_ground_truth=without, evaluated=len(processed) - without)
    notes += list(scan.notes) + list(truth.notes)
    gt_text = f"{truth.kind} ({truth.topic})" + (f" + GPS {truth.gps_topic}" if truth.gps_topic else "")
    gt_text += f", compared in {'UTM' + (' ' + truth.utm_zone if truth.utm_zone else '') if frame == 'utm' else 'pose frame ' + truth.frame_id}"  # noqa: E501
    config = {
        "mode": mode, "bag": str(source.path), "image_topic": image_topic, "map": str(map_path) if map_path else None,
        "weights": params.weights, "arch": describer.model.cfg.arch, "input_size": list(params.input_size),
        "device": params.device, "top_k": params.top_k, "rerank_k": params.rerank_k,
        "rerank_threshold": params.rerank_threshold, "min_rerank_score": params.min_rerank_score,
        "min_global_similarity": params.min_global_similarity,
        "keyframe": {"min_interval_sec": params.keyframe.min_interval_sec,
                     "min_distance_m": params.keyframe.min_distance_m, "min_angle_deg": params.keyframe.min_angle_deg},
        "exclusion": {"min_time_sec": params.exclusion.min_time_sec,
                      "min_keyframes": params.exclusion.min_keyframes},
        "consistent_hits": params.loop_closure.consistent_hits, "every_frame": cfg.every_frame,
        "feed_odometry": cfg.feed_odometry, "pose_source": gt_opts.pose_source, "pose_topic": gt_opts.pose_topic,
        "gps_topic": gt_opts.gps_topic, "gt_frame": frame, "max_pose_gap": gt_opts.max_pose_gap,
        "score": score_kind, "primary_threshold_m": cfg.primary_threshold_m, "runner": runner.name,
        "rate_factor": rate_factor if through_node else None,
    }
    if node_info:
        config["node"] = node_info
    result = BagEvalResult(
        mode=mode, bag=source.path, image_topic=image_topic, map_path=Path(map_path) if map_path else None, out=out,
        runner=runner.name, ground_truth=gt_text, gt_frame=frame, thresholds_m=cfg.thresholds_m,
        heading_limit_deg=cfg.heading_limit_deg, recall=recall, queries_without_positives=no_pos, pr=prs,
        score_kind=score_kind, accepted=accepted, latency_ms=_latency(runs),
        frames=counts, realtime=_realtime(truth.stamps_ns, runs, wall), map_size=len(vmap) if vmap else len(processed),
        synthetic=bool(describer.synthetic), weights=params.weights, input_size=tuple(params.input_size),
        notes=tuple(dict.fromkeys(notes)), per_frame=tuple(per_frame), map_positions=m_pos, examples=examples,
        config=config,
        results_bag=Path(write_results) if write_results is not None else None,
        results_counts=dict(writer.counts) if writer is not None else {})
    summary, report = write_bag_report(result, out)
    result = replace(result, summary_path=summary, report_path=report)
    log.info("evaluate-bag done in %.1f s:\n%s", time.perf_counter() - t_start, result.table())
    return result
