"""`evaluate-bag --through-node`: replay a bag through the DDS node (the deployed code path) at bag rate.

``DdsRunner`` starts an in-process ``DdsNode`` (a ``NodeCore`` with the evaluation's params, describer
and map) and a second participant that plays the bag's images (``sensor_msgs/Image`` or
``CompressedImage``, as in the bag) on the node's image topic, with the bag stamps in the headers, at
the bag's stamp spacing divided by ``rate_factor`` (1.0 = real time). With ``feed_odometry`` the bag
poses go out as ``nav_msgs/Odometry`` on the node's odometry topic, one frame ahead of their image
(as a robot's odometry runs ahead of the camera). Readers on ``~/result``, ``~/markers`` and
``~/loop_closure`` (loop closure) or ``~/pose`` (localize) collect what the node publishes.

Results are matched to frames by header stamp and turned back into ``FrameOutput`` for the metrics:
candidates (keyframe id, rank, similarity, re-rank score, stamp, pose), acceptance, the loop decision
and the stage latencies come from the messages; the candidates' camera frame ids from the map. The
messages themselves go into ``--write-results`` unchanged.

Every image passes the node's DDS reader (``qos.image``: best effort, depth 1 by default) and the
core's latest-frame slot, so a node slower than the replay drops frames as it would on the robot.
Per frame: ``processed`` (its result arrived), ``skipped`` / ``failed`` (keyframe gate, bad image: the
node publishes nothing for these, so the core is observed in-process: a ``NodeCore`` subclass records
each submitted and each processed stamp, processing unchanged), or ``dropped``: it never reached the
core (lost in DDS or replaced in the reader queue), it was replaced in the core's slot, or its result
never arrived. A frame counts as dropped once the worker has taken a later frame, or when the replay
has ended and the node has been idle for ``SETTLE_S`` (at most ``drain_timeout`` after the last image).
``summary()``: drops by cause, end-to-end latency (image published -> result received), late
publishes and the node's own counters (``NodeCore.diagnostics`` after shutdown).

DDS domain ``domain_id`` (default ``200 + pid % 33``: away from ROS' default 0 and from the tests'
domains); ``loopback`` keeps the traffic on 127.0.0.1 (CYCLONEDDS_URI is set while the participants
are created, then restored). The describer is warmed up with one blank image before the replay.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
from cyclonedds.core import GuardCondition, InstanceState, ReadCondition, SampleState, ViewState, WaitSet
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.qos import Qos
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

from ..errors import ConfigError, FolVprError
from ..mapping import Pose, VprMap
from ..node.core import CandidateInfo, FrameOutput, NodeCore, PoseEstimate, StageLatency
from ..node.image_decode import CompressedPayload, ImagePayload
from ..node.loop_closure import LocalizeDecision, LoopDecision
from ..node.params import NodeParams
from ..ros import messages as m
from ..ros.dds_node import DdsNode
from ..ros.dds_types import (
    CYCLONEDDS_URI_ENV,
    dds_type,
    from_dds,
    loopback_config,
    reliable_qos,
    sensor_data_qos,
    to_dds,
)
from ..ros.interfaces import make_header, make_message, msg_class, time_to_ns
from .bag_eval import ReplayFrame, RunnerFrame
from .metrics import TimingStats

__all__ = ["DEFAULT_DRAIN_TIMEOUT_S", "SETTLE_S", "DdsRunner", "default_domain_id"]

log = logging.getLogger(__name__)

NS = 1_000_000_000
DEFAULT_DRAIN_TIMEOUT_S = 60.0
SETTLE_S = 0.5  # after the last image: node idle and nothing new for this long -> the rest is dropped
EXTRAS_GRACE_S = 1.0  # wait this long after a result for its pose / markers / loop closure messages
LATE_S = 0.05  # an image published this far behind its schedule counts as late
FIRST_LEAD_S = 0.1  # the first image goes out this long after the first odometry
ROLES = ("loop_closure", "pose", "markers", "result")  # the node's publish order
ODOM_TYPE = "nav_msgs/msg/Odometry"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
_WAIT = duration(milliseconds=100)
_TAKE = 64


def default_domain_id() -> int:
    """200 + pid % 33 (200..232): one per process, clear of ROS' default domain and the tests' domains."""
    return 200 + os.getpid() % 33


class _ObservedCore(NodeCore):
    """NodeCore that reports each submitted and each processed frame to the replay (processing unchanged)."""

    def __init__(self, params: NodeParams, describer: Any, vpr_map: VprMap | None, replay: _Replay) -> None:
        super().__init__(params, describer, vpr_map)
        self._eval_replay = replay

    def submit_image(self, payload: ImagePayload | CompressedPayload) -> None:
        self._eval_replay.on_received(payload.stamp_ns)
        super().submit_image(payload)

    def _process_serialised(self, payload: ImagePayload | CompressedPayload) -> FrameOutput:
        out = super()._process_serialised(payload)
        self._eval_replay.on_picked(getattr(payload, "stamp_ns", None), out)
        return out


def _image_qos(params: NodeParams) -> Qos:
    q = params.qos.image
    return sensor_data_qos(q.depth) if q.reliability == "best_effort" else reliable_qos(q.depth)


def _image_message(payload: ImagePayload | CompressedPayload) -> Any:
    raw = payload.data
    data = (np.ascontiguousarray(raw).reshape(-1).view(np.uint8) if isinstance(raw, np.ndarray)
            else np.frombuffer(bytes(raw), np.uint8))
    header = make_header(payload.stamp_ns, payload.frame_id)
    if isinstance(payload, CompressedPayload):
        return make_message(COMPRESSED_TYPE, header=header, format=str(payload.format), data=data)
    return make_message(IMAGE_TYPE, header=header, height=int(payload.height), width=int(payload.width),
                        encoding=str(payload.encoding), is_bigendian=int(bool(payload.is_bigendian)),
                        step=int(payload.step), data=data)


def _odom_message(f: ReplayFrame) -> Any:
    o = f.odom
    point = make_message("geometry_msgs/msg/Point", x=float(o.position[0]), y=float(o.position[1]),
                         z=float(o.position[2]))
    quat = make_message("geometry_msgs/msg/Quaternion", x=float(o.orientation[0]), y=float(o.orientation[1]),
                        z=float(o.orientation[2]), w=float(o.orientation[3]))
    pose = make_message("geometry_msgs/msg/PoseWithCovariance",
                        pose=make_message("geometry_msgs/msg/Pose", position=point, orientation=quat))
    return make_message(ODOM_TYPE, header=make_header(f.stamp_ns, o.frame_id or "odom"), child_frame_id=f.frame_id,
                        pose=pose)


def _message_stamp(role: str, msg: Any) -> int | None:
    if role == "markers":
        return time_to_ns(msg.markers[0].header.stamp) if len(msg.markers) else None
    return time_to_ns(msg.header.stamp)


class DdsRunner:
    """FrameRunner replaying frames through an in-process DdsNode over loopback DDS (see the module doc)."""

    name = "dds_node"

    def __init__(self, params: NodeParams, describer: Any, vpr_map: VprMap | None = None, *,
                 image_msgtype: str = IMAGE_TYPE, rate_factor: float = 1.0, feed_odometry: bool = True,
                 domain_id: int | None = None, loopback: bool = True,
                 drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S, discovery_timeout: float = 10.0,
                 result_timeout: float = 10.0, warmup: bool = True) -> None:
        if not (isinstance(rate_factor, (int, float)) and math.isfinite(rate_factor) and rate_factor > 0):
            raise ConfigError(f"rate factor must be a positive number (1.0 = bag rate), got {rate_factor!r}")
        for what, t in (("drain_timeout", drain_timeout), ("discovery_timeout", discovery_timeout),
                        ("result_timeout", result_timeout)):
            if not t > 0:
                raise ConfigError(f"{what} must be > 0 seconds, got {t}")
        if image_msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            raise ConfigError(f"image message type must be {IMAGE_TYPE} or {COMPRESSED_TYPE}, got {image_msgtype!r}")
        self.domain_id = default_domain_id() if domain_id is None else int(domain_id)
        if not 0 <= self.domain_id <= 232:
            raise ConfigError(f"domain id {self.domain_id} is outside 0..232")
        self.feed_odometry = bool(feed_odometry and params.odometry.topic)
        self.params = params.updated({
            "image_transport": "compressed" if image_msgtype == COMPRESSED_TYPE else "raw",
            "odometry.topic": params.odometry.topic if feed_odometry else "",
            "publish_tf": False})
        self.describer = describer
        self.vmap = vpr_map
        self.rate_factor = float(rate_factor)
        self.loopback = bool(loopback)
        self.drain_timeout = float(drain_timeout)
        self.discovery_timeout = float(discovery_timeout)
        self.result_timeout = float(result_timeout)
        self.warmup = bool(warmup)
        self._summary: dict[str, Any] = {}

    def run(self, frames: Iterable[ReplayFrame]) -> Iterator[RunnerFrame]:
        """Publish the frames at bag rate x ``rate_factor``; one RunnerFrame per frame, in order."""
        replay = _Replay(self)
        try:
            replay.open()
            replay.start(frames)
            while True:
                batch, done = replay.step()
                yield from batch
                if done:
                    break
        finally:
            replay.close()
        self._summary = replay.summary()

    def summary(self) -> dict[str, Any]:
        """What the last completed run measured (empty before): drops by cause, latency, node counters."""
        return dict(self._summary)

    def notes(self) -> list[str]:
        """One line for the report about the last run."""
        s = self._summary
        if not s:
            return []
        d, n = s["dropped"], s["node_diagnostics"]
        text = (f"replayed through the DDS node at {s['rate_factor']:g}x bag rate (domain {s['domain_id']}"
                f"{', loopback' if s['loopback'] else ''}): {sum(d.values())} frame(s) dropped "
                f"({d['in_node_slot']} replaced in the node's latest-frame slot, {d['before_core']} never reached "
                f"the core, {d['result_lost']} results lost); node counters: {n['frames_received']} received, "
                f"{n['frames_processed']} processed, {n['frames_dropped']} dropped, {n['frames_skipped']} "
                f"skipped, {n['frames_failed']} failed")
        out = [text]
        if s["late_publishes"]:
            out.append(f"{s['late_publishes']} image(s) published more than {LATE_S * 1e3:.0f} ms behind the bag "
                       "schedule (the replay itself was slowed down)")
        if s["drain_timed_out"]:
            out.append(f"the node was still busy {self.drain_timeout:g} s after the last image; frames without a "
                       "result by then count as dropped")
        return out


class _Replay:
    """One run of a DdsRunner: DDS entities, publisher and reader threads, per-stamp bookkeeping."""

    def __init__(self, runner: DdsRunner) -> None:
        self.r = runner
        self.params = runner.params
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.pending: deque[ReplayFrame] = deque()
        self.published: dict[int, float] = {}
        self.received: set[int] = set()
        self.picked: dict[int, tuple[str, FrameOutput, float]] = {}
        self.max_picked: int | None = None
        self.max_result: int | None = None
        self.messages: dict[str, dict[int, tuple[Any, float]]] = {role: {} for role in ROLES}
        self.counts: Counter[str] = Counter()
        self.drops: Counter[str] = Counter({"in_node_slot": 0, "before_core": 0, "result_lost": 0})
        self.e2e_ms: list[float] = []
        self.last_event = time.monotonic()
        self.publisher_done = False
        self.error: BaseException | None = None
        self.drain_deadline: float | None = None
        self.drain_timed_out = False
        self.replay_s = math.nan
        self.node: DdsNode | None = None
        self.core: _ObservedCore | None = None
        self.participant: DomainParticipant | None = None
        self.entities: list[Any] = []
        self.readers: list[tuple[str, DataReader, type, str]] = []
        self.threads: list[threading.Thread] = []
        self.image_writer: DataWriter | None = None
        self.image_type = ""
        self.odom_writer: DataWriter | None = None
        self.closed = False
        self.loop_accepted = msg_class(m.LOOP_TYPE).ACCEPTED

    # ------------------------------------------------------------------ hooks (node threads)
    def _event(self) -> None:
        self.last_event = time.monotonic()
        self.cond.notify_all()

    def on_received(self, stamp: int) -> None:
        with self.cond:
            self.received.add(int(stamp))
            self._event()

    def on_picked(self, stamp: int | None, out: FrameOutput) -> None:
        if stamp is None:
            return
        status = "failed" if out.error_kind is not None else "processed" if out.is_keyframe else "skipped"
        with self.cond:
            self.picked[int(stamp)] = (status, out, time.monotonic())
            self.max_picked = int(stamp) if self.max_picked is None else max(self.max_picked, int(stamp))
            self._event()

    def on_message(self, role: str, msg: Any) -> None:
        stamp = _message_stamp(role, msg)
        if stamp is None:
            return
        with self.cond:
            self.counts[role] += 1
            self.messages[role][stamp] = (msg, time.monotonic())
            if role == "result":
                self.max_result = stamp if self.max_result is None else max(self.max_result, stamp)
            self._event()

    # ------------------------------------------------------------------ set-up and tear-down
    def _track(self, entity: Any) -> Any:
        self.entities.append(entity)
        return entity

    def open(self) -> None:
        r, p = self.r, self.params
        previous = os.environ.get(CYCLONEDDS_URI_ENV)
        if r.loopback:
            loopback_config(override=True)  # read when the domain is created
        try:
            self.core = _ObservedCore(p, r.describer, r.vmap, self)
            self.node = DdsNode(p, self.core, domain_id=r.domain_id)
            self.participant = DomainParticipant(r.domain_id)
            topic, self.image_type = self.node.topics["image"]
            self.image_writer = self._track(DataWriter(self.participant, self._topic(topic, self.image_type),
                                                       qos=_image_qos(p)))
            if r.feed_odometry and "odometry" in self.node.topics:
                self.odom_writer = self._track(DataWriter(
                    self.participant, self._topic(self.node.topics["odometry"][0], ODOM_TYPE),
                    qos=sensor_data_qos(50)))
            self.waitset = self._track(WaitSet(self.participant))
            self.guard = self._track(GuardCondition(self.participant))
            self.waitset.attach(self.guard)
            for role in ROLES:
                if role not in self.node.topics:
                    continue
                name, typename = self.node.topics[role]
                reader = self._track(DataReader(self.participant, self._topic(name, typename),
                                                qos=reliable_qos(1000)))
                cond = self._track(ReadCondition(reader, SampleState.Any | ViewState.Any | InstanceState.Any))
                self.waitset.attach(cond)
                self.readers.append((role, reader, dds_type(typename), typename))
        finally:
            if r.loopback:
                if previous is None:
                    os.environ.pop(CYCLONEDDS_URI_ENV, None)
                else:
                    os.environ[CYCLONEDDS_URI_ENV] = previous
        self._thread(self._read_loop, "fol_vpr-eval-reader")
        self.node.start()
        if r.warmup:
            h, w = p.input_size
            self.core.describer.describe_arrays([np.zeros((h, w, 3), np.uint8)])
        self._wait_matched()

    def _topic(self, name: str, typename: str) -> Topic:
        return self._track(Topic(self.participant, name, dds_type(typename)))

    def _thread(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _wait_matched(self) -> None:
        """Both ends of every link discovered (best-effort images sent before would be lost)."""
        links = [("image", lambda: self.image_writer.get_matched_subscriptions())]
        if self.odom_writer is not None:
            links.append(("odometry", lambda: self.odom_writer.get_matched_subscriptions()))
        links += [(role, reader.get_matched_publications) for role, reader, _, _ in self.readers]
        deadline = time.monotonic() + self.r.discovery_timeout
        for what, matched in links:
            while not matched():
                if time.monotonic() > deadline:
                    raise FolVprError(f"DDS discovery: the {what} topic of the node was not matched within "
                                      f"{self.r.discovery_timeout:g} s (domain {self.r.domain_id}); with loopback "
                                      "Cyclone DDS needs multicast on 127.0.0.1")
                time.sleep(0.01)

    def start(self, frames: Iterable[ReplayFrame]) -> None:
        self._thread(self._publish_loop, "fol_vpr-eval-publisher", iter(frames))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop.set()
        with contextlib.suppress(Exception):
            self.guard.set(True)
        for t in self.threads:
            if t.name == "fol_vpr-eval-publisher":
                t.join(30.0)
        if self.node is not None:
            self.node.close()
        for t in self.threads:
            t.join(10.0)
        for entity in reversed(self.entities):
            with contextlib.suppress(Exception):
                entity.__del__()  # cyclonedds deletes an entity in __del__: do it now, children first
        self.entities.clear()
        if self.participant is not None:
            with contextlib.suppress(Exception):
                self.participant.__del__()

    # ------------------------------------------------------------------ threads
    def _read_loop(self) -> None:
        while not self.stop.is_set():
            try:
                self.waitset.wait(_WAIT)
            except Exception:  # deleted under us while closing, or DDS failed
                if self.stop.is_set():
                    return
                time.sleep(0.05)
                continue
            for role, reader, cls, typename in self.readers:
                for _ in range(100):
                    try:
                        samples = reader.take(N=_TAKE)
                    except Exception as exc:
                        log.warning("%s: cannot take samples: %s", role, exc)
                        break
                    for s in samples:
                        if isinstance(s, cls):
                            self.on_message(role, from_dds(s, typename))
                    if len(samples) < _TAKE:
                        break

    def _publish_loop(self, frames: Iterator[ReplayFrame]) -> None:
        late = 0
        t_start = time.monotonic()
        try:
            nxt = next(frames, None)
            if nxt is not None:
                self._publish_odom(nxt)
            t0 = time.monotonic() + FIRST_LEAD_S
            s0 = nxt.stamp_ns if nxt is not None else 0
            while nxt is not None and not self.stop.is_set():
                f = nxt
                due = t0 + max(0, f.stamp_ns - s0) / NS / self.r.rate_factor
                wait = due - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
                if wait < -LATE_S:
                    late += 1
                self.image_writer.write(to_dds(_image_message(f.payload), self.image_type))
                with self.cond:
                    self.pending.append(f)
                    self.published[f.stamp_ns] = time.monotonic()
                    self._event()
                nxt = next(frames, None)
                if nxt is not None:
                    self._publish_odom(nxt)  # one frame ahead of its image
        except BaseException as exc:
            with self.cond:
                self.error = exc
        finally:
            with contextlib.suppress(Exception):
                getattr(frames, "close", lambda: None)()
            with self.cond:
                self.counts["late_publishes"] = late
                self.replay_s = time.monotonic() - t_start
                self.publisher_done = True
                self._event()

    def _publish_odom(self, f: ReplayFrame) -> None:
        if self.odom_writer is not None and f.odom is not None:
            self.odom_writer.write(to_dds(_odom_message(f), ODOM_TYPE))

    # ------------------------------------------------------------------ matching (caller's thread)
    def step(self) -> tuple[list[RunnerFrame], bool]:
        """Frames resolved so far (in order), and whether the replay is complete."""
        with self.cond:
            if self.error is not None:
                raise self.error
            final = self._drained()
            batch = self._resolve(final)
            done = self.publisher_done and not self.pending
            if not batch and not done:
                self.cond.wait(0.05)
        return batch, done

    def _drained(self) -> bool:
        if not self.publisher_done:
            return False
        now = time.monotonic()
        if self.drain_deadline is None:
            self.drain_deadline = now + self.r.drain_timeout
        if now >= self.drain_deadline:
            self.drain_timed_out = bool(self.pending)
            return True
        return now - self.last_event >= SETTLE_S and self.core.wait_idle(0)

    def _resolve(self, final: bool) -> list[RunnerFrame]:
        out = []
        now = time.monotonic()
        while self.pending:
            r = self._outcome(self.pending[0], now, final)
            if r is None:
                break
            self.pending.popleft()
            s = r.frame.stamp_ns
            self.received.discard(s)
            self.picked.pop(s, None)
            self.published.pop(s, None)
            for role in ROLES:
                self.messages[role].pop(s, None)
            out.append(r)
        return out

    def _outcome(self, f: ReplayFrame, now: float, final: bool) -> RunnerFrame | None:
        s = f.stamp_ns
        got = self.messages["result"].get(s)
        if got is not None:
            msg, t_result = got
            extras = {role: self.messages[role][s][0] for role in ROLES[:-1] if s in self.messages[role]}
            if not final and now - t_result < EXTRAS_GRACE_S and not self._expected(msg) <= set(extras):
                return None
            if s in self.published:
                self.e2e_ms.append((t_result - self.published[s]) * 1e3)
            sent = (*((role, extras[role]) for role in ROLES[:-1] if role in extras), ("result", msg))
            return RunnerFrame(f, "processed", self._output(msg, extras), messages=sent)
        picked = self.picked.get(s)
        if picked is not None:
            status, out, t_pick = picked
            if status != "processed":
                return RunnerFrame(f, status, out)
            later = self.max_result is not None and self.max_result > s
            if final or later or now - t_pick > self.r.result_timeout:
                self.drops["result_lost"] += 1
                return RunnerFrame(f, "dropped")
            return None
        if final or (self.max_picked is not None and self.max_picked > s):
            self.drops["in_node_slot" if s in self.received else "before_core"] += 1
            return RunnerFrame(f, "dropped")
        return None

    def _expected(self, msg: Any) -> set[str]:
        """Messages the node publishes before a result like ``msg``."""
        want = {"markers"}
        if self.params.mode == "loop_closure":
            if len(msg.candidates):
                want.add("loop_closure")
        elif msg.accepted and 0 <= msg.accepted_index < len(msg.candidates) \
                and msg.candidates[msg.accepted_index].has_pose:
            want.add("pose")
        return want

    # ------------------------------------------------------------------ messages -> FrameOutput
    def _candidate(self, c: Any) -> CandidateInfo:
        kid = int(c.keyframe_id)
        frame_id = ""
        if self.r.vmap is not None:
            with contextlib.suppress(Exception):
                frame_id = self.r.vmap.keyframe(kid).frame_id
        pose = None
        if c.has_pose:
            p, q = c.pose.position, c.pose.orientation
            pose = Pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), str(c.pose_frame_id) or "map")
        return CandidateInfo(kid, int(c.rank), -1, float(c.global_similarity), int(c.rerank_score),
                             time_to_ns(c.stamp), str(c.session_id) or None, frame_id, pose)

    def _output(self, msg: Any, extras: dict[str, Any]) -> FrameOutput:
        stamp = time_to_ns(msg.header.stamp)
        cands = tuple(self._candidate(c) for c in msg.candidates)
        idx = int(msg.accepted_index)
        match = cands[idx] if msg.accepted and 0 <= idx < len(cands) else None
        reason = str(msg.status)
        loop = self.params.mode == "loop_closure"
        kf_id = int(msg.query_id) if loop else None
        decision: LocalizeDecision | LoopDecision
        if loop:
            lm = extras.get("loop_closure")
            if lm is not None:
                decision = LoopDecision(int(lm.status) == self.loop_accepted, int(lm.query_keyframe_id),
                                        time_to_ns(lm.query_stamp), int(lm.match_keyframe_id),
                                        time_to_ns(lm.match_stamp), int(lm.rerank_score),
                                        float(lm.global_similarity), int(lm.consistent_hits), reason)
            else:
                decision = LoopDecision(False, kf_id, stamp, None, None, -1, math.nan, 0, reason)
        else:
            best = cands[0] if cands else None
            decision = LocalizeDecision(match is not None, best.keyframe_id if best else None,
                                        best.rerank_score if best else -1,
                                        best.global_similarity if best else math.nan, reason)
        pose = None
        pm = extras.get("pose")
        if pm is not None and match is not None:
            pp, q = pm.pose.pose.position, pm.pose.pose.orientation
            cov = tuple(float(v) for v in pm.pose.covariance)
            pose = PoseEstimate(stamp, str(pm.header.frame_id), (pp.x, pp.y, pp.z), (q.x, q.y, q.z, q.w), cov,
                                math.sqrt(max(cov[0], 0.0)), math.sqrt(max(cov[21], 0.0)), match.keyframe_id)
        lat = StageLatency(float(msg.decode_ms), float(msg.describe_ms), float(msg.search_ms), float(msg.rerank_ms),
                           float(msg.total_ms))
        map_size = len(self.r.vmap) if self.r.vmap is not None else (kf_id + 1 if kf_id is not None else 0)
        return FrameOutput(int(msg.query_id), stamp, str(msg.camera_frame_id), self.params.mode, True, kf_id, cands,
                           match, reason, decision, pose, None, lat, None, map_size)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        d = self.core.diagnostics()
        node = self.node
        return {
            "runner": DdsRunner.name, "domain_id": self.r.domain_id, "loopback": self.r.loopback,
            "rate_factor": self.r.rate_factor, "image_topic": node.topics["image"][0], "image_type": self.image_type,
            "result_topic": node.topics["result"][0], "odometry_published": self.odom_writer is not None,
            "messages_received": {role: self.counts[role] for role in ROLES if role in node.topics},
            "dropped": dict(self.drops), "late_publishes": self.counts["late_publishes"],
            "replay_wall_s": round(self.replay_s, 3), "drain_timed_out": self.drain_timed_out,
            "end_to_end_ms": TimingStats.from_ms(self.e2e_ms).to_dict(),
            "node_diagnostics": {"frames_received": d.frames_received, "frames_processed": d.frames_processed,
                                 "frames_dropped": d.frames_dropped, "frames_skipped": d.frames_skipped,
                                 "frames_failed": d.frames_failed, "errors": dict(d.errors),
                                 "adapter_errors": node.adapter_errors()},
        }
