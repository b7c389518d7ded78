"""Several robots and sessions: cameras and ids in map records, CameraInfo from bags, `fol-vpr map merge`."""

from __future__ import annotations

import csv
import dataclasses
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.cli import main
from fol_vpr_ros.errors import ConfigError, MapError
from fol_vpr_ros.jobs.build_map import build_map
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag, default_session_id
from fol_vpr_ros.jobs.merge_maps import merge_maps
from fol_vpr_ros.mapping import IndexConfig, Keyframe, VprMap
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.sources.bag import BagError
from fol_vpr_ros.sources.bag_cameras import camera_info_topic
from fol_vpr_ros.sources.camera import CameraIntrinsics
from fol_vpr_ros.stamps import NS_PER_SEC as NS
from fol_vpr_ros.testing.bagfactory import write_image_bag

TOPIC = "/cam_front/image_raw"
IDENTITY = (0.0, 0.0, 0.0, 1.0)
CAM = CameraIntrinsics(64, 32, 40.0, 41.0, 31.5, 15.5, "plumb_bob", (0.1, -0.01, 0.0, 0.0, 0.0))


def _ckpt(tmp_path_factory, seed: int) -> str:
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=seed), tmp_path_factory.mktemp("w") / f"tiny{seed}.pth"))


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _ckpt(tmp_path_factory, 6)


def _frames(shared_data, season: str, start: int, n: int) -> list[np.ndarray]:
    files = sorted((shared_data / "nordland_seqslam_64x32" / season).glob("*.png"))[start : start + n]
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def _bag(path, frames, t0: float, camera_info=None, topic=TOPIC, storage="mcap"):
    stamps = [round((t0 + k) * NS) for k in range(len(frames))]
    odom = [(s, (2.0 * k, 0.0, 0.0), IDENTITY) for k, s in enumerate(stamps)]
    return write_image_bag(path, frames, stamps, topic=topic, odometry=odom, storage=storage,
                           camera_info=camera_info), stamps


@pytest.fixture(scope="module")
def two_maps(ckpt, shared_data, tmp_path_factory):
    """Two maps of one model from real bags: robot r1 (summer, with CameraInfo) and robot r2 (winter, none)."""
    root = tmp_path_factory.mktemp("maps")
    bag_a, _ = _bag(root / "run_a", _frames(shared_data, "summer", 0, 6), 100.0,
                         camera_info=[(round(99.5 * NS), 64, 32, 40.0, 41.0, 31.5, 15.5)])
    bag_b, _ = _bag(root / "run_b.mcap", _frames(shared_data, "winter", 10, 5), 100.0)
    kw = dict(resize=(224, 224), batch_size=4, progress=False)
    a = build_map_from_bag(bag_a, TOPIC, root / "a", ckpt, robot_id="r1", **kw)
    b = build_map_from_bag(bag_b, TOPIC, root / "b", ckpt, robot_id="r2", session_id="winter", **kw)
    return root, a, b


# ---------------------------------------------------------------------------------------------- records
def test_keyframe_camera_and_ids_round_trip(tmp_path):
    kf = Keyframe(stamp_ns=5, frame_id="cam", id=0, session_id="s 1", robot_id="robot-ä", camera=CAM)
    obj = json.loads(json.dumps(kf.to_json()))
    assert obj["camera"]["distortion"] == [0.1, -0.01, 0.0, 0.0, 0.0] and obj["camera"]["fx"] == 40.0
    assert Keyframe.from_json(obj) == kf
    old = {"id": 3, "stamp_ns": 7, "frame_id": "", "source": ""}  # a record of a map written before cameras
    assert Keyframe.from_json(old).camera is None and Keyframe.from_json(old).robot_id is None


@pytest.mark.parametrize("camera, says", [
    ({"width": 64, "height": 32, "fx": 0.0, "fy": 1.0, "cx": 1.0, "cy": 1.0}, "fx, fy > 0"),
    ({"width": "64", "height": 32, "fx": 1.0, "fy": 1.0, "cx": 1.0, "cy": 1.0}, "camera width must be an integer"),
    ({"width": 64, "height": 32, "fx": 1.0, "fy": 1.0, "cx": 1.0}, "camera record lacks field 'cy'"),
    ({"width": 64, "height": 32, "fx": 1.0, "fy": 1.0, "cx": 1.0, "cy": 1.0, "distortion": ["x"]},
     "distortion must be a list of finite numbers"),
    ([1, 2], "camera must be an object"),
])
def test_a_bad_camera_in_keyframes_jsonl_names_the_file_and_line(tmp_path, camera, says):
    m = VprMap.create(tmp_path / "m", arch="vits14", input_size=(224, 224), model_hash="ab" * 32, descriptor_dim=8,
                      local_dim=4)
    g = np.eye(8, dtype=np.float32)[:2]
    m.add([Keyframe(stamp_ns=1, camera=CAM), Keyframe(stamp_ns=2)], g, [np.ones((1, 4)) / 2] * 2,
          [np.zeros((1, 2), int)] * 2)
    m.save()
    assert VprMap.open(tmp_path / "m").keyframe(0).camera == CAM
    path = tmp_path / "m" / "keyframes.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    rec["camera"] = camera
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MapError, match=rf"keyframes\.jsonl:2: invalid keyframe record: .*{says}"):
        VprMap.open(tmp_path / "m", verify="off")


