"""``NodeCore``: everything the fol_vpr node does, without ROS; adapters only move messages in and out.

Threading: middleware callbacks call ``submit_image`` / ``submit_odometry`` (never blocking: one
latest-frame slot, a newer frame replaces the pending one and counts as dropped). One worker thread
(``start``/``stop``) takes the pending frame, gates, decodes, describes, queries, decides and hands a
``FrameOutput`` to the ``on_output`` callback (only for processed keyframes). ``process_now`` does
the same synchronously (tests, offline replay). All stamps are image stamps, never the wall clock.

Pose covariance (localize mode, accepted match with a pose): with the match's rerank score ``s``,
``sigma_p = clip(pose.sigma_base_m / sqrt(max(s, 1)), pose.sigma_min_m, pose.sigma_max_m)`` and
``sigma_r = clip(pose.orientation_sigma_base_rad / sqrt(max(s, 1)), 0.01, pi)``; without re-ranking
``sigma_p = pose.sigma_max_m``, ``sigma_r = pi``. The 6x6 covariance (x y z roll pitch yaw,
row-major) is diag(sigma_p^2 x3, sigma_r^2 x3).

Saving (loop_closure mode): ``save_map`` on demand, ``maybe_save`` every
``loop_closure.save_period_sec`` (called by the worker after each frame), and ``shutdown``. A failed
save keeps the map in memory, says why and is retried next period; ``shutdown`` returns a
``ShutdownReport`` whose ``exit_code`` is non-zero when the session's map is not on disk. SIGINT and
SIGTERM are deferred while a save runs on the main thread (``fol_vpr_ros.signals``).
"""

from __future__ import annotations

import collections
import enum
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigError, FolVprError, MapError
from ..mapping import Keyframe, Pose, VprMap
from ..mapping.store import map_path_problem
from ..pipeline.describe import Describer, DescriberConfig, map_for_describer
from ..pipeline.localizer import Candidate, Localizer, LocalizerConfig, QueryResult
from ..signals import deferred_signals
from ..sources.image_decode import BAD_PAYLOAD, CompressedPayload, ImageDecodeError, ImagePayload, decode, error_kind
from .budget import BudgetConfig, BudgetState, RerankBudget
from .gating import KeyframeGate, OdomBuffer, OdomPose
from .loop_closure import (
    KeyframeRef,
    LocalizeDecision,
    LoopClosurePolicy,
    LoopDecision,
    decide_localize,
)
from .params import NodeParams

__all__ = [
    "STAGES",
    "CandidateInfo",
    "DiagnosticsSnapshot",
    "FrameObserver",
    "FrameOutput",
    "LatencyStats",
    "MarkerData",
    "NodeCore",
    "PoseEstimate",
    "SaveStatus",
    "ShutdownReport",
    "StageLatency",
    "pose_sigmas",
]

log = logging.getLogger("fol_vpr_ros.node")

STAGES = ("decode", "describe", "search", "rerank", "total")
NS_PER_S = 1_000_000_000
_LATENCY_SAMPLES = 200
_MIN_SIGMA_RAD = 0.01

Point = tuple[float, float, float]


@dataclass(frozen=True)
class StageLatency:
    """Milliseconds per stage of one frame (0 for stages that did not run)."""

    decode: float = 0.0
    describe: float = 0.0
    search: float = 0.0
    rerank: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in STAGES}


@dataclass(frozen=True)
class CandidateInfo:
    """A map keyframe proposed for the query, with its record's stamp, session and pose."""

    keyframe_id: int
    rank: int
    global_rank: int
    global_similarity: float
    rerank_score: int
    stamp_ns: int
    session_id: str | None
    frame_id: str
    pose: Pose | None


@dataclass(frozen=True)
class PoseEstimate:
    """Where the query was taken: the accepted match's map pose, stamped with the query stamp."""

    stamp_ns: int
    frame_id: str
    position: Point
    orientation: tuple[float, float, float, float]
    covariance: tuple[float, ...]  # 36 values, row-major 6x6 (x y z roll pitch yaw)
    sigma_position_m: float
    sigma_orientation_rad: float
    match_id: int


