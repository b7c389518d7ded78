"""Training: losses against hand-computed cases, data sources, trainer (overfit, resume, checkpoints), CLI."""

from __future__ import annotations

import argparse
import csv
import json
import math
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from fol_vpr_ros.cli.train import add_train_parser, cmd_train
from fol_vpr_ros.errors import CheckpointError, ConfigError
from fol_vpr_ros.mapping import GeoPosition, Keyframe, Pose, VprMap
from fol_vpr_ros.model import FoLConfig, arch_config, read_state_dict, synthetic_model
from fol_vpr_ros.training import (
    GsvCitiesSource,
    LossConfig,
    MapPlacesConfig,
    MapPlaceSource,
    PlaceBatchDataset,
    TrainTransform,
    TransformConfig,
    epoch_plan,
    fol_loss,
    gsv_image_name,
    split_places,
)
from fol_vpr_ros.training.losses import (
    cel_loss,
    local_similarity,
    local_triplet_loss,
    multi_similarity_loss,
    multi_similarity_miner,
    sal_loss,
    weak_correspondences,
    weak_supervision_loss,
)
from fol_vpr_ros.training.model_setup import freeze_backbone, init_model
from fol_vpr_ros.training.places import cluster_places
from fol_vpr_ros.training.trainer import train_step

SIZE = ["--resize", "224", "224"]
TINY = ["--arch", "vits14", "--depth", "1", *SIZE, "--places-per-batch", "2", "--images-per-place", "2", "-q"]


