"""build-map + evaluate end to end: a synthetic '@utm' dataset with known answers, and the bundled data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.cli import main
from fol_vpr_ros.mapping import VprMap
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=5), tmp_path_factory.mktemp("w") / "tiny.pth"))


def _noise_image(path, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)  # blocky, distinct per place
    Image.fromarray(np.kron(base, np.ones((12, 12, 1), np.uint8))).save(path)


def _utm_dataset(root):
    db, q = root / "images" / "test" / "database", root / "images" / "test" / "queries"
    db.mkdir(parents=True)
    q.mkdir(parents=True)
    for i in range(8):
        _noise_image(db / f"@{500000 + 100 * i:.2f}@{4000000:.2f}@10@S@.png", seed=i)
    for i in (1, 4, 6):  # exact revisits of places 1, 4, 6, each 3 m away from the mapped spot
        _noise_image(q / f"@{500003 + 100 * i:.2f}@{4000000:.2f}@10@S@.png", seed=i)
    _noise_image(q / f"@{590000:.2f}@{4000000:.2f}@10@S@.png", seed=99)  # nowhere near the map
    return db, q


def test_utm_dataset_known_answers(ckpt, tmp_path):
    db, q = _utm_dataset(tmp_path / "ds")
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(db),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    vmap = VprMap.open(tmp_path / "map")
    assert len(vmap) == 8 and vmap.keyframe(int(vmap.ids[3])).geo.easting == pytest.approx(500300)
    assert main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(q),
                 "--ground-truth", "utm", "--out", str(tmp_path / "rep"), "-q"]) == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    # 3 of 4 queries have a positive and are exact copies of it; the 4th has none and counts as a miss
    assert summary["recall_global"]["1"] == pytest.approx(75.0)
    assert summary["recall_rerank"]["1"] == pytest.approx(75.0)
    assert summary["recall_global"]["5"] == pytest.approx(75.0)
    assert summary["queries_without_positives"] == 1
    for stage in ("describe", "search", "rerank"):
        assert summary["timing_ms"][stage]["mean"] > 0
    assert (tmp_path / "rep" / "recall_at_n.png").stat().st_size > 5000
    assert (tmp_path / "rep" / "examples.png").stat().st_size > 5000
    assert "SYNTHETIC" not in (tmp_path / "rep" / "report.md").read_text()  # a checkpoint file, not random:


def test_bundled_gardenspoint_end_to_end(ckpt, shared_data, tmp_path, capsys):
    assert main(["ground-truth", "--data", str(shared_data), "--out", str(tmp_path / "gt"),
                 "--names", "gardenspoint"]) == 0
    csv = next((tmp_path / "gt").glob("*.csv"))
    gp = shared_data / "gardenspoint_sample10_vpr_tutorial"
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(gp / "ref"),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(gp / "query"),
                 "--ground-truth", str(csv), "--out", str(tmp_path / "rep"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "R@1" in out and "rerank" in out
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["num_queries"] == 10 and summary["num_database"] == 10
    assert set(summary["recall_global"]) >= {"1", "5", "10"}
    rows = (tmp_path / "rep" / "per_query.csv").read_text().splitlines()
    assert len(rows) == 11


def test_evaluate_refuses_other_model_and_big_k(ckpt, tmp_path, capsys):
    db, q = _utm_dataset(tmp_path / "ds")
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(db),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    capsys.readouterr()
    rc = main(["evaluate", "--weights", "random:1", "--arch", "vits14", "--map", str(tmp_path / "map"),
               "--queries", str(q), "--ground-truth", "utm", "--out", str(tmp_path / "r1"), "-q"])
    assert rc == 2 and "model_hash" in capsys.readouterr().err
    rc = main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(q),
               "--ground-truth", "utm", "--top-k", "50", "--out", str(tmp_path / "r2"), "-q"])
    assert rc == 2 and "larger than the map (8 keyframes)" in capsys.readouterr().err
    assert not (tmp_path / "r2" / "summary.json").exists()
    rc = main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(db),
               "--out", str(tmp_path / "map"), "-q"])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_build_map_skips_corrupt_images(ckpt, tmp_path, capsys):
    folder = tmp_path / "im"
    folder.mkdir()
    for i in range(3):
        _noise_image(folder / f"{i}.png", seed=i)
    (folder / "3.png").write_bytes(b"\x89PNG\r\n\x1a\ncorrupt")
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(folder),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "3 keyframes" in out and "1 image(s) skipped" in out and "3.png" in out
    assert len(VprMap.open(tmp_path / "map")) == 3


def test_evaluate_with_the_bundled_corridor_ground_truth(ckpt, shared_data, tmp_path, capsys):
    """data/vprbench_corridor/ground_truth.csv (query_index,matching_ref_indices) is taken as it is shipped."""
    corridor = shared_data / "vprbench_corridor"
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(corridor / "ref"),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(corridor / "query"),
                 "--ground-truth", str(corridor / "ground_truth.csv"), "--top-k", "5", "--rerank-k", "0",
                 "--recall-values", "1", "5", "--out", str(tmp_path / "rep"), "-q"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["num_queries"] == 111 and summary["num_database"] == 111
    assert summary["queries_without_positives"] == 0
    assert "global" in out and f"{summary['recall_global']['1']:.1f} %" in out
    rows = (tmp_path / "rep" / "per_query.csv").read_text().splitlines()
    assert len(rows) == 112 and "0000005.jpg" in rows[6]


def test_evaluate_names_the_accepted_ground_truth_formats(ckpt, tmp_path, capsys):
    db, q = _utm_dataset(tmp_path / "ds")
    assert main(["build-map", "--weights", ckpt, "--resize", "224", "224", "--images", str(db),
                 "--out", str(tmp_path / "map"), "-q"]) == 0
    (tmp_path / "gt.csv").write_text("image,match\nx.png,y.png\n")
    capsys.readouterr()
    assert main(["evaluate", "--weights", ckpt, "--map", str(tmp_path / "map"), "--queries", str(q),
                 "--ground-truth", str(tmp_path / "gt.csv"), "--out", str(tmp_path / "rep"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fol-vpr evaluate: error: ")
    assert "gt.csv: unknown ground-truth header 'image,match'" in err
    assert "'query,positives'" in err and "'query_index,matching_ref_indices'" in err