@dataclass(frozen=True)
class MarkerData:
    """Plain data for visualisation markers in ``frame_id``.

    ``map_points`` (positions of map keyframes with poses) is only set when due (first output, then
    every ``markers.map_period_sec`` of image time), None otherwise. ``match_line`` joins the query
    keyframe's odometry position and its match, when both have poses in the same frame.
    """

    frame_id: str
    map_points: tuple[Point, ...] | None
    match_point: Point | None
    match_line: tuple[Point, Point] | None


@dataclass(frozen=True)
class FrameOutput:
    """The result of one image."""

    query_id: int  # running counter over every frame handed to processing
    stamp_ns: int  # the image stamp
    frame_id: str  # the camera frame (never empty)
    mode: str
    is_keyframe: bool  # passed the gate and was described/queried (loop_closure: added to the map)
    keyframe_id: int | None  # id of this frame in the online map (loop_closure mode)
    candidates: tuple[CandidateInfo, ...]  # best first
    match: CandidateInfo | None  # the accepted candidate
    reason: str
    decision: LocalizeDecision | LoopDecision | None
    pose: PoseEstimate | None
    odom_pose: OdomPose | None
    latency: StageLatency
    markers: MarkerData | None
    map_size: int
    error_kind: str | None = None

    @property
    def accepted(self) -> bool:
        return self.match is not None

    @property
    def loop_closure(self) -> LoopDecision | None:
        """The loop-closure event, when this keyframe closed a loop."""
        d = self.decision
        return d if isinstance(d, LoopDecision) and d.accepted else None


@dataclass(frozen=True)
class LatencyStats:
    """Latency of one stage over the recent frames (ms)."""

    mean: float
    p95: float
    max: float
    count: int


@dataclass(frozen=True)
class DiagnosticsSnapshot:
    """Counters and rates of the node; ``level`` is 'ok', 'warn' or 'error' with a short ``message``."""

    mode: str
    rate_hz: float
    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_skipped: int
    frames_failed: int
    pending: int
    errors: dict[str, int]
    warnings: dict[str, int]
    latency_ms: dict[str, LatencyStats]
    map_size: int
    localized: bool
    last_stamp_ns: int | None
    last_accepted_stamp_ns: int | None
    accepted: int
    loop_closures: int
    worker_running: bool
    level: str
    message: str
    rerank_k: int = 0  # re-ranked candidates the next frame uses (rerank_k, or the budget's choice)
    latency_budget_ms: float = 0.0  # 0 = no budget
    budget_misses: int = 0  # processed frames whose total latency exceeded the budget

    def key_values(self) -> list[tuple[str, str]]:
        """Flat (key, value) strings, e.g. for diagnostic_msgs/KeyValue."""
        out = [("mode", self.mode), ("rate_hz", f"{self.rate_hz:.2f}")]
        for name in ("frames_received", "frames_processed", "frames_dropped", "frames_skipped", "frames_failed",
                     "pending", "map_size", "accepted", "loop_closures"):
            out.append((name, str(getattr(self, name))))
        out.append(("localized", str(self.localized).lower()))
        out.append(("rerank_k", str(self.rerank_k)))
        if self.latency_budget_ms > 0:
            out += [("latency_budget_ms", f"{self.latency_budget_ms:g}"), ("budget_misses", str(self.budget_misses))]
        out += [(f"error.{k}", str(v)) for k, v in sorted(self.errors.items())]
        out += [(f"warning.{k}", str(v)) for k, v in sorted(self.warnings.items())]
        for stage, st in self.latency_ms.items():
            out.append((f"latency_ms.{stage}", f"mean {st.mean:.1f} p95 {st.p95:.1f}"))
        return out


class FrameObserver(Protocol):
    """Sees every frame offered to the core and every frame the worker finished (evaluation replays)."""

    def on_submitted(self, payload: ImagePayload | CompressedPayload) -> None:
        """A frame entered the latest-frame slot (called on the middleware's thread)."""

    def on_processed(self, payload: ImagePayload | CompressedPayload, out: FrameOutput) -> None:
        """A frame was processed, skipped or failed (called on the worker's thread)."""


class SaveStatus(str, enum.Enum):
    """What became of the online map at shutdown."""

    SAVED = "saved"  # everything is on disk
    NOTHING_TO_SAVE = "nothing_to_save"  # localize mode, or no keyframes
    DISABLED = "disabled"  # save_on_shutdown is off (periodic saves, if any, are reported)
    FAILED = "failed"  # keyframes of this session are not on disk


