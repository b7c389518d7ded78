"""The bag demo on a heavy subsample (12 frames per season) with a 1-block ViT-S at 224 x 224."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fol_vpr_ros.demo_bags import METRES_PER_STORED_FRAME, nordland_track, run_bag_demo
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.sources.bag import list_topics

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_track_spacing_and_curvature():
    pos, yaw = nordland_track(50, 400.0)
    steps = np.linalg.norm(np.diff(pos, axis=0), axis=1)
    np.testing.assert_allclose(steps, 400.0)
    assert abs(yaw).max() <= 0.35 + 1e-9 and pos[0].tolist() == [0.0, 0.0, 0.0]


def test_run_bag_demo_small(tmp_path):
    if not (DATA / "nordland_seqslam_64x32").is_dir():
        pytest.skip(f"bundled data not found at {DATA}")
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    ckpt = str(save_checkpoint(synthetic_model(cfg, seed=1), tmp_path / "tiny.pth"))
    res = run_bag_demo(DATA, tmp_path / "demo", ckpt, input_size=(224, 224), step=300, progress=False)
    assert res.frames_per_season == 12 and res.map_keyframes == 12 and res.frames_processed == 12
    assert res.spacing_m == 300 * METRES_PER_STORED_FRAME and not res.synthetic
    summary = json.loads(res.summary.read_text())
    assert summary["frames_processed"] == 12 and summary["gt_frame"] == "utm" and "25" in summary["recall_pct"]
    assert summary["config"]["rerank_k"] == 10 and summary["config"]["top_k"] == 12
    assert set(res.recall_25m) == {1, 5, 10, 12} and math.isfinite(res.latency_ms["total"])
    topics = {t.name: t.count for t in list_topics(res.winter_bag)}
    assert topics == {"/camera/image_raw": 12, "/odom": 12, "/gps/fix": 12}
    assert res.results_bag is not None and res.results_bag.is_file()
    table = res.table()
    assert "recall@1 / @5 at 25 m" in table and str(res.report) in table
