"""Loop closures for back-ends: LoopClosure/PlaceCandidate fields, CameraInfo and TF conversions, adapter messages.

The ROS-free part checks the rosbags messages; the ``ros`` part builds the pose_graph_tools / rtabmap /
tf2 messages with the classes colcon generated from compat/ and checks their type hashes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("rosbags")

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node import NodeParams
from fol_vpr_ros.node.map_odom import MapOdomTransform
from fol_vpr_ros.node.params import AdaptersParams
from fol_vpr_ros.pipeline.verify import TransformKind
from fol_vpr_ros.ros import backends as b
from fol_vpr_ros.ros import interfaces as ifc
from fol_vpr_ros.ros import messages as m
from fol_vpr_ros.sources.geometry import RigidTransform
from fol_vpr_ros.testing.loop_cases import KNOWN_ROTATION, KNOWN_TRANSLATION, verified_loop_output

S = 1_000_000_000
REPO = Path(__file__).resolve().parents[1]


def test_loop_closure_carries_ids_verification_and_transform():
    cls = ifc.msg_class(m.LOOP_TYPE)
    msg = m.loop_closure_msg(verified_loop_output(), "map")
    assert (msg.query_robot_id, msg.query_session_id, msg.match_robot_id, msg.match_session_id) == \
        ("alpha", "run-q", "bravo", "run-m")
    assert (msg.query_camera_frame_id, msg.match_camera_frame_id) == ("cam_q", "cam_m")
    assert msg.verified and (msg.matches, msg.inliers) == (80, 60) and msg.inlier_ratio == pytest.approx(0.75)
    assert msg.transform_kind == cls.TRANSFORM_METRIC
    p = msg.transform.pose
    assert (p.position.x, p.position.y, p.position.z) == pytest.approx(KNOWN_TRANSLATION)
    assert (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) == pytest.approx(KNOWN_ROTATION)
    assert msg.transform.covariance[0] == pytest.approx(0.04) and msg.transform.covariance[35] == pytest.approx(0.002)
    raw = ifc.serialize(msg, m.LOOP_TYPE)
    assert ifc.serialize(ifc.deserialize(raw, m.LOOP_TYPE), m.LOOP_TYPE) == raw


@pytest.mark.parametrize("kind, const", [(TransformKind.NONE, "TRANSFORM_NONE"),
                                         (TransformKind.ROTATION_ONLY, "TRANSFORM_ROTATION_ONLY"),
                                         (TransformKind.UP_TO_SCALE, "TRANSFORM_UP_TO_SCALE"),
                                         (TransformKind.METRIC, "TRANSFORM_METRIC")])
def test_transform_kind_constants(kind, const):
    assert m.transform_kind_code(kind) == getattr(ifc.msg_class(m.LOOP_TYPE), const)
    msg = m.loop_closure_msg(verified_loop_output(kind=kind), "map")
    assert msg.transform_kind == getattr(ifc.msg_class(m.LOOP_TYPE), const)
    if kind is TransformKind.NONE:
        assert msg.transform.pose.orientation.w == 1.0 and not np.any(msg.transform.covariance)


def test_unverified_loop_closure_and_candidates_say_so():
    out = verified_loop_output()
    d = dataclasses.replace(out.decision, verification=None, query_robot_id=None, match_session_id=None)
    msg = m.loop_closure_msg(dataclasses.replace(out, decision=d), "map")
    assert not msg.verified and (msg.matches, msg.inliers, msg.inlier_ratio) == (-1, -1, -1.0)
    assert msg.query_robot_id == "" and msg.match_session_id == "" and msg.transform_kind == 0
    result = m.result_msg(out, NodeParams())
    first, second = result.candidates
    assert (first.inliers, first.inlier_ratio, first.robot_id) == (60, pytest.approx(0.75), "bravo")
    assert (second.inliers, second.inlier_ratio) == (ifc.msg_class(m.CANDIDATE_TYPE).NOT_VERIFIED, -1.0)


def test_camera_info_to_intrinsics():
    info = ifc.make_message(m.CAMERA_INFO_TYPE, width=640, height=480, distortion_model="plumb_bob",
                            d=np.array([0.1, -0.2, 0.0, 0.0, 0.01]),
                            k=np.array([500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]))
    cam = m.camera_intrinsics(info)
    assert (cam.width, cam.height, cam.fx, cam.fy, cam.cx, cam.cy) == (640, 480, 500.0, 510.0, 320.0, 240.0)
    assert cam.distortion_model == "plumb_bob" and cam.distortion == pytest.approx((0.1, -0.2, 0.0, 0.0, 0.01))
    assert m.camera_intrinsics(ifc.make_message(m.CAMERA_INFO_TYPE, width=640, height=480)) is None  # K all zero
    bad = SimpleNamespace(width=640, height=480, k=[-1.0, 0, 320, 0, 500, 240, 0, 0, 1], d=[], distortion_model="")
    with pytest.raises(ConfigError, match="fx"):
        m.camera_intrinsics(bad)


@pytest.mark.parametrize("image_topic, transport, info_topic, want", [
    ("image", "raw", "", "camera_info"), ("/cam/image_raw", "raw", "", "/cam/camera_info"),
    ("cam/image_raw/compressed", "compressed", "", "cam/camera_info"), ("/cam/image", "raw", "/x/info", "/x/info")])
def test_camera_info_topic_is_the_image_topics_sibling(image_topic, transport, info_topic, want):
    p = NodeParams(image_topic=image_topic, image_transport=transport, camera_info_topic=info_topic)
    assert m.camera_info_topic_name(p) == want


def test_tf_message_holds_map_to_odom():
    t = MapOdomTransform(7 * S + 3, "map", "odom", RigidTransform((1.0, 2.0, 3.0), (0.0, 0.0, 0.6, 0.8)))
    msg = m.tf_msg(t)
    (ts,) = msg.transforms
    assert (ts.header.frame_id, ts.child_frame_id, ifc.time_to_ns(ts.header.stamp)) == ("map", "odom", 7 * S + 3)
    tr, rot = ts.transform.translation, ts.transform.rotation
    assert (tr.x, tr.y, tr.z, rot.z, rot.w) == pytest.approx((1.0, 2.0, 3.0, 0.6, 0.8))
    raw = ifc.serialize(msg, m.TF_TYPE)
    assert ifc.serialize(ifc.deserialize(raw, m.TF_TYPE), m.TF_TYPE) == raw


def test_backend_edge_only_for_accepted_verified_and_good_enough_transforms():
    p = NodeParams(mode="loop_closure")
    edge = b.backend_edge(verified_loop_output(), p)
    assert (edge.query_id, edge.match_id, edge.query_robot_id, edge.match_robot_id) == (9, 1, "alpha", "bravo")
    assert b.backend_edge(verified_loop_output(accepted=False), p) is None
    assert b.backend_edge(verified_loop_output(kind=TransformKind.UP_TO_SCALE), p) is None
    loose = dataclasses.replace(p, adapters=AdaptersParams(min_transform_kind="up_to_scale"))
    assert b.backend_edge(verified_loop_output(kind=TransformKind.UP_TO_SCALE), loose) is not None
    assert b.backend_edge(verified_loop_output(kind=TransformKind.ROTATION_ONLY), loose) is None
    out = verified_loop_output()
    failed = dataclasses.replace(out.decision.verification, passed=False)
    assert b.backend_edge(dataclasses.replace(out, decision=dataclasses.replace(out.decision, verification=failed)),
                          p) is None


def test_robot_numbers_and_information_matrix():
    assert b.robot_number(None, "") == 0 and b.robot_number("3", "") == 3
    assert b.robot_number("bravo", "alpha, bravo") == 1 and b.robot_number("zulu", "alpha") is None
    v = verified_loop_output().decision.verification
    info = b.information_matrix(v).reshape(6, 6)
    assert np.allclose(info @ np.asarray(v.covariance).reshape(6, 6), np.eye(6))
    zero = dataclasses.replace(v, covariance=tuple([0.0] * 36))
    assert np.all(np.isfinite(b.information_matrix(zero)))


def test_missing_backend_package_is_one_line_naming_the_parameter():
    with pytest.raises(ConfigError, match=r"adapters\.rtabmap_topic") as err:
        b.import_backend_class("rtabmap_msgs_not_there/msg/Link", "adapters.rtabmap_topic")
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------- with the colcon-built compat packages
def _ros_classes():
    from conftest import ros_import

    ros_import("pose_graph_tools_msgs.msg")
    ros_import("rtabmap_msgs.msg")
    ros_import("tf2_msgs.msg")


@pytest.mark.ros
def test_pose_graph_edge_and_rtabmap_link_from_a_verified_loop():
    _ros_classes()
    from pose_graph_tools_msgs.msg import PoseGraph, PoseGraphEdge
    from rtabmap_msgs.msg import Link

    edge = b.backend_edge(verified_loop_output(), NodeParams(mode="loop_closure"))
    graph = b.pose_graph_msg(edge, "alpha,bravo")
    assert isinstance(graph, PoseGraph) and len(graph.nodes) == 0
    (e,) = graph.edges
    assert (e.key_from, e.key_to, e.robot_from, e.robot_to, e.type) == (9, 1, 0, 1, PoseGraphEdge.LOOPCLOSE)
    assert (e.pose.position.x, e.pose.position.z, e.pose.orientation.y) == pytest.approx(
        (KNOWN_TRANSLATION[0], KNOWN_TRANSLATION[2], KNOWN_ROTATION[1]))
    assert e.covariance[14] == pytest.approx(0.09) and graph.header.frame_id == "map"
    assert b.pose_graph_msg(edge, "alpha") is None  # bravo has no number
    link = b.rtabmap_link_msg(edge, 1)
    assert isinstance(link, Link) and (link.from_id, link.to_id, link.type) == (10, 2, b.RTABMAP_GLOBAL_CLOSURE)
    assert link.transform.translation.z == pytest.approx(KNOWN_TRANSLATION[2])
    assert link.information[0] == pytest.approx(1 / 0.04)


def _installed_hash(package: str, name: str) -> str:
    from ament_index_python.packages import get_package_share_directory

    data = json.loads((Path(get_package_share_directory(package)) / "msg" / f"{name}.json").read_text())
    return next(h["hash_string"] for h in data["type_hashes"] if h["type_name"] == f"{package}/msg/{name}")


@pytest.mark.ros
def test_compat_packages_match_the_published_definitions():
    """tf2_msgs: the hash rosidl gave compat/ equals the one rosbags computes from the real distro definition;
    pose_graph_tools / rtabmap: the installed definitions are the field lists of the published packages."""
    _ros_classes()
    from rosbags.typesys import Stores, get_typestore

    assert _installed_hash("tf2_msgs", "TFMessage") == get_typestore(Stores.ROS2_JAZZY).hash_rihs01(
        "tf2_msgs/msg/TFMessage")
    from pose_graph_tools_msgs.msg import PoseGraphEdge
    from rtabmap_msgs.msg import Link

    assert list(PoseGraphEdge.get_fields_and_field_types().items()) == [
        ("header", "std_msgs/Header"), ("key_from", "uint64"), ("key_to", "uint64"), ("robot_from", "int32"),
        ("robot_to", "int32"), ("type", "int32"), ("pose", "geometry_msgs/Pose"), ("covariance", "double[36]")]
    assert list(Link.get_fields_and_field_types().items()) == [
        ("from_id", "int32"), ("to_id", "int32"), ("type", "int32"), ("transform", "geometry_msgs/Transform"),
        ("information", "double[36]")]


@pytest.mark.parametrize("storage", ["mcap", "ros1"])
def test_bag_factory_writes_camera_info_next_to_the_image_topic(tmp_path, storage):
    from rosbags.highlevel import AnyReader

    from fol_vpr_ros.sources.camera import CameraIntrinsics
    from fol_vpr_ros.testing.bagfactory import write_image_bag

    cam = CameraIntrinsics(32, 24, 30.0, 31.0, 16.0, 12.0, "plumb_bob", (0.1, 0.0, 0.0, 0.0, 0.0))
    images = [np.full((24, 32, 3), i, np.uint8) for i in range(3)]
    name = "b.bag" if storage == "ros1" else "b"
    path = write_image_bag(tmp_path / name, images, [S, 2 * S, 3 * S], storage=storage, camera_info=cam)
    with AnyReader([path]) as reader:
        conns = [c for c in reader.connections if c.topic == "/camera/camera_info"]
        got = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages(connections=conns)]
    assert len(got) == 3 and all(g.header.frame_id == "camera" for g in got)
    if storage == "ros1":  # ROS 1 field names (K, D): what a converted bag holds
        assert list(got[0].K[:3]) == [30.0, 0.0, 16.0]
        return
    assert m.camera_intrinsics(got[0]) == cam
