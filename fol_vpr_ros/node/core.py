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
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..build_map import map_for_describer
from ..describe import Describer, DescriberConfig
from ..errors import ConfigError, FolVprError, MapError
from ..localizer import Candidate, Localizer, LocalizerConfig, QueryResult
from ..mapping import Keyframe, MapCompat, Pose, VprMap
from .gating import KeyframeGate, OdomBuffer, OdomPose
from .image_decode import BAD_PAYLOAD, CompressedPayload, ImageDecodeError, ImagePayload, decode, error_kind
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
    "FrameOutput",
    "LatencyStats",
    "MarkerData",
    "NodeCore",
    "PoseEstimate",
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

    def key_values(self) -> list[tuple[str, str]]:
        """Flat (key, value) strings, e.g. for diagnostic_msgs/KeyValue."""
        out = [("mode", self.mode), ("rate_hz", f"{self.rate_hz:.2f}")]
        for name in ("frames_received", "frames_processed", "frames_dropped", "frames_skipped", "frames_failed",
                     "pending", "map_size", "accepted", "loop_closures"):
            out.append((name, str(getattr(self, name))))
        out.append(("localized", str(self.localized).lower()))
        out += [(f"error.{k}", str(v)) for k, v in sorted(self.errors.items())]
        out += [(f"warning.{k}", str(v)) for k, v in sorted(self.warnings.items())]
        for stage, st in self.latency_ms.items():
            out.append((f"latency_ms.{stage}", f"mean {st.mean:.1f} p95 {st.p95:.1f}"))
        return out


def pose_sigmas(rerank_score: int, params: NodeParams) -> tuple[float, float]:
    """(position sigma m, orientation sigma rad) for a match score (see module doc)."""
    p = params.pose
    if rerank_score < 0:
        return p.sigma_max_m, math.pi
    root = math.sqrt(max(rerank_score, 1))
    sp = min(max(p.sigma_base_m / root, p.sigma_min_m), p.sigma_max_m)
    sr = min(max(p.orientation_sigma_base_rad / root, _MIN_SIGMA_RAD), math.pi)
    return sp, sr


