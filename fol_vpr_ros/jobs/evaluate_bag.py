"""`fol-vpr evaluate-bag`: replay a bag through the node core and score it against the bag's poses.

Two modes:

* **localize** (``map_path``): every frame of the query bag is matched against a prebuilt map.
  Ground truth: the query's position (bag poses or GPS/UTM, interpolated to the image stamp) against
  the map keyframes' poses or UTM. Recall@N per distance threshold (and optional heading limit),
  the node's accepted matches, and a precision-recall curve over the acceptance score.
* **loop_closure**: one run against itself with the node's exclusion window; a precision-recall
  curve over the best candidate's score, its AUC and the recall at 100 % precision (see
  ``evaluation.loop_metrics``), plus the node's own decisions (after ``min_rerank_score`` and consistency).

Frames come from a ``FrameRunner`` (``node.runners``): ``OfflineRunner`` hands every usable frame to
``NodeCore.process_now`` in stamp order (no drops; the keyframe gate still applies unless
``every_frame``). The bag's poses are also fed to the core as odometry (keyframe gating by distance,
keyframe poses, markers) unless ``feed_odometry`` is off. ``through_node`` uses ``RclpyReplayRunner``
(``ros.replay``): the deployed path, the rclpy node in-process fed over ROS 2 topics at bag rate times
``rate_factor``, results read back from its topics and matched by stamp; frames the node cannot keep up
with are ``dropped`` and counted; the node's own counters go into the summary (``config.node``).
Other runners can be plugged in through ``runner_factory``. This job chooses and wires the runner and
the results bag writer (``ros.results_bag``); ``evaluation/`` only scores and reports.

Ground-truth frame (``gt_frame``): ``utm`` compares UTM easting/northing (2-D) of GPS fixes,
``pose`` compares 3-D positions of the pose source (the map's keyframe poses and the query bag's
poses must then be in the same frame, e.g. both in a shared ``map`` frame); ``auto`` takes UTM when
every map keyframe and some query frames have it, else poses (loop closure: poses, or UTM when the
pose source is GPS). The heading limit compares full rotation angles of the pose orientations (for
planar motion, the heading difference); with UTM ground truth it is ignored (no orientation).
Query frames without ground truth (outside the pose span, across gaps) are counted and not scored.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import ConfigError, FolVprError, MapError
from ..evaluation.bag_config import BagEvalConfig, ScoreKind
from ..evaluation.bag_examples import bag_examples
from ..evaluation.bag_results import BagEvalResult
from ..evaluation.bag_scores import BagScores, score_localize, score_loops
from ..evaluation.covariance_fit import fit_pose_covariance
from ..evaluation.frame_rows import FrameEval
from ..evaluation.gt_frame import QueryTruth, choose_gt_frame, ground_truth_text, map_frame_notes, query_truth
from ..evaluation.replay_stats import failures_by_kind, frame_counts, latency_stats, realtime_stats
from ..mapping import VprMap
from ..node.gating import OdomPose
from ..node.params import NodeParams, load_params
from ..node.pose_covariance import PoseCovarianceModel, save_covariance_model
from ..node.runners import FrameRunner, OfflineRunner, ReplayFrame, RunnerFactory, RunnerFrame, RunnerStatus
from ..progress import progress_bar
from ..sources.bag import BagError, BagImageSource, ImageScan
from ..sources.bag_ground_truth import BagGroundTruth, GroundTruthOptions, read_ground_truth
from ..sources.image_decode import payload_from_message

__all__ = ["EvaluateBagJob", "ThroughNodeNotAvailable", "eval_params", "evaluate_bag", "replay_frames"]

COVARIANCE_FILE = "pose_covariance.yaml"  # written next to report.md in localize mode

log = logging.getLogger(__name__)

MODES = ("localize", "loop_closure")
IDENTITY_QUATERNION = (0.0, 0.0, 0.0, 1.0)


class ThroughNodeNotAvailable(FolVprError, NotImplementedError):
    """Replay through the node (``--through-node``) needs rclpy and the colcon-built ``fol_vpr_ros.msg``."""


@dataclass(frozen=True)
class EvaluateBagJob:
    """One `evaluate-bag` run: the bag, the mode (``map_path`` or ``loop_closure``), ground truth, scoring,
    the node's parameters (``params``, else ``params_file`` + ``param_overrides`` with model, mode and map
    from the fields here), the results bag and the runner (offline, or ``through_node`` at ``rate_factor``
    on ROS domain ``domain_id``, default $ROS_DOMAIN_ID, else 0)."""

    bag: str | os.PathLike
    image_topic: str
    out: str | os.PathLike
    weights: str
    map_path: str | os.PathLike | None = None
    loop_closure: bool = False
    gt: GroundTruthOptions = field(default_factory=GroundTruthOptions)
    cfg: BagEvalConfig = field(default_factory=BagEvalConfig)
    params_file: str | os.PathLike | None = None
    param_overrides: Mapping[str, Any] = field(default_factory=dict)
    params: NodeParams | None = None
    arch: str = "auto"
    resize: tuple[int, int] | None = None  # default: the map's input size, else the node parameter's
    device: str = "cpu"
    precision: str | None = None
    write_results: str | os.PathLike | None = None  # also write a rosbag2 (mcap) with images and outputs
    overwrite: bool = False
    through_node: bool = False
    rate_factor: float = 1.0
    domain_id: int | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "gt", self.gt or GroundTruthOptions())
        object.__setattr__(self, "cfg", self.cfg or BagEvalConfig())
        object.__setattr__(self, "param_overrides", dict(self.param_overrides or {}))
        r = self.rate_factor
        if self.through_node and not (isinstance(r, (int, float)) and math.isfinite(r) and r > 0):
            raise ConfigError(f"rate factor must be a positive number (1.0 = bag rate), got {r!r}")
        if self.loop_closure and self.map_path is not None:
            raise ConfigError("--loop-closure evaluates a bag against itself; do not pass --map")
        if not self.loop_closure and self.map_path is None:
            raise ConfigError("give --map MAP (localization against a map) or --loop-closure")

    @property
    def mode(self) -> str:
        """localize or loop_closure."""
        return "loop_closure" if self.loop_closure else "localize"


# ---------------------------------------------------------------------------------------------- node parameters
def eval_params(mode: str, weights: str, *, params_file: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | None = None, arch: str = "auto",
                input_size: tuple[int, int] | None = None, device: str = "cpu", map_path: str = "",
                every_frame: bool = False, precision: str | None = None) -> NodeParams:
    """NodeParams for a replay: the parameter file (default: the node's defaults), then ``overrides``
    (dotted names, ROS typing), then model, mode and map from the arguments. A ``top_k`` override
    without ``rerank_k`` clips the file's ``rerank_k`` to it."""
    if mode not in MODES:
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


def _open_map(job: EvaluateBagJob) -> tuple[VprMap | None, tuple[int, int] | None]:
    """The map (localize) and the input size: ``resize``, else the map's (a different -p input_size is refused)."""
    if job.map_path is None:
        return None, job.resize
    vmap = VprMap.open(job.map_path)
    if len(vmap) == 0:
        raise MapError(f"{job.map_path}: the map has no keyframes")
    if job.resize is not None:
        return vmap, job.resize
    built = list(vmap.manifest.input_size)
    size = job.param_overrides.get("input_size")
    if size is not None and list(size) != built:
        raise ConfigError(f"-p input_size={list(size)}: the map {job.map_path} was built at {built}; rebuild the "
                          "map at that size or drop -p input_size")
    return vmap, tuple(built)


def _node_params(job: EvaluateBagJob, resize: tuple[int, int] | None) -> NodeParams:
    if job.params is None:
        overrides = dict(job.param_overrides)
        if not job.through_node:  # offline there is no camera to keep up with: every frame re-ranks alike
            overrides.setdefault("latency_budget_ms", 0.0)
        return eval_params(job.mode, job.weights, params_file=job.params_file, overrides=overrides,
                           arch=job.arch, input_size=resize, device=job.device, map_path=str(job.map_path or ""),
                           every_frame=job.cfg.every_frame, precision=job.precision)
    if job.params.mode != job.mode:
        raise ConfigError(f"params.mode is {job.params.mode!r} but this evaluation is {job.mode}")
    return job.params


def _describer(params: NodeParams) -> Any:
    from ..pipeline.describe import Describer, DescriberConfig

    return Describer.from_config(DescriberConfig(params.weights, params.arch, params.input_size, params.device,
                                                 batch_size=1, backend=params.backend, precision=params.precision))


# ---------------------------------------------------------------------------------------------- runner and replay
def _replay_module(job: EvaluateBagJob, runner_factory: RunnerFactory | None) -> ModuleType | None:
    """``ros.replay`` for a replay through the node (imported here only: it needs rclpy), else None."""
    if not job.through_node:
        return None
    if runner_factory is not None:
        raise ConfigError("through_node and runner_factory exclude each other")
    try:
        from ..ros import replay
    except ImportError as exc:
        raise ThroughNodeNotAvailable(
            f"--through-node needs ROS 2 (rclpy) and this package built with colcon ({exc}): run `make ros` "
            "and source its install/setup.bash (README, 'The ROS 2 node'), or run without --through-node "
            "for the offline replay") from exc
    return replay


def _runner(job: EvaluateBagJob, params: NodeParams, describer: Any, vmap: VprMap | None, image_msgtype: str,
            replay: ModuleType | None, runner_factory: RunnerFactory | None) -> FrameRunner:
    if runner_factory is not None:
        return runner_factory(params, describer, vmap)
    if replay is not None:
        return replay.RclpyReplayRunner(params, describer, vmap, image_msgtype=image_msgtype,
                                        rate_factor=job.rate_factor, feed_odometry=job.cfg.feed_odometry,
                                        domain_id=job.domain_id)
    from ..node.core import NodeCore

    return OfflineRunner(NodeCore(params, describer, vmap), feed_odometry=job.cfg.feed_odometry)


def replay_frames(source: BagImageSource, scan: ImageScan, gt: BagGroundTruth | None = None) -> Iterator[ReplayFrame]:
    """The scan's usable frames in stamp order (one pass over the bag; out-of-order frames are buffered),
    with the ground-truth pose as odometry where known."""
    for nxt, (rec, msg) in enumerate(source.ordered_messages(scan.records)):
        odom = None
        if gt is not None and np.all(np.isfinite(gt.positions[nxt])):
            q = gt.orientations[nxt]
            odom = OdomPose(rec.stamp_ns, tuple(gt.positions[nxt]),
                            tuple(q) if np.all(np.isfinite(q)) else IDENTITY_QUATERNION, gt.frame_id or "odom")
        camera = gt.cameras.at(rec.stamp_ns) if gt is not None and gt.cameras is not None else None
        yield ReplayFrame(nxt, rec.stamp_ns, rec.bag_ns, rec.frame_id,
                          payload_from_message(msg.msgtype, msg.msg, rec.stamp_ns), odom, camera)


@dataclass(frozen=True)
class _Replayed:
    """What the replay gave: the frames (without pixels), wall time, the runner's summary and notes."""

    runs: tuple[RunnerFrame, ...]
    wall_s: float
    node_info: Mapping[str, Any]
    notes: tuple[str, ...]
    results_counts: Mapping[str, int]


def _results_writer(job: EvaluateBagJob, params: NodeParams, image_msgtype: str) -> Any:
    from ..ros.results_bag import ResultsBagWriter

    return ResultsBagWriter(job.write_results, params, job.image_topic, image_msgtype, overwrite=job.overwrite)


def _replay(job: EvaluateBagJob, params: NodeParams, source: BagImageSource, scan: ImageScan,
            truth: BagGroundTruth, runner: FrameRunner) -> _Replayed:
    """Run the frames through ``runner`` (and into the results bag); no pixels are kept in memory."""
    runs: list[RunnerFrame] = []
    writer = _results_writer(job, params, source.msgtype) if job.write_results is not None else None
    t0 = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if writer is not None:
            stack.enter_context(writer)
        bar = stack.enter_context(progress_bar(total=len(scan.records), desc="evaluate-bag",
                                                    unit="frame", enabled=job.progress))
        for r in runner.run(replay_frames(source, scan, truth)):
            if writer is not None:
                writer.add_run(r)
            runs.append(replace(r, frame=replace(r.frame, payload=None)))
            bar.update(1)
    wall = time.perf_counter() - t0
    if not runs:
        raise BagError(f"{source.path}: no frame was replayed")
    node_info = runner.summary() if callable(getattr(runner, "summary", None)) else {}
    notes = tuple(runner.notes()) if callable(getattr(runner, "notes", None)) else ()
    return _Replayed(tuple(runs), wall, node_info, notes, dict(writer.counts) if writer is not None else {})


def _check_scorable(source: BagImageSource, runs: Sequence[RunnerFrame], truth: QueryTruth) -> None:
    """An error when no frame was processed, or none of the processed frames has ground truth."""
    processed = [r for r in runs if r.status == RunnerStatus.PROCESSED]
    if not processed:
        status = {str(s): n for s, n in Counter(r.status for r in runs).items()}
        raise FolVprError(f"{source.path}: no frame was processed by the node ({status}; failures: "
                          f"{dict(failures_by_kind(runs))})")
    has = truth.has_position()
    if not any(has[r.frame.index] for r in processed):
        raise BagError(f"{source.path}: none of the processed frames has a ground-truth position in the "
                       f"{truth.frame} frame")


# ---------------------------------------------------------------------------------------------- result
def _config(job: EvaluateBagJob, params: NodeParams, arch: str, frame: str, score_kind: ScoreKind, runner: str,
            node_info: Mapping[str, Any], source: BagImageSource) -> dict[str, Any]:
    """The summary.json ``config`` entry: what the run used."""
    gt, cfg = job.gt, job.cfg
    config = {
        "mode": job.mode, "bag": str(source.path), "image_topic": job.image_topic,
        "map": str(job.map_path) if job.map_path else None, "weights": params.weights, "arch": arch,
        "input_size": list(params.input_size), "device": params.device, "top_k": params.top_k,
        "rerank_k": params.rerank_k, "rerank_threshold": params.rerank_threshold,
        "min_rerank_score": params.min_rerank_score, "min_global_similarity": params.min_global_similarity,
        "keyframe": {"min_interval_sec": params.keyframe.min_interval_sec,
                     "min_distance_m": params.keyframe.min_distance_m, "min_angle_deg": params.keyframe.min_angle_deg},
        "exclusion": {"min_time_sec": params.exclusion.min_time_sec,
                      "min_keyframes": params.exclusion.min_keyframes},
        "consistent_hits": params.loop_closure.consistent_hits, "every_frame": cfg.every_frame,
        "feed_odometry": cfg.feed_odometry, "pose_source": gt.pose_source, "pose_topic": gt.pose_topic,
        "gps_topic": gt.gps_topic, "gt_frame": frame, "max_pose_gap": gt.max_pose_gap,
        "score": score_kind, "primary_threshold_m": cfg.primary_threshold_m, "runner": runner,
        "rate_factor": job.rate_factor if job.through_node else None,
    }
    if node_info:
        config["node"] = dict(node_info)
    return config


def _score(job: EvaluateBagJob, runs: Sequence[RunnerFrame], truth: QueryTruth, vmap: VprMap | None,
           params: NodeParams, score_kind: ScoreKind) -> BagScores:
    if vmap is not None:
        return score_localize(runs, truth, vmap, job.cfg, params.top_k, score_kind)
    return score_loops(runs, truth, job.cfg, params.exclusion, score_kind)


def _fit_covariance(job: EvaluateBagJob, rows: Sequence[FrameEval], radius_m: float,
                    synthetic: bool) -> PoseCovarianceModel | None:
    """Localize mode: the pose covariance model fitted on each scored frame's best match (None otherwise)."""
    pairs = [(r.best_score, r.best_distance_m) for r in rows
             if r.best_score is not None and r.best_distance_m is not None and r.best_score >= 0]
    if job.mode != "localize" or not pairs:
        return None
    scores, errors = zip(*pairs)
    return fit_pose_covariance(scores, errors, radius_m, source=f"evaluate-bag {job.bag}", synthetic=synthetic)


def evaluate_bag(job: EvaluateBagJob, *, describer: Any = None,
                 runner_factory: RunnerFactory | None = None) -> BagEvalResult:
    """Replay the job's bag through the node and write the report to ``job.out``; ``describer`` reuses a
    loaded Describer, ``runner_factory`` plugs in another FrameRunner. Returns the result with
    ``summary_path`` (summary.json) and ``report_path`` set."""
    from ..evaluation.bag_report import write_bag_report

    t_start = time.perf_counter()
    replay = _replay_module(job, runner_factory)
    vmap, resize = _open_map(job)
    params = _node_params(job, resize)
    source = BagImageSource(job.bag, job.image_topic)  # BagError listing the topics when the topic is missing
    scan, gt = read_ground_truth(source, job.gt)
    describer = _describer(params) if describer is None else describer
    frame = choose_gt_frame(job.gt.gt_frame, gt, vmap)
    truth = query_truth(frame, gt)
    runner = _runner(job, params, describer, vmap, source.msgtype, replay, runner_factory)
    done = _replay(job, params, source, scan, gt, runner)
    _check_scorable(source, done.runs, truth)
    score_kind = ScoreKind.for_rerank_k(params.rerank_k)
    scores = _score(job, done.runs, truth, vmap, params, score_kind)
    cfg = job.cfg
    examples = bag_examples(done.runs, scores.per_frame, scores.keyframe_positions, cfg.primary_threshold_m,
                            cfg.examples, source.path, source.topic, vmap, score_kind)
    counts = frame_counts(scan, source.decode_skipped, done.runs, truth.has_position())
    covariance = _fit_covariance(job, scores.per_frame, cfg.primary_threshold_m, bool(describer.synthetic))
    cov_note = () if covariance is None else (
        f"pose covariance fitted on {covariance.samples_true} true and {covariance.samples_false} false matches "
        f"(within {cfg.primary_threshold_m:g} m): {COVARIANCE_FILE} here, for the node parameter "
        "pose.covariance_file",)
    notes = (*map_frame_notes(frame, gt, vmap), *done.notes, *scores.notes, *scan.notes, *gt.notes, *cov_note)
    result = BagEvalResult(
        mode=job.mode, bag=source.path, image_topic=job.image_topic, map_path=Path(job.map_path) if job.map_path
        else None, out=Path(job.out), runner=runner.name, ground_truth=ground_truth_text(gt, frame), gt_frame=frame,
        thresholds_m=cfg.thresholds_m, heading_limit_deg=cfg.heading_limit_deg, recall=scores.recall,
        queries_without_positives=scores.queries_without_positives, pr=scores.pr, score_kind=score_kind,
        accepted=scores.accepted, latency_ms=latency_stats(done.runs), frames=counts,
        realtime=realtime_stats(gt.stamps_ns, done.runs, done.wall_s),
        map_size=len(vmap) if vmap else counts.processed, synthetic=bool(describer.synthetic),
        weights=params.weights, input_size=tuple(params.input_size), notes=tuple(dict.fromkeys(notes)),
        per_frame=scores.per_frame, map_positions=scores.map_positions, examples=examples,
        config=_config(job, params, describer.model.cfg.arch, frame, score_kind, runner.name, done.node_info, source),
        results_bag=Path(job.write_results) if job.write_results is not None else None,
        results_counts=done.results_counts, pr_verified=scores.pr_verified)
    summary, report = write_bag_report(result, job.out)
    if covariance is not None:
        save_covariance_model(covariance, Path(job.out) / COVARIANCE_FILE)
    result = replace(result, summary_path=summary, report_path=report)
    log.debug("evaluate-bag done in %.1f s:\n%s", time.perf_counter() - t_start, result.table())  # callers print it
    return result
