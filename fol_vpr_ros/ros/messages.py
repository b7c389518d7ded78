"""ROS messages from node-core outputs (rosbags objects, no ROS needed) and payloads from incoming messages.

Every output is stamped with the query image's stamp, never the wall clock. Diagnostics carry the
stamp the adapter passes: both adapters pass the last image stamp the core saw (0 before the first
image), so that diagnostics line up with bag time. The input conversions are duck-typed: they read
the same field names from rosbags objects and from rclpy messages. ``to_rosidl`` copies a rosbags
message into a rosidl-generated (rclpy) class field by field.
"""

from __future__ import annotations

import array
import importlib
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..node.diagnostics import DiagnosticsSnapshot
from ..node.frames import CandidateInfo, FrameOutput
from ..node.gating import OdomPose
from ..node.loop_closure import LoopDecision
from ..node.map_odom import MapOdomTransform
from ..node.outcomes import MatchOutcome
from ..node.params import NodeParams
from ..pipeline.verify import TransformKind, Verification, VerifyModel
from ..sources.bag_cameras import CAMERA_INFO_TYPE, camera_info_topic, intrinsics_from_message
from ..sources.camera import CameraIntrinsics
from ..sources.image_decode import CompressedPayload, ImagePayload
from ..stamps import ns_to_sec
from .interfaces import make_header, make_message, make_time, msg_class, time_to_ns

__all__ = [
    "CAMERA_INFO_TYPE",
    "DIAGNOSTIC_NAME",
    "LIO_SAM_TOPIC",
    "MARKER_NAMESPACE",
    "RESULT_TYPE",
    "TF_TOPIC",
    "TF_TYPE",
    "camera_info_topic_name",
    "camera_info_topic_names",
    "camera_intrinsics",
    "compressed_payload",
    "diagnostics_msg",
    "image_payload",
    "image_topic_name",
    "lio_sam_msg",
    "loop_closure_msg",
    "markers_msg",
    "odom_pose",
    "pose_msg",
    "relative_transform",
    "result_msg",
    "result_status",
    "tf_msg",
    "to_rosidl",
    "transform_kind_code",
    "verification_of",
]

RESULT_TYPE = "fol_vpr_ros/msg/PlaceRecognitionResult"
CANDIDATE_TYPE = "fol_vpr_ros/msg/PlaceCandidate"
LOOP_TYPE = "fol_vpr_ros/msg/LoopClosure"
POSE_TYPE = "geometry_msgs/msg/PoseWithCovarianceStamped"
MARKERS_TYPE = "visualization_msgs/msg/MarkerArray"
DIAGNOSTICS_TYPE = "diagnostic_msgs/msg/DiagnosticArray"
LIO_SAM_TYPE = "std_msgs/msg/Float64MultiArray"
TF_TYPE = "tf2_msgs/msg/TFMessage"
TF_TOPIC = "/tf"
NOT_VERIFIED = -1  # matches / inliers / inlier_ratio of a pair that was not verified
_IDENTITY_XYZW = (0.0, 0.0, 0.0, 1.0)

LIO_SAM_TOPIC = "lio_loop/loop_closure_detection"  # relative, as LIO-SAM's mapOptimization subscribes to it
DIAGNOSTIC_NAME = "fol_vpr: place recognition"
MARKER_NAMESPACE = "fol_vpr"
# marker ids in MARKER_NAMESPACE
MAP_MARKER, MATCH_MARKER, LINE_MARKER, QUERY_MARKER = 0, 1, 2, 3
_LEVELS = {"ok": 0, "warn": 1, "error": 2, "stale": 3}
ACCEPTED_STATUS = "ok"
# PlaceRecognitionResult.status code of each decision that did not accept a match
_REJECTED_STATUS = {
    MatchOutcome.EMPTY_MAP: "empty_map",
    MatchOutcome.NO_CANDIDATES: "no_candidates",
    MatchOutcome.EXCLUDED_RECENT: "excluded_recent",
    MatchOutcome.BELOW_GLOBAL_SIMILARITY: "below_threshold",
    MatchOutcome.BELOW_RERANK_SCORE: "below_threshold",
    MatchOutcome.FAILED_VERIFICATION: "failed_verification",
    MatchOutcome.WAITING_FOR_CONSISTENCY: "waiting_for_consistency",
    MatchOutcome.REJECTED: "rejected",
}


def camera_info_topic_names(params: NodeParams) -> list[str]:
    """CameraInfo topics: ``camera_info_topic``, else ``camera_info`` next to each camera topic (image_transport)."""
    if params.camera_info_topic:
        return [params.camera_info_topic]
    return list(dict.fromkeys(camera_info_topic(t) for t in params.camera_topics))


