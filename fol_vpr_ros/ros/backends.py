"""Loop closures for SLAM back-ends besides LIO-SAM: pose_graph_tools edges and rtabmap links (rosidl classes).

The message packages (``pose_graph_tools_msgs``, ``rtabmap_msgs``) are imported when an adapter is
switched on (``adapters.pose_graph_topic`` / ``adapters.rtabmap_topic``); a missing package is one
ConfigError line. Both carry the verified relative transform T_query_match of ``LoopClosure``
(query camera -> match camera): pose_graph_tools ``PoseGraphEdge`` from (robot_from, key_from) =
query to (robot_to, key_to) = match with ``pose`` = T_query_match and its covariance; rtabmap ``Link``
from_id = query, to_id = match (keyframe id + ``adapters.rtabmap_id_offset``), ``transform`` =
T_query_match, ``information`` = the inverse covariance. Only accepted, verified loop closures whose
transform is at least ``adapters.min_transform_kind`` are sent. Builds rosidl objects directly (no
rosbags types exist for these packages); does not import rclpy.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..node.frames import FrameOutput
from ..node.loop_closure import LoopDecision
from ..node.params import NodeParams
from ..pipeline.verify import TransformKind, Verification

__all__ = [
    "POSE_GRAPH_TYPE",
    "RTABMAP_GLOBAL_CLOSURE",
    "RTABMAP_LINK_TYPE",
    "BackendEdge",
    "backend_edge",
    "import_backend_class",
    "information_matrix",
    "pose_graph_msg",
    "robot_number",
    "rtabmap_link_msg",
]

POSE_GRAPH_TYPE = "pose_graph_tools_msgs/msg/PoseGraph"
POSE_GRAPH_EDGE_TYPE = "pose_graph_tools_msgs/msg/PoseGraphEdge"
RTABMAP_LINK_TYPE = "rtabmap_msgs/msg/Link"
RTABMAP_GLOBAL_CLOSURE = 1  # rtabmap::Link::kGlobalClosure (Link.type)
_KIND_ORDER = (TransformKind.NONE, TransformKind.ROTATION_ONLY, TransformKind.UP_TO_SCALE, TransformKind.METRIC)
_MIN_VARIANCE = 1e-12  # variances below this are clamped before inverting (information stays finite)
_PARAMETER = {POSE_GRAPH_TYPE: "adapters.pose_graph_topic", POSE_GRAPH_EDGE_TYPE: "adapters.pose_graph_topic",
              RTABMAP_LINK_TYPE: "adapters.rtabmap_topic"}

Resolve = Callable[[str], type]


def import_backend_class(typename: str, param: str | None = None) -> type:
    """The rosidl class of ``pkg/msg/Name``; one ConfigError line naming the parameter when the package is missing."""
    package, kind, name = typename.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError):
        param = param or _PARAMETER.get(typename, "adapters.*")
        raise ConfigError(f"parameter {param}: message package {package} is not installed (install "
                          f"ros-$ROS_DISTRO-{package.replace('_', '-')} or build compat/{package} of fol_vpr_ros "
                          f"in your workspace), or set {param} to ''") from None


@dataclass(frozen=True)
class BackendEdge:
    """What both adapters send: query -> match keyframes, robots, stamp and T_query_match with covariance."""

    stamp_ns: int
    frame_id: str
    query_id: int
    match_id: int
    query_robot_id: str | None
    match_robot_id: str | None
    verification: Verification


def backend_edge(out: FrameOutput, params: NodeParams) -> BackendEdge | None:
    """The edge of an accepted, verified loop closure with a transform of at least ``adapters.min_transform_kind``."""
    d = out.loop_closure
    if not isinstance(d, LoopDecision) or d.match_id is None:
        return None
    v = d.verification
    if v is None or not v.passed:
        return None
    least = TransformKind(params.adapters.min_transform_kind)
    if _KIND_ORDER.index(TransformKind(v.kind)) < _KIND_ORDER.index(least):
        return None
    return BackendEdge(out.stamp_ns, params.frames.map, int(d.query_id), int(d.match_id), d.query_robot_id,
                       d.match_robot_id, v)


def robot_number(robot_id: str | None, robots: str) -> int | None:
    """pose_graph_tools robot number: 0 for no id, an integer id itself, else its index in ``robots`` (CSV).

    None for an id that is neither."""
    if not robot_id:
        return 0
    if robot_id.lstrip("-").isdigit():
        return int(robot_id)
    names = [n.strip() for n in robots.split(",") if n.strip()]
    return names.index(robot_id) if robot_id in names else None


def _covariance(v: Verification) -> np.ndarray:
    if len(v.covariance) != 36:
        raise ConfigError(f"verification covariance has {len(v.covariance)} values, expected 36 (6x6)")
    return np.asarray(v.covariance, dtype=np.float64).reshape(6, 6)


def information_matrix(v: Verification) -> np.ndarray:
    """6x6 inverse covariance (variances clamped at a tiny floor so a zero variance stays finite), row-major (36,)."""
    cov = _covariance(v).copy()
    cov = 0.5 * (cov + cov.T)
    idx = np.diag_indices(6)
    cov[idx] = np.maximum(cov[idx], _MIN_VARIANCE)
    return np.linalg.pinv(cov, hermitian=True).reshape(36)


def _resolve(typename: str) -> type:
    package, kind, name = typename.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def _header(resolve: Resolve, stamp_ns: int, frame_id: str) -> Any:
    header = resolve("std_msgs/msg/Header")()
    header.stamp.sec, header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)
    header.frame_id = frame_id
    return header


def _fill_pose(pose: Any, v: Verification) -> None:
    pose.position.x, pose.position.y, pose.position.z = (float(t) for t in v.translation)
    o = pose.orientation
    o.x, o.y, o.z, o.w = (float(q) for q in v.rotation_xyzw)


def pose_graph_msg(edge: BackendEdge, robots: str, resolve: Resolve = _resolve) -> Any | None:
    """pose_graph_tools_msgs/PoseGraph with one LOOPCLOSE edge (no nodes); None when a robot has no number."""
    robot_from, robot_to = robot_number(edge.query_robot_id, robots), robot_number(edge.match_robot_id, robots)
    if robot_from is None or robot_to is None:
        return None
    edge_cls = resolve(POSE_GRAPH_EDGE_TYPE)
    e = edge_cls()
    e.header = _header(resolve, edge.stamp_ns, edge.frame_id)
    e.key_from, e.key_to = edge.query_id, edge.match_id
    e.robot_from, e.robot_to = robot_from, robot_to
    e.type = edge_cls.LOOPCLOSE
    _fill_pose(e.pose, edge.verification)
    e.covariance = _covariance(edge.verification).reshape(36)
    graph = resolve(POSE_GRAPH_TYPE)()
    graph.header = _header(resolve, edge.stamp_ns, edge.frame_id)
    graph.edges = [e]
    return graph


def rtabmap_link_msg(edge: BackendEdge, id_offset: int, resolve: Resolve = _resolve) -> Any:
    """rtabmap_msgs/Link query -> match (ids + ``id_offset``), kGlobalClosure, T_query_match, inverse covariance."""
    link = resolve(RTABMAP_LINK_TYPE)()
    link.from_id, link.to_id = edge.query_id + id_offset, edge.match_id + id_offset
    link.type = RTABMAP_GLOBAL_CLOSURE
    t = link.transform
    t.translation.x, t.translation.y, t.translation.z = (float(x) for x in edge.verification.translation)
    r = t.rotation
    r.x, r.y, r.z, r.w = (float(q) for q in edge.verification.rotation_xyzw)
    link.information = information_matrix(edge.verification)
    return link