@pytest.mark.parametrize("name, value, says", [
    ("session_id", 2024, "session_id must be a string"), ("robot_id", "r\n1", "control characters"),
    ("robot_id", "r\x001", "control characters"),
])
def test_ids_are_strings_without_control_characters(name, value, says):
    with pytest.raises(ConfigError, match=says):
        Keyframe(stamp_ns=0, **{name: value})
    with pytest.raises(MapError, match=f"kf.jsonl:3: invalid keyframe record: .*{says}"):
        Keyframe.from_json({"id": 0, "stamp_ns": 0, name: value}, "kf.jsonl:3")


# ---------------------------------------------------------------------------------------------- bags
def test_camera_info_topic_is_the_image_topics_sibling():
    assert camera_info_topic("/cam/image_raw") == "/cam/camera_info"
    assert camera_info_topic("/cam/image_raw/compressed") == "/cam/camera_info"
    assert camera_info_topic("/robot/left/image_rect") == "/robot/left/camera_info"


def test_bag_map_stores_the_camera_valid_at_each_keyframe(ckpt, shared_data, tmp_path):
    frames = _frames(shared_data, "summer", 20, 6)
    infos = [(round(100.5 * NS), 64, 32, 40.0, 41.0, 31.5, 15.5),  # valid from the second frame on
             (round(103.0 * NS), 64, 32, 0.0, 0.0, 0.0, 0.0),  # uncalibrated from the fourth frame on
             (round(104.0 * NS), 64, 32, 50.0, 50.0, 32.0, 16.0)]  # a new calibration at the fifth frame
    bag, stamps = _bag(tmp_path / "cams", frames, 100.0, camera_info=infos, storage="sqlite3")
    res = build_map_from_bag(bag, TOPIC, tmp_path / "m", ckpt, resize=(224, 224), min_distance=0.0,
                             min_angle=0.0, min_interval=0.0, robot_id="rover", progress=False)
    assert res.camera_info_topic == "/cam_front/camera_info" and res.with_camera == 4
    assert "1 message(s) with all-zero K" in res.summary() and "rover / cams" in res.summary()
    kfs = VprMap.open(tmp_path / "m").keyframes()
    cams = [(k.camera.fx if k.camera else None) for k in kfs]
    assert [k.stamp_ns for k in kfs] == stamps and cams == [None, 40.0, 40.0, None, 50.0, 50.0]
    assert kfs[1].camera == CameraIntrinsics(64, 32, 40.0, 41.0, 31.5, 15.5, "plumb_bob", (0.0,) * 5)
    assert {(k.robot_id, k.session_id) for k in kfs} == {("rover", "cams")}
    off = build_map_from_bag(bag, TOPIC, tmp_path / "m2", ckpt, resize=(224, 224), camera_info_topic=None,
                             progress=False)
    assert off.camera_info_topic is None and off.with_camera == 0
    with pytest.raises(BagError, match="no camera info topic '/nope'"):
        build_map_from_bag(bag, TOPIC, tmp_path / "m3", ckpt, resize=(224, 224), camera_info_topic="/nope",
                           progress=False)
    with pytest.raises(BagError, match="is a nav_msgs/msg/Odometry, not a sensor_msgs/msg/CameraInfo"):
        build_map_from_bag(bag, TOPIC, tmp_path / "m3", ckpt, resize=(224, 224), camera_info_topic="/odom",
                           progress=False)


def test_default_session_is_the_bag_name(tmp_path):
    assert default_session_id(tmp_path / "run_a") == "run_a"
    assert default_session_id(tmp_path / "run_b.mcap") == "run_b"
    assert default_session_id("old.bag") == "old"


