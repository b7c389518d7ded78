"""`evaluate-bag --through-node`: replay a bag through the rclpy node (the deployed code path) at bag rate.

``RclpyReplayRunner`` starts the real ``FolVprNode`` (its ``NodeCore`` built from the evaluation's
params, describer and map) on use_sim_time, and a second rclpy node that plays the bag: ``/clock``
with each frame's stamp, then the image (``sensor_msgs/Image`` or ``CompressedImage``, as in the bag,
with the bag stamps in the headers) on the node's image topic, at the bag's stamp spacing divided by
``rate_factor`` (1.0 = real time). With ``feed_odometry`` the bag poses go out as ``nav_msgs/Odometry``
on the node's odometry topic, one frame ahead of their image (a robot's odometry runs ahead of the
camera). Subscriptions on ``~/result``, ``~/markers`` and ``~/loop_closure`` (loop closure) or
``~/pose`` (localize) read back what the node publishes, as serialized CDR (turned into rosbags
messages, which the results bag stores unchanged).

Results are matched to frames by header stamp and turned back into ``FrameOutput`` for the metrics.
Every image passes the node's subscription (``qos.image``: best effort, depth 1 by default) and the
core's latest-frame slot, so a node slower than the replay drops frames as it would on the robot. Per
frame: ``processed`` (its result arrived), ``skipped`` / ``failed`` (keyframe gate, bad image: the node
publishes nothing for these, so the core is observed in-process through ``NodeCore.add_observer``), or
``dropped``: it never reached the core (lost in DDS or replaced in the subscription queue), it was
replaced in the core's slot, or its result never arrived. A frame counts as dropped once the worker
has taken a later frame, or when the replay has ended and the node has been idle for ``SETTLE_S`` (at
most ``drain_timeout`` after the last image).

Both nodes live in their own rclpy context on ROS domain ``domain_id`` (default ``$ROS_DOMAIN_ID``, else
0). Discovery stays on this machine (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` while the context is
created) unless that variable is set already: a replay must not reach a robot on the network. The describer
is warmed up with one blank image before the replay.

The frame types (``ReplayFrame``, ``RunnerFrame``, ``RunnerStatus``) come from ``node.runners``; this module
imports nothing of ``evaluation/`` but ``TimingStats``.

Long module: one module (~570 lines) on purpose: the
publisher, executor and observer threads of a run share one bookkeeping object (``_Replay``), and the
messages-to-``FrameOutput`` conversion reads that run's state.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from fol_vpr_ros.errors import ConfigError, FolVprError
from fol_vpr_ros.evaluation.metrics import TimingStats
from fol_vpr_ros.mapping import Pose, VprMap
from fol_vpr_ros.msg import LoopClosure, PlaceRecognitionResult
from fol_vpr_ros.node.core import NodeCore
from fol_vpr_ros.node.frames import CandidateInfo, FrameOutput, StageLatency
from fol_vpr_ros.node.loop_closure import LocalizeDecision, LoopDecision
from fol_vpr_ros.node.params import NodeParams, param_specs
from fol_vpr_ros.node.pose import PoseEstimate
from fol_vpr_ros.node.runners import ReplayFrame, RunnerFrame, RunnerStatus, status_of
from fol_vpr_ros.ros import messages as m
from fol_vpr_ros.ros.interfaces import deserialize, make_header, make_message, msg_class, serialize, time_to_ns
from fol_vpr_ros.ros.rclpy_node import FolVprNode
from fol_vpr_ros.sources.image_decode import CompressedPayload, ImagePayload
from fol_vpr_ros.stamps import NS_PER_SEC

__all__ = ["DEFAULT_DRAIN_TIMEOUT_S", "SETTLE_S", "RclpyReplayRunner", "node_overrides"]

DEFAULT_DRAIN_TIMEOUT_S = 60.0
SETTLE_S = 0.5  # after the last image: node idle and nothing new for this long -> the rest is dropped
EXTRAS_GRACE_S = 1.0  # wait this long after a result for its pose / markers / loop closure messages
LATE_S = 0.05  # an image published this far behind its schedule counts as late
FIRST_LEAD_S = 0.1  # the first image goes out this long after the first odometry
ROLES = ("loop_closure", "pose", "markers", "result")  # the node's publish order
ODOM_TYPE = "nav_msgs/msg/Odometry"
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"
_ROLE_TYPES = {"result": (PlaceRecognitionResult, m.RESULT_TYPE), "pose": (PoseWithCovarianceStamped, m.POSE_TYPE),
               "markers": (MarkerArray, m.MARKERS_TYPE), "loop_closure": (LoopClosure, m.LOOP_TYPE)}
_READ_DEPTH = 1000
DISCOVERY_RANGE_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"
_EXECUTOR_THREADS = 4


def node_overrides(params: NodeParams) -> list[Parameter]:
    """rclpy parameter overrides that give a FolVprNode exactly ``params`` (values that differ from the defaults)."""
    values = params.to_flat_dict()
    out = []
    for spec in param_specs():
        value = values[spec.name]
        value = list(value) if isinstance(value, tuple) else value
        default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
        if value != default:
            out.append(Parameter(spec.name, value=value))
    return out


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


def _camera_info_message(f: ReplayFrame) -> Any:
    """sensor_msgs/CameraInfo of the frame's camera (pinhole K, its distortion, identity R, P = [K | 0])."""
    c = f.camera
    k = [c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0]
    return make_message(m.CAMERA_INFO_TYPE, header=make_header(f.stamp_ns, f.frame_id), width=int(c.width),
                        height=int(c.height), distortion_model=c.distortion_model, d=np.asarray(c.distortion, float),
                        k=np.asarray(k), r=np.eye(3).reshape(-1), p=np.insert(np.asarray(k), [3, 6, 9], 0.0))


