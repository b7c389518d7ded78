"""End to end on the demo bags: the installed node, real DDS, a real subscriber (own ROS domain; conftest).

The demo's Nordland route bag (summer then winter, a nominal CameraInfo, odometry) is read back with
the package's bag reader and published frame by frame, with its CameraInfo and odometry, to the
``fol_vpr_node`` executable started as the launch file starts it. Loop-closure mode: LoopClosure
messages carry the geometric verification, a relative transform of a known kind and both keyframes'
robot and session ids. Localize mode with ``publish_tf``: the summer bag replayed against its own map
with odometry in an ``odom`` frame offset from ``map`` by a known transform gives that transform on /tf.
A 1-block ViT-S at 224 x 224 with synthetic weights keeps it quick (its matches mean nothing).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import ros_import, tiny_checkpoint

pytestmark = pytest.mark.ros

rclpy = ros_import("rclpy")
ros_import("fol_vpr_ros.msg")
ros_import("tf2_msgs.msg")

from fol_vpr_ros.msg import LoopClosure, PlaceRecognitionResult  # noqa: E402
from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from rosnet import (  # noqa: E402
    NodeProcess,
    Peer,
    collect_loop_closures,
    collect_tf,
    image_msg,
    stamp,
    stamp_ns,
    transforms_between,
    wait_started,
)
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag  # noqa: E402
from fol_vpr_ros.jobs.demo_bags import DEMO_FIRST_FRAME, IMAGE_TOPIC, write_nordland_bag  # noqa: E402
from fol_vpr_ros.jobs.evaluate_bag import replay_frames  # noqa: E402
from fol_vpr_ros.node.runners import ReplayFrame  # noqa: E402
from fol_vpr_ros.pipeline.verify import UNOBSERVED_VARIANCE  # noqa: E402
from fol_vpr_ros.sources.bag import BagImageSource  # noqa: E402
from fol_vpr_ros.sources.bag_ground_truth import read_ground_truth  # noqa: E402
from fol_vpr_ros.sources.geometry import RigidTransform, quat_from_axis_angle  # noqa: E402
from fol_vpr_ros.sources.image_decode import decode  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "config" / "localize.yaml"
FRAMES = 8  # per season
START_TIMEOUT = 90.0
ANSWER_TIMEOUT = 60.0
T_MAP_ODOM = RigidTransform((12.0, -5.0, 0.0), quat_from_axis_angle((0.0, 0.0, 1.0), 0.3))


def _season(shared_data: Path, season: str) -> list[Path]:
    files = sorted((shared_data / "nordland_seqslam_64x32" / season).glob("images-*.png"))
    start = next(i for i, f in enumerate(files) if int(f.stem.split("-")[1]) >= DEMO_FIRST_FRAME)
    return files[start:start + FRAMES]


@pytest.fixture(scope="module")
def demo(shared_data, tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("e2e_demo")
    weights = tiny_checkpoint(tmp / "fol_tiny.pth", seed=5)
    summer, winter = _season(shared_data, "summer"), _season(shared_data, "winter")
    route = write_nordland_bag(tmp / "route", [("summer", summer), ("winter", winter)], 10.0)
    summer_bag = write_nordland_bag(tmp / "summer", [("summer", summer)], 10.0)
    build_map_from_bag(summer_bag, IMAGE_TOPIC, tmp / "map", str(weights), resize=(224, 224), min_distance=0.0,
                       progress=False)
    return {"weights": weights, "route": route, "summer": summer_bag, "map": tmp / "map", "tmp": tmp}


def _frames(bag: Path) -> list[ReplayFrame]:
    source = BagImageSource(bag, IMAGE_TOPIC)
    scan, gt = read_ground_truth(source)
    return list(replay_frames(source, scan, gt))


def _info(f: ReplayFrame) -> CameraInfo:
    c = f.camera
    msg = CameraInfo(width=c.width, height=c.height, distortion_model="plumb_bob")
    msg.k = [c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0]
    msg.p = [c.fx, 0.0, c.cx, 0.0, 0.0, c.fy, c.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg.r = list(np.eye(3).reshape(-1))
    msg.d = [0.0] * 5
    stamp(msg, f.stamp_ns, f.frame_id)
    return msg


def _odom(f: ReplayFrame, frame: str, offset: RigidTransform) -> Odometry:
    """The frame's pose as odometry in ``frame``: ``offset`` applied to the bag's pose."""
    t = offset @ RigidTransform(f.odom.position, f.odom.orientation)
    msg = Odometry(child_frame_id="base_link")
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    p.x, p.y, p.z = (float(v) for v in t.translation)
    q.x, q.y, q.z, q.w = (float(v) for v in t.rotation)
    stamp(msg, f.stamp_ns, frame)
    return msg


def _run(peer: Peer, ns: str, frames: list[ReplayFrame], odom_frame: str, offset: RigidTransform,
         results: list) -> None:
    """Publish CameraInfo, odometry and each image until the node answers it (a result with its stamp)."""
    image_pub = peer.node.create_publisher(Image, f"{ns}/camera/image_raw", qos_profile_sensor_data)
    info_pub = peer.node.create_publisher(CameraInfo, f"{ns}/camera/camera_info", 10)
    odom_pub = peer.node.create_publisher(Odometry, f"{ns}/odom", QoSProfile(depth=50,
                                                                            reliability=ReliabilityPolicy.RELIABLE))
    for f in frames:
        img = image_msg(decode(f.payload), "rgb8", f.stamp_ns, f.frame_id)

        def send(f=f, img=img) -> None:
            info_pub.publish(_info(f))
            odom_pub.publish(_odom(f, odom_frame, offset))
            image_pub.publish(img)

        assert peer.wait(lambda f=f: any(stamp_ns(r.header) == f.stamp_ns for r in results), ANSWER_TIMEOUT,
                         poll=send, poll_every=0.5), f"no result for the frame at {f.stamp_ns}"


def _node(demo: dict[str, Path], ns: str, log: Path, *extra: str) -> NodeProcess:
    args = ["-r", "__node:=fol_vpr", "-r", f"__ns:={ns}", "--params-file", str(PARAMS),
            "-p", f"weights:={demo['weights']}", "-p", "input_size:=[224, 224]", "-p", "top_k:=5",
            "-p", "rerank_k:=5", "-p", "min_rerank_score:=0.0", "-p", "latency_budget_ms:=0.0",
            "-p", "keyframe.min_interval_sec:=0.5", "-p", "keyframe.min_distance_m:=0.0",
            "-r", f"image:={ns}/camera/image_raw", "-r", f"camera_info:={ns}/camera/camera_info",
            "-r", f"odom:={ns}/odom", *extra]
    return NodeProcess(args, log)


def test_loop_closures_carry_verification_transform_and_ids(demo, tmp_path):
    ns = "/e2e_loops"
    peer = Peer("fol_vpr_e2e_loops")
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    loops = collect_loop_closures(peer, f"{ns}/fol_vpr/loop_closure")
    node = _node(demo, ns, tmp_path / "node.log", "-p", "mode:=loop_closure", "-p", "robot_id:=rover_1",
                 "-p", "loop_closure.session_id:=route_1", "-p", "exclusion.min_time_sec:=0.0",
                 "-p", "exclusion.min_keyframes:=4", "-p", "loop_closure.save_on_shutdown:=false")
    try:
        wait_started(peer, node, ns, START_TIMEOUT)
        _run(peer, ns, _frames(demo["route"]), "odom", RigidTransform((0.0, 0.0, 0.0)), results)
        assert peer.wait(lambda: any(lc.status == LoopClosure.ACCEPTED for lc in loops), 10.0), node.output()
    finally:
        code = node.stop()
        peer.close()
    assert code == 0, node.output()
    accepted = [lc for lc in loops if lc.status == LoopClosure.ACCEPTED]
    for lc in accepted:
        assert lc.verified and lc.matches > 0 and 0 < lc.inliers <= lc.matches
        assert lc.inlier_ratio == pytest.approx(lc.inliers / lc.matches, rel=1e-5)
        assert (lc.query_robot_id, lc.match_robot_id) == ("rover_1", "rover_1")
        assert (lc.query_session_id, lc.match_session_id) == ("route_1", "route_1")
        assert (lc.query_camera_frame_id, lc.match_camera_frame_id) == ("camera", "camera")
        assert lc.match_keyframe_id < lc.query_keyframe_id
        # both cameras known (CameraInfo): a rotation, and a translation direction when there is parallax
        assert lc.transform_kind in (LoopClosure.TRANSFORM_ROTATION_ONLY, LoopClosure.TRANSFORM_UP_TO_SCALE)
        q = lc.transform.pose.orientation
        assert math.isclose(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2, 1.0, rel_tol=1e-6)
        cov = np.asarray(lc.transform.covariance).reshape(6, 6)
        assert np.all(np.diag(cov)[3:] > 0) and np.all(np.diag(cov)[3:] < UNOBSERVED_VARIANCE)
        t = lc.transform.pose.position
        if lc.transform_kind == LoopClosure.TRANSFORM_UP_TO_SCALE:
            assert math.isclose(math.hypot(t.x, t.y, t.z), 1.0, rel_tol=1e-6)  # a direction
        # no metric scale without depth: the translation block has an unobserved direction
        assert np.linalg.eigvalsh(cov[:3, :3]).max() >= 0.99 * UNOBSERVED_VARIANCE


def _expected_correction(result, frames: dict[int, ReplayFrame]) -> RigidTransform:
    """T_map_odom implied by an accepted result: its match's map pose times the inverse of the odometry sent."""
    c = result.candidates[result.accepted_index]
    p, q = c.pose.position, c.pose.orientation
    t_map_base = RigidTransform((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))
    f = frames[stamp_ns(result.header)]
    t_odom_base = T_MAP_ODOM.inverse() @ RigidTransform(f.odom.position, f.odom.orientation)
    return t_map_base @ t_odom_base.inverse()