# ------------------------------------------------------------------------------------------ fixtures
def _write_gsv(root: Path, city: str = "Testville", places: int = 6, per_place: int = 4) -> Path:
    rng = np.random.default_rng(0)
    (root / "Dataframes").mkdir(parents=True, exist_ok=True)
    (root / "Images" / city).mkdir(parents=True, exist_ok=True)
    rows = []
    for pid in range(places):
        base = Image.fromarray(rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)).resize((64, 48), Image.BILINEAR)
        for k in range(per_place):
            img = np.asarray(base, dtype=np.float32) + rng.normal(0, 8, (48, 64, 3))
            row = {"place_id": pid, "year": 2015 + k, "month": k + 1, "northdeg": 30 * k, "city_id": city,
                   "lat": f"{45.1 + pid * 0.001:.4f}", "lon": "-73.50", "panoid": f"p{pid}x{k}"}
            rows.append(row)
            name = gsv_image_name({key: str(v) for key, v in row.items()})
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / "Images" / city / name, quality=90)
    with (root / "Dataframes" / f"{city}.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def gsv(tmp_path_factory) -> Path:
    return _write_gsv(tmp_path_factory.mktemp("gsv"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fol-vpr")
    add_train_parser(p.add_subparsers(dest="command", required=True))
    return p


def _train_cli(argv: list[str]) -> int:
    """`fol-vpr train ...` through cli.main once it is wired in, else through our own parser."""
    from fol_vpr_ros import cli

    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "train" in sub.choices:
            return cli.main(["train", *argv])
        args = _parser().parse_args(["train", *argv])
        return args.func(args)


def _fake(**kw) -> SimpleNamespace:
    return SimpleNamespace(**kw)


# --------------------------------------------------------------------------------- MS loss and miner
# unit global descriptors, labels [0, 0, 1, 1]: S01 = .6, S02 = .8, S03 = .28, S12 = .48, S13 = .168, S23 = .8
G = torch.tensor([[1.0, 0.0, 0.0], [0.6, 0.8, 0.0], [0.8, 0.0, 0.6], [0.28, 0.0, 0.96]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_ms_miner_hand_case():
    pos, neg = multi_similarity_miner(G @ G.T, LABELS, 0.1)
    # anchor 0: min pos .6, max neg .8 -> pos (0,1) kept (.6-.1 < .8), neg (0,2) kept (.8+.1 > .6), (0,3) not
    # anchor 1: max neg .48 -> (1,0): .5 < .48 false; negatives .58, .268 > .6 false -> nothing
    # anchor 2: pos (2,3) .7 < .8 kept; neg (2,0) .9 > .8 kept, (2,1) .58 > .8 false
    # anchor 3: max neg .28: (3,2) .7 < .28 false; negatives .38, .268 > .8 false
    assert pos.nonzero().tolist() == [[0, 1], [2, 3]]
    assert neg.nonzero().tolist() == [[0, 2], [2, 0]]


def test_ms_loss_hand_case():
    # mined: anchor 0 with S01 = .6 and S02 = .8, anchor 2 with S23 = .8 and S20 = .8; anchors 1, 3 have no pair
    a0 = math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(50 * 0.8)) / 50
    a2 = math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(50 * 0.8)) / 50
    loss, n_pos, n_neg = multi_similarity_loss(G, LABELS, LossConfig())
    assert (n_pos, n_neg) == (2, 2)
    assert float(loss) == pytest.approx((a0 + a2) / 4, rel=1e-5)
    loss2, _, _ = multi_similarity_loss(G, LABELS, LossConfig(ms_average="anchors_with_pairs"))
    assert float(loss2) == pytest.approx((a0 + a2) / 2, rel=1e-5)
    # without the miner every pair counts: anchor 1 = log(1+e^-.6) + log(1+e^{50*.48}+e^{50*.168})/50
    loss3, n_pos, n_neg = multi_similarity_loss(G, LABELS, LossConfig(use_miner=False))
    assert (n_pos, n_neg) == (4, 8)
    a1 = math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(24) + math.exp(8.4)) / 50
    a0 = math.log(1 + math.exp(-0.6)) + math.log(1 + math.exp(40) + math.exp(14)) / 50
    a2 = math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(40) + math.exp(24)) / 50
    a3 = math.log(1 + math.exp(-0.8)) + math.log(1 + math.exp(14) + math.exp(8.4)) / 50
    assert float(loss3) == pytest.approx((a0 + a1 + a2 + a3) / 4, rel=1e-5)


# --------------------------------------------------------------------------------------- local loss
def test_local_similarity_hand_case():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    b = torch.tensor([[1.0, 0.0], [0.8, 0.6]])
    # a@b.T = [[1, .8], [0, .6], [.6, .96]]: mutual pairs (a0, b0) = 1 and (a2, b1) = .96; (a1 -> b1) is not mutual
    assert float(local_similarity(a, b, 0.7)) == pytest.approx(0.98)
    assert float(local_similarity(a, b, 0.97)) == pytest.approx(1.0)
    one, two = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    assert float(local_similarity(one, two, 0.9, "mnn")) == pytest.approx(0.8)  # fallback: all mutual pairs
    assert float(local_similarity(one, two, 0.9, "aligned")) == pytest.approx(0.0)  # authors: row 0 with row 0
    assert float(local_similarity(one, two, 0.9, "zero")) == 0.0
    assert float(local_similarity(one[:0], two)) == 0.0


def _local_case():
    rows = [[[1.0, 0.0]], [[0.0, 1.0]], [[0.6, 0.8]], [[0.0, 1.0]]]
    return _fake(global_desc=G, local=torch.tensor(rows), local_count=torch.tensor([1, 1, 1, 1]))


def test_local_triplet_hand_case():
    # hard negatives by global similarity: 0->2, 1->2, 2->0, 3->0; positives: 0<->1, 2<->3
    # local sims (one row each): s01 = 0 (fallback), s02 = .6 (fallback), s12 = .8, s23 = .8, s20 = .6, s30 = 0
    out = _local_case()
    loss = local_triplet_loss(out, LABELS, LossConfig())
    assert float(loss) == pytest.approx((0.6 + 0.8 + 0 + 0) / 4)
    loss_zero = local_triplet_loss(out, LABELS, LossConfig(local_fallback="zero"))  # s01 = s02 = s20 = s30 = 0
    assert float(loss_zero) == pytest.approx((0 + 0.8 + 0 + 0) / 4)
    rows = out.local.clone().requires_grad_(True)
    local_triplet_loss(_fake(global_desc=G, local=rows, local_count=out.local_count), LABELS).backward()
    assert rows.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- SAL / CEL
def test_sal_and_weighting():
    out = _fake(kl_conf_att=torch.tensor(0.2), kl_att_conf=torch.tensor(0.3))
    assert float(sal_loss(out)) == pytest.approx(0.5)


def test_cel_hand_case():
    dense = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]], [[[0.6, 0.8], [1.0, 0.0]]]])  # [2, 1, 2, 2]
    soft = torch.tensor([[[1.0, 0.0]], [[0.5, 0.5]]])
    out = _fake(local_dense=dense, soft_region=soft)
    # fg0 = (1, 0), bg0 = (0, 1); fg1 = bg1 = (.8, .4) / |.| -> cos fg = 2/sqrt5, cos bg = 1/sqrt5
    expected = 0.7 * (1 - 2 / math.sqrt(5)) + 0.3 * (1 - 1 / math.sqrt(5))
    assert float(cel_loss(out, torch.tensor([0, 0]))) == pytest.approx(expected, rel=1e-6)
    assert float(cel_loss(out, torch.tensor([0, 0]), LossConfig(cel_fg_weight=1, cel_bg_weight=0))) == \
        pytest.approx(1 - 2 / math.sqrt(5), rel=1e-6)
    assert float(cel_loss(out, torch.tensor([0, 1]))) == 0.0  # no pair of the same place