@dataclass(frozen=True)
class ShutdownReport:
    """The outcome of ``NodeCore.shutdown``; ``exit_code`` is 1 when the session's map was lost."""

    status: SaveStatus
    path: Path | None
    keyframes: int  # in memory at shutdown
    unsaved_keyframes: int  # of these, not in the last successful save
    saves: int  # successful saves during the session (periodic, on demand, shutdown)
    ever_saved: bool
    message: str

    @property
    def ok(self) -> bool:
        return self.status is not SaveStatus.FAILED

    # Adapters written for the old ``shutdown() -> Path | None`` keep working: the report is truthy
    # when the map is saved, and prints / converts as the saved path.
    def __bool__(self) -> bool:
        return self.status is SaveStatus.SAVED and self.path is not None

    def __str__(self) -> str:
        return str(self.path) if self else self.message

    def __fspath__(self) -> str:
        if self.path is None:
            raise TypeError(f"no saved map: {self.message}")
        return str(self.path)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1


def _check_writable_target(name: str, value: str) -> None:
    """The nearest existing ancestor of a map path must be a writable directory."""
    p = Path(os.path.abspath(value)).parent
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        raise ConfigError(f"parameter {name}: {value!r} cannot be created: {p} is a file, not a directory")
    if not os.access(p, os.W_OK | os.X_OK):
        raise ConfigError(f"parameter {name}: {value!r} cannot be written: no write permission in {p}")


def pose_sigmas(rerank_score: int, params: NodeParams) -> tuple[float, float]:
    """(position sigma m, orientation sigma rad) for a match score (see module doc)."""
    p = params.pose
    if rerank_score < 0:
        return p.sigma_max_m, math.pi
    root = math.sqrt(max(rerank_score, 1))
    sp = min(max(p.sigma_base_m / root, p.sigma_min_m), p.sigma_max_m)
    sr = min(max(p.orientation_sigma_base_rad / root, _MIN_SIGMA_RAD), math.pi)
    return sp, sr


def _health(worker_died: bool, failed_recent: int, processed_recent: int, window_sec: float,
            errors: dict[str, int], not_localized: bool, localized_timeout_sec: float) -> tuple[str, str]:
    """Diagnostic level and message: error when the worker died or every recent frame failed, warn when some
    recent frames failed or localize mode lost its match, ok otherwise (older errors are still named)."""
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
    if worker_died:
        return "error", "worker thread stopped unexpectedly"
    if failed_recent and not processed_recent:
        return "error", f"every frame of the last {window_sec:g} s failed ({failed_recent}); errors: {kinds}"
    if failed_recent:
        return "warn", (f"{failed_recent} of {failed_recent + processed_recent} frames of the last {window_sec:g} s "
                        f"failed; errors: {kinds}")
    if not_localized:
        return "warn", f"not localized: no match accepted in the last {localized_timeout_sec:g} s"
    if errors:
        return "ok", f"running; earlier frames with errors: {kinds}"
    return "ok", "ok"


