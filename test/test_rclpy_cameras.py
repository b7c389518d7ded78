"""Several cameras and a robot id on one node, on real rclpy (own ROS domain, conftest): the installed node
subscribes to every topic of image_topics, spaces each camera's keyframes on its own and stores the topic,
the camera frame and the robot id with every keyframe of its online map."""

from __future__ import annotations

import signal
import warnings

import pytest
from conftest import ros_import

pytestmark = pytest.mark.ros

rclpy = ros_import("rclpy")
ros_import("fol_vpr_ros.msg")

from fol_vpr_ros.msg import PlaceRecognitionResult  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from rosnet import NodeProcess, Peer, image_msg, stamp_ns  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from fol_vpr_ros.image_io import read_image  # noqa: E402
from fol_vpr_ros.mapping import VprMap  # noqa: E402
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model  # noqa: E402
from fol_vpr_ros.node.packaged_params import default_params_path  # noqa: E402

S = 1_000_000_000
START_TIMEOUT = 90.0
ANSWER_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> str:
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return str(save_checkpoint(synthetic_model(cfg, seed=3), tmp_path_factory.mktemp("w") / "tiny.pth"))


def _answered(peer: Peer, pub, msg, results: list, want: int) -> PlaceRecognitionResult:
    """Publish ``msg`` every 0.5 s until the result with stamp ``want`` arrives."""
    def got():
        return next((r for r in results if stamp_ns(r.header) == want), None)
    assert peer.wait(lambda: got() is not None, ANSWER_TIMEOUT, poll=lambda: pub.publish(msg)), \
        f"no result for stamp {want} within {ANSWER_TIMEOUT} s"
    return got()


def test_two_cameras_one_node_keyframes_per_camera_with_topic_frame_and_robot(weights, shared_data, tmp_path):
    ns = "/robot_two_cams"
    front, rear = f"{ns}/front/image_raw", f"{ns}/rear/image_raw"
    map_dir = tmp_path / "online_map"
    args = ["-r", "__node:=fol_vpr", "-r", f"__ns:={ns}", "--params-file", str(default_params_path()),
            "-p", f"weights:={weights}", "-p", "input_size:=[224, 224]", "-p", "top_k:=3", "-p", "rerank_k:=3",
            "-p", "odometry.topic:=''", "-p", "mode:=loop_closure", "-p", f"map_path:={map_dir}",
            "-p", f"image_topics:=['{front}', '{rear}']", "-p", "robot_id:=rover_1",
            # 10 s between keyframes: one gate for both cameras would skip the rear frame 0.1 s later
            "-p", "keyframe.min_interval_sec:=10.0", "-p", "exclusion.min_keyframes:=0"]
    peer = Peer()
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    node = NodeProcess(args, tmp_path / "node.log")
    try:
        topic = f"{ns}/fol_vpr/result"
        ok = peer.wait(lambda: node.proc.poll() is not None or peer.node.count_publishers(topic) > 0, START_TIMEOUT)
        assert ok and node.proc.poll() is None, node.output()
        pubs = {t: peer.node.create_publisher(Image, t, qos_profile_sensor_data) for t in (front, rear)}
        rgb = read_image(shared_data / "vprbench_corridor" / "query" / "0000003.jpg")
        first = _answered(peer, pubs[front], image_msg(rgb, "rgb8", 20 * S, "front_optical"), results, 20 * S)
        second = _answered(peer, pubs[rear], image_msg(rgb, "rgb8", 20 * S + S // 10, "rear_optical"), results,
                           20 * S + S // 10)
        assert first.camera_frame_id == "front_optical" and second.camera_frame_id == "rear_optical"
        node.signal(signal.SIGINT)
        code = node.wait(60)
    finally:
        peer.close()
        node.kill()
    assert code == 0, node.output()
    kfs = VprMap.open(map_dir).keyframes()
    assert [(k.source, k.frame_id, k.robot_id) for k in kfs] == [
        (front, "front_optical", "rover_1"), (rear, "rear_optical", "rover_1")], node.output()
    assert "listening on " + f"{front}, {rear}" in node.output()