# --------------------------------------------------------------------------------- weak supervision
def _weak_case():
    region = torch.tensor([[[True, False], [False, True]], [[True, False], [False, False]]])
    assign = torch.tensor([
        [[0.9, 0.5, 0.4, 0.05], [0.05, 0.05, 0.05, 0.9]],
        [[0.06, 0.5, 0.3, 0.05], [0.05, 0.05, 0.05, 0.9]],
    ])
    f0 = [[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [0, 0.6, 0.8]]
    f1 = [[0.8, 0.6, 0], [0.96, 0.28, 0], [0.28, 0.96, 0], [0, 0.28, 0.96]]
    feats = torch.tensor([f0, f1]).transpose(1, 2)  # [2, C=3, n=4]
    dense = torch.zeros(2, 5, 5, 3)
    dense[..., 0] = 1.0
    dense[0, 4, 4] = torch.tensor([0.0, 0.0, 1.0])
    dense[1, 0, 4] = torch.tensor([0.6, 0.8, 0.0])
    dense[1, 4, 4] = torch.tensor([0.0, 0.6, 0.8])
    return _fake(region_mask=region, assignment=assign, patch_features=feats, local_dense=dense)


def test_weak_supervision_hand_case():
    out = _weak_case()
    # 0 -> 1: patch 0 (cluster 0) candidates q1 (.5), q2 (.3): cos .96 / .28 -> kept (ratio 3.4);
    #         patch 3 (cluster 1) only candidate q3: cos .936 -> kept
    p, q, cos = weak_correspondences(out, 0, 1, LossConfig())
    assert p.tolist() == [0, 3] and q.tolist() == [1, 3]
    assert cos.tolist() == pytest.approx([0.96, 0.936])
    # 1 -> 0: patch 0 (cluster 0) candidates p0, p1, p2: cos .8, .96, .6 -> ratio 1.2 < 2, rejected
    assert weak_correspondences(out, 1, 0, LossConfig())[0].numel() == 0
    # local cells: patch (r, c) -> (4r, 4c); D0[0,0].D1[0,4] = .6, D0[4,4].D1[4,4] = .8
    loss, n = weak_supervision_loss(out, torch.tensor([0, 0]), LossConfig())
    assert n == 2 and float(loss) == pytest.approx((0.96 * 0.4 + 0.936 * 0.2) / 2)
    loss1, n1 = weak_supervision_loss(out, torch.tensor([0, 0]), LossConfig(weak_max_pairs=1))
    assert n1 == 1 and float(loss1) == pytest.approx(0.96 * 0.4)
    assert weak_supervision_loss(out, torch.tensor([0, 0]), LossConfig(weak_cos_threshold=0.97))[1] == 0


def test_total_is_weighted_sum_on_model_output(tiny_model):
    x = torch.rand(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tiny_model.train()
    try:
        out = tiny_model(x)
    finally:
        tiny_model.eval()
    cfg = LossConfig()
    t = fol_loss(out, torch.tensor([0, 0, 1, 1]), cfg)
    expected = t.ms + t.local + 5e-3 * t.sal + t.cel + 1e-2 * t.weak
    assert float(t.total.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert set(t.to_floats()) >= {"total", "ms", "local", "sal", "cel", "weak"}


def test_loss_config_validation():
    with pytest.raises(ConfigError, match="local_fallback"):
        LossConfig(local_fallback="nope")
    with pytest.raises(ConfigError, match="weak_ratio"):
        LossConfig(weak_ratio=0.5)


# -------------------------------------------------------------------------------------------- data
def test_gsv_name_and_source(gsv):
    row = {"place_id": "12", "year": "2017", "month": "5", "northdeg": "7", "city_id": "London",
           "lat": "51.50740", "lon": "-0.1278", "panoid": "abcXYZ"}
    assert gsv_image_name(row) == "London_0000012_2017_05_007_51.5074_-0.1278_abcXYZ.jpg"
    src = GsvCitiesSource(gsv)
    assert len(src) == 6 and all(src.place_size(p) == 4 for p in range(6))
    assert src.load(0, 0).shape == (48, 64, 3)
    plan = epoch_plan([4] * 6, 2, 4, seed=1, epoch=0)
    assert len(plan) == 3 and sorted(p for b in plan for p, _ in b) == list(range(6))
    assert plan == epoch_plan([4] * 6, 2, 4, seed=1, epoch=0) != epoch_plan([4] * 6, 2, 4, seed=1, epoch=1)
    ds = PlaceBatchDataset(src, TrainTransform(TransformConfig(size=(224, 224))), 2, 4, 0, 0)
    b = ds[1]
    assert b.images.shape == (8, 3, 224, 224) and float(b.images.min()) >= 0 and float(b.images.max()) <= 1
    assert b.labels.tolist() == [b.labels[0].item()] * 4 + [b.labels[4].item()] * 4
    normed = TrainTransform(TransformConfig(size=(224, 224), normalize=True))(src.load(0, 0))
    assert float(normed.min()) < 0
    train, val = split_places(src, 0.34, seed=0)
    assert len(train) == 4 and len(val) == 2
    assert not {train.place_key(i) for i in range(4)} & {val.place_key(i) for i in range(2)}


def test_gsv_errors(gsv, tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        GsvCitiesSource(tmp_path / "nowhere")
    (tmp_path / "Dataframes").mkdir()
    with pytest.raises(ConfigError, match="Images/ is missing"):
        GsvCitiesSource(tmp_path)
    with pytest.raises(ConfigError, match="no CSV for cities Atlantis"):
        GsvCitiesSource(gsv, cities=["Atlantis"])
    broken = _write_gsv(tmp_path / "broken", places=3)
    victim = sorted((broken / "Images" / "Testville").iterdir())[0]
    victim.unlink()
    with pytest.raises(ConfigError, match=f"1 image.*missing: .*{victim.name}"):
        GsvCitiesSource(broken)
    assert len(GsvCitiesSource(broken, skip_missing=True)) == 2


def _write_map(root: Path, images: Path) -> Path:
    images.mkdir(parents=True, exist_ok=True)
    vmap = VprMap.create(root, arch="vits14", input_size=(224, 224), model_hash="synthetic:0", descriptor_dim=4)
    kfs, rng = [], np.random.default_rng(1)
    for place, (e, n) in enumerate([(0.0, 0.0), (60.0, 0.0), (0.0, 60.0)]):
        for k in range(4):
            path = images / f"img_{place}_{k}.png"
            Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
            kfs.append(Keyframe(stamp_ns=place * 10 + k, source=str(path),
                                geo=GeoPosition(easting=500000 + e + k, northing=4e6 + n, zone="32U")))
    g = np.zeros((len(kfs), 4), np.float32)
    g[:, 0] = 1
    vmap.add(kfs, g, [np.zeros((1, 128), np.float32)] * len(kfs), [np.zeros((1, 2), np.int16)] * len(kfs))
    vmap.save()
    vmap.close()
    return root


def test_map_source_and_clustering(tmp_path):
    src = MapPlaceSource(_write_map(tmp_path / "map", tmp_path / "imgs"))
    assert len(src) == 3 and [src.place_size(p) for p in range(3)] == [4, 4, 4]
    assert src.load(1, 0).shape == (40, 50, 3)
    # heading: same spot, opposite directions -> two places with a tolerance, one without
    xy = np.zeros((4, 2))
    heading = np.array([0.0, 0.1, math.pi, math.pi - 0.1])
    assert cluster_places(xy, heading, MapPlacesConfig(heading_tolerance_deg=45)) == [[0, 1], [2, 3]]
    assert cluster_places(xy, None, MapPlacesConfig()) == [[0, 1, 2, 3]]
    with pytest.raises(ConfigError, match="spacing"):
        MapPlacesConfig(radius_m=10, spacing_m=15)
    pose = Pose((0, 0, 0), (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4)))  # yaw 90 degrees
    from fol_vpr_ros.training.places import _heading

    assert _heading(pose.orientation, "x") == pytest.approx(math.pi / 2)


# ----------------------------------------------------------------------------------------- trainer
def test_tiny_model_overfits_fixed_batch(gsv):
    from fol_vpr_ros.training.config import SourceConfig, TrainConfig

    cfg = TrainConfig(out_dir="unused", source=SourceConfig("gsv", str(gsv)), arch="vits14", depth=1, steps=1,
                      places_per_batch=2, images_per_place=2, transform=TransformConfig(size=(224, 224)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _, synthetic = init_model(cfg)
    assert synthetic
    params = freeze_backbone(model.train())
    vit = model.backbone.model
    assert not vit.pos_embed.requires_grad and not vit.patch_embed.proj.weight.requires_grad
    batch = PlaceBatchDataset(GsvCitiesSource(gsv), TrainTransform(cfg.transform), 2, 2, 0, 0)[0]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LinearLR(opt, 1.0, 0.1, 10_000)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    torch.manual_seed(0)
    def step() -> float:
        return train_step(model, batch.images, batch.labels, LossConfig(), opt, sched, scaler, None, 1.0).to_floats()[
            "total"]

    losses = [step() for _ in range(3)]
    assert losses[0] > 1.0 and losses[-1] < 0.5 * losses[0], losses


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(path)


def test_resume_equals_straight_run_and_checkpoints(gsv, runs, tmp_path):
    straight, split = runs / "straight", runs / "split"
    common = ["--gsv-root", str(gsv), *TINY, "--seed", "3"]
    assert _train_cli([*common, "--steps", "4", "--out", str(straight)]) == 0
    assert _train_cli([*common, "--steps", "2", "--out", str(split)]) == 0
    state = torch.load(split / "state.pth", map_location="cpu", weights_only=True)
    assert state["step"] == 2 and isinstance(state["rng"]["torch"], torch.ByteTensor)
    assert _train_cli(["--resume", str(split), "--steps", "4", "-q"]) == 0

    a, b = _weights(straight / "last.pth"), _weights(split / "last.pth")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    raw = torch.load(straight / "last.pth", map_location="cpu", weights_only=True)
    assert all(k.startswith("module.") for k in raw["model_state_dict"])  # the authors' layout
    rows_a = list(csv.DictReader((straight / "log.csv").open()))
    rows_b = list(csv.DictReader((split / "log.csv").open()))
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]
    for ra, rb in zip(rows_a, rows_b):
        assert float(ra["total"]) == pytest.approx(float(rb["total"]), rel=1e-5)
        assert {"step", "epoch", "lr", "ms", "local", "sal", "cel", "weak", "seconds", "images_per_s"} <= set(ra)
    assert (straight / "epoch_001.pth").is_file()  # 6 places / 2 per batch = 3 steps per epoch
    assert (straight / "best.pth").is_file() and (straight / "curves.png").stat().st_size > 0
    log = json.loads((straight / "log.json").read_text())
    assert log["finished"] and log["best"]["metric"] == "train_loss" and "no validation set" in log["best_note"]

    # the checkpoint loads in `fol-vpr describe`
    from fol_vpr_ros import cli

    img = next((gsv / "Images" / "Testville").iterdir())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rc = cli.main(["describe", "--weights", str(straight / "last.pth"), *SIZE, "--out",
                       str(tmp_path / "d.npz"), "-q", str(img)])
    assert rc == 0 and (tmp_path / "d.npz").is_file()


def test_validation_holdout_and_map_source(gsv, runs, tmp_path):
    run = runs / "val"
    assert _train_cli(["--gsv-root", str(gsv), *TINY, "--steps", "1", "--val", "holdout:0.34",
                       "--out", str(run)]) == 0
    log = json.loads((run / "log.json").read_text())
    assert log["best"]["metric"] == "val_recall@5_rerank" and len(log["validation"]) == 1
    assert 0 <= log["validation"][0]["rerank_r5"] <= 100 and (run / "best.pth").is_file()

    mp = _write_map(tmp_path / "map", tmp_path / "imgs")
    run2 = runs / "map"
    assert _train_cli(["--map", str(mp), *TINY, "--steps", "1", "--out", str(run2)]) == 0
    assert (run2 / "last.pth").is_file() and len(list(csv.DictReader((run2 / "log.csv").open()))) == 1


def test_dinov2_backbone_init(tmp_path):
    from fol_vpr_ros.training.config import SourceConfig, TrainConfig

    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        donor = synthetic_model(cfg, seed=11).backbone.model
    torch.save(donor.state_dict(), tmp_path / "dinov2_vits14.pth")
    tcfg = TrainConfig(out_dir="x", source=SourceConfig("gsv", "x"), weights=str(tmp_path / "dinov2_vits14.pth"),
                       steps=1, transform=TransformConfig(size=(224, 224)))
    model, desc, synthetic = init_model(tcfg)
    assert desc.startswith("dinov2:") and not synthetic and model.cfg.backbone.depth == 1
    torch.testing.assert_close(model.backbone.model.blocks[0].attn.qkv.weight, donor.blocks[0].attn.qkv.weight)


def test_bad_config_and_missing_data(gsv, runs, tmp_path):
    p = _parser()

    def run(argv: list[str]) -> None:
        args = p.parse_args(["train", *argv])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmd_train(args)

    with pytest.raises(ConfigError, match="exactly one data source"):
        run([*TINY, "--steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="--steps N or --epochs E"):
        run(["--gsv-root", str(gsv), *TINY, "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="--arch is needed"):
        run(["--gsv-root", str(gsv), "--steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="not a positive multiple"):
        run(["--gsv-root", str(gsv), "--arch", "vits14", "--depth", "1", "--resize", "200", "200",
             "--steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="not one batch per epoch"):
        run(["--gsv-root", str(gsv), "--arch", "vits14", "--depth", "1", *SIZE, "--places-per-batch", "7",
             "--steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match=r"GSV-Cities folder .* not found"):
        run(["--gsv-root", str(tmp_path / "missing"), *TINY, "--steps", "1", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="--gsv-root cannot change"):
        run(["--resume", str(tmp_path / "empty"), "--gsv-root", str(gsv)])
    with pytest.raises(ConfigError, match=r"config\.json not found"):
        run(["--resume", str(tmp_path / "empty")])
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        run(["--gsv-root", str(gsv), "--weights", str(tmp_path / "nope.pth"), "--steps", "1",
             "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="only supported on CUDA"):
        run(["--gsv-root", str(gsv), *TINY, "--amp", "float16", "--steps", "1", "--out", str(tmp_path / "r")])
    existing = runs / "straight"
    if (existing / "last.pth").exists():
        with pytest.raises(ConfigError, match="already holds a training run"):
            run(["--gsv-root", str(gsv), *TINY, "--steps", "1", "--out", str(existing)])


def test_config_json_round_trip_and_val_sets(shared_data, gsv):
    from fol_vpr_ros.training.config import SourceConfig, TrainConfig
    from fol_vpr_ros.training.validation import ValConfig, val_set_from_dataset, val_set_from_places

    cfg = TrainConfig(out_dir="r", source=SourceConfig("gsv", "g", cities=("A", "B")), arch="vitb14", epochs=2,
                      transform=TransformConfig(size=(224, 224)), val=ValConfig(spec="holdout:0.1"))
    assert TrainConfig.from_dict(json.loads(cfg.to_json())) == cfg
    gp = val_set_from_dataset("bundled:gardenspoint", shared_data)
    assert len(gp.queries) == 10 and len(gp.database) == 10 and all(len(p) >= 1 for p in gp.positives)
    held = val_set_from_places(split_places(GsvCitiesSource(gsv), 0.34, seed=0)[1])
    assert len(held.queries) == 2 and len(held.database) == 6 and held.positives[1].tolist() == [3, 4, 5]
    with pytest.raises(ConfigError, match="holdout fraction"):
        ValConfig(spec="holdout:2")