class NodeCore:
    """The ROS-free node: owns describer, map, localizer, keyframe gate, loop policy, odometry, counters."""

    def __init__(self, params: NodeParams, describer: Describer | None = None, vpr_map: VprMap | None = None, *,
                 on_output: Callable[[FrameOutput], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.mode = params.mode
        self._clock = clock
        self.session_id = params.loop_closure.session_id or f"run-{uuid.uuid4().hex[:12]}"
        self.describer = describer if describer is not None else self._load_describer(params)
        self.map = vpr_map if vpr_map is not None else self._load_map()
        self.describer.map_compat().check(self.map.manifest, str(self.map.path or "the given map"))
        if self.mode == "localize" and len(self.map) == 0:
            raise MapError(f"{self.map.path or 'the given map'}: map has no keyframes; nothing to localise against")
        self.localizer = Localizer(self.map, LocalizerConfig(params.top_k, params.rerank_k, params.rerank_threshold,
                                                             params.device))
        k = params.keyframe
        self.budget = (RerankBudget(BudgetConfig(params.latency_budget_ms, params.rerank_k,
                                                  min(params.min_rerank_k, params.rerank_k)))
                       if params.latency_budget_ms > 0 else None)
        self.gate = KeyframeGate(k.min_interval_sec, k.min_distance_m, k.min_angle_deg)
        self.policy = LoopClosurePolicy.from_params(params)
        o = params.odometry
        self.odometry = OdomBuffer(o.tolerance_sec, o.max_gap_sec, o.buffer_sec)
        self._on_output = on_output
        self._observers: list[FrameObserver] = []
        # slot, worker and counters (one lock; the processing lock serialises frames)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._proc_lock = threading.Lock()
        self._map_lock = threading.RLock()
        self._pending: ImagePayload | CompressedPayload | None = None
        self._in_flight = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._shut_down = False
        self._next_query_id = 0
        self._received = self._processed = self._dropped = self._skipped = self._failed = 0
        self._accepted = self._loops = 0
        self._errors: collections.Counter[str] = collections.Counter()
        self._warnings: collections.Counter[str] = collections.Counter()
        self._logged: set[str] = set()
        self._latency = {s: collections.deque(maxlen=_LATENCY_SAMPLES) for s in STAGES}
        self._done_times: collections.deque[float] = collections.deque()
        self._fail_times: collections.deque[float] = collections.deque()
        self._t_start = clock()
        self._last_stamp: int | None = None
        self._last_accepted_stamp: int | None = None
        self._points_stamp: int | None = None
        self._points_cache: tuple[int, tuple[Point, ...]] | None = None
        self._odom_frame = "odom"
        # saving (loop_closure)
        self._saves = 0
        self._saved_keyframes = 0
        self._saved_path: Path | None = None
        self._save_error: str | None = None
        self._last_save_attempt = clock()
        self._report: ShutdownReport | None = None

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _load_describer(params: NodeParams) -> Describer:
        if not params.weights:
            raise ConfigError("parameter weights is empty: set it to the FoL checkpoint (launch argument "
                              "weights:=/path/to/FoL.pth)")
        cfg = DescriberConfig(params.weights, params.arch, params.input_size, params.device, batch_size=1,
                              backend=params.backend, precision=params.precision)
        return Describer.from_config(cfg)

    def _load_map(self) -> VprMap:
        path = self.params.map_path
        verify = self.params.map_verify
        if self.mode == "localize":
            if not path:
                raise ConfigError("parameter map_path is empty: localize mode needs a map (launch argument "
                                  "map:=/path/to/map, built with `fol-vpr build-map`)")
            return VprMap.open(path, expect=self.describer.map_compat(), verify=verify)
        lc = self.params.loop_closure
        for name, value in (("map_path", path), ("loop_closure.output_map_path", lc.output_map_path)):
            if value:
                problem = map_path_problem(value)
                if problem is not None:
                    raise MapError(f"parameter {name}: {problem}")
        target = self.save_target()
        if target:
            _check_writable_target("loop_closure.output_map_path" if lc.output_map_path else "map_path", target)
        elif lc.save_on_shutdown or lc.save_period_sec > 0:
            log.warning("loop closure: the online map will not be saved (set loop_closure.output_map_path or "
                        "map_path)")
        if path and (Path(path) / "manifest.json").is_file():
            log.info("loop closure: extending the map %s", path)
            return VprMap.open(path, expect=self.describer.map_compat(), verify=verify)
        return map_for_describer(self.describer, None)

    def save_target(self) -> str:
        """Where the online map is saved ('' = nowhere): loop_closure.output_map_path, else map_path."""
        return self.params.loop_closure.output_map_path or self.params.map_path

    def set_output_callback(self, on_output: Callable[[FrameOutput], None] | None) -> None:
        """Register the adapter's callback for processed keyframes (called on the worker thread)."""
        self._on_output = on_output

    def add_observer(self, observer: FrameObserver) -> None:
        """Tell ``observer`` of every submitted and every processed frame (see ``FrameObserver``)."""
        self._observers.append(observer)

    # ------------------------------------------------------------------ input
    def submit_image(self, payload: ImagePayload | CompressedPayload) -> None:
        """Offer a frame (never blocks): it replaces any pending frame, which counts as dropped."""
        for observer in self._observers:
            observer.on_submitted(payload)
        with self._cond:
            self._received += 1
            if self._pending is not None:
                self._dropped += 1
            self._pending = payload
            self._cond.notify_all()

    def submit_odometry(self, pose: OdomPose) -> None:
        """Add an odometry pose (used for keyframe gating and keyframe poses)."""
        self.odometry.add(pose)
        self._odom_frame = pose.frame_id or self._odom_frame

    @property
    def pending(self) -> int:
        """Frames waiting in the slot (0 or 1)."""
        return int(self._pending is not None)

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        """Start the worker thread (no-op when running)."""
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="fol_vpr-worker", daemon=True)
            self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Stop the worker after its current frame; a frame left pending counts as dropped. True when stopped."""
        with self._cond:
            thread = self._thread
            self._stopping = True
            self._cond.notify_all()
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        with self._cond:
            self._thread = None
            if self._pending is not None:
                self._pending = None
                self._dropped += 1
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no frame is pending or in processing; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._pending is None and not self._in_flight, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                payload, self._pending = self._pending, None
                self._in_flight = True
            out = None
            try:
                out = self._process_serialised(payload)
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()
            if out is not None and out.is_keyframe and out.error_kind is None and self._on_output is not None:
                try:
                    self._on_output(out)
                except Exception:
                    self._count_error("output_callback_failed", "the on_output callback raised", exc_info=True)
            self.maybe_save()

    def process_now(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        """Process one frame synchronously (counts as received; no callback). Never raises for bad frames."""
        with self._cond:
            self._received += 1
        out = self._process_serialised(payload)
        self.maybe_save()
        return out

    def _process_serialised(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        with self._proc_lock:
            try:
                out = self._process(payload)
            except Exception as exc:  # a bug: count it, keep the node running
                self._count_error("internal_error", f"unexpected error: {exc}", exc_info=True)
                with self._cond:
                    self._failed += 1
                    self._fail_times.append(self._clock())
                out = self._error_output(-1, 0, self.params.frames.camera, "internal_error", str(exc), {})
        for observer in self._observers:
            observer.on_processed(payload, out)
        return out

    # ------------------------------------------------------------------ processing
    def _count_error(self, kind: str, message: str, exc_info: bool = False) -> None:
        with self._cond:
            self._errors[kind] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.warning("%s: %s (logged once per kind; see diagnostics for counts)", kind, message,
                        exc_info=exc_info)
        else:
            log.debug("%s: %s", kind, message)

    def _count_warning(self, kind: str, message: str) -> None:
        with self._cond:
            self._warnings[kind] += 1
            first = f"warning:{kind}" not in self._logged
            self._logged.add(f"warning:{kind}")
        if first:
            log.warning("%s (logged once)", message)

    def _error_output(self, qid: int, stamp: int, frame_id: str, kind: str, reason: str,
                      times: dict[str, float]) -> FrameOutput:
        return FrameOutput(qid, stamp, frame_id, self.mode, False, None, (), None, reason, None, None, None,
                           StageLatency(**times), None, len(self.map), kind)

    def _fail(self, qid: int, stamp: int, frame_id: str, exc: BaseException, stage: str,
              times: dict[str, float]) -> FrameOutput:
        kind = error_kind(exc, "" if stage == "decode" else stage)
        self._count_error(kind, str(exc))
        with self._cond:
            self._failed += 1
            self._fail_times.append(self._clock())
        return self._error_output(qid, stamp, frame_id, kind, f"{stage} failed: {exc}", times)

    def _process(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        t0 = time.perf_counter()
        qid = self._next_query_id
        self._next_query_id += 1
        frame_id = getattr(payload, "frame_id", "") or ""
        if not isinstance(frame_id, str) or not frame_id.strip():
            frame_id = self.params.frames.camera
            self._count_warning("empty_frame_id", f"image without header.frame_id: using '{frame_id}' "
                                "(parameter frames.camera)")
        stamp = getattr(payload, "stamp_ns", None)
        if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
            err = ImageDecodeError(BAD_PAYLOAD, f"image stamp_ns must be integer nanoseconds, got {stamp!r}")
            return self._fail(qid, 0, frame_id, err, "decode", {})
        stamp = int(stamp)
        if self._last_stamp is not None and stamp < self._last_stamp:
            self._count_warning("stamp_backwards", f"image stamp went backwards ({stamp} < {self._last_stamp}); "
                                "bag restarted? keyframe gate reset")
            self.policy.reset()
        self._last_stamp = stamp
        odom = self.odometry.pose_at(stamp) if len(self.odometry) else None
        if not self.gate.would_accept(stamp, odom):
            with self._cond:
                self._skipped += 1
            return FrameOutput(qid, stamp, frame_id, self.mode, False, None, (), None,
                               "skipped by the keyframe gate", None, None, odom, StageLatency(), None, len(self.map))
        times: dict[str, float] = {}
        try:
            rgb = decode(payload)
        except Exception as exc:
            return self._fail(qid, stamp, frame_id, exc, "decode", times)
        t1 = time.perf_counter()
        times["decode"] = (t1 - t0) * 1e3
        try:
            desc = self.describer.describe_arrays([rgb], names=[f"{frame_id}@{stamp}"])[0]
        except Exception as exc:
            return self._fail(qid, stamp, frame_id, exc, "describe", times)
        times["describe"] = (time.perf_counter() - t1) * 1e3
        query_pose = odom.to_pose() if odom is not None else None
        try:
            with self._map_lock:
                result, decision, kf_id = self._query_and_decide(desc, stamp, frame_id, query_pose)
                candidates = tuple(self._info(c) for c in result.candidates) if result is not None else ()
                map_size = len(self.map)
        except Exception as exc:
            return self._fail(qid, stamp, frame_id, exc, "search", times)
        self.gate.commit(stamp, odom)
        if result is not None:
            times.update({k: v for k, v in result.timing_ms.items() if k in ("search", "rerank")})
        match = None
        if decision.accepted and decision.match_id is not None:
            match = next((c for c in candidates if c.keyframe_id == decision.match_id), None)
        pose = self._pose_estimate(stamp, match) if self.mode == "localize" else None
        markers = self._markers(stamp, match, query_pose)
        times["total"] = (time.perf_counter() - t0) * 1e3
        if self.budget is not None:
            reranked = sum(1 for c in candidates if c.rerank_score >= 0)
            rerank_ms = times.get("rerank", 0.0)
            with self._cond:
                self.budget.observe(reranked, times["total"] - rerank_ms, rerank_ms)
        out = FrameOutput(qid, stamp, frame_id, self.mode, True, kf_id, candidates, match, decision.reason,
                          decision, pose, odom, StageLatency(**times), markers, map_size)
        self._record(out, times.keys())
        return out

    def _query_and_decide(self, desc, stamp: int, frame_id: str, query_pose: Pose | None
                          ) -> tuple[QueryResult | None, LocalizeDecision | LoopDecision, int | None]:
        p = self.params
        k = self.rerank_k
        if self.mode == "localize":
            result = self.localizer.query(desc, rerank_k=k)
            return result, decide_localize(result, p.min_rerank_score, p.min_global_similarity), None
        restriction = self.policy.restriction(self.map.keyframes(), stamp, self.session_id)
        result = None
        if restriction.searchable:
            result = self.localizer.query(desc, max_id=restriction.max_id,
                                          exclude_ids=restriction.exclude_ids or None, rerank_k=k)
        kf = Keyframe(stamp_ns=stamp, frame_id=frame_id, source=p.image_topic, pose=query_pose,
                      session_id=self.session_id)
        kf_id = self.map.add_one(kf, desc.global_desc, desc.local, desc.local_rc)
        decision = self.policy.decide(KeyframeRef(kf_id, stamp), result, lambda i: self.map.keyframe(i).stamp_ns)
        match_pose = self.map.keyframe(decision.match_id).pose if decision.match_id is not None else None
        return result, replace(decision, query_pose=query_pose, match_pose=match_pose), kf_id

    @property
    def rerank_k(self) -> int:
        """Candidates the next frame re-ranks: the budget's choice, else parameter rerank_k."""
        return self.budget.rerank_k if self.budget is not None else self.params.rerank_k

    def budget_state(self) -> BudgetState | None:
        """The latency-budget controller's state (None without latency_budget_ms)."""
        with self._cond:
            return self.budget.state() if self.budget is not None else None

    def _info(self, c: Candidate) -> CandidateInfo:
        kf = self.map.keyframe(c.keyframe_id)
        return CandidateInfo(c.keyframe_id, c.rank, c.global_rank, c.global_similarity, c.rerank_score,
                             kf.stamp_ns, kf.session_id, kf.frame_id, kf.pose)

    def _pose_estimate(self, stamp: int, match: CandidateInfo | None) -> PoseEstimate | None:
        if match is None or match.pose is None:
            return None
        sp, sr = pose_sigmas(match.rerank_score, self.params)
        cov = [0.0] * 36
        for i, s in enumerate((sp, sp, sp, sr, sr, sr)):
            cov[i * 7] = s * s
        frame = match.pose.frame_id or self.params.frames.map  # the keyframe pose's frame (odom for bag maps)
        return PoseEstimate(stamp, frame, match.pose.position, match.pose.orientation, tuple(cov), sp, sr,
                            match.keyframe_id)

    def _marker_frame(self) -> str:
        return self.params.frames.map if self.mode == "localize" else self._odom_frame

    def map_points(self) -> tuple[Point, ...]:
        """Positions of the map keyframes that have poses (cached until the map grows)."""
        with self._map_lock:
            n = len(self.map)
            if self._points_cache is None or self._points_cache[0] != n:
                pts = tuple(k.pose.position for k in self.map.keyframes() if k.pose is not None)
                self._points_cache = (n, pts)
            return self._points_cache[1]

    def _markers(self, stamp: int, match: CandidateInfo | None, query_pose: Pose | None) -> MarkerData:
        period = round(self.params.markers.map_period_sec * NS_PER_S)
        last = self._points_stamp
        due = last is None or stamp < last or (period > 0 and stamp - last >= period)
        points = None
        if due:
            points = self.map_points()
            self._points_stamp = stamp
        match_point = match.pose.position if match is not None and match.pose is not None else None
        line = None
        if (match_point is not None and query_pose is not None and match is not None and match.pose is not None
                and query_pose.frame_id == match.pose.frame_id):
            line = (query_pose.position, match_point)
        return MarkerData(self._marker_frame(), points, match_point, line)

    def _record(self, out: FrameOutput, ran: Iterable[str]) -> None:
        """Count a processed frame; ``ran`` names the stages that ran (for the latency windows)."""
        now = self._clock()
        with self._cond:
            self._processed += 1
            self._done_times.append(now)
            for stage in ran:
                self._latency[stage].append(getattr(out.latency, stage))
            if out.match is not None:
                self._accepted += 1
                self._last_accepted_stamp = out.stamp_ns
            if out.loop_closure is not None:
                self._loops += 1

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> DiagnosticsSnapshot:
        """A snapshot of counters, rate, latencies and state."""
        p = self.params.diagnostics
        now = self._clock()
        with self._cond:
            for times in (self._done_times, self._fail_times):
                while times and now - times[0] > p.window_sec:
                    times.popleft()
            span = min(p.window_sec, now - self._t_start)
            rate = len(self._done_times) / span if span > 0 else 0.0
            latency = {}
            for stage, values in self._latency.items():
                if values:
                    a = np.fromiter(values, np.float64, len(values))
                    latency[stage] = LatencyStats(float(a.mean()), float(np.percentile(a, 95)), float(a.max()),
                                                  len(a))
            last, acc = self._last_stamp, self._last_accepted_stamp
            localized = acc is not None and last is not None and 0 <= last - acc <= round(
                p.localized_timeout_sec * NS_PER_S)
            thread = self._thread
            running = thread is not None and thread.is_alive()
            died = thread is not None and not thread.is_alive() and not self._stopping
            level, message = _health(died, len(self._fail_times), len(self._done_times), p.window_sec,
                                     dict(self._errors), self.mode == "localize" and self._processed > 0
                                     and not localized, p.localized_timeout_sec)
            if level == "ok" and self._save_error is not None:
                level, message = "warn", f"online map not saved (kept in memory, retrying): {self._save_error}"
            return DiagnosticsSnapshot(
                self.mode, rate, self._received, self._processed, self._dropped, self._skipped, self._failed,
                int(self._pending is not None), dict(self._errors), dict(self._warnings), latency, len(self.map),
                localized, last, acc, self._accepted, self._loops, running, level, message,
                self.rerank_k, self.params.latency_budget_ms,
                self.budget.state().misses if self.budget is not None else 0)

    # ------------------------------------------------------------------ map saving and shutdown
    def save_map(self, path: str | Path | None = None) -> Path:
        """Save the online map (loop_closure mode) atomically to ``path`` / loop_closure.output_map_path / map_path.

        SIGINT/SIGTERM are deferred until the save is complete (main thread). A failure raises
        (MapSaveError for disk errors), keeps the map in memory and is retried by ``maybe_save``.
        """
        return self._save(path, redeliver=True)

    def _save(self, path: str | Path | None, redeliver: bool) -> Path:
        if self.mode != "loop_closure":
            raise ConfigError("save_map: only loop_closure mode builds a map; the localize map is not changed")
        target = path or self.save_target()
        if not target:
            raise ConfigError("save_map: no path; pass one or set loop_closure.output_map_path or map_path")
        with self._map_lock:
            self._last_save_attempt = self._clock()
            n = len(self.map)
            try:
                with deferred_signals("the online map save", redeliver=redeliver) as got:
                    out = self.map.save(target)
            except FolVprError as exc:
                self._save_error = str(exc)
                period = self.params.loop_closure.save_period_sec
                retry = f"retrying in {period:g} s" if period > 0 else "retried on shutdown"
                self._count_error("map_save_failed", f"could not save the online map ({n} keyframes kept in "
                                  f"memory, {retry}): {exc}")
                log.error("could not save the online map (%d keyframes kept in memory, %s): %s", n, retry, exc)
                raise
            self._points_cache = None
            self._saves += 1
            self._saved_keyframes = n
            self._saved_path = out
            self._save_error = None
        if got:
            log.info("signal(s) %s arrived during the save and were held until it completed", got)
        log.info("saved the online map (%d keyframes) to %s", n, out)
        return out

    def maybe_save(self, now: float | None = None) -> Path | None:
        """Periodic save: when ``loop_closure.save_period_sec`` has passed since the last attempt and the
        map has unsaved keyframes, save it; a failure is logged and retried next period. Returns the path
        when it saved."""
        period = self.params.loop_closure.save_period_sec
        if self.mode != "loop_closure" or period <= 0 or self._shut_down or not self.save_target():
            return None
        now = self._clock() if now is None else now
        if now - self._last_save_attempt < period or not self.map.dirty or len(self.map) == 0:
            return None
        try:
            return self.save_map()
        except FolVprError:
            return None

    @property
    def save_count(self) -> int:
        """Successful saves of the online map during this session."""
        return self._saves

    @property
    def last_save_error(self) -> str | None:
        """Why the last save failed (None after a successful one)."""
        return self._save_error

    def shutdown(self, timeout: float | None = 10.0) -> ShutdownReport:
        """Stop the worker and, in loop_closure mode with save_on_shutdown, save the map.

        Signals arriving during the save are held and only logged (the process is stopping anyway).
        Returns a ``ShutdownReport`` (the same one on repeated calls); its ``exit_code`` is 1 when
        keyframes of this session could not be saved.
        """
        if self._report is not None:
            return self._report
        if not self.stop(timeout):
            log.warning("worker still busy after %s s; saving anyway", timeout)
        self._shut_down = True
        self._report = self._final_save()
        level = logging.ERROR if not self._report.ok else logging.INFO
        log.log(level, "shutdown: %s", self._report.message)
        return self._report

    def _final_save(self) -> ShutdownReport:
        lc = self.params.loop_closure
        n = len(self.map)
        target = self.save_target()

        def report(status: SaveStatus, message: str) -> ShutdownReport:
            unsaved = 0 if status is SaveStatus.NOTHING_TO_SAVE or not self.map.dirty else n - self._saved_keyframes
            return ShutdownReport(status, self._saved_path, n, max(unsaved, 0), self._saves, self._saves > 0,
                                  message)

        if self.mode != "loop_closure":
            return report(SaveStatus.NOTHING_TO_SAVE, "localize mode: the map is not changed")
        if n == 0:
            return report(SaveStatus.NOTHING_TO_SAVE, "online map is empty; nothing to save")
        if not lc.save_on_shutdown:
            return report(SaveStatus.DISABLED, f"save_on_shutdown is off; {self._saves} save(s) during the run")
        if not target:
            return report(SaveStatus.DISABLED, "online map not saved: set loop_closure.output_map_path or map_path")
        if not self.map.dirty and self._saved_path is not None:
            return report(SaveStatus.SAVED, f"online map ({n} keyframes) already saved to {self._saved_path}")
        try:
            out = self._save(None, redeliver=False)
        except FolVprError as exc:
            earlier = (f"the last successful save ({self._saved_keyframes} keyframes) is at {self._saved_path}"
                       if self._saved_path is not None else "it was never saved during this session")
            return report(SaveStatus.FAILED, f"could not save the online map ({n} keyframes, "
                          f"{n - self._saved_keyframes} of them lost): {exc}; {earlier}")
        return report(SaveStatus.SAVED, f"online map ({n} keyframes) saved to {out}")

    def __enter__(self) -> NodeCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