def _close(t, want: RigidTransform) -> bool:
    tr, rot = t.transform.translation, t.transform.rotation
    sign = 1.0 if rot.w * want.rotation[3] >= 0 else -1.0  # q and -q are one rotation
    return (np.allclose((tr.x, tr.y, tr.z), want.translation, atol=1e-3)
            and np.allclose(np.multiply(sign, (rot.x, rot.y, rot.z, rot.w)), want.rotation, atol=1e-4))


def test_localize_publishes_map_to_odom_on_tf(demo, tmp_path):
    ns = "/e2e_tf"
    peer = Peer("fol_vpr_e2e_tf")
    results = peer.collect(f"{ns}/fol_vpr/result", PlaceRecognitionResult)
    tf = collect_tf(peer, f"{ns}/tf")
    frames = _frames(demo["summer"])[:4]
    node = _node(demo, ns, tmp_path / "node.log", "-p", f"map_path:={demo['map']}", "-p", "publish_tf:=true",
                 "-p", "tf.smoothing:=1.0", "-r", f"/tf:={ns}/tf")
    try:
        wait_started(peer, node, ns, START_TIMEOUT)
        # odometry in 'odom': the bag's map-frame poses moved by the inverse of T_MAP_ODOM
        _run(peer, ns, frames, "odom", T_MAP_ODOM.inverse(), results)
        accepted = [r for r in results if r.accepted]
        assert accepted, node.output()
        # smoothing 1: the broadcast correction is the last accepted match's, restamped
        want = _expected_correction(accepted[-1], {f.stamp_ns: f for f in frames})
        assert peer.wait(lambda: any(_close(t, want) for t in transforms_between(tf, "map", "odom")), 20.0), \
            (node.output(), transforms_between(tf, "map", "odom")[-1:])
    finally:
        code = node.stop()
        peer.close()
    assert code == 0, node.output()
    # a match of the query's own place (the same summer image) gives exactly the odometry's offset
    def match_ns(r) -> int:
        t = r.candidates[r.accepted_index].stamp
        return t.sec * 1_000_000_000 + t.nanosec

    own = [r for r in accepted if match_ns(r) == stamp_ns(r.header)]
    for r in own:
        c = _expected_correction(r, {f.stamp_ns: f for f in frames})
        assert np.allclose(c.translation, T_MAP_ODOM.translation, atol=1e-3)