def _compat(describer: Describer) -> MapCompat:
    cfg = describer.model.cfg
    return MapCompat(describer.loaded.sha256, cfg.arch, cfg.input_size, cfg.descriptor_dim, cfg.local_head.out_dim,
                     describer.precision.value)


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
        _compat(self.describer).check(self.map.manifest, str(self.map.path or "the given map"))
        if self.mode == "localize" and len(self.map) == 0:
            raise MapError(f"{self.map.path or 'the given map'}: map has no keyframes; nothing to localise against")
        self.localizer = Localizer(self.map, LocalizerConfig(params.top_k, params.rerank_k, params.rerank_threshold,
                                                             params.device))
        k = params.keyframe
        self.gate = KeyframeGate(k.min_interval_sec, k.min_distance_m, k.min_angle_deg)
        self.policy = LoopClosurePolicy.from_params(params)
        o = params.odometry
        self.odometry = OdomBuffer(o.tolerance_sec, o.max_gap_sec, o.buffer_sec)
        self._on_output = on_output
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
        self._t_start = clock()
        self._last_stamp: int | None = None
        self._last_accepted_stamp: int | None = None
        self._points_stamp: int | None = None
        self._points_cache: tuple[int, tuple[Point, ...]] | None = None
        self._odom_frame = "odom"

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _load_describer(params: NodeParams) -> Describer:
        if not params.weights:
            raise ConfigError("parameter weights is empty: set it to the FoL checkpoint (launch argument "
                              "weights:=/path/to/FoL.pth)")
        cfg = DescriberConfig(params.weights, params.arch, params.input_size, params.device, batch_size=1,
                              precision=params.precision)
        return Describer.from_config(cfg)

    def _load_map(self) -> VprMap:
        path = self.params.map_path
        if self.mode == "localize":
            if not path:
                raise ConfigError("parameter map_path is empty: localize mode needs a map (launch argument "
                                  "map:=/path/to/map, built with `fol-vpr build-map`)")
            return VprMap.open(path, expect=_compat(self.describer))
        if path and (Path(path) / "manifest.json").is_file():
            log.info("loop closure: extending the map %s", path)
            return VprMap.open(path, expect=_compat(self.describer))
        return map_for_describer(self.describer, None)

    def set_output_callback(self, on_output: Callable[[FrameOutput], None] | None) -> None:
        """Register the adapter's callback for processed keyframes (called on the worker thread)."""
        self._on_output = on_output

    # ------------------------------------------------------------------ input
    def submit_image(self, payload: ImagePayload | CompressedPayload) -> None:
        """Offer a frame (never blocks): it replaces any pending frame, which counts as dropped."""
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

    def process_now(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        """Process one frame synchronously (counts as received; no callback). Never raises for bad frames."""
        with self._cond:
            self._received += 1
        return self._process_serialised(payload)

    def _process_serialised(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        with self._proc_lock:
            try:
                return self._process(payload)
            except Exception as exc:  # a bug: count it, keep the node running
                self._count_error("internal_error", f"unexpected error: {exc}", exc_info=True)
                with self._cond:
                    self._failed += 1
                return self._error_output(-1, 0, self.params.frames.camera, "internal_error", str(exc), {})

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
        out = FrameOutput(qid, stamp, frame_id, self.mode, True, kf_id, candidates, match, decision.reason,
                          decision, pose, odom, StageLatency(**times), markers, map_size)
        self._record(out, times.keys())
        return out

    def _query_and_decide(self, desc, stamp: int, frame_id: str, query_pose: Pose | None
                          ) -> tuple[QueryResult | None, LocalizeDecision | LoopDecision, int | None]:
        p = self.params
        if self.mode == "localize":
            result = self.localizer.query(desc)
            return result, decide_localize(result, p.min_rerank_score, p.min_global_similarity), None
        restriction = self.policy.restriction(self.map.keyframes(), stamp, self.session_id)
        result = None
        if restriction.searchable:
            result = self.localizer.query(desc, max_id=restriction.max_id,
                                          exclude_ids=restriction.exclude_ids or None)
        kf = Keyframe(stamp_ns=stamp, frame_id=frame_id, source=p.image_topic, pose=query_pose,
                      session_id=self.session_id)
        kf_id = self.map.add_one(kf, desc.global_desc, desc.local, desc.local_rc)
        decision = self.policy.decide(KeyframeRef(kf_id, stamp), result, lambda i: self.map.keyframe(i).stamp_ns)
        match_pose = self.map.keyframe(decision.match_id).pose if decision.match_id is not None else None
        return result, replace(decision, query_pose=query_pose, match_pose=match_pose), kf_id

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
        return PoseEstimate(stamp, self.params.frames.map, match.pose.position, match.pose.orientation,
                            tuple(cov), sp, sr, match.keyframe_id)

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
            while self._done_times and now - self._done_times[0] > p.window_sec:
                self._done_times.popleft()
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
            level, message = "ok", "ok"
            if died:
                level, message = "error", "worker thread stopped unexpectedly"
            elif self.mode == "localize" and self._processed and not localized:
                level, message = "warn", (f"not localized: no match accepted in the last "
                                          f"{p.localized_timeout_sec:g} s")
            elif self._errors:
                level, message = "ok", "running; frames with errors: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(self._errors.items()))
            return DiagnosticsSnapshot(
                self.mode, rate, self._received, self._processed, self._dropped, self._skipped, self._failed,
                int(self._pending is not None), dict(self._errors), dict(self._warnings), latency, len(self.map),
                localized, last, acc, self._accepted, self._loops, running, level, message)

    # ------------------------------------------------------------------ map saving and shutdown
    def save_map(self, path: str | Path | None = None) -> Path:
        """Save the online map (loop_closure mode) atomically to ``path`` / loop_closure.output_map_path / map_path."""
        if self.mode != "loop_closure":
            raise ConfigError("save_map: only loop_closure mode builds a map; the localize map is not changed")
        target = path or self.params.loop_closure.output_map_path or self.params.map_path
        if not target:
            raise ConfigError("save_map: no path; pass one or set loop_closure.output_map_path or map_path")
        with self._map_lock:
            out = self.map.save(target)
            self._points_cache = None
        log.info("saved the online map (%d keyframes) to %s", len(self.map), out)
        return out

    def shutdown(self, timeout: float | None = 10.0) -> Path | None:
        """Stop the worker and, in loop_closure mode with save_on_shutdown, save the map; returns its path."""
        if self._shut_down:
            return None
        if not self.stop(timeout):
            log.warning("worker still busy after %s s; saving anyway", timeout)
        self._shut_down = True
        lc = self.params.loop_closure
        if self.mode != "loop_closure" or not lc.save_on_shutdown:
            return None
        if len(self.map) == 0:
            log.info("online map is empty; nothing to save")
            return None
        if not (lc.output_map_path or self.params.map_path):
            log.warning("online map not saved: set loop_closure.output_map_path or map_path")
            return None
        try:
            return self.save_map()
        except FolVprError as exc:
            log.error("could not save the online map: %s", exc)
            return None

    def __enter__(self) -> NodeCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