def camera_info_topic_name(params: NodeParams) -> str:
    """The first camera's CameraInfo topic (see ``camera_info_topic_names``)."""
    return camera_info_topic_names(params)[0]


def image_topic_name(params: NodeParams) -> str:
    """The ROS image topic: ``image_topic``, plus ``/compressed`` for the compressed transport."""
    topic = params.image_topic
    if params.image_transport == "compressed" and not topic.rstrip("/").endswith("/compressed"):
        topic = topic.rstrip("/") + "/compressed"
    return topic


# ---------------------------------------------------------------------------- small builders
def _point(xyz) -> Any:
    return make_message("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))


def _pose(position, orientation=(0.0, 0.0, 0.0, 1.0)) -> Any:
    q = make_message("geometry_msgs/msg/Quaternion", x=float(orientation[0]), y=float(orientation[1]),
                     z=float(orientation[2]), w=float(orientation[3]))
    return make_message("geometry_msgs/msg/Pose", position=_point(position), orientation=q)


def _color(r: float, g: float, b: float, a: float = 1.0) -> Any:
    return make_message("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=a)


def _vector(x: float, y: float, z: float) -> Any:
    return make_message("geometry_msgs/msg/Vector3", x=x, y=y, z=z)


def _candidate(c: CandidateInfo, rank: int) -> Any:
    has_pose = c.pose is not None
    v = c.verification
    return make_message(
        CANDIDATE_TYPE, keyframe_id=int(c.keyframe_id), stamp=make_time(c.stamp_ns), session_id=c.session_id or "",
        rank=rank, global_similarity=float(c.global_similarity), rerank_score=int(c.rerank_score),
        has_pose=has_pose, pose=_pose(c.pose.position, c.pose.orientation) if has_pose else _pose((0.0, 0.0, 0.0)),
        pose_frame_id=(c.pose.frame_id or "") if has_pose else "",
        matches=int(v.matches) if v is not None else NOT_VERIFIED,
        inliers=int(v.inliers) if v is not None else NOT_VERIFIED,
        inlier_ratio=_ratio(v) if v is not None else float(NOT_VERIFIED),
        verification_passed=bool(v is not None and v.passed), robot_id=c.robot_id or "")


def verification_of(c: Any) -> Verification | None:
    """The verification figures a PlaceCandidate message carries (None when not verified); no transform."""
    if int(c.inliers) == NOT_VERIFIED:
        return None
    return Verification(int(c.matches), int(c.inliers), float(c.inlier_ratio), bool(c.verification_passed),
                        VerifyModel.NONE, TransformKind.NONE)


def _ratio(v: Verification) -> float:
    r = float(v.inlier_ratio)
    return r if math.isfinite(r) else 0.0


_KIND_CONSTANT = {TransformKind.NONE: "TRANSFORM_NONE", TransformKind.ROTATION_ONLY: "TRANSFORM_ROTATION_ONLY",
                  TransformKind.UP_TO_SCALE: "TRANSFORM_UP_TO_SCALE", TransformKind.METRIC: "TRANSFORM_METRIC"}


def transform_kind_code(kind: TransformKind) -> int:
    """LoopClosure.transform_kind of a TransformKind (the TRANSFORM_* constants of the message)."""
    return int(getattr(msg_class(LOOP_TYPE), _KIND_CONSTANT[TransformKind(kind)]))


def relative_transform(v: Verification | None) -> tuple[TransformKind, Any]:
    """(kind, geometry_msgs/PoseWithCovariance T_query_match) of a verification; identity, zero covariance for NONE."""
    kind = v.kind if v is not None else TransformKind.NONE
    cov = np.zeros(36, dtype=np.float64)
    if kind is TransformKind.NONE:
        pose = _pose((0.0, 0.0, 0.0), _IDENTITY_XYZW)
    else:
        pose = _pose(v.translation, v.rotation_xyzw)  # type: ignore[union-attr]
        if len(v.covariance) == cov.size:  # type: ignore[union-attr]
            cov = np.asarray(v.covariance, dtype=np.float64)  # type: ignore[union-attr]
    return kind, make_message("geometry_msgs/msg/PoseWithCovariance", pose=pose, covariance=cov)


# ---------------------------------------------------------------------------- outputs
def result_status(out: FrameOutput) -> str:
    """'ok' when accepted, else '<code>: <reason>', the code from the decision's ``MatchOutcome``
    (no_candidates, empty_map, excluded_recent, below_threshold, waiting_for_consistency or rejected)."""
    if out.accepted:
        return ACCEPTED_STATUS
    outcome = out.outcome if out.outcome is not None else MatchOutcome.REJECTED
    code = _REJECTED_STATUS.get(outcome, _REJECTED_STATUS[MatchOutcome.REJECTED])
    return f"{code}: {out.reason}" if out.reason else code


def result_msg(out: FrameOutput, params: NodeParams) -> Any:
    """fol_vpr_ros/PlaceRecognitionResult: stamp = query stamp, frame = frames.map, candidates best first."""
    index = -1
    if out.match is not None:
        index = next((i for i, c in enumerate(out.candidates) if c.keyframe_id == out.match.keyframe_id), -1)
    lat = out.latency
    query_id = out.keyframe_id if out.mode == "loop_closure" and out.keyframe_id is not None else out.query_id
    return make_message(
        RESULT_TYPE, header=make_header(out.stamp_ns, params.frames.map), query_id=int(query_id),
        camera_frame_id=out.frame_id, candidates=[_candidate(c, i) for i, c in enumerate(out.candidates)],
        accepted=index >= 0, accepted_index=index, decode_ms=float(lat.decode), describe_ms=float(lat.describe),
        search_ms=float(lat.search), rerank_ms=float(lat.rerank), verify_ms=float(lat.verify),
        total_ms=float(lat.total),
        status=result_status(out))


def loop_closure_msg(out: FrameOutput, map_frame: str = "map") -> Any | None:
    """fol_vpr_ros/LoopClosure for a loop-closure keyframe with a best candidate (ACCEPTED or REJECTED), else None."""
    d = out.decision
    if not isinstance(d, LoopDecision) or d.match_id is None or d.match_stamp_ns is None:
        return None
    cls = msg_class(LOOP_TYPE)
    sim = float(d.global_similarity)
    v = d.verification
    kind, transform = relative_transform(v)
    match = next((c for c in out.candidates if c.keyframe_id == d.match_id), None)
    return make_message(
        LOOP_TYPE, header=make_header(out.stamp_ns, map_frame or "map"), query_keyframe_id=int(d.query_id),
        query_stamp=make_time(d.query_stamp_ns), match_keyframe_id=int(d.match_id),
        match_stamp=make_time(d.match_stamp_ns), global_similarity=sim if math.isfinite(sim) else 0.0,
        rerank_score=int(d.rerank_score), consistent_hits=max(0, int(d.consistent_count)),
        status=cls.ACCEPTED if d.accepted else cls.REJECTED,
        query_robot_id=d.query_robot_id or "", query_session_id=d.query_session_id or "",
        match_robot_id=d.match_robot_id or "", match_session_id=d.match_session_id or "",
        query_camera_frame_id=out.frame_id or "", match_camera_frame_id=match.frame_id if match is not None else "",
        verified=bool(v is not None and v.passed), matches=int(v.matches) if v is not None else NOT_VERIFIED,
        inliers=int(v.inliers) if v is not None else NOT_VERIFIED,
        inlier_ratio=_ratio(v) if v is not None else float(NOT_VERIFIED),
        transform_kind=transform_kind_code(kind), transform=transform)


def pose_msg(out: FrameOutput) -> Any | None:
    """geometry_msgs/PoseWithCovarianceStamped of the accepted match (stamp = query stamp), else None."""
    p = out.pose
    if p is None:
        return None
    cov = make_message("geometry_msgs/msg/PoseWithCovariance", pose=_pose(p.position, p.orientation),
                       covariance=np.asarray(p.covariance, dtype=np.float64).reshape(36))
    return make_message(POSE_TYPE, header=make_header(out.stamp_ns, p.frame_id or "map"), pose=cov)


def _marker(stamp_ns: int, frame_id: str, marker_id: int, kind: int, **fields: Any) -> Any:
    cls = msg_class("visualization_msgs/msg/Marker")
    base = {"pose": _pose((0.0, 0.0, 0.0)), "scale": _vector(1.0, 1.0, 1.0), "color": _color(1.0, 1.0, 1.0),
            "action": cls.ADD}
    return make_message("visualization_msgs/msg/Marker", header=make_header(stamp_ns, frame_id),
                        ns=MARKER_NAMESPACE, id=marker_id, type=kind, **{**base, **fields})


def markers_msg(out: FrameOutput) -> Any | None:
    """visualization_msgs/MarkerArray (namespace fol_vpr): map keyframes (POINTS, when due), match (SPHERE),
    match line (LINE_LIST), query (SPHERE); absent match/line/query are deleted. None without marker data."""
    m = out.markers
    if m is None:
        return None
    cls = msg_class("visualization_msgs/msg/Marker")
    frame = m.frame_id or "map"
    stamp = out.stamp_ns
    markers = []
    if m.map_points is not None:
        markers.append(_marker(stamp, frame, MAP_MARKER, cls.POINTS, scale=_vector(0.3, 0.3, 0.3),
                               color=_color(0.3, 0.5, 1.0, 0.8), points=[_point(p) for p in m.map_points]))
    if m.match_point is not None:
        markers.append(_marker(stamp, frame, MATCH_MARKER, cls.SPHERE, pose=_pose(m.match_point),
                               scale=_vector(1.0, 1.0, 1.0), color=_color(0.1, 0.9, 0.1)))
    else:
        markers.append(_marker(stamp, frame, MATCH_MARKER, cls.SPHERE, action=cls.DELETE))
    if m.match_line is not None:
        markers.append(_marker(stamp, frame, LINE_MARKER, cls.LINE_LIST, scale=_vector(0.1, 0.0, 0.0),
                               color=_color(1.0, 0.2, 0.2), points=[_point(m.match_line[0]), _point(m.match_line[1])]))
        markers.append(_marker(stamp, frame, QUERY_MARKER, cls.SPHERE, pose=_pose(m.match_line[0]),
                               scale=_vector(0.8, 0.8, 0.8), color=_color(1.0, 0.6, 0.0)))
    else:
        markers.append(_marker(stamp, frame, LINE_MARKER, cls.LINE_LIST, action=cls.DELETE))
        markers.append(_marker(stamp, frame, QUERY_MARKER, cls.SPHERE, action=cls.DELETE))
    return make_message(MARKERS_TYPE, markers=markers)


def _diagnostic_values(s: DiagnosticsSnapshot, extra: dict[str, str] | None) -> list[tuple[str, str]]:
    values = [("mode", s.mode), ("rate_hz", f"{s.rate_hz:.2f}")]
    for name in ("frames_received", "frames_processed", "frames_dropped", "frames_skipped", "frames_failed",
                 "pending", "map_size", "accepted", "loop_closures"):
        values.append((name, str(getattr(s, name))))
    values.append(("localized", "yes" if s.localized else "no"))
    values.append(("errors", str(sum(s.errors.values()))))
    values += [(f"error.{k}", str(v)) for k, v in sorted(s.errors.items())]
    values += [(f"warning.{k}", str(v)) for k, v in sorted(s.warnings.items())]
    for stage, st in s.latency_ms.items():
        values += [(f"latency_ms.{stage}.mean", f"{st.mean:.2f}"), (f"latency_ms.{stage}.p95", f"{st.p95:.2f}")]
    values.append(("last_stamp_sec", "" if s.last_stamp_ns is None else f"{ns_to_sec(s.last_stamp_ns):.9f}"))
    values.append(("worker_running", "yes" if s.worker_running else "no"))
    values += sorted((extra or {}).items())
    return values


def diagnostics_msg(snapshot: DiagnosticsSnapshot, stamp_ns: int, node_name: str,
                    extra: dict[str, str] | None = None) -> Any:
    """diagnostic_msgs/DiagnosticArray with one status 'fol_vpr: place recognition' (hardware_id = node name).

    ``stamp_ns``: the adapters pass the last image stamp (0 before any image), not the wall clock.
    Keys: mode, rate_hz, frames_*, map_size, accepted, loop_closures, localized (yes/no), errors,
    error.<kind>, warning.<kind>, latency_ms.<stage>.mean/.p95, last_stamp_sec, worker_running, + ``extra``.
    """
    kv = [make_message("diagnostic_msgs/msg/KeyValue", key=k, value=v) for k, v in _diagnostic_values(snapshot, extra)]
    status = make_message("diagnostic_msgs/msg/DiagnosticStatus", level=_LEVELS.get(snapshot.level, 2),
                          name=DIAGNOSTIC_NAME, message=snapshot.message, hardware_id=node_name, values=kv)
    return make_message(DIAGNOSTICS_TYPE, header=make_header(stamp_ns, ""), status=[status])


def lio_sam_msg(decision: LoopDecision) -> Any:
    """std_msgs/Float64MultiArray [t_query, t_match] in seconds, what LIO-SAM's lio_loop/loop_closure_detection
    expects (data[0] = current keyframe time, data[1] = earlier keyframe time)."""
    t_query, t_match = decision.lio_sam_data()
    dim = make_message("std_msgs/msg/MultiArrayDimension", label="t_query_t_match", size=2, stride=2)
    layout = make_message("std_msgs/msg/MultiArrayLayout", dim=[dim], data_offset=0)
    return make_message(LIO_SAM_TYPE, layout=layout, data=np.array([t_query, t_match], dtype=np.float64))


def tf_msg(t: MapOdomTransform) -> Any:
    """tf2_msgs/TFMessage with one TransformStamped parent -> child (map -> odom), stamped ``t.stamp_ns``."""
    r = t.transform
    q = make_message("geometry_msgs/msg/Quaternion", x=r.rotation[0], y=r.rotation[1], z=r.rotation[2],
                     w=r.rotation[3])
    tf = make_message("geometry_msgs/msg/Transform", translation=_vector(*r.translation), rotation=q)
    stamped = make_message("geometry_msgs/msg/TransformStamped", header=make_header(t.stamp_ns, t.parent_frame),
                           child_frame_id=t.child_frame, transform=tf)
    return make_message(TF_TYPE, transforms=[stamped])


# ---------------------------------------------------------------------------- inputs (duck-typed)
def image_payload(msg: Any) -> ImagePayload:
    """ImagePayload from a sensor_msgs/Image (rosbags or rclpy); the data buffer is not copied."""
    h = msg.header
    return ImagePayload(time_to_ns(h.stamp), str(h.frame_id), str(msg.encoding), int(msg.height), int(msg.width),
                        int(msg.step), bool(msg.is_bigendian), msg.data)


def compressed_payload(msg: Any) -> CompressedPayload:
    """CompressedPayload from a sensor_msgs/CompressedImage (rosbags or rclpy)."""
    h = msg.header
    return CompressedPayload(time_to_ns(h.stamp), str(h.frame_id), str(msg.format), msg.data)


def odom_pose(msg: Any) -> OdomPose:
    """OdomPose from a nav_msgs/Odometry (rosbags or rclpy); raises ConfigError for a bad pose."""
    p = msg.pose.pose
    return OdomPose(time_to_ns(msg.header.stamp), (p.position.x, p.position.y, p.position.z),
                    (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w),
                    str(msg.header.frame_id) or "odom")


def camera_intrinsics(msg: Any) -> CameraIntrinsics | None:
    """CameraIntrinsics from a sensor_msgs/CameraInfo (rosbags or rclpy); None when uncalibrated (K all zero).

    Raises ConfigError for a calibrated K that is not a valid pinhole matrix (non-positive focal length, zero size).
    """
    return intrinsics_from_message(msg)


# ---------------------------------------------------------------------------- rosbags -> rosidl (rclpy)
def _import_class(msgtype: str) -> type:
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _convert_value(value: Any, default: Any, resolve: Callable[[str], type]) -> Any:
    if hasattr(value, "__msgtype__"):
        return to_rosidl(value, type(default) if hasattr(default, "get_fields_and_field_types") else None, resolve)
    if isinstance(default, np.ndarray):  # fixed-size primitive array
        return np.asarray(value, dtype=default.dtype).reshape(default.shape)
    if isinstance(default, array.array):  # primitive sequence
        return array.array(default.typecode, np.asarray(value).astype(default.typecode).tobytes())
    if isinstance(default, bytes):  # ROS 'byte' (1-byte bytes) or a bytes-typed octet sequence
        if isinstance(value, (int, np.integer)):
            return bytes([int(value) & 0xFF])
        return np.asarray(value).astype(np.uint8).tobytes()
    if isinstance(value, (list, tuple)):
        return [to_rosidl(v, None, resolve) if hasattr(v, "__msgtype__") else _plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(default, float):
        return float(value)
    return _plain(value)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def to_rosidl(msg: Any, cls: type | None = None, resolve: Callable[[str], type] | None = None) -> Any:
    """Copy a rosbags message into a rosidl-generated class, field by field (same names).

    ``cls`` defaults to ``resolve(msg.__msgtype__)`` (default: import ``pkg.msg.Name``). Nested messages
    are converted recursively, numpy arrays become the target's numpy arrays / ``array.array`` sequences,
    ROS ``byte`` values become 1-byte ``bytes``. Fields missing on either side are left at their defaults.
    """
    resolve = resolve or _import_class
    cls = cls or resolve(msg.__msgtype__)
    out = cls()
    for name in out.get_fields_and_field_types():
        if hasattr(msg, name):
            setattr(out, name, _convert_value(getattr(msg, name), getattr(out, name), resolve))
    return out
