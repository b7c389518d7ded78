"""``NodeCore``: everything the fol_vpr node does, without ROS; adapters only move messages in and out.

Threading: middleware callbacks call ``submit_image`` / ``submit_odometry`` (never blocking: one
latest-frame slot per camera topic, a newer frame replaces that camera's pending one and counts as
dropped; cameras are served in turn, each with its own keyframe gate: ``frame_slots``). One worker thread
(``start``/``stop``) takes the pending frame, gates, decodes, describes, queries, decides and hands a
``FrameOutput`` to the ``on_output`` callback (only for processed keyframes). ``process_now`` does
the same synchronously (tests, offline replay). All stamps are image stamps, never the wall clock.

Each decision is an enum set where it is taken (``outcomes``): the frame's ``FrameStatus``, the
``SkipReason`` / ``DropReason``, the ``MatchOutcome`` of the loop and localize decisions; the
diagnostics count them. The published pose and its covariance: ``pose``. Saving the online map
(loop_closure mode) on demand, periodically and at shutdown: ``online_map``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..errors import ConfigError, FolVprError, MapError
from ..mapping import Keyframe, Pose, VprMap
from ..pipeline.describe import Describer, DescriberConfig
from ..pipeline.localizer import Candidate, Localizer, LocalizerConfig, QueryResult
from ..sources.camera import CameraIntrinsics
from ..sources.image_decode import BAD_PAYLOAD, CompressedPayload, ImageDecodeError, ImagePayload, decode, error_kind
from .budget import BudgetConfig, BudgetState, RerankBudget
from .diagnostics import DiagnosticsSnapshot, FrameCounters, health
from .frame_slots import FrameSlots, camera_of
from .frames import CandidateInfo, FrameObserver, FrameOutput, StageLatency
from .gating import CameraGates, OdomBuffer, OdomPose
from .loop_closure import KeyframeRef, LocalizeDecision, LoopClosurePolicy, LoopDecision, decide_localize
from .markers import MarkerBuilder
from .online_map import MapSaver, ShutdownReport, open_node_map, save_target
from .outcomes import DropReason, FrameStatus, NodeWarning
from .params import NodeParams
from .pose import covariance_model, estimate_pose
from .verify_step import VerifyStep
from .warm_up import warm_up

__all__ = ["NodeCore"]

log = logging.getLogger("fol_vpr_ros.node")

Payload = ImagePayload | CompressedPayload
INTERNAL_ERROR = "internal_error"  # error kind of an unexpected exception (a bug)
OUTPUT_CALLBACK_FAILED = "output_callback_failed"  # error kind of an on_output callback that raised


class NodeCore:
    """The ROS-free node: owns describer, map, localizer, keyframe gate, loop policy, odometry, counters."""

    def __init__(self, params: NodeParams, describer: Describer | None = None, vpr_map: VprMap | None = None, *,
                 on_output: Callable[[FrameOutput], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.params = params
        self.mode = params.mode
        self._clock = clock
        self.session_id = params.loop_closure.session_id or f"run-{uuid.uuid4().hex[:12]}"
        self.covariance = covariance_model(params)  # before the model loads: a bad file fails fast
        self.describer = describer if describer is not None else self._load_describer(params)
        self.map = vpr_map if vpr_map is not None else open_node_map(params, self.describer)
        self.describer.map_compat().check(self.map.manifest, str(self.map.path or "the given map"))
        if self.mode == "localize" and len(self.map) == 0:
            raise MapError(f"{self.map.path or 'the given map'}: map has no keyframes; nothing to localise against")
        self.localizer = Localizer(self.map, LocalizerConfig(params.top_k, params.rerank_k, params.rerank_threshold,
                                                             params.device))
        k = params.keyframe
        self.budget = (RerankBudget(BudgetConfig(params.latency_budget_ms, params.rerank_k,
                                                  min(params.min_rerank_k, params.rerank_k)))
                       if params.latency_budget_ms > 0 else None)
        self._gates = CameraGates(k.min_interval_sec, k.min_distance_m, k.min_angle_deg)
        self.gate = self._gates[params.image_topic]  # image_topic's gate
        self.policy = LoopClosurePolicy.from_params(params)
        self.verify_step = VerifyStep(params, self.map, self._count_error)
        o = params.odometry
        self.odometry = OdomBuffer(o.tolerance_sec, o.max_gap_sec, o.buffer_sec)
        self._on_output = on_output
        self._observers: list[FrameObserver] = []
        # slot, worker and counters (one lock; the processing lock serialises frames)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._proc_lock = threading.Lock()
        self._map_lock = threading.RLock()
        self._pending = FrameSlots(params.image_topic)
        self._camera = params.image_topic  # camera topic of the frame being processed (under _proc_lock)
        self._camera_stamps: dict[str, int] = {}  # camera topic -> its last image stamp
        self._in_flight = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._shut_down = False
        self._next_query_id = 0
        self._counts = FrameCounters(clock())
        self._logged: set[str] = set()
        self._last_stamp: int | None = None
        self.markers = MarkerBuilder(self.map, self._map_lock, params.markers.map_period_sec)
        self._odom_frame = "odom"
        self._saver = MapSaver(self.map, params, clock(), self._count_error)
        self._report: ShutdownReport | None = None
        self._warm = False

    # ------------------------------------------------------------------ construction helpers
    @staticmethod
    def _load_describer(params: NodeParams) -> Describer:
        if not params.weights:
            raise ConfigError("parameter weights is empty: set it to the FoL checkpoint (fol-vpr node --weights "
                              "FoL.pth; ros2 launch ... weights:=FoL.pth; ros2 run ... -p weights:=FoL.pth)")
        cfg = DescriberConfig(params.weights, params.arch, params.input_size, params.device, batch_size=1,
                              backend=params.backend, precision=params.precision)
        return Describer.from_config(cfg)

    def save_target(self) -> str:
        """Where the online map is saved ('' = nowhere): loop_closure.output_map_path, else map_path."""
        return save_target(self.params)

    def set_output_callback(self, on_output: Callable[[FrameOutput], None] | None) -> None:
        """Register the adapter's callback for processed keyframes (called on the worker thread)."""
        self._on_output = on_output

    def add_observer(self, observer: FrameObserver) -> None:
        """Tell ``observer`` of every submitted and every processed frame (see ``FrameObserver``)."""
        self._observers.append(observer)

    # ------------------------------------------------------------------ input
    def submit_image(self, payload: Payload) -> None:
        """Offer a frame (never blocks): it replaces any pending frame, which counts as dropped."""
        for observer in self._observers:
            observer.on_submitted(payload)
        with self._cond:
            self._counts.received += 1
            if self._pending.put(payload):
                self._counts.dropped(DropReason.REPLACED)
            self._cond.notify_all()

    def submit_depth(self, payload: ImagePayload) -> None:
        """Add a registered depth image (decoded here; a bad one is logged and counted, never raised)."""
        self.verify_step.submit_depth(payload)

    def submit_odometry(self, pose: OdomPose) -> None:
        """Add an odometry pose (used for keyframe gating and keyframe poses)."""
        self.odometry.add(pose)
        self._odom_frame = pose.frame_id or self._odom_frame

    def submit_camera_info(self, frame_id: str, camera: CameraIntrinsics | None) -> None:
        """Keep the latest intrinsics of camera ``frame_id`` (None: uncalibrated, forgets it)."""
        self.verify_step.cameras.submit(frame_id, camera)

    @property
    def pending(self) -> int:
        """Frames waiting in the slots (0 or 1 per camera)."""
        return len(self._pending)

    # ------------------------------------------------------------------ worker
    def start(self) -> None:
        """Warm the pipeline up (once), then start the worker thread (no-op when running)."""
        if not self._warm:  # first-call costs before the first frame; the budget starts from its stage times
            self._warm = True
            w = warm_up(self.describer, self.localizer, self.verify_step, self._map_lock, self.rerank_k)
            k = self.budget.calibrate(w.reranked, w.fixed_ms, w.rerank_ms) if self.budget is not None else None
            log.info("pipeline warmed up in %.1f s%s", w.seconds, f"; rerank_k starts at {k}" if k else "")
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
            for _ in range(self._pending.clear()):
                self._counts.dropped(DropReason.STOPPED)
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no frame is pending or in processing; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._in_flight, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                payload = self._pending.take()
                self._in_flight = True
            out = None
            try:
                out = self._process_serialised(payload)
            finally:
                with self._cond:
                    self._in_flight = False
                    self._cond.notify_all()
            if out is not None and out.status is FrameStatus.PROCESSED and self._on_output is not None:
                try:
                    self._on_output(out)
                except Exception:
                    self._count_error(OUTPUT_CALLBACK_FAILED, "the on_output callback raised", exc_info=True)
            self.maybe_save()

    def process_now(self, payload: Payload) -> FrameOutput:
        """Process one frame synchronously (counts as received; no callback). Never raises for bad frames."""
        with self._cond:
            self._counts.received += 1
        out = self._process_serialised(payload)
        self.maybe_save()
        return out

    def _process_serialised(self, payload: Payload) -> FrameOutput:
        with self._proc_lock:
            try:
                out = self._process(payload)
            except Exception as exc:  # a bug: count it, keep the node running
                self._count_error(INTERNAL_ERROR, f"unexpected error: {exc}", exc_info=True)
                with self._cond:
                    self._counts.failed(self._clock())
                out = self._error_output(-1, 0, self.params.frames.camera, INTERNAL_ERROR, str(exc), {})
        for observer in self._observers:
            observer.on_processed(payload, out)
        return out

    # ------------------------------------------------------------------ processing
    def _count_error(self, kind: str, message: str, exc_info: bool = False) -> None:
        with self._cond:
            self._counts.errors[kind] += 1
            first = kind not in self._logged
            self._logged.add(kind)
        if first:
            log.warning("%s: %s (logged once per kind; see diagnostics for counts)", kind, message,
                        exc_info=exc_info)
        else:
            log.debug("%s: %s", kind, message)

    def _count_warning(self, kind: NodeWarning, message: str) -> None:
        with self._cond:
            self._counts.warnings[kind] += 1
            first = f"warning:{kind}" not in self._logged
            self._logged.add(f"warning:{kind}")
        if first:
            log.warning("%s (logged once)", message)

    def _error_output(self, qid: int, stamp: int, frame_id: str, kind: str, reason: str,
                      times: dict[str, float]) -> FrameOutput:
        return FrameOutput(qid, stamp, frame_id, self.mode, False, None, (), None, reason, None, None, None,
                           StageLatency(**times), None, len(self.map), kind, FrameStatus.FAILED)

    def _fail(self, qid: int, stamp: int, frame_id: str, exc: BaseException, stage: str,
              times: dict[str, float]) -> FrameOutput:
        kind = error_kind(exc, "" if stage == "decode" else stage)
        self._count_error(kind, str(exc))
        with self._cond:
            self._counts.failed(self._clock())
        return self._error_output(qid, stamp, frame_id, kind, f"{stage} failed: {exc}", times)

    def _frame_id(self, payload: Payload) -> str:
        """The image's frame id, or frames.camera (counted as a warning) when it has none."""
        frame_id = getattr(payload, "frame_id", "") or ""
        if isinstance(frame_id, str) and frame_id.strip():
            return frame_id
        frame_id = self.params.frames.camera
        self._count_warning(NodeWarning.EMPTY_FRAME_ID, f"image without header.frame_id: using '{frame_id}' "
                            "(parameter frames.camera)")
        return frame_id

    def _note_stamp(self, stamp: int, camera: str) -> None:
        """Remember the image stamp; one that went backwards on its camera (bag restarted) resets the consistency
        run (cameras are compared with themselves: two cameras' frames arrive interleaved)."""
        last = self._camera_stamps.get(camera)
        if last is not None and stamp < last:
            self._count_warning(NodeWarning.STAMP_BACKWARDS, f"image stamp went backwards ({stamp} < "
                                f"{last}); bag restarted? keyframe gate reset")
            self.policy.reset()
        self._camera_stamps[camera] = stamp
        self._last_stamp = stamp

    def _process(self, payload: Payload) -> FrameOutput:
        t0 = time.perf_counter()
        qid = self._next_query_id
        self._next_query_id += 1
        frame_id = self._frame_id(payload)
        stamp = getattr(payload, "stamp_ns", None)
        if isinstance(stamp, bool) or not isinstance(stamp, (int, np.integer)):
            err = ImageDecodeError(BAD_PAYLOAD, f"image stamp_ns must be integer nanoseconds, got {stamp!r}")
            return self._fail(qid, 0, frame_id, err, "decode", {})
        stamp, self._camera = int(stamp), camera_of(payload, self.params.image_topic)
        self._note_stamp(stamp, self._camera)
        odom = self.odometry.pose_at(stamp) if len(self.odometry) else None
        gate = self._gates[self._camera]
        skip = gate.skip_reason(stamp, odom)
        if skip is not None:
            with self._cond:
                self._counts.skipped(skip)
            return FrameOutput(qid, stamp, frame_id, self.mode, False, None, (), None, "skipped by the keyframe gate",
                               None, None, odom, StageLatency(), None, len(self.map), None, FrameStatus.SKIPPED, skip)
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
        gate.commit(stamp, odom)
        if result is not None:
            times.update({k: v for k, v in result.timing_ms.items() if k in ("search", "rerank", "verify")})
        match = None
        if decision.accepted and decision.match_id is not None:
            match = next((c for c in candidates if c.keyframe_id == decision.match_id), None)
        pose = estimate_pose(stamp, match, self.params, self.covariance) if self.mode == "localize" else None
        frame = self.params.frames.map if self.mode == "localize" else self._odom_frame
        markers = self.markers.build(frame, stamp, match, query_pose)
        times["total"] = (time.perf_counter() - t0) * 1e3
        self._observe_budget(candidates, times)
        out = FrameOutput(qid, stamp, frame_id, self.mode, True, kf_id, candidates, match, decision.reason,
                          decision, pose, odom, StageLatency(**times), markers, map_size, None, FrameStatus.PROCESSED)
        with self._cond:
            self._counts.processed(out, times.keys(), self._clock())
        return out

    def _observe_budget(self, candidates: tuple[CandidateInfo, ...], times: dict[str, float]) -> None:
        """Tell the latency budget (if any) what this frame cost."""
        if self.budget is None:
            return
        reranked = sum(1 for c in candidates if c.rerank_score >= 0)
        rerank_ms = times.get("rerank", 0.0)
        with self._cond:
            self.budget.observe(reranked, times["total"] - rerank_ms, rerank_ms)

    def _query_and_decide(self, desc, stamp: int, frame_id: str, query_pose: Pose | None
                          ) -> tuple[QueryResult | None, LocalizeDecision | LoopDecision, int | None]:
        p = self.params
        k = self.rerank_k
        camera = self.verify_step.cameras.get(frame_id)
        if self.mode == "localize":
            found = self.localizer.query(desc, rerank_k=k) if len(self.map) else None
            result = self.verify_step.apply(desc, camera, found, frame_id, stamp)
            return result, decide_localize(result, p.min_rerank_score, p.min_global_similarity), None
        restriction = self.policy.restriction(self.map.keyframes(), stamp, self.session_id)
        result = None
        if restriction.searchable:
            found = self.localizer.query(desc, max_id=restriction.max_id,
                                         exclude_ids=restriction.exclude_ids or None, rerank_k=k)
            result = self.verify_step.apply(desc, camera, found, frame_id, stamp)
        kf = Keyframe(stamp_ns=stamp, frame_id=frame_id, source=self._camera, pose=query_pose,
                      session_id=self.session_id, camera=camera,
                      robot_id=p.robot_id or None)
        kf_id = self.map.add_one(kf, desc.global_desc, desc.local, desc.local_rc)
        decision = self.policy.decide(KeyframeRef(kf_id, stamp), result, lambda i: self.map.keyframe(i).stamp_ns)
        return result, self._with_keyframes(decision, result, query_pose), kf_id

    def _with_keyframes(self, decision: LoopDecision, result: QueryResult | None, query_pose: Pose | None
                        ) -> LoopDecision:
        """The loop decision with both keyframes' poses and ids and the match's verification."""
        ids = {"query_pose": query_pose, "query_robot_id": self.params.robot_id or None,
               "query_session_id": self.session_id}
        if decision.match_id is None:
            return replace(decision, **ids)
        match, best = self.map.keyframe(decision.match_id), result.best if result is not None else None
        verified = best.verification if best is not None and best.keyframe_id == decision.match_id else None
        return replace(decision, **ids, match_pose=match.pose, verification=verified, match_robot_id=match.robot_id,
                       match_session_id=match.session_id)

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
                             kf.stamp_ns, kf.session_id, kf.frame_id, kf.pose, verification=c.verification,
                             robot_id=kf.robot_id)

    # ------------------------------------------------------------------ diagnostics
    def diagnostics(self) -> DiagnosticsSnapshot:
        """A snapshot of counters, rate, latencies and state."""
        p = self.params.diagnostics
        now = self._clock()
        with self._cond:
            c = self._counts
            c.expire(now, p.window_sec)
            last = self._last_stamp
            localized = c.localized(last, p.localized_timeout_sec)
            thread = self._thread
            running = thread is not None and thread.is_alive()
            died = thread is not None and not thread.is_alive() and not self._stopping
            processed = c.frames[FrameStatus.PROCESSED]
            errors = {str(k): v for k, v in c.errors.items()}
            level, message = health(died, len(c.fail_times), len(c.done_times), p.window_sec, errors,
                                    self.mode == "localize" and processed > 0 and not localized,
                                    p.localized_timeout_sec)
            if level == "ok" and self._saver.error is not None:
                level, message = "warn", f"online map not saved (kept in memory, retrying): {self._saver.error}"
            return DiagnosticsSnapshot(
                self.mode, c.rate_hz(now, p.window_sec), c.received, processed, c.frames[FrameStatus.DROPPED],
                c.frames[FrameStatus.SKIPPED], c.frames[FrameStatus.FAILED], len(self._pending), errors,
                {str(k): v for k, v in c.warnings.items()}, c.latency_stats(), len(self.map), localized, last,
                c.last_accepted_stamp, c.accepted, c.loop_closures, running, level, message,
                self.rerank_k, self.params.latency_budget_ms,
                self.budget.state().misses if self.budget is not None else 0,
                dict(c.outcomes), dict(c.skipped_by), dict(c.dropped_by))

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
        with self._map_lock:
            out = self._saver.save(path, self._clock(), redeliver)
            self.markers.forget()
        return out

    def maybe_save(self, now: float | None = None) -> Path | None:
        """Periodic save: when ``loop_closure.save_period_sec`` has passed since the last attempt and the
        map has unsaved keyframes, save it; a failure is logged and retried next period. Returns the path
        when it saved."""
        if self.mode != "loop_closure" or self._shut_down:
            return None
        if not self._saver.due(self._clock() if now is None else now):
            return None
        try:
            return self.save_map()
        except FolVprError:
            return None

    @property
    def save_count(self) -> int:
        """Successful saves of the online map during this session."""
        return self._saver.saves

    @property
    def last_save_error(self) -> str | None:
        """Why the last save failed (None after a successful one)."""
        return self._saver.error

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
        self._report = self._saver.final_save(lambda: self._save(None, redeliver=False))
        level = logging.ERROR if not self._report.ok else logging.INFO
        log.log(level, "shutdown: %s", self._report.message)
        return self._report

    def __enter__(self) -> NodeCore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
