"""Bag sources: images from real rosbag2/ROS 1 bags, pose/tf/GPS interpolation, UTM and keyframe selection."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError, ImageError
from fol_vpr_ros.sources.bag import BagError, BagImageSource, format_topics, list_topics
from fol_vpr_ros.sources.geometry import (
    RigidTransform,
    quat_angle,
    quat_from_axis_angle,
    quat_multiply,
    quat_rotate,
    quat_slerp,
)
from fol_vpr_ros.sources.keyframes import KeyframePolicy, select_keyframes
from fol_vpr_ros.sources.pose_choice import choose_pose_source
from fol_vpr_ros.sources.pose_topics import read_geo_track, read_pose_track, read_tf_tree
from fol_vpr_ros.sources.tracks import PoseTrack
from fol_vpr_ros.sources.utm import latitude_band, utm_to_wgs84, utm_zone, wgs84_to_utm
from fol_vpr_ros.stamps import NS_PER_SEC as NS
from fol_vpr_ros.testing.bagfactory import expected_rgb, write_image_bag

T0 = 1_700_000_000 * NS
Z = (0.0, 0.0, 1.0)


def _images(n, h=6, w=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _bag(tmp_path, storage, name="bag"):
    return tmp_path / (f"{name}.bag" if storage == "ros1" else name)


def _yaw(angle):
    return tuple(quat_from_axis_angle(Z, angle))


# ------------------------------------------------------------------------------------------------ images
CASES = [  # (encoding, compressed, extra writer options)
    ("rgb8", False, {}),
    ("bgr8", False, {"row_padding": 3}),
    ("mono8", False, {}),
    ("bgra8", False, {}),
    ("mono16", False, {"bigendian": True}),
    ("16UC1", False, {"row_padding": 2}),
    ("8UC3", False, {}),
    ("8UC4", False, {"row_padding": 1}),
    ("rgb16", False, {"bigendian": True}),
    ("bgr16", False, {"row_padding": 2}),
    ("rgba16", False, {}),
    ("rgb8", True, {}),
    ("mono8", True, {}),
    ("mono16", True, {}),
]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "ros1"])
def test_images_round_trip(tmp_path, storage):
    ims = _images(3)
    stamps = [T0 + k * NS // 10 for k in range(3)]
    for j, (enc, comp, opts) in enumerate(CASES):
        path = write_image_bag(_bag(tmp_path, storage, f"b{j}"), ims, stamps, storage=storage, encoding=enc,
                               compressed=comp, frame_id="cam_optical", **opts)
        frames = list(BagImageSource(path, "/camera/image_raw"))
        assert [f.stamp_ns for f in frames] == stamps, (enc, comp)
        assert all(f.frame_id == "cam_optical" for f in frames)
        for f, im in zip(frames, ims):
            assert f.rgb.dtype == np.uint8 and f.rgb.shape == (6, 5, 3)
            np.testing.assert_array_equal(f.rgb, expected_rgb(im, enc), err_msg=f"{storage} {enc} {comp}")


def test_jpeg_and_single_storage_files(tmp_path, caplog):
    ims = [np.kron(im, np.ones((8, 8, 1), np.uint8)) for im in _images(2)]  # blocky: JPEG keeps it close
    stamps = [T0, T0 + NS]
    bag = write_image_bag(tmp_path / "j", ims, stamps, compressed=True, compressed_format="jpeg",
                          topic="/cam/compressed")
    frames = list(BagImageSource(bag, "/cam/compressed"))
    assert len(frames) == 2
    err = [[np.abs(f.rgb.astype(int) - im).mean() for im in ims] for f in frames]  # lossy, but each its own
    assert err[0][0] < 12 and err[1][1] < 12 and err[0][1] > 40 and err[1][0] > 40
    for storage, suffix in (("mcap", ".mcap"), ("sqlite3", ".db3")):
        d = write_image_bag(tmp_path / storage, ims, stamps, storage=storage)
        (storage_file,) = d.glob(f"*{suffix}")
        assert len(list(BagImageSource(storage_file, "/camera/image_raw"))) == 2  # the storage file alone
        (d / "metadata.yaml").unlink()  # an unclosed recording: read through its storage file
        with caplog.at_level(logging.WARNING):
            assert len(list(BagImageSource(d, "/camera/image_raw"))) == 2
        assert "no metadata.yaml" in caplog.text


def test_topics_and_missing_topic_error(tmp_path):
    bag = write_image_bag(tmp_path / "b", _images(2), [T0, T0 + NS], odometry=[(T0, (0, 0, 0), (0, 0, 0, 1))])
    topics = list_topics(bag)
    assert [(t.name, t.msgtype, t.count) for t in topics] == [
        ("/camera/image_raw", "sensor_msgs/msg/Image", 2), ("/odom", "nav_msgs/msg/Odometry", 1)]
    with pytest.raises(BagError, match="no topic '/image'") as err:
        BagImageSource(bag, "/image")
    assert format_topics(topics) in str(err.value)
    assert "sensor_msgs/msg/Image" in str(err.value) and "nav_msgs/msg/Odometry" in str(err.value)
    with pytest.raises(BagError, match=r"is a nav_msgs/msg/Odometry, not an image.*image topics: /camera/image_raw"):
        BagImageSource(bag, "/odom")


def test_missing_empty_and_unknown_paths(tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        BagImageSource(tmp_path / "nope", "/camera/image_raw")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BagError, match="not a bag"):
        list_topics(tmp_path / "notes.txt")
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(BagError, match="not a rosbag2 directory"):
        list_topics(tmp_path / "emptydir")
    for storage in ("mcap", "sqlite3", "ros1"):
        bag = write_image_bag(_bag(tmp_path, storage, f"empty_{storage}"), [], [], storage=storage)
        with pytest.raises(BagError, match="the bag is empty"):
            BagImageSource(bag, "/camera/image_raw")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3", "ros1"])
@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.9])
def test_truncated_bag_is_a_clear_error(tmp_path, storage, fraction):
    bag = write_image_bag(_bag(tmp_path, storage), _images(30, 24, 32), [T0 + k * NS for k in range(30)],
                          storage=storage)
    (file,) = [bag] if storage == "ros1" else [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    with file.open("r+b") as f:
        f.truncate(int(file.stat().st_size * fraction))
    with pytest.raises(BagError, match="cannot read the bag") as err:
        list(BagImageSource(bag, "/camera/image_raw"))
    assert file.name in str(err.value) and "truncated or corrupt" in str(err.value)


def test_out_of_order_duplicate_and_zero_stamps(tmp_path, caplog):
    ims = _images(6)
    s = [T0 + k * NS // 10 for k in range(7)]
    header = [s[0], s[2], s[1], s[2], 0, s[4]]  # out of order, duplicate, zero (-> bag time s[6])
    bag_times = [s[0], s[1], s[2], s[3], s[6], s[6] + 1]
    src = BagImageSource(write_image_bag(tmp_path / "b", ims, header, bag_stamps_ns=bag_times), "/camera/image_raw")
    with caplog.at_level(logging.WARNING):
        scan = src.scan()
    assert scan.total == 6 and scan.out_of_order == 2 and scan.stamps_from_bag_time == 1
    assert scan.skipped == {"duplicate header stamp (later frame dropped)": 1}
    assert "out of order" in caplog.text and "zero header stamp" in caplog.text
    frames = list(src)
    assert [f.stamp_ns for f in frames] == [s[0], s[1], s[2], s[4], s[6]]  # re-sorted by stamp
    for f, k in zip(frames, [0, 2, 1, 5, 4]):  # each stamp keeps its own pixels; the duplicate (3) is gone
        np.testing.assert_array_equal(f.rgb, ims[k])
    subset = list(src.images([4, 2]))
    assert [f.index for f in subset] == [2, 4]


def test_unsupported_encoding_and_corrupt_frames(tmp_path):
    ims = _images(4)
    stamps = [T0 + k * NS for k in range(4)]
    src = BagImageSource(write_image_bag(tmp_path / "mix", ims, stamps, encoding=["rgb8", "yuv_magic", "rgb8", "rgb8"],
                                         corrupt_frames=[2]), "/camera/image_raw")
    frames = list(src)
    assert [f.index for f in frames] == [0, 3]
    skipped = src.scan().skipped
    assert sorted(skipped.values()) == [1, 1]
    assert any("unsupported encoding 'yuv_magic'" in r for r in skipped)
    assert any("image data too short for 5 x 6 rgb8" in r for r in skipped)  # frame 2 lost its last byte
    with pytest.raises(BagError, match=r"none of the 2 messages .* usable image.*unsupported encoding 'yuv_magic'"):
        BagImageSource(write_image_bag(tmp_path / "bad", ims[:2], stamps[:2], encoding="yuv_magic"),
                       "/camera/image_raw").scan()
    src = BagImageSource(write_image_bag(tmp_path / "c", ims[:3], stamps[:3], compressed=True, corrupt_frames=[1]),
                         "/camera/image_raw")
    assert [f.index for f in src] == [0, 2]
    assert list(src.decode_skipped.values()) == [1] and "cannot decode compressed image" in str(src.decode_skipped)
    src = BagImageSource(write_image_bag(tmp_path / "c2", ims[:2], stamps[:2], compressed=True,
                                         corrupt_frames=[0, 1]), "/camera/image_raw")
    with pytest.raises(ImageError, match="no frame could be decoded"):
        list(src)


# ------------------------------------------------------------------------------------------------ quaternions
def test_quaternion_helpers():
    qa, qb = quat_from_axis_angle(Z, 0.3), quat_from_axis_angle((1.0, 2.0, -0.5), 1.1)
    np.testing.assert_allclose(quat_slerp(qa, qb, 0.0), qa, atol=1e-12)
    np.testing.assert_allclose(quat_slerp(qa, qb, 1.0), qb, atol=1e-12)
    np.testing.assert_allclose(quat_slerp(qa, -qb, 1.0) * np.sign(quat_slerp(qa, -qb, 1.0)[3]), qb, atol=1e-12)
    half = quat_slerp(quat_from_axis_angle(Z, 0.2), quat_from_axis_angle(Z, 1.0), 0.25)
    np.testing.assert_allclose(half, quat_from_axis_angle(Z, 0.4), atol=1e-12)
    np.testing.assert_allclose(quat_slerp(qa, qa, 0.5), qa, atol=1e-12)  # identical: no division by zero
    assert quat_angle(qa, -qa) == pytest.approx(0.0, abs=1e-7)
    assert quat_angle(quat_from_axis_angle(Z, 0.2), quat_from_axis_angle(Z, 1.0)) == pytest.approx(0.8)
    v = np.array([1.0, 0.0, 0.0])
    np.testing.assert_allclose(quat_rotate(quat_from_axis_angle(Z, math.pi / 2), v), [0, 1, 0], atol=1e-12)
    ab = quat_multiply(qa, qb)
    np.testing.assert_allclose(quat_rotate(ab, v), quat_rotate(qa, quat_rotate(qb, v)), atol=1e-12)
    t1 = RigidTransform((1.0, 2.0, 3.0), qa)
    t2 = RigidTransform((-0.5, 0.1, 0.7), qb)
    p = np.array([0.3, -0.2, 0.9])
    np.testing.assert_allclose((t1 @ t2).apply(p), t1.apply(t2.apply(p)), atol=1e-12)
    np.testing.assert_allclose((t1.inverse() @ t1).translation, 0, atol=1e-12)


# ------------------------------------------------------------------------------------------------ poses
def _circle(t, radius=10.0, omega=0.2):
    """Position and heading on a circle at constant speed (heading = tangent)."""
    a = omega * t
    return (radius * math.cos(a), radius * math.sin(a), 0.5), a + math.pi / 2


@pytest.mark.parametrize(("storage", "kind"), [("mcap", "odometry"), ("sqlite3", "pose"), ("ros1", "pose_cov")])
def test_pose_topics_interpolate_a_circle(tmp_path, storage, kind):
    odo_t = [k * 0.1 for k in range(51)]  # 10 Hz for 5 s
    samples = [(T0 + round(t * NS), _circle(t)[0], _yaw(_circle(t)[1])) for t in odo_t]
    opts = ({"odometry": samples} if kind == "odometry"
            else {"poses": samples, "pose_with_covariance": kind == "pose_cov"})
    bag = write_image_bag(_bag(tmp_path, storage), _images(1), [T0], storage=storage, **opts)
    track = read_pose_track(bag, "/odom" if kind == "odometry" else "/pose")
    assert len(track) == 51 and track.frame_id == ("odom" if kind == "odometry" else "map")
    assert track.child_frame_id == ("base_link" if kind == "odometry" else "")
    query = np.array([0.0, 0.037, 1.25, 2.5, 3.333, 4.99, 5.0])
    pos, rot, status = track.sample([T0 + round(t * NS) for t in query])
    assert not status.any()
    for t, p, q in zip(query, pos, rot):
        k = min(int(t / 0.1 + 1e-9), 49)
        f = (t - odo_t[k]) / 0.1
        p0, p1 = np.array(_circle(odo_t[k])[0]), np.array(_circle(odo_t[k + 1])[0])
        np.testing.assert_allclose(p, p0 + f * (p1 - p0), atol=1e-7)  # linear between samples (stamps in ns)
        np.testing.assert_allclose(p, _circle(t)[0], atol=10.0 * (0.2 * 0.1) ** 2 / 8 + 1e-7)  # within the sagitta
        assert quat_angle(q, _yaw(_circle(t)[1])) < 1e-7  # slerp at constant yaw rate is exact
    _, _, status = track.sample([T0 - 1, T0 + 5 * NS + 1])
    assert status.tolist() == [1, 1]  # outside the pose span


def test_pose_track_gaps_and_order():
    tr = PoseTrack("map", "base", [0, NS, 5 * NS], [(0, 0, 0), (1, 0, 0), (5, 0, 0)], [(0, 0, 0, 1)] * 3)
    pos, _, status = tr.sample([NS // 2, 3 * NS, 5 * NS], max_gap_ns=2 * NS)
    assert status.tolist() == [0, 2, 0]
    assert pos[0][0] == pytest.approx(0.5) and pos[2][0] == pytest.approx(5.0)
    with pytest.raises(ConfigError, match="strictly increasing"):
        PoseTrack("map", "b", [1, 1], [(0, 0, 0)] * 2, [(0, 0, 0, 1)] * 2)


def test_pose_topic_out_of_order_and_duplicates(tmp_path):
    samples = [(T0 + 2 * NS, (2, 0, 0), (0, 0, 0, 1)), (T0, (0, 0, 0), (0, 0, 0, 1)),
               (T0 + NS, (1, 0, 0), (0, 0, 0, 1)), (T0 + NS, (9, 9, 9), (0, 0, 0, 1))]
    bag = write_image_bag(tmp_path / "b", _images(1), [T0], poses=samples)
    track = read_pose_track(bag, "/pose")
    assert track.stamps_ns.tolist() == [T0, T0 + NS, T0 + 2 * NS]
    assert track.positions[:, 0].tolist() == [0, 1, 2]  # the first of two duplicates wins


def _line(t):
    """base_link in odom: constant velocity and constant yaw rate (exact under lerp + slerp)."""
    return (1.5 * t, 0.5 * t, 0.0), _yaw(0.3 * t)


@pytest.mark.parametrize("storage", ["mcap", "ros1"])
def test_tf_chain_composes_static_and_interpolated_dynamic(tmp_path, storage):
    optical = tuple(quat_multiply(quat_from_axis_angle(Z, -math.pi / 2), quat_from_axis_angle((1, 0, 0), -math.pi / 2)))
    static = [("base_link", "camera", (0.2, 0.0, 1.0), optical), ("map", "odom", (10.0, -3.0, 0.0), _yaw(0.7))]
    dyn = [(T0 + k * NS // 10, "odom", "base_link", *_line(k / 10)) for k in range(31)]
    dyn += [(T0 + k * NS // 10, "base_link", "wheel", (0, 0.3, 0), _yaw(k)) for k in range(31)]
    bag = write_image_bag(_bag(tmp_path, storage), _images(1), [T0], storage=storage, tf=dyn, tf_static=static)
    tree = read_tf_tree(bag)
    assert tree.describe_chain("map", "camera") == "map -> odom (static) -> base_link (dynamic) -> camera (static)"
    t_map_odom = RigidTransform((10.0, -3.0, 0.0), _yaw(0.7))
    t_base_cam = RigidTransform((0.2, 0.0, 1.0), optical)
    for t in (0.0, 0.05, 1.234, 2.999, 3.0):
        got = tree.lookup("map", "camera", T0 + round(t * NS))
        want = t_map_odom @ RigidTransform(*_line(t)) @ t_base_cam
        np.testing.assert_allclose(got.translation, want.translation, atol=1e-9)
        assert quat_angle(got.rotation, want.rotation) < 1e-7
    back = tree.lookup("camera", "odom", T0 + NS)  # upward then downward through the tree
    want = (RigidTransform(*_line(1.0)) @ t_base_cam).inverse()
    np.testing.assert_allclose(back.translation, want.translation, atol=1e-9)
    assert "outside the time span of odom -> base_link" in tree.lookup("map", "camera", T0 + 4 * NS)
    with pytest.raises(BagError, match=r"frame 'gps' is not in /tf.*known frames: base_link, camera, map, odom, wheel"):
        tree.lookup("map", "gps", T0)


def test_tf_separate_trees_and_two_parents(tmp_path):
    bag = write_image_bag(tmp_path / "b", _images(1), [T0], tf_static=[("a", "b", (0, 0, 0), (0, 0, 0, 1)),
                                                                      ("c", "d", (0, 0, 0), (0, 0, 0, 1))])
    with pytest.raises(BagError, match=r"no transform chain between 'a'.*'d'.*separate trees"):
        read_tf_tree(bag).chain("a", "d")
    bag = write_image_bag(tmp_path / "b2", _images(1), [T0], tf=[(T0, "a", "x", (0, 0, 0), (0, 0, 0, 1)),
                                                                 (T0 + 1, "b", "x", (0, 0, 0), (0, 0, 0, 1))])
    with pytest.raises(BagError, match="frame 'x' has several parents"):
        read_tf_tree(bag)


def test_navsatfix_to_utm(tmp_path):
    fixes = [(T0, 59.9139, 10.7522, 20.0, 0), (T0 + NS, 59.9140, 10.7524, 22.0, -1),  # no fix: dropped
             (T0 + 2 * NS, 59.9141, 10.7526, 24.0, 2), (T0 + 3 * NS, 0.0, 0.0, 0.0, -1)]
    bag = write_image_bag(tmp_path / "b", _images(1), [T0], navsat=fixes)
    track = read_geo_track(bag, "/gps/fix")
    assert len(track) == 2
    geo, status = track.sample([T0, T0 + NS, T0 + 3 * NS])
    assert status.tolist() == [0, 0, 1]
    assert geo[0].zone == "32V" and geo[0].easting == pytest.approx(597979.9029, abs=1e-3)
    assert geo[0].northing == pytest.approx(6643118.9915, abs=1e-3) and geo[0].altitude == 20.0
    mid = wgs84_to_utm(59.9140, 10.7524)  # halfway between the two kept fixes
    assert geo[1].easting == pytest.approx(mid.easting, abs=1e-3) and geo[1].altitude == pytest.approx(22.0)
    assert geo[1].latitude == pytest.approx(59.9140)


def test_choose_pose_source(tmp_path):
    bag = write_image_bag(tmp_path / "b", _images(1), [T0], odometry=[(T0, (0, 0, 0), (0, 0, 0, 1))],
                          navsat=[(T0, 1.0, 2.0, 0.0, 0)], tf_static=[("a", "b", (0, 0, 0), (0, 0, 0, 1))])
    topics = list_topics(bag)
    assert choose_pose_source(topics).kind == "odometry"
    assert choose_pose_source(topics, "tf").static_topic == "/tf_static"
    assert choose_pose_source(topics, pose_topic="/gps/fix").kind == "gps"
    assert choose_pose_source(topics, "none").kind == "none"
    with pytest.raises(ConfigError, match="the bag has no geometry_msgs/PoseStamped"):
        choose_pose_source(topics, "pose")
    with pytest.raises(ConfigError, match=r"is a nav_msgs/msg/Odometry, not sensor_msgs/NavSatFix"):
        choose_pose_source(topics, "gps", "/odom")
    with pytest.raises(ConfigError, match="pose topic '/nope' is not in the bag"):
        choose_pose_source(topics, pose_topic="/nope")
    with pytest.raises(ConfigError, match="unknown pose source"):
        choose_pose_source(topics, "lidar")
    plain = list_topics(write_image_bag(tmp_path / "p", _images(1), [T0]))
    assert choose_pose_source(plain).kind == "none"


# ------------------------------------------------------------------------------------------------ UTM
# Reference values computed with PROJ 9.5.1 (pyproj 3.7.2, EPSG:4326 -> EPSG:326zz/327zz), to 0.1 mm.
PROJ_REFERENCE = [
    (0.0, 0.0, "31N", 166021.4431, 0.0),
    (43.642567, -79.387139, "17T", 630084.3008, 4833438.5857),
    (48.85837, 2.294481, "31U", 448250.5768, 5411951.588),
    (-33.856784, 151.215297, "56H", 334900.2613, 6252290.5224),
    (59.9139, 10.7522, "32V", 597979.9029, 6643118.9915),
    (78.2232, 15.6267, "33X", 514278.7151, 8683355.4695),
    (-77.846, 166.676, "58C", 539386.1341, 1358253.6128),
    (83.9, -30.0, "26X", 464424.3198, 9317856.4661),
    (51.477928, -0.001545, "30U", 708210.2433, 5707238.6454),
    (-0.5, 2.9, "31M", 488872.9189, 9944734.8781),
    (56.5, 4.0, "32V", 192351.7464, 6272935.7947),
]


@pytest.mark.parametrize(("lat", "lon", "zone", "east", "north"), PROJ_REFERENCE)
def test_utm_against_proj(lat, lon, zone, east, north):
    u = wgs84_to_utm(lat, lon)
    assert u.zone == zone
    assert u.easting == pytest.approx(east, abs=1e-3) and u.northing == pytest.approx(north, abs=1e-3)
    back = utm_to_wgs84(u.easting, u.northing, u.zone_number, u.northern)
    assert back == pytest.approx((lat, lon), abs=1e-10)


def test_utm_published_points_and_zones():
    # Wikipedia's UTM article: the CN Tower (43°38'33.24"N 79°23'13.7"W) is at 17T 630084 4833438
    u = wgs84_to_utm(43 + 38 / 60 + 33.24 / 3600, -(79 + 23 / 60 + 13.7 / 3600))
    assert u.zone == "17T" and abs(u.easting - 630084) < 1.0 and abs(u.northing - 4833438) < 1.0
    # the origin of zone 31 and the equator on a central meridian
    assert wgs84_to_utm(0.0, 3.0).easting == pytest.approx(500000.0, abs=1e-6)
    assert wgs84_to_utm(0.0, 0.0).easting == pytest.approx(166021.443, abs=1e-3)
    assert utm_zone(60.0, 5.0) == 32 and utm_zone(60.0, 2.9) == 31  # Norway
    assert [utm_zone(78.0, lon) for lon in (5.0, 15.0, 25.0, 35.0)] == [31, 33, 35, 37]  # Svalbard
    assert utm_zone(10.0, 180.0) == 60 and utm_zone(10.0, -180.0) == 1
    assert latitude_band(-80.0) == "C" and latitude_band(84.0) == "X" and latitude_band(0.0) == "N"
    forced = wgs84_to_utm(59.9139, 10.7522, zone_number=33)
    assert forced.zone == "33V" and forced.easting < 500000
    with pytest.raises(ConfigError, match="outside the UTM range"):
        wgs84_to_utm(85.0, 0.0)


# ------------------------------------------------------------------------------------------------ keyframes
def test_keyframe_selection():
    n = 41
    stamps = [k * NS // 10 for k in range(n)]  # 10 Hz, 1 m/s along x, turning in place after 2 s
    pos = np.array([[min(k, 20) * 0.1, 0.0, 0.0] for k in range(n)])
    rot = np.array([quat_from_axis_angle(Z, math.radians(3.0 * max(0, k - 20))) for k in range(n)])
    assert select_keyframes(stamps, pos, rot) == list(range(n))
    assert select_keyframes(stamps, pos, rot, KeyframePolicy(min_distance=0.5)) == [0, 5, 10, 15, 20]
    assert select_keyframes(stamps, pos, rot, KeyframePolicy(min_angle=15.0)) == [0, 25, 30, 35, 40]
    assert select_keyframes(stamps, pos, rot, KeyframePolicy(min_distance=1.0, min_angle=30.0)) == [0, 10, 20, 30, 40]
    assert select_keyframes(stamps, pos, rot, KeyframePolicy(min_interval=1.5)) == [0, 15, 30]
    both = KeyframePolicy(min_distance=0.3, min_interval=0.5)
    assert select_keyframes(stamps, pos, rot, both) == [0, 5, 10, 15, 20]
    assert select_keyframes(stamps, None, None, KeyframePolicy(min_distance=1.0, min_interval=1.0)) == [0, 10, 20, 30,
                                                                                                        40]
    assert select_keyframes([], None, None, KeyframePolicy(min_distance=1.0)) == []
    with pytest.raises(ConfigError, match="min_angle must be a finite number >= 0"):
        KeyframePolicy(min_angle=-1)


def test_keyframes_on_a_circle():
    t = np.arange(200) * 0.05
    pos = np.array([_circle(x)[0] for x in t])  # 2 m/s on a 10 m circle: 0.1 m of arc per frame
    keep = select_keyframes((t * NS).round().astype(np.int64), pos, None, KeyframePolicy(min_distance=1.0))
    # the chord of k frames is 20 sin(0.005 k): 0.9996 m for k = 10, 1.0995 m for k = 11
    assert keep == list(range(0, 200, 11))


def test_factory_checks_its_inputs(tmp_path):
    with pytest.raises(ConfigError, match="3 images but 2 stamps"):
        write_image_bag(tmp_path / "x", _images(3), [T0, T0 + 1])
