"""The bag demo on a heavy subsample (12 frames per season) with a 1-block ViT-S at 224 x 224."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import ros_import

from fol_vpr_ros.jobs.demo_bags import METRES_PER_STORED_FRAME, nordland_track, run_bag_demo
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.sources.bag import list_topics


def test_track_spacing_and_curvature():
    pos, yaw = nordland_track(50, 400.0)
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    np.testing.assert_allclose(steps, 400.0)
    assert abs(yaw).max() <= 0.35 + 1e-9 and pos[0].tolist() == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def data(shared_data):
    """The bundled data folder, with the Nordland thumbnails the demo replays."""
    if not (shared_data / "nordland_seqslam_64x32").is_dir():
        pytest.skip(f"bundled Nordland data not found in {shared_data}")
    return shared_data


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=1), tmp_path_factory.mktemp("w") / "tiny.pth"))


def _check_common(res):
    assert res.frames_per_season == 12 and res.map_keyframes == 12
    assert res.spacing_m == 300 * METRES_PER_STORED_FRAME and not res.synthetic
    summary = json.loads(res.summary.read_text())
    assert summary["gt_frame"] == "utm" and "25" in summary["recall_pct"]
    assert summary["config"]["rerank_k"] == 10 and summary["config"]["top_k"] == 12
    assert set(res.recall_25m) == {1, 5, 10, 12} and math.isfinite(res.latency_ms["total"])
    topics = {t.name: t.count for t in list_topics(res.winter_bag)}
    assert topics == {"/camera/image_raw": 12, "/odom": 12, "/gps/fix": 12}
    assert res.results_bag is not None and res.results_bag.is_file()
    table = res.table()
    assert "recall@1 / @5 at 25 m" in table and str(res.report) in table
    return summary, table


def test_run_bag_demo_small_offline(data, tmp_path, tiny_ckpt):
    res = run_bag_demo(data, tmp_path / "demo", tiny_ckpt, input_size=(224, 224), step=300, through_node=False,
                       progress=False)
    summary, table = _check_common(res)
    assert res.frames_processed == 12 and res.frames_dropped == 0 and res.runner == "offline"
    assert summary["frames_processed"] == 12 and "config" in summary and "node" not in summary["config"]
    assert "offline" in table


@pytest.mark.ros
def test_run_bag_demo_small_through_node(data, tmp_path, tiny_ckpt):
    """The default demo path: winter replayed through the rclpy node (here at 2x the 1 Hz bag); drops allowed."""
    ros_import("rclpy")
    ros_import("fol_vpr_ros.msg")
    res = run_bag_demo(data, tmp_path / "demo", tiny_ckpt, input_size=(224, 224), step=300, rate_factor=2.0,
                       progress=False)
    summary, table = _check_common(res)
    assert res.runner == "rclpy_node" and res.rate_factor == 2.0 and summary["runner"] == "rclpy_node"
    assert res.frames_processed >= 1 and res.frames_processed + res.frames_dropped == 12
    assert summary["frames_dropped"] == res.frames_dropped == sum(res.node["dropped"].values())
    assert res.node["node_diagnostics"]["frames_processed"] == res.frames_processed
    assert "through the rclpy node (rmw_fastrtps_cpp" in table and "2x bag rate" in table
    assert "latest-frame slot" in table
