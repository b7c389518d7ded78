"""LoopClosure with transform and ids, and map->odom on /tf, through DDS (real rclpy; conftest's own domain).

What the node publishes is built as the node builds it (``messages`` + ``to_rosidl``; the map->odom
correction from ``MapOdomBroadcaster``) and sent by a real publisher with the node's QoS; a second
peer receives it. The collectors are rosnet's (reused by the end-to-end demo-bag test).
"""

from __future__ import annotations

import pytest
from conftest import ros_import

pytestmark = pytest.mark.ros

rclpy = ros_import("rclpy")
ros_import("fol_vpr_ros.msg")
ros_import("tf2_msgs.msg")

from fol_vpr_ros.msg import LoopClosure  # noqa: E402
from rosnet import Peer, collect_loop_closures, collect_tf, tf_qos, transforms_between  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from fol_vpr_ros.node.gating import OdomPose  # noqa: E402
from fol_vpr_ros.node.map_odom import MapOdomBroadcaster, MapOdomConfig  # noqa: E402
from fol_vpr_ros.node.pose import PoseEstimate  # noqa: E402
from fol_vpr_ros.ros import messages as m  # noqa: E402
from fol_vpr_ros.sources.geometry import RigidTransform, quat_from_axis_angle  # noqa: E402
from fol_vpr_ros.testing.loop_cases import KNOWN_ROTATION, KNOWN_TRANSLATION, verified_loop_output  # noqa: E402

S = 1_000_000_000
TIMEOUT = 30.0


@pytest.fixture()
def peers():
    sender, receiver = Peer("fol_vpr_test_sender"), Peer("fol_vpr_test_receiver")
    yield sender, receiver
    sender.close()
    receiver.close()


def test_loop_closure_with_transform_and_ids_over_dds(peers):
    sender, receiver = peers
    topic = "/fol_vpr_backends_test/loop_closure"
    got = collect_loop_closures(receiver, topic)
    pub = sender.node.create_publisher(LoopClosure, topic, 10)
    msg = m.to_rosidl(m.loop_closure_msg(verified_loop_output(), "map"), LoopClosure)
    assert receiver.wait(lambda: len(got) > 0, TIMEOUT, poll=lambda: pub.publish(msg))
    lc = got[0]
    assert (lc.query_keyframe_id, lc.match_keyframe_id, lc.status) == (9, 1, LoopClosure.ACCEPTED)
    assert (lc.query_robot_id, lc.match_robot_id, lc.query_session_id, lc.match_session_id) == \
        ("alpha", "bravo", "run-q", "run-m")
    assert (lc.query_camera_frame_id, lc.match_camera_frame_id) == ("cam_q", "cam_m")
    assert lc.verified and (lc.matches, lc.inliers) == (80, 60)
    assert lc.transform_kind == LoopClosure.TRANSFORM_METRIC
    p = lc.transform.pose
    assert (p.position.x, p.position.y, p.position.z) == pytest.approx(KNOWN_TRANSLATION)
    assert (p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w) == pytest.approx(KNOWN_ROTATION)
    assert lc.transform.covariance[0] == pytest.approx(0.04)


def test_map_to_odom_on_tf_over_dds(peers):
    sender, receiver = peers
    topic = "/fol_vpr_backends_test/tf"  # not the global /tf: tests run side by side
    got = collect_tf(receiver, topic)
    pub = sender.node.create_publisher(TFMessage, topic, tf_qos())
    t_map_odom = RigidTransform((3.0, -2.0, 0.0), quat_from_axis_angle((0.0, 0.0, 1.0), 0.5))
    t_odom_base = RigidTransform((1.0, 1.0, 0.0))
    t_map_base = t_map_odom @ t_odom_base
    tf = MapOdomBroadcaster(MapOdomConfig(rate_hz=20.0))
    tf.update(PoseEstimate(4 * S, "map", t_map_base.translation, t_map_base.rotation, tuple([0.0] * 36), 1.0, 0.1, 3),
              OdomPose(4 * S, t_odom_base.translation, t_odom_base.rotation, "odom"))
    clock = iter(range(10 * S, 100 * S, S // 10))

    def send() -> None:
        due = tf.due(next(clock))
        if due is not None:
            pub.publish(m.to_rosidl(m.tf_msg(due), TFMessage))

    assert receiver.wait(lambda: len(transforms_between(got, "map", "odom")) >= 2, TIMEOUT, poll=send,
                         poll_every=0.1)
    first, second = transforms_between(got, "map", "odom")[:2]
    stamp = first.header.stamp.sec * S + first.header.stamp.nanosec
    assert stamp >= 10 * S and (second.header.stamp.sec, second.header.stamp.nanosec) > \
        (first.header.stamp.sec, first.header.stamp.nanosec)  # restamped on every broadcast
    tr, rot = first.transform.translation, first.transform.rotation
    assert (tr.x, tr.y, tr.z) == pytest.approx(t_map_odom.translation)
    assert (rot.x, rot.y, rot.z, rot.w) == pytest.approx(t_map_odom.rotation)
