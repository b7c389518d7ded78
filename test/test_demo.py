"""The demo pipeline (README's first command) on a subsample of the bundled data."""

from __future__ import annotations

import numpy as np
import pytest

from fol_vpr_ros.cli import main
from fol_vpr_ros.jobs import demo_images as demo
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.pipeline.describe import load_descriptions_npz


def test_demo_subsample(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_SETS", (("gardenspoint_sample10_vpr_tutorial", "query", 3),
                                            ("nordland_seqslam_64x32", "winter", 2)))
    monkeypatch.setattr(demo, "DEMO_RETRIEVAL", ("gardenspoint",))
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    ckpt = save_checkpoint(synthetic_model(cfg, seed=0), tmp_path / "w.pth")
    out = tmp_path / "demo"
    assert main(["demo-images", "--data", str(shared_data), "--out", str(out), "--weights", str(ckpt),
                 "--resize", "224", "224", "-q"]) == 0
    printed = capsys.readouterr().out
    assert "gardenspoint_sample10_vpr_tutorial/query" in printed and "R@1 global" in printed
    z = load_descriptions_npz(out / "descriptions" / "nordland_seqslam_64x32_winter.npz")
    assert z["global"].shape == (2, 8448) and np.array_equal(z["image_size"], [[32, 64], [32, 64]])
    for png in (out / "regions").glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (out / "reports" / "gardenspoint" / "summary.json").is_file()
    assert not (out / "SYNTHETIC_WEIGHTS.txt").exists()


def test_demo_with_random_weights_says_synthetic(shared_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEMO_SETS", (("vprbench_corridor", "ref", 1),))
    monkeypatch.setattr(demo, "DEMO_RETRIEVAL", ())
    assert main(["demo-images", "--weights", "random:0", "--data", str(shared_data), "--out", str(tmp_path / "d"),
                 "--resize", "224", "224", "-q"]) == 0
    assert "SYNTHETIC WEIGHTS" in capsys.readouterr().out
    assert "meaningless" in (tmp_path / "d" / "SYNTHETIC_WEIGHTS.txt").read_text()


def test_demo_needs_weights_as_every_command(tmp_path, capsys):
    """No silent random model: `make demo-images` passes random:0 when WEIGHTS is not given."""
    with pytest.raises(SystemExit) as info:
        main(["demo-images", "--data", str(tmp_path), "--out", str(tmp_path / "d")])
    assert info.value.code == 2 and "--weights" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_demo_missing_data(tmp_path, capsys):
    assert main(["demo-images", "--weights", "random:0", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "d")]) == 2
    assert "bundled data folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo-images", "--resize", "224"])
