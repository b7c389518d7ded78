"""The fol_vpr ROS 2 node (rclpy): `ros2 run fol_vpr_ros fol_vpr_node` / `ros2 launch fol_vpr_ros localize.launch.py`.

A thin shell over ``NodeCore``: declares every parameter of ``param_specs()`` (read-only, with
description and range), subscribes to ``image`` (or ``image/compressed``; sensor-data QoS by default;
each topic of ``image_topics`` when set, frames tagged with their topic) and optionally odometry, and
publishes what ``messages`` builds: ``~/result``, ``~/pose``, ``~/markers``, ``~/loop_closure``,
``/diagnostics`` and, with ``lio_sam.enabled``, ``lio_loop/loop_closure_detection``; with
``adapters.pose_graph_topic`` / ``adapters.rtabmap_topic`` pose_graph_tools / rtabmap loop closures
(``backends``); with ``publish_tf`` the map->odom correction on ``/tf`` (``node.map_odom``). Subscribes
to CameraInfo (``camera_info`` next to each image topic) and hands it to the core. Service
``~/save_map`` (std_srvs/Trigger) saves the online map in
its own callback group (images keep flowing); the map is also saved on shutdown when configured. The
core's Python logging goes through the node's rclpy logger (so to /rosout, at ``--log-level``).
Needs the generated ``fol_vpr_ros.msg`` (a colcon build of this package).
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from fol_vpr_ros.errors import ConfigError, FolVprError
from fol_vpr_ros.msg import LoopClosure, PlaceRecognitionResult
from fol_vpr_ros.node.core import NodeCore
from fol_vpr_ros.node.frames import FrameOutput
from fol_vpr_ros.node.map_odom import MapOdomBroadcaster, MapOdomConfig
from fol_vpr_ros.node.online_map import ShutdownReport
from fol_vpr_ros.node.params import NodeParams, ParamSpec, load_params, param_specs
from fol_vpr_ros.ros import backends as b
from fol_vpr_ros.ros import messages as m
from fol_vpr_ros.ros.log_bridge import routed_to_ros

__all__ = ["EXIT_BAD_INPUT", "FolVprNode", "main", "parameter_descriptor", "params_files"]

EXIT_BAD_INPUT = 2
_INT64_MAX = 2**63 - 1
_FLOAT_MAX = sys.float_info.max
_DOMAIN_ID_MAX = 232  # the largest domain id the default DDS port mapping allows
_EXECUTOR_THREADS = 3  # inputs, the save service and the timers (diagnostics, /tf) each get a thread
_TF_DEPTH = 100  # /tf publisher history, as tf2_ros' broadcasters keep
_SPIN_POLL_SEC = 0.2  # the spin loop looks at the shutdown signals this often


def parameter_descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """ParameterDescriptor of one parameter: description, read_only, allowed values, numeric range."""
    d = ParameterDescriptor(name=spec.name, description=spec.description, read_only=spec.read_only,
                            additional_constraints=f"allowed: {spec.allowed()}")
    if spec.type is int and (spec.min is not None or spec.max is not None):
        lo = int(spec.min) if spec.min is not None else -_INT64_MAX - 1
        hi = int(spec.max) if spec.max is not None else _INT64_MAX
        d.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=0)]
    elif spec.type is float and (spec.min is not None or spec.max is not None):
        lo = float(spec.min) if spec.min is not None else -_FLOAT_MAX
        hi = float(spec.max) if spec.max is not None else _FLOAT_MAX
        d.floating_point_range = [FloatingPointRange(from_value=lo, to_value=hi, step=0.0)]
    return d


def params_files(args: Sequence[str]) -> list[str]:
    """The ``--params-file`` paths of the ``--ros-args`` sections of a command line, in order."""
    out: list[str] = []
    in_ros = False
    tokens = list(args)
    for i, token in enumerate(tokens):
        if token == "--ros-args":
            in_ros = True
        elif token == "--":
            in_ros = False
        elif in_ros and token == "--params-file":
            if i + 1 >= len(tokens):
                raise ConfigError("--params-file: a path must follow")
            out.append(tokens[i + 1])
    return out


class FolVprNode(Node):
    """The fol_vpr node: parameters -> NodeCore; images in, results out."""

    def __init__(self, node_name: str = "fol_vpr", *, core: NodeCore | None = None,
                 param_files: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        values = self._declare_parameters()
        for path in param_files:  # strict check of the files (unknown names with suggestions, types, ranges)
            load_params(path, self.get_name(), None, self.get_namespace())
        self.params: NodeParams = load_params(None, self.get_name(), values, self.get_namespace())
        tf_config = MapOdomConfig.from_params(self.params) if self.params.publish_tf else None
        backend_classes = self._backend_classes(self.params)  # fail fast on a missing message package
        self._log_route = contextlib.ExitStack()
        self._log_route.enter_context(routed_to_ros(self.get_logger()))
        try:
            self.core = core if core is not None else NodeCore(self.params)
        except BaseException:
            self._log_route.close()
            raise
        self._closing = threading.Event()
        p = self.params
        inputs = MutuallyExclusiveCallbackGroup()
        self._service_group = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.VOLATILE)
        self._pub_result = self.create_publisher(PlaceRecognitionResult, "~/result", out_qos)
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", out_qos)
        self._pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self._pub_loop = self._pub_lio = None
        self._pub_backends: dict[str, Any] = {}
        if p.mode == "loop_closure":
            self._pub_loop = self.create_publisher(LoopClosure, "~/loop_closure", out_qos)
            if p.lio_sam.enabled:
                self._pub_lio = self.create_publisher(Float64MultiArray, m.LIO_SAM_TOPIC, out_qos)
            for role, (cls, topic) in backend_classes.items():
                self._pub_backends[role] = self.create_publisher(cls, topic, out_qos)
        self._backend_warned: set[str] = set()
        self._tf = MapOdomBroadcaster(tf_config) if tf_config is not None else None
        self._tf_lock = threading.Lock()
        self._pub_tf = None
        self._last_stamp_ns = 0
        if self._tf is not None:
            from tf2_msgs.msg import TFMessage

            self._tf_cls = TFMessage
            tf_qos = QoSProfile(depth=_TF_DEPTH, reliability=ReliabilityPolicy.RELIABLE,
                                history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE)
            self._pub_tf = self.create_publisher(TFMessage, m.TF_TOPIC, tf_qos)
        q = p.qos.image
        image_qos = QoSProfile(depth=q.depth, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE,
                               reliability=ReliabilityPolicy.BEST_EFFORT if q.reliability == "best_effort"
                               else ReliabilityPolicy.RELIABLE)
        self._sub_images = []
        for camera in p.camera_topics:  # one subscription per camera; frames carry their camera's topic
            topic = m.image_topic_name(replace(p, image_topic=camera))
            msg_type, on_msg = ((Image, self._on_image) if p.image_transport == "raw"
                                else (CompressedImage, self._on_compressed))
            self._sub_images.append(self.create_subscription(msg_type, topic, functools.partial(on_msg, camera=camera),
                                                             image_qos, callback_group=inputs))
        self._sub_image = self._sub_images[0]
        self._sub_odom = None
        if p.odometry.topic:
            odom_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._sub_odom = self.create_subscription(Odometry, p.odometry.topic, self._on_odometry, odom_qos,
                                                      callback_group=inputs)
        info_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        self._sub_camera_infos = [self.create_subscription(CameraInfo, t, self._on_camera_info, info_qos,
                                                           callback_group=inputs) for t in m.camera_info_topic_names(p)]
        self._camera_info_errors = 0
        self._srv = self.create_service(Trigger, "~/save_map", self._on_save_map, callback_group=self._service_group)
        self._timer = self.create_timer(p.diagnostics.period_sec, self.publish_diagnostics, callback_group=timers)
        self._tf_timer = (self.create_timer(1.0 / p.tf.rate_hz, self.publish_tf, callback_group=timers)
                          if self._tf is not None else None)
        self._odom_errors = 0
        self.core.set_output_callback(self.publish_output)
        self.core.start()
        self.get_logger().info(f"listening on {', '.join(s.topic_name for s in self._sub_images)} "
                               f"({p.image_transport}), mode {p.mode}, "
                               f"map {len(self.core.map)} keyframe(s)")

    def _declare_parameters(self) -> dict[str, Any]:
        """Declare every node parameter with its descriptor; returns name -> value as ROS set it."""
        values = {}
        for spec in param_specs():
            default = list(spec.default) if spec.type is list else spec.default
            if spec.type is list and spec.items is str:  # typed by name: rclpy reads an empty list as bytes
                value = self.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, parameter_descriptor(spec)).value
                values[spec.name] = default if value is None else list(value)
                continue
            values[spec.name] = self.declare_parameter(spec.name, default, parameter_descriptor(spec)).value
        return values

    # ------------------------------------------------------------------ graph
    def topic_names(self) -> dict[str, str]:
        """Resolved topic of each role: image, odometry (if subscribed), result, pose, markers, loop_closure."""
        out = {"image": self._sub_image.topic_name, "result": self._pub_result.topic_name,
               "pose": self._pub_pose.topic_name, "markers": self._pub_markers.topic_name}
        for k, sub in enumerate(self._sub_images[1:], 1):
            out[f"image.{k}"] = sub.topic_name
        if self._sub_odom is not None:
            out["odometry"] = self._sub_odom.topic_name
        if self._pub_loop is not None:
            out["loop_closure"] = self._pub_loop.topic_name
        for k, sub in enumerate(self._sub_camera_infos):
            out["camera_info" if k == 0 else f"camera_info.{k}"] = sub.topic_name
        if self._pub_tf is not None:
            out["tf"] = self._pub_tf.topic_name
        out.update({role: pub.topic_name for role, pub in self._pub_backends.items()})
        return out

    def subscribers(self, role: str) -> int:
        """Matched subscriptions of the output ``role`` (result, pose, markers, loop_closure)."""
        pub = {"result": self._pub_result, "pose": self._pub_pose, "markers": self._pub_markers,
               "loop_closure": self._pub_loop}[role]
        return pub.get_subscription_count() if pub is not None else 0

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Image, camera: str = "") -> None:
        self.core.submit_image(replace(m.image_payload(msg), topic=camera))

    def _on_compressed(self, msg: CompressedImage, camera: str = "") -> None:
        self.core.submit_image(replace(m.compressed_payload(msg), topic=camera))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        try:
            camera = m.camera_intrinsics(msg)
        except ConfigError as exc:
            self._camera_info_errors += 1
            if self._camera_info_errors == 1:
                self.get_logger().warning(f"bad camera_info (logged once, counted in diagnostics): {exc}")
            return
        self.core.submit_camera_info(str(msg.header.frame_id) or self.params.frames.camera, camera)

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            self.core.submit_odometry(m.odom_pose(msg))
        except ConfigError as exc:
            self._odom_errors += 1
            if self._odom_errors == 1:
                self.get_logger().warning(f"bad odometry (logged once, counted in diagnostics): {exc}")

    # ------------------------------------------------------------------ outputs
    def publish_output(self, out: FrameOutput) -> None:
        """Publish one processed keyframe (called on the core's worker thread)."""
        if self._closing.is_set():
            return
        p = self.params
        if self._pub_loop is not None:
            loop = m.loop_closure_msg(out, p.frames.map)
            if loop is not None:
                self._pub_loop.publish(m.to_rosidl(loop, LoopClosure))
            if self._pub_lio is not None and out.loop_closure is not None:
                self._pub_lio.publish(m.to_rosidl(m.lio_sam_msg(out.loop_closure), Float64MultiArray))
            if self._pub_backends:
                self._publish_backends(out)
        self._last_stamp_ns = out.stamp_ns
        if self._tf is not None and out.pose is not None:
            with self._tf_lock:
                self._tf.update(out.pose, out.odom_pose)
            self.publish_tf()
        pose = m.pose_msg(out)
        if pose is not None:
            self._pub_pose.publish(m.to_rosidl(pose, PoseWithCovarianceStamped))
        markers = m.markers_msg(out)
        if markers is not None:
            self._pub_markers.publish(m.to_rosidl(markers, MarkerArray))
        self._pub_result.publish(m.to_rosidl(m.result_msg(out, p), PlaceRecognitionResult))

    @staticmethod
    def _backend_classes(p: NodeParams) -> dict[str, tuple[type, str]]:
        """(message class, topic) of each switched-on back-end adapter (loop_closure mode); ConfigError when missing."""
        if p.mode != "loop_closure":
            return {}
        a = p.adapters
        wanted = {"pose_graph": (b.POSE_GRAPH_TYPE, a.pose_graph_topic),
                  "rtabmap": (b.RTABMAP_LINK_TYPE, a.rtabmap_topic)}
        return {role: (b.import_backend_class(typename), topic) for role, (typename, topic) in wanted.items() if topic}

    def _publish_backends(self, out: FrameOutput) -> None:
        edge = b.backend_edge(out, self.params)
        if edge is None:
            return
        a = self.params.adapters
        if "pose_graph" in self._pub_backends:
            graph = b.pose_graph_msg(edge, a.robots)
            if graph is not None:
                self._pub_backends["pose_graph"].publish(graph)
            elif "pose_graph" not in self._backend_warned:
                self._backend_warned.add("pose_graph")
                self.get_logger().warning(f"pose_graph adapter: robot id {edge.query_robot_id!r} or "
                                          f"{edge.match_robot_id!r} has no number (parameter adapters.robots); "
                                          "such loop closures are not sent (logged once)")
        if "rtabmap" in self._pub_backends:
            self._pub_backends["rtabmap"].publish(b.rtabmap_link_msg(edge, a.rtabmap_id_offset))

    def publish_tf(self) -> None:
        """Broadcast the current map->odom correction on /tf when due (stamp: ROS time, else the last image stamp)."""
        if self._tf is None or self._pub_tf is None or self._closing.is_set():
            return
        now = self.get_clock().now().nanoseconds or self._last_stamp_ns
        with self._tf_lock:
            due = self._tf.due(now)
        if due is not None:
            self._pub_tf.publish(m.to_rosidl(m.tf_msg(due), self._tf_cls))

    def publish_diagnostics(self) -> None:
        """Publish /diagnostics (stamp: the last image stamp, 0 before any; see messages.diagnostics_msg)."""
        if self._closing.is_set():
            return
        snap = self.core.diagnostics()
        extra = {"adapter_error.bad_odometry": str(self._odom_errors)} if self._odom_errors else {}
        if self._camera_info_errors:
            extra["adapter_error.bad_camera_info"] = str(self._camera_info_errors)
        msg = m.diagnostics_msg(snap, snap.last_stamp_ns or 0, self.get_fully_qualified_name(), extra or None)
        self._pub_diag.publish(m.to_rosidl(msg, DiagnosticArray))

    def _on_save_map(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            path = self.core.save_map()
        except FolVprError as exc:
            response.success, response.message = False, str(exc)
        else:
            response.success, response.message = True, f"saved {len(self.core.map)} keyframe(s) to {path}"
        return response

    def shutdown(self) -> ShutdownReport:
        """Stop publishing, let the worker finish, save the online map when configured (the core logs how)."""
        self._closing.set()
        try:
            return self.core.shutdown()
        finally:
            self._log_route.close()


# ---------------------------------------------------------------------------------------------- entry point
def _check_environment() -> None:
    """ROS_DOMAIN_ID must be an integer 0..232 when set (rcl would fail with a traceback)."""
    text = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if text and not (text.isdigit() and int(text) <= _DOMAIN_ID_MAX):
        raise ConfigError(f"environment variable ROS_DOMAIN_ID={text!r}: expected an integer 0..{_DOMAIN_ID_MAX}")


class _ShutdownSignals:
    """SIGINT/SIGTERM: the first asks the spin loop to stop; later ones only print a line, so the shutdown
    save is never interrupted (rclpy's own handlers are off: they would raise inside the save)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.requested is None:
            self.requested = signum
        else:
            print(f"fol_vpr_node: {signal.Signals(signum).name} while shutting down: finishing the save first",
                  file=sys.stderr, flush=True)

    @staticmethod
    def ignore_from_now_on() -> None:
        """Ignore both signals until the process ends (Python's finalisation would restore the defaults)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, signal.SIG_IGN)


def main(args: Sequence[str] | None = None) -> int:
    """Entry point of `ros2 run fol_vpr_ros fol_vpr_node`; 0 on a clean stop, 2 for bad input, 1 when the
    loop-closure session's map could not be saved."""
    argv = list(sys.argv if args is None else args)
    node: FolVprNode | None = None
    code = 0
    try:
        _check_environment()
        for path in params_files(argv):
            if not os.path.isfile(path):
                raise ConfigError(f"--params-file {path}: no such file")
        signals = _ShutdownSignals()
        rclpy.init(args=argv, signal_handler_options=SignalHandlerOptions.NO)
    except (FolVprError, ValueError) as exc:
        print(f"fol_vpr_node: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # rcl's own refusal of the command line (RCLError)
        print(f"fol_vpr_node: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_BAD_INPUT
    executor = None
    try:
        node = FolVprNode(param_files=params_files(argv))
        executor = MultiThreadedExecutor(num_threads=_EXECUTOR_THREADS)
        executor.add_node(node)
        while signals.requested is None and rclpy.ok():
            executor.spin_once(timeout_sec=_SPIN_POLL_SEC)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (FolVprError, ParameterException) as exc:
        print(f"fol_vpr_node: error: {' '.join(str(exc).split())}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    finally:
        if node is not None:
            report = node.shutdown()
            node.destroy_node()
            if code == 0 and not report.ok:  # the session's keyframes are not on disk
                print(f"fol_vpr_node: error: {report.message}", file=sys.stderr)
                code = report.exit_code
        if executor is not None:
            executor.shutdown()
        rclpy.try_shutdown()
        signals.ignore_from_now_on()
    return code


if __name__ == "__main__":
    sys.exit(main())
