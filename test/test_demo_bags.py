"""The bag demo on a heavy subsample (12 frames per season) with a 1-block ViT-S at 224 x 224."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import ros_import

from fol_vpr_ros.jobs.demo_bags import METRES_PER_STORED_FRAME, nordland_track, run_bag_demo
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.node.packaged_params import default_params_path
from fol_vpr_ros.node.params import load_params
from fol_vpr_ros.sources.bag import list_topics


def test_track_spacing_and_curvature():
    pos, yaw = nordland_track(50, 400.0)
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    np.testing.assert_allclose(steps, 400.0)
    assert abs(yaw).max() <= 0.35 + 1e-9 and pos[0].tolist() == [0.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=1), tmp_path_factory.mktemp("w") / "tiny.pth"))


FRAMES = 12
# 12 frames per drive: the shipped exclusion (30 s, 50 keyframes) would hide every revisit of the short route
SHORT_ROUTE = {"exclusion.min_keyframes": 6, "exclusion.min_time_sec": 5.0}


def _check_common(res):
    assert res.frames_per_season == FRAMES and res.map_keyframes == FRAMES
    assert res.spacing_m == METRES_PER_STORED_FRAME and not res.synthetic
    shipped = load_params(default_params_path())
    assert res.params["rerank_k"] == shipped.rerank_k and res.params["top_k"] == shipped.top_k
    loc = json.loads(res.localize.summary.read_text())
    assert loc["gt_frame"] == "utm" and "25" in loc["recall_pct"] and loc["config"]["rerank_k"] == shipped.rerank_k
    # the route revisits every place: each winter frame has its summer twin (5 m: only it; 25 m: +-2 frames)
    # at most every winter frame (through the node, a dropped frame is not scored)
    assert 1 <= res.loops.positives[5.0] <= res.loops.positives[25.0] <= FRAMES
    assert set(res.localize.recall[25.0]) >= {1, 5, 10} and math.isfinite(res.localize.latency_ms["total"])
    topics = {t.name: t.count for t in list_topics(res.winter_bag)}
    assert topics == {"/camera/image_raw": FRAMES, "/camera/camera_info": FRAMES, "/odom": FRAMES, "/gps/fix": FRAMES}
    route = {t.name: t.count for t in list_topics(res.route_bag)}
    assert route["/camera/image_raw"] == 2 * FRAMES
    assert res.localize.results_bag is not None and res.localize.results_bag.is_file()
    lo = json.loads(res.loops.summary.read_text())
    assert lo["mode"] == "loop_closure"
    table = res.table()
    assert "localize R@1" in table and "keep-up, loops" in table and str(res.localize.report) in table
    assert "revisits" in table and "(shipped)" in table and "overridden" in table
    return loc, table


def test_run_bag_demo_small_offline(shared_data, tmp_path, tiny_ckpt):
    res = run_bag_demo(shared_data, tmp_path / "demo", tiny_ckpt, input_size=(224, 224), frames=FRAMES,
                       through_node=False, param_overrides=SHORT_ROUTE, progress=False)
    summary, table = _check_common(res)
    assert res.localize.frames_processed == FRAMES and res.localize.frames_dropped == 0 and res.runner == "offline"
    assert res.loops.frames_processed == 2 * FRAMES
    assert {t: res.loops.positives[t] for t in (5.0, 25.0)} == {5.0: FRAMES, 25.0: FRAMES}  # every winter frame
    assert summary["frames_processed"] == FRAMES and "config" in summary and "node" not in summary["config"]
    assert "offline" in table


@pytest.mark.ros
def test_run_bag_demo_small_through_node(shared_data, tmp_path, tiny_ckpt):
    """The default demo path: winter replayed through the rclpy node (here at 2x the 1 Hz bag); drops allowed."""
    ros_import("rclpy")
    ros_import("fol_vpr_ros.msg")
    res = run_bag_demo(shared_data, tmp_path / "demo", tiny_ckpt, input_size=(224, 224), frames=FRAMES,
                       rate_factor=2.0, param_overrides=SHORT_ROUTE, progress=False)
    summary, table = _check_common(res)
    assert res.runner == "rclpy_node" and res.rate_factor == 2.0 and summary["runner"] == "rclpy_node"
    for run, n in ((res.localize, FRAMES), (res.loops, 2 * FRAMES)):
        assert run.frames_processed >= 1 and run.frames_processed + run.frames_dropped == n
        assert run.frames_dropped == sum(run.node["dropped"].values())
        assert run.node["node_diagnostics"]["frames_processed"] == run.frames_processed
        assert run.period_ms == 500.0 and ("keeps up" in run.verdict()) == run.keeps_up
    assert summary["frames_dropped"] == res.localize.frames_dropped
    assert "through the rclpy node (use_sim_time, /clock) at 2x bag rate" in table