def _clock_message(stamp_ns: int) -> bytes:
    sec, nanosec = divmod(int(stamp_ns), NS_PER_SEC)
    clock = make_message(CLOCK_TYPE, clock=msg_class("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec))
    return serialize(clock, CLOCK_TYPE)


def _message_stamp(role: str, msg: Any) -> int | None:
    if role == "markers":
        return time_to_ns(msg.markers[0].header.stamp) if len(msg.markers) else None
    return time_to_ns(msg.header.stamp)


class RclpyReplayRunner:
    """FrameRunner replaying frames through an in-process FolVprNode over rclpy at bag rate (see the module doc)."""

    name = "rclpy_node"

    def __init__(self, params: NodeParams, describer: Any, vpr_map: VprMap | None = None, *,
                 image_msgtype: str = IMAGE_TYPE, rate_factor: float = 1.0, feed_odometry: bool = True,
                 domain_id: int | None = None, drain_timeout: float = DEFAULT_DRAIN_TIMEOUT_S,
                 discovery_timeout: float = 10.0, result_timeout: float = 10.0, warmup: bool = True) -> None:
        if not (isinstance(rate_factor, (int, float)) and math.isfinite(rate_factor) and rate_factor > 0):
            raise ConfigError(f"rate factor must be a positive number (1.0 = bag rate), got {rate_factor!r}")
        for what, t in (("drain_timeout", drain_timeout), ("discovery_timeout", discovery_timeout),
                        ("result_timeout", result_timeout)):
            if not t > 0:
                raise ConfigError(f"{what} must be > 0 seconds, got {t}")
        if image_msgtype not in (IMAGE_TYPE, COMPRESSED_TYPE):
            raise ConfigError(f"image message type must be {IMAGE_TYPE} or {COMPRESSED_TYPE}, got {image_msgtype!r}")
        env = os.environ.get("ROS_DOMAIN_ID", "").strip()
        if domain_id is None:
            if env and not env.isdigit():
                raise ConfigError(f"environment variable ROS_DOMAIN_ID={env!r}: expected an integer 0..232")
            domain_id = int(env) if env else 0
        self.domain_id = int(domain_id)
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
        text = (f"replayed through the rclpy node at {s['rate_factor']:g}x bag rate (ROS domain {s['domain_id']}, "
                f"{s['rmw']}, use_sim_time): {sum(d.values())} frame(s) dropped "
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
    """One run of a RclpyReplayRunner: context, the two nodes, executor and publisher threads, bookkeeping."""

    def __init__(self, runner: RclpyReplayRunner) -> None:
        self.r = runner
        self.params = runner.params
        self.cond = threading.Condition()
        self.stop = threading.Event()
        self.pending: deque[ReplayFrame] = deque()
        self.published: dict[int, float] = {}
        self.received: set[int] = set()
        self.picked: dict[int, tuple[RunnerStatus, FrameOutput, float]] = {}
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
        self.context: Any = None
        self.node: FolVprNode | None = None
        self.player: Any = None
        self.core: NodeCore | None = None
        self.executor: MultiThreadedExecutor | None = None
        self.threads: list[threading.Thread] = []
        self.image_pub: Any = None
        self.odom_pub: Any = None
        self.info_pub: Any = None
        self.clock_pub: Any = None
        self.topics: dict[str, str] = {}
        self.readers: dict[str, Any] = {}
        self.closed = False
        self.loop_accepted = msg_class(m.LOOP_TYPE).ACCEPTED

    # ------------------------------------------------------------------ core observer (node threads)
    def _event(self) -> None:
        self.last_event = time.monotonic()
        self.cond.notify_all()

    def on_submitted(self, payload: ImagePayload | CompressedPayload) -> None:
        stamp = getattr(payload, "stamp_ns", None)
        if stamp is None:
            return
        with self.cond:
            self.received.add(int(stamp))
            self._event()

    def on_processed(self, payload: ImagePayload | CompressedPayload, out: FrameOutput) -> None:
        stamp = getattr(payload, "stamp_ns", None)
        if stamp is None:
            return
        status = status_of(out)
        with self.cond:
            self.picked[int(stamp)] = (status, out, time.monotonic())
            self.max_picked = int(stamp) if self.max_picked is None else max(self.max_picked, int(stamp))
            self._event()

    def on_message(self, role: str, data: bytes) -> None:
        msg = deserialize(data, _ROLE_TYPES[role][1])
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
    def open(self) -> None:
        r, p = self.r, self.params
        self.context = rclpy.Context()
        unset = DISCOVERY_RANGE_ENV not in os.environ
        if unset:
            os.environ[DISCOVERY_RANGE_ENV] = "LOCALHOST"  # read by the rmw when the context starts
        try:
            rclpy.init(context=self.context, domain_id=r.domain_id)
        finally:
            if unset:
                os.environ.pop(DISCOVERY_RANGE_ENV, None)
        self.core = NodeCore(p, r.describer, r.vmap)
        self.core.add_observer(self)
        overrides = [*node_overrides(p), Parameter("use_sim_time", value=True)]
        self.node = FolVprNode(p.node_name, core=self.core, namespace=p.namespace, context=self.context,
                               parameter_overrides=overrides)
        self.player = rclpy.create_node("fol_vpr_bag_replay", context=self.context)
        node = self.node
        self.topics = node.topic_names()
        if not self.r.feed_odometry:
            self.topics.pop("odometry", None)
        q = p.qos.image
        image_qos = QoSProfile(depth=q.depth, history=HistoryPolicy.KEEP_LAST,
                               reliability=ReliabilityPolicy.BEST_EFFORT if q.reliability == "best_effort"
                               else ReliabilityPolicy.RELIABLE)
        image_cls = CompressedImage if p.image_transport == "compressed" else Image
        self.image_pub = self.player.create_publisher(image_cls, self.topics["image"], image_qos)
        self.clock_pub = self.player.create_publisher(Clock, "/clock", 10)
        self.info_pub = (self.player.create_publisher(CameraInfo, self.topics["camera_info"], QoSProfile(
            depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)) if "camera_info" in self.topics else None)
        if "odometry" in self.topics:
            self.odom_pub = self.player.create_publisher(
                Odometry, self.topics["odometry"], QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT))
        reliable = QoSProfile(depth=_READ_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        for role in ROLES:
            if role in self.topics:
                self.readers[role] = self.player.create_subscription(
                    _ROLE_TYPES[role][0], self.topics[role], lambda data, role=role: self.on_message(role, data),
                    reliable, raw=True)
        self.executor = MultiThreadedExecutor(num_threads=_EXECUTOR_THREADS, context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.player)
        self._thread(self.executor.spin, "fol_vpr-replay-executor")
        if r.warmup:
            h, w = p.input_size
            self.core.describer.describe_arrays([np.zeros((h, w, 3), np.uint8)])
        self._wait_matched()

    def _thread(self, target: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=target, args=args, name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _wait_matched(self) -> None:
        """Both ends of every link discovered, each from both sides (a result published before the reader
        matched the node's writer would be lost; so would best-effort images sent before)."""
        node = self.node
        links = [("image", self.image_pub.get_subscription_count),
                 ("result", lambda: node.subscribers("result")),
                 ("markers", lambda: node.subscribers("markers"))]
        if self.odom_pub is not None:
            links.append(("odometry", self.odom_pub.get_subscription_count))
        links.append(("loop_closure", lambda: node.subscribers("loop_closure")) if "loop_closure" in self.topics
                     else ("pose", lambda: node.subscribers("pose")))
        links += [(role, reader.get_publisher_count) for role, reader in self.readers.items()]
        deadline = time.monotonic() + self.r.discovery_timeout
        for what, matched in links:
            while matched() < 1:
                if time.monotonic() > deadline:
                    raise FolVprError(f"ROS discovery: the {what} topic ({self.topics.get(what, what)}) was not "
                                      f"matched within {self.r.discovery_timeout:g} s (domain {self.r.domain_id})")
                time.sleep(0.01)

    def start(self, frames: Iterable[ReplayFrame]) -> None:
        self._thread(self._publish_loop, "fol_vpr-replay-publisher", iter(frames))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stop.set()
        for t in self.threads:
            if t.name == "fol_vpr-replay-publisher":
                t.join(30.0)
        if self.node is not None:
            self.node.shutdown()
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=5.0)
        for t in self.threads:  # the executor thread ends before nodes and context go (rclpy can deadlock)
            t.join(10.0)
        for n in (self.player, self.node):
            if n is not None:
                with contextlib.suppress(Exception):
                    n.destroy_node()
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)

    # ------------------------------------------------------------------ publisher thread
    def _publish_loop(self, frames: Iterator[ReplayFrame]) -> None:
        late = 0
        t_start = time.monotonic()
        try:
            nxt = next(frames, None)
            if nxt is not None:
                self._publish_odom(nxt)
            t0 = time.monotonic() + FIRST_LEAD_S
            s0 = nxt.stamp_ns if nxt is not None else 0
            image_type = COMPRESSED_TYPE if self.params.image_transport == "compressed" else IMAGE_TYPE
            while nxt is not None and not self.stop.is_set():
                f = nxt
                due = t0 + max(0, f.stamp_ns - s0) / NS_PER_SEC / self.r.rate_factor
                wait = due - time.monotonic()
                if wait > 0 and self.stop.wait(wait):
                    break
                if wait < -LATE_S:
                    late += 1
                self.clock_pub.publish(_clock_message(f.stamp_ns))
                self.image_pub.publish(serialize(_image_message(f.payload), image_type))
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
        """The frame's odometry and CameraInfo, ahead of its image (as drivers publish them)."""
        if self.odom_pub is not None and f.odom is not None:
            self.odom_pub.publish(serialize(_odom_message(f), ODOM_TYPE))
        if self.info_pub is not None and f.camera is not None:
            self.info_pub.publish(serialize(_camera_info_message(f), m.CAMERA_INFO_TYPE))

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
            return RunnerFrame(f, RunnerStatus.PROCESSED, self._output(msg, extras), messages=sent)
        picked = self.picked.get(s)
        if picked is not None:
            status, out, t_pick = picked
            if status != RunnerStatus.PROCESSED:
                return RunnerFrame(f, status, out)
            later = self.max_result is not None and self.max_result > s
            if final or later or now - t_pick > self.r.result_timeout:
                self.drops["result_lost"] += 1
                return RunnerFrame(f, RunnerStatus.DROPPED)
            return None
        if final or (self.max_picked is not None and self.max_picked > s):
            self.drops["in_node_slot" if s in self.received else "before_core"] += 1
            return RunnerFrame(f, RunnerStatus.DROPPED)
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
                             time_to_ns(c.stamp), str(c.session_id) or None, frame_id, pose,
                             verification=m.verification_of(c), robot_id=str(c.robot_id) or None)

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
                           float(msg.total_ms), float(msg.verify_ms))
        map_size = len(self.r.vmap) if self.r.vmap is not None else (kf_id + 1 if kf_id is not None else 0)
        return FrameOutput(int(msg.query_id), stamp, str(msg.camera_frame_id), self.params.mode, True, kf_id, cands,
                           match, reason, decision, pose, None, lat, None, map_size)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict[str, Any]:
        d = self.core.diagnostics()
        return {
            "runner": RclpyReplayRunner.name, "domain_id": self.r.domain_id,
            "rmw": rclpy.get_rmw_implementation_identifier(), "rate_factor": self.r.rate_factor,
            "discovery_range": os.environ.get(DISCOVERY_RANGE_ENV, "LOCALHOST"),
            "use_sim_time": True, "image_topic": self.topics.get("image", ""),
            "image_type": COMPRESSED_TYPE if self.params.image_transport == "compressed" else IMAGE_TYPE,
            "result_topic": self.topics.get("result", ""), "odometry_published": self.odom_pub is not None,
            "messages_received": {role: self.counts[role] for role in ROLES if role in self.topics},
            "dropped": dict(self.drops), "late_publishes": self.counts["late_publishes"],
            "replay_wall_s": round(self.replay_s, 3), "drain_timed_out": self.drain_timed_out,
            "end_to_end_ms": TimingStats.from_ms(self.e2e_ms).to_dict(),
            "node_diagnostics": {"frames_received": d.frames_received, "frames_processed": d.frames_processed,
                                 "frames_dropped": d.frames_dropped, "frames_skipped": d.frames_skipped,
                                 "frames_failed": d.frames_failed, "errors": dict(d.errors)},
        }
