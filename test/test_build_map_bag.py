"""build_map_from_bag end to end: real Nordland frames in real bags, poses from odometry/tf/GPS, keyframes."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag
from fol_vpr_ros.mapping import VprMap
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.sources.bag import BagError
from fol_vpr_ros.sources.geometry import RigidTransform, quat_angle, quat_from_axis_angle, quat_multiply
from fol_vpr_ros.sources.utm import wgs84_to_utm
from fol_vpr_ros.stamps import NS_PER_SEC as NS
from fol_vpr_ros.testing.bagfactory import write_image_bag

T0 = 1_650_000_000 * NS
Z = (0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=2), tmp_path_factory.mktemp("w") / "tiny.pth"))


@pytest.fixture(scope="module")
def frames(shared_data):
    folder = shared_data / "nordland_seqslam_64x32" / "summer"
    if not folder.is_dir():
        pytest.skip(f"bundled data not found at {folder}")
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.glob("*.png"))[:12]]


def _motion(t):
    """base_link in odom at time t (s): constant velocity and yaw rate, exact under lerp + slerp."""
    return (1.0 * t, 0.2 * t, 0.0), tuple(quat_from_axis_angle(Z, 0.1 * t))


def _build(bag, topic, out, ckpt, **kw):
    """Every frame is a keyframe unless a test sets a threshold (the defaults are the node's, tested below)."""
    kw = {"min_distance": 0.0, "min_angle": 0.0, "min_interval": 0.0, **kw}
    return build_map_from_bag(bag, topic, out, ckpt, resize=(224, 224), batch_size=4, progress=False, **kw)


def test_odometry_keyframes_and_gps(tmp_path, ckpt, frames):
    img_t = [0.05 + 0.5 * k for k in range(12)]  # 0.05 .. 5.55 s
    odo_t = [0.3 + 0.1 * k for k in range(48)]  # 0.3 .. 5.0 s: frames 0, 10 and 11 have no pose
    fixes = [(T0 + round(t * NS), 67.28 + 1e-5 * t, 14.40 + 2e-5 * t, 30.0, 0) for t in np.arange(0.0, 6.0, 1.0)]
    bag = write_image_bag(tmp_path / "run", frames, [T0 + round(t * NS) for t in img_t], storage="mcap",
                          odometry=[(T0 + round(t * NS), *_motion(t)) for t in odo_t], navsat=fixes)
    res = _build(bag, "/camera/image_raw", tmp_path / "map", ckpt, min_distance=1.0)
    assert (res.pose_source, res.pose_topic, res.gps_topic) == ("odometry", "/odom", "/gps/fix")
    assert (res.frames, res.usable, res.with_pose, res.keyframes) == (12, 12, 9, 5)
    assert res.skipped == {"outside the time span of /odom": 3}
    summary = res.summary()
    assert "outside the time span of /odom" in summary and "keyframes in the map" in summary
    vmap = VprMap.open(tmp_path / "map")
    kfs = list(vmap.keyframes())
    assert len(kfs) == 5  # 0.51 m between frames, min 1 m: every second frame of 1..9
    for kf, k in zip(kfs, [1, 3, 5, 7, 9]):
        t = img_t[k]
        assert kf.stamp_ns == T0 + round(t * NS) and kf.frame_id == "camera"
        assert kf.source.endswith(f"#/camera/image_raw@{kf.stamp_ns}")
        pos, q = _motion(t)
        np.testing.assert_allclose(kf.pose.position, pos, atol=1e-6)
        assert quat_angle(kf.pose.orientation, q) < 1e-6 and kf.pose.frame_id == "odom"
        want = wgs84_to_utm(67.28 + 1e-5 * t, 14.40 + 2e-5 * t)  # GPS interpolated to the frame too
        assert kf.geo.zone == "33W" and kf.geo.easting == pytest.approx(want.easting, abs=1e-3)
        assert kf.geo.northing == pytest.approx(want.northing, abs=1e-3)
    with pytest.raises(ConfigError, match="a map already exists"):
        _build(bag, "/camera/image_raw", tmp_path / "map", ckpt)


def test_tf_chain_poses(tmp_path, ckpt, frames):
    optical = tuple(quat_multiply(quat_from_axis_angle(Z, -math.pi / 2), quat_from_axis_angle((1, 0, 0), -math.pi / 2)))
    img_t = [0.25 * k + 0.01 for k in range(8)]
    tf = [(T0 + k * NS // 20, "odom", "base_link", *_motion(k / 20)) for k in range(41)]
    bag = write_image_bag(tmp_path / "tf", frames[:8], [T0 + round(t * NS) for t in img_t], storage="sqlite3",
                          compressed=True, frame_id="camera_optical", tf=tf,
                          tf_static=[("base_link", "camera_optical", (0.3, 0.0, 1.2), optical)])
    res = _build(bag, "/camera/image_raw", tmp_path / "map", ckpt, min_interval=0.5)
    assert res.pose_source == "tf" and res.keyframes == 4
    assert "tf chain: odom -> base_link (dynamic) -> camera_optical (static)" in res.notes
    for kf, k in zip(VprMap.open(tmp_path / "map").keyframes(), [0, 2, 4, 6]):
        want = RigidTransform(*_motion(img_t[k])) @ RigidTransform((0.3, 0.0, 1.2), optical)
        np.testing.assert_allclose(kf.pose.position, want.translation, atol=1e-6)
        assert quat_angle(kf.pose.orientation, want.rotation) < 1e-6
        assert kf.pose.frame_id == "odom" and kf.frame_id == "camera_optical"
    with pytest.raises(BagError, match="frame 'map' is not in /tf"):
        _build(bag, "/camera/image_raw", tmp_path / "map2", ckpt, pose_source="tf", tf_fixed_frame="map")


def test_bag_without_poses(tmp_path, ckpt, frames, caplog):
    stamps = [T0 + k * NS // 4 for k in range(6)]
    stamps[3] = stamps[2]  # a duplicate stamp: dropped and counted
    bag = write_image_bag(tmp_path / "plain.bag", frames[:6], stamps, storage="ros1", encoding="bgr8")
    with pytest.raises(ConfigError, match="--pose-source odometry: the bag has no nav_msgs/Odometry topic"):
        _build(bag, "/camera/image_raw", tmp_path / "m0", ckpt, pose_source="odometry")
    with pytest.raises(BagError, match=r"(?s)no topic '/image'.*/camera/image_raw  sensor_msgs/msg/Image"):
        _build(bag, "/image", tmp_path / "m0", ckpt)
    with caplog.at_level(logging.WARNING):
        res = _build(bag, "/camera/image_raw", tmp_path / "map", ckpt, min_distance=5.0)
    assert "building a map without poses" in caplog.text
    assert res.pose_source == "none" and res.keyframes == 5
    assert res.skipped == {"duplicate header stamp (later frame dropped)": 1}
    assert any("min distance/angle ignored" in n for n in res.notes)
    kfs = list(VprMap.open(tmp_path / "map").keyframes())
    assert all(kf.pose is None and kf.geo is None for kf in kfs)
    assert [kf.stamp_ns for kf in kfs] == sorted(set(stamps))


def test_gps_as_pose_source(tmp_path, ckpt, frames):
    fixes = [(T0 + k * NS, 59.9139 + 1e-4 * k, 10.7522, 10.0, -1 if k == 1 else 0) for k in range(4)]
    bag = write_image_bag(tmp_path / "gps", frames[:4], [T0 + k * NS for k in range(4)], navsat=fixes)
    res = _build(bag, "/camera/image_raw", tmp_path / "map", ckpt, pose_source="gps", max_pose_gap=1.5)
    assert res.pose_source == "gps" and res.keyframes == 3
    assert res.skipped == {"in a gap > 1.5 s of /gps/fix": 1}  # frame 1: its fix had no fix status
    assert any("status < 0" in n for n in res.notes)
    kf = list(VprMap.open(tmp_path / "map").keyframes())[1]
    assert kf.pose is None and kf.geo.zone == "32V"
    assert kf.geo.northing == pytest.approx(wgs84_to_utm(59.9139 + 2e-4, 10.7522).northing, abs=1e-3)


def test_cli_build_map_from_bag(tmp_path, capsys):
    """`fol-vpr build-map --bag` end to end, and its clear error for a missing topic."""
    from fol_vpr_ros.cli import main

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 48, 3), dtype=np.uint8) for _ in range(4)]
    stamps = [NS * (i + 1) for i in range(4)]
    bag = write_image_bag(tmp_path / "b", images, stamps, topic="/cam/image_raw", storage="mcap")
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    ckpt = str(save_checkpoint(synthetic_model(cfg, seed=0), tmp_path / "w.pth"))
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--bag", str(bag),
                 "--image-topic", "/cam/image_raw", "--out", str(tmp_path / "map"), "-q"]) == 0
    assert len(VprMap.open(tmp_path / "map")) == 4
    capsys.readouterr()
    assert main(["build-map", "--weights", ckpt, "--bag", str(bag), "--image-topic", "/nope",
                 "--out", str(tmp_path / "map2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "/cam/image_raw" in err and "Traceback" not in err