# ---------------------------------------------------------------------------------------------- merge
def test_merged_map_keeps_ids_and_queries_as_its_parts(two_maps, tmp_path):
    root, a, b = two_maps
    res = merge_maps([root / "a", root / "b"], tmp_path / "ab", progress=False)
    assert (res.keyframes, res.local_rows) == (a.keyframes + b.keyframes, a.local_rows + b.local_rows)
    ma, mb, mab = VprMap.open(root / "a"), VprMap.open(root / "b"), VprMap.open(tmp_path / "ab")
    assert mab.manifest.model_hash == ma.manifest.model_hash and mab.index_config == ma.index_config
    assert list(mab.ids) == list(range(len(mab)))
    pairs = [(ma, i, j) for j, i in zip(res.inputs[0].new_ids, res.inputs[0].old_ids)]
    pairs += [(mb, i, j) for j, i in zip(res.inputs[1].new_ids, res.inputs[1].old_ids)]
    for part, old, new in pairs:
        assert mab.keyframe(int(new)) == dataclasses.replace(part.keyframe(int(old)), id=int(new))
        np.testing.assert_array_equal(mab.global_descriptor(int(new)), part.global_descriptor(int(old)))
        for x, y in zip(mab.local_rows(int(new)), part.local_rows(int(old))):
            np.testing.assert_array_equal(x, y)
    assert {(k.robot_id, k.session_id) for k in mab.keyframes()} == {("r1", "run_a"), ("r2", "winter")}
    assert sum(k.camera == CameraIntrinsics(64, 32, 40.0, 41.0, 31.5, 15.5, "plumb_bob", (0.0,) * 5)
               for k in mab.keyframes()) == a.keyframes
    # a query finds in the merged map what it finds in its parts: same neighbours, same similarities
    q = np.stack([ma.global_descriptor(int(ma.ids[1])), mb.global_descriptor(int(mb.ids[2]))])
    ids_ab, sim_ab = mab.search(q, len(mab))
    to_new = {(id(part), int(old)): int(new) for part, old, new in pairs}
    for row in range(len(q)):
        found = []
        for part in (ma, mb):
            ids, sim = part.search(q[row], len(part))
            found += [(float(s), to_new[(id(part), int(i))]) for i, s in zip(ids[0], sim[0])]
        found.sort(key=lambda t: -t[0])
        np.testing.assert_allclose(sim_ab[row], [s for s, _ in found], rtol=1e-6)
        assert sorted(ids_ab[row].tolist()) == sorted(n for _, n in found)
        assert ids_ab[row][0] == found[0][1]


def test_merge_cli_prints_the_id_mapping_and_takes_an_index(two_maps, tmp_path, capsys):
    root, a, b = two_maps
    out, ids = tmp_path / "ba", tmp_path / "ids.csv"
    assert main(["map", "merge", str(root / "b"), str(root / "a"), "--out", str(out), "--id-map", str(ids),
                 "--index", "hnsw:hnsw_m=8", "-q"]) == 0
    text = capsys.readouterr().out
    assert f"{root / 'b'}: {b.keyframes} keyframes, ids 0..{b.keyframes - 1} -> 0..{b.keyframes - 1}" in text
    assert f"ids 0..{a.keyframes - 1} -> {b.keyframes}..{a.keyframes + b.keyframes - 1}; sessions run_a" in text
    rows = list(csv.DictReader(ids.open()))
    assert len(rows) == a.keyframes + b.keyframes and rows[-1] == {
        "input": str(root / "a"), "old_id": str(a.keyframes - 1), "new_id": str(a.keyframes + b.keyframes - 1)}
    assert VprMap.open(out).index_config == IndexConfig.from_spec("hnsw:hnsw_m=8")
    assert main(["map", "check", str(out)]) == 0


def test_merge_refuses_duplicates_inputs_as_output_and_other_models(two_maps, ckpt, shared_data, tmp_path,
                                                                     tmp_path_factory, capsys):
    root, _, _ = two_maps
    a, b = root / "a", root / "b"
    shutil.copytree(a, tmp_path / "copy_a")
    with pytest.raises(MapError, match=rf"session 'run_a' of robot 'r1' is in both {a} and .*copy_a"):
        merge_maps([a, b, tmp_path / "copy_a"], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    # maps without sessions: the same image twice is refused by its (robot, session, frame, stamp)
    folder = root / "folder"
    folder.mkdir(exist_ok=True)
    for k, rgb in enumerate(_frames(shared_data, "summer", 40, 3)):
        Image.fromarray(rgb).save(folder / f"{k:03d}.png")
    for name in ("f1", "f2"):
        build_map(folder, tmp_path / name, ckpt, resize=(224, 224), progress=False)
    with pytest.raises(MapError, match=rf"keyframe of camera frame 'camera' at stamp 0 ns .* is in both "
                                       rf"{tmp_path / 'f1'} and {tmp_path / 'f2'}"):
        merge_maps([tmp_path / "f1", tmp_path / "f2"], tmp_path / "out", progress=False)
    build_map(folder, tmp_path / "f3", ckpt, resize=(224, 224), session_id="again", progress=False)
    assert merge_maps([tmp_path / "f1", tmp_path / "f3"], tmp_path / "out", progress=False).keyframes == 6
    with pytest.raises(ConfigError, match="refusing to overwrite an input"):
        merge_maps([a, b], a, progress=False)
    with pytest.raises(ConfigError, match="a map already exists; pass --overwrite"):
        merge_maps([a, b], tmp_path / "out", progress=False)
    with pytest.raises(ConfigError, match="given twice"):
        merge_maps([a, b, a], tmp_path / "o2", progress=False)
    with pytest.raises(ConfigError, match="at least two input maps"):
        merge_maps([a], tmp_path / "o2", progress=False)
    other = build_map(folder, tmp_path / "other", _ckpt(tmp_path_factory, 7), resize=(224, 224), session_id="x",
                      progress=False)
    assert main(["map", "merge", str(a), str(other.out), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{other.out}: map is incompatible with this model (model_hash:" in err[0]
    assert not (tmp_path / "o2").exists()
