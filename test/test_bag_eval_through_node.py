"""evaluate_bag through the rclpy node (``through_node=True``) on small Nordland bags, 1-block ViT-S at 224 x 224.

The node runs in-process on use_sim_time and is fed over real rclpy + rmw_fastrtps topics with /clock (the
conftest's ROS domain, LOCALHOST discovery); every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ros_import
from PIL import Image

pytestmark = pytest.mark.ros
ros_import("rclpy")
ros_import("fol_vpr_ros.msg")

from fol_vpr_ros.cli.evaluate_bag import add_evaluate_bag_parser, cmd_evaluate_bag  # noqa: E402
from fol_vpr_ros.errors import ConfigError  # noqa: E402
from fol_vpr_ros.evaluation.bag_config import BagEvalConfig  # noqa: E402
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag  # noqa: E402
from fol_vpr_ros.jobs.evaluate_bag import EvaluateBagJob, evaluate_bag  # noqa: E402
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model  # noqa: E402
from fol_vpr_ros.node import load_params  # noqa: E402
from fol_vpr_ros.pipeline.describe import Describer, DescriberConfig  # noqa: E402
from fol_vpr_ros.ros.replay import RclpyReplayRunner  # noqa: E402
from fol_vpr_ros.ros.results_bag import LOOP_TOPIC, RESULT_TOPIC  # noqa: E402
from fol_vpr_ros.stamps import NS_PER_SEC  # noqa: E402
from fol_vpr_ros.testing.bagfactory import write_image_bag  # noqa: E402

T_MAP = 1_650_000_000 * NS_PER_SEC
T_QUERY = 1_660_000_000 * NS_PER_SEC
TOPIC = "/camera/image_raw"
IDENTITY = (0.0, 0.0, 0.0, 1.0)
SLOW_RATE = 0.5  # 2 s between frames: the tiny model keeps up (0.2-0.5 s per frame on 2 shared cores, worse
# under load; a frame is only dropped once the node lags by more than a frame period)
SHORT = 5  # frames of the short query bags replayed slowly


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=4), tmp_path_factory.mktemp("w") / "tiny.pth"))


@pytest.fixture(scope="module")
def describer(ckpt):
    return Describer.from_config(DescriberConfig(ckpt, "auto", (224, 224), "cpu", batch_size=1))


@pytest.fixture(scope="module")
def frames(shared_data):
    folder = shared_data / "nordland_seqslam_64x32" / "summer"
    if not folder.is_dir():
        pytest.skip(f"bundled data not found at {folder}")
    files = sorted(folder.glob("*.png"))[240::20][:8]  # distinct places
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]


def _stamps(t0, n):
    return [t0 + k * NS_PER_SEC for k in range(n)]


def _odom(stamps, xs):
    return [(s, (float(x), 0.0, 0.0), IDENTITY) for s, x in zip(stamps, xs)]


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, ckpt, frames):
    """A map bag and query bags (all frames; the first SHORT) of the same images along the same track."""
    root = tmp_path_factory.mktemp("loc")
    xs = [10.0 * k for k in range(len(frames))]
    s_map, s_q = _stamps(T_MAP, len(frames)), _stamps(T_QUERY, len(frames))
    map_bag = write_image_bag(root / "map_bag", frames, s_map, odometry=_odom(s_map, xs), odom_frame="map")
    query_bag = write_image_bag(root / "query_bag", frames, s_q, odometry=_odom(s_q, xs), odom_frame="map")
    short = write_image_bag(root / "short_bag", frames[:SHORT], s_q[:SHORT], odometry=_odom(s_q, xs)[:SHORT],
                            odom_frame="map")
    build_map_from_bag(map_bag, TOPIC, root / "map", ckpt, resize=(224, 224), batch_size=4, progress=False)
    return root, query_bag, s_q, short


def _eval(bag, out, ckpt, describer, **kw):
    kw.setdefault("cfg", BagEvalConfig(every_frame=True, examples=0))
    job = EvaluateBagJob(bag, TOPIC, out, ckpt, resize=(224, 224), progress=False, **kw)
    return evaluate_bag(job, describer=describer)


def _read_bag(path):
    from rosbags.highlevel import AnyReader

    from fol_vpr_ros.ros.interfaces import typestore

    out: dict[str, list] = {}
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        for conn, bag_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((bag_ns, reader.deserialize(raw, conn.msgtype)))
    return out


def test_through_node_same_recall_as_offline(tmp_path, ckpt, describer, mapped):
    root, _, stamps, query_bag = mapped
    stamps = stamps[:SHORT]
    off = _eval(query_bag, tmp_path / "off", ckpt, describer, map_path=root / "map")
    t0 = time.monotonic()
    res = _eval(query_bag, tmp_path / "node", ckpt, describer, map_path=root / "map", through_node=True,
                rate_factor=SLOW_RATE, write_results=tmp_path / "res.mcap")
    assert time.monotonic() - t0 >= (len(stamps) - 1) / SLOW_RATE  # played at the bag's spacing / rate
    assert res.runner == "rclpy_node" and off.runner == "offline"
    assert res.frames.dropped == 0 and res.frames.processed == len(stamps)
    assert res.recall == off.recall and res.recall[5.0][1] == 100.0
    assert [r.best_id for r in res.per_frame] == [r.best_id for r in off.per_frame] == list(range(len(stamps)))
    assert [r.stamp_ns for r in res.per_frame] == stamps and all(r.accepted for r in res.per_frame)
    assert res.accepted == off.accepted
    summary = json.loads(res.summary_path.read_text())
    assert summary["runner"] == "rclpy_node" and summary["frames_dropped"] == 0
    node = summary["config"]["node"]
    assert summary["config"]["rate_factor"] == SLOW_RATE and node["image_topic"] == "/image"
    assert node["node_diagnostics"]["frames_processed"] == len(stamps) == node["messages_received"]["result"]
    assert node["node_diagnostics"]["frames_dropped"] == 0 and node["end_to_end_ms"]["count"] == len(stamps)
    assert node["use_sim_time"] and node["rmw"] == "rmw_fastrtps_cpp"
    assert summary["latency_ms"]["total"]["count"] == len(stamps)
    msgs = _read_bag(tmp_path / "res.mcap")  # the messages the node published, as received
    assert [(ns, m.header.stamp.sec * NS_PER_SEC + m.header.stamp.nanosec) for ns, m in msgs[RESULT_TOPIC]] == \
        [(s, s) for s in stamps]
    assert len(msgs[TOPIC]) == len(stamps)


def test_fast_replay_of_a_slow_node_drops_frames(tmp_path, ckpt, mapped):
    root, query_bag, stamps, _ = mapped
    slow = Describer.from_config(DescriberConfig(ckpt, "auto", (224, 224), "cpu", batch_size=1))
    describe = slow.describe_arrays

    def sleepy(*args, **kwargs):
        time.sleep(0.4)
        return describe(*args, **kwargs)

    slow.describe_arrays = sleepy
    res = _eval(query_bag, tmp_path / "r", ckpt, slow, map_path=root / "map", through_node=True, rate_factor=20.0)
    f = res.frames
    assert f.dropped > 0 and f.processed >= 1 and f.processed + f.dropped == len(stamps)
    summary = json.loads(res.summary_path.read_text())
    assert summary["frames_dropped"] == f.dropped > 0
    node = summary["config"]["node"]
    assert sum(node["dropped"].values()) == f.dropped
    assert node["node_diagnostics"]["frames_processed"] == f.processed
    assert node["node_diagnostics"]["frames_dropped"] == node["dropped"]["in_node_slot"]
    assert any("frame(s) dropped" in n for n in summary["notes"])
    outcome = [r.outcome for r in res.per_frame]
    assert outcome.count("dropped") == f.dropped and outcome[0] != "dropped"


def test_compressed_skips_and_failures_through_node(tmp_path, ckpt, describer, frames, mapped):
    """CompressedImage on image/compressed; the keyframe gate and a corrupt frame, attributed per frame."""
    root = mapped[0]
    # frame 4: 0.2 s after frame 3
    s = [*_stamps(T_QUERY, 4), T_QUERY + 3 * NS_PER_SEC + NS_PER_SEC // 5, T_QUERY + 5 * NS_PER_SEC]
    xs = [0, 10, 20, 30, 30, 50]
    bag = write_image_bag(tmp_path / "q", frames[:6], s, odometry=_odom(s, xs), odom_frame="map", compressed=True,
                          corrupt_frames=[2])
    res = _eval(bag, tmp_path / "r", ckpt, describer, map_path=root / "map", through_node=True, rate_factor=1.0,
                cfg=BagEvalConfig(every_frame=False, examples=0))
    rows = [(r.status, r.best_id, r.error) for r in res.per_frame]
    assert rows == [("processed", 0, None), ("processed", 1, None), ("failed", None, "corrupt_compressed"),
                    ("processed", 3, None), ("skipped", None, None), ("processed", 5, None)]
    node = json.loads(res.summary_path.read_text())["config"]["node"]
    assert node["image_topic"] == "/image/compressed" and node["odometry_published"]
    d = node["node_diagnostics"]
    assert (d["frames_processed"], d["frames_skipped"], d["frames_failed"], d["frames_dropped"]) == (4, 1, 1, 0)


def test_loop_closure_through_node_cli(tmp_path, ckpt, frames):
    imgs = [*frames[:4], frames[0], frames[1]]  # out along x, then back at the first two places
    xs = [0, 10, 20, 30, 0.5, 10.5]
    stamps = _stamps(T_MAP, len(imgs))
    bag = write_image_bag(tmp_path / "loop", imgs, stamps, odometry=_odom(stamps, xs))
    parser = argparse.ArgumentParser()
    add_evaluate_bag_parser(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["evaluate-bag", "--bag", str(bag), "--image-topic", TOPIC, "--weights", ckpt, "--out",
                           str(tmp_path / "cli"), "--loop-closure", "--resize", "224", "224", "--every-frame",
                           "--exclusion-time", "2.0", "--exclusion-keyframes", "2", "--examples", "0", "-q",
                           "--through-node", "--rate-factor", str(SLOW_RATE), "--write-results",
                           str(tmp_path / "loop_res")])
    assert a.through_node and a.rate_factor == SLOW_RATE and a.domain_id is None
    assert cmd_evaluate_bag(a) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["runner"] == "rclpy_node" and summary["frames_dropped"] == 0
    assert summary["accepted"]["5"]["correct"] >= 2 and summary["pr"]["5"]["positives"] == 2  # as offline
    assert summary["config"]["node"]["messages_received"]["loop_closure"] == 3
    msgs = _read_bag(tmp_path / "loop_res")
    loops = {m.query_keyframe_id: (m.match_keyframe_id, m.status) for _, m in msgs[LOOP_TOPIC]}
    assert sorted(loops) == [3, 4, 5] and loops[4] == (0, 0) and loops[5] == (1, 0)  # ACCEPTED at frames 0, 1
    assert len(msgs[RESULT_TOPIC]) == len(imgs)


def test_bad_rate_factor(tmp_path, ckpt, describer, mapped):
    root, query_bag, _, _ = mapped
    with pytest.raises(ConfigError, match="rate factor"):
        _eval(query_bag, tmp_path / "r", ckpt, describer, map_path=root / "map", through_node=True, rate_factor=0)
    params = load_params(None, overrides={"weights": ckpt, "map_path": str(root / "map")})
    with pytest.raises(ConfigError, match="domain id"):
        RclpyReplayRunner(params, describer, None, domain_id=300)
