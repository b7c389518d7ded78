"""The fol_vpr ROS 2 node (rclpy): `ros2 run fol_vpr_ros fol_vpr_node` / `ros2 launch fol_vpr_ros localize.launch.py`.

A thin adapter around ``NodeCore``: declares every parameter of ``param_specs()`` (read-only, with
description and range), subscribes to ``image`` (or ``image/compressed``; sensor-data QoS by default)
and optionally odometry, and publishes what ``messages`` builds (rosbags objects copied into the
rosidl classes by ``messages.to_rosidl``): ``~/result``, ``~/pose``, ``~/markers``, ``~/loop_closure``,
``/diagnostics`` and, with ``lio_sam.enabled``, ``lio_loop/loop_closure_detection``. Service
``~/save_map`` (std_srvs/Trigger) saves the online map; it is also saved on shutdown when configured.
Needs a sourced ROS 2 installation and the generated ``fol_vpr_ros.msg`` (colcon build).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from fol_vpr_ros.errors import ConfigError, FolVprError
from fol_vpr_ros.msg import LoopClosure, PlaceRecognitionResult
from fol_vpr_ros.node.core import FrameOutput, NodeCore
from fol_vpr_ros.node.params import ParamSpec, load_params, param_specs
from fol_vpr_ros.ros import messages as m

__all__ = ["FolVprNode", "main", "parameter_descriptor"]

log = logging.getLogger("fol_vpr_ros.ros.rclpy")

_INT64_MAX = 2**63 - 1
_FLOAT_MAX = sys.float_info.max


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


class FolVprNode(Node):
    """The fol_vpr node: parameters -> NodeCore; images in, results out."""

    def __init__(self, node_name: str = "fol_vpr", *, core: NodeCore | None = None, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        values = {}
        for spec in param_specs():
            default = list(spec.default) if spec.type is list else spec.default
            values[spec.name] = self.declare_parameter(spec.name, default, parameter_descriptor(spec)).value
        self.params = load_params(None, self.get_name(), values, self.get_namespace())
        if self.params.publish_tf:
            raise ConfigError("parameter publish_tf: true is not supported yet (no TF broadcaster); set it to false")
        self.core = core if core is not None else NodeCore(self.params)
        self._closing = threading.Event()
        p = self.params
        out_qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST,
                             durability=DurabilityPolicy.VOLATILE)
        self._pub_result = self.create_publisher(PlaceRecognitionResult, "~/result", out_qos)
        self._pub_pose = self.create_publisher(PoseWithCovarianceStamped, "~/pose", out_qos)
        self._pub_markers = self.create_publisher(MarkerArray, "~/markers", out_qos)
        self._pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", out_qos)
        self._pub_loop = self._pub_lio = None
        if p.mode == "loop_closure":
            self._pub_loop = self.create_publisher(LoopClosure, "~/loop_closure", out_qos)
            if p.lio_sam.enabled:
                self._pub_lio = self.create_publisher(Float64MultiArray, m.LIO_SAM_TOPIC, out_qos)
        q = p.qos.image
        image_qos = QoSProfile(depth=q.depth, history=HistoryPolicy.KEEP_LAST, durability=DurabilityPolicy.VOLATILE,
                               reliability=ReliabilityPolicy.BEST_EFFORT if q.reliability == "best_effort"
                               else ReliabilityPolicy.RELIABLE)
        topic = m.image_topic_name(p)
        if p.image_transport == "raw":
            self._sub_image = self.create_subscription(Image, topic, self._on_image, image_qos)
        else:
            self._sub_image = self.create_subscription(CompressedImage, topic, self._on_compressed, image_qos)
        self._sub_odom = None
        if p.odometry.topic:
            odom_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
            self._sub_odom = self.create_subscription(Odometry, p.odometry.topic, self._on_odometry, odom_qos)
        self._srv = self.create_service(Trigger, "~/save_map", self._on_save_map)
        self._timer = self.create_timer(p.diagnostics.period_sec, self.publish_diagnostics)
        self._odom_errors = 0
        self.core.set_output_callback(self.publish_output)
        self.core.start()
        self.get_logger().info(f"listening on {self._sub_image.topic_name} ({p.image_transport}), mode {p.mode}, "
                               f"map {len(self.core.map)} keyframe(s)")

    # ------------------------------------------------------------------ inputs
    def _on_image(self, msg: Image) -> None:
        self.core.submit_image(m.image_payload(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self.core.submit_image(m.compressed_payload(msg))

    def _on_odometry(self, msg: Odometry) -> None:
        try:
            self.core.submit_odometry(m.odom_pose(msg))
        except ConfigError as exc:
            self._odom_errors += 1
            if self._odom_errors == 1:
                self.get_logger().warning(f"bad odometry (logged once): {exc}")

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
        pose = m.pose_msg(out)
        if pose is not None:
            self._pub_pose.publish(m.to_rosidl(pose, PoseWithCovarianceStamped))
        markers = m.markers_msg(out)
        if markers is not None:
            self._pub_markers.publish(m.to_rosidl(markers, MarkerArray))
        self._pub_result.publish(m.to_rosidl(m.result_msg(out, p), PlaceRecognitionResult))

    def publish_diagnostics(self) -> None:
        """Publish /diagnostics (stamp: the last image stamp, 0 before any; see messages.diagnostics_msg)."""
        if self._closing.is_set():
            return
        snap = self.core.diagnostics()
        extra = {"adapter_error.bad_odometry": str(self._odom_errors)} if self._odom_errors else None
        msg = m.diagnostics_msg(snap, snap.last_stamp_ns or 0, self.get_fully_qualified_name(), extra)
        self._pub_diag.publish(m.to_rosidl(msg, DiagnosticArray))

    def _on_save_map(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        try:
            path = self.core.save_map()
        except FolVprError as exc:
            response.success, response.message = False, str(exc)
        else:
            response.success, response.message = True, f"saved {len(self.core.map)} keyframe(s) to {path}"
        return response

    def shutdown(self) -> None:
        """Stop publishing, let the worker finish, save the online map when configured."""
        self._closing.set()
        saved = self.core.shutdown()
        if saved is not None:
            log.info("online map saved to %s", saved)


def main(args: list[str] | None = None) -> int:
    """Entry point of `ros2 run fol_vpr_ros fol_vpr_node`."""
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = FolVprNode()
        executor = MultiThreadedExecutor(num_threads=2)
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (FolVprError, ParameterException) as exc:
        print(f"fol_vpr_node: error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
