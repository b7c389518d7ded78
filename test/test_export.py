"""Export: the fixed-shape graph, ONNX round trips against torch (onnxruntime), the backends, clear errors.

Round-trip tolerance: relative error max|onnx - torch| / max|torch| <= 1e-4 for every float output in
fp32; masks, counts and (row, col) must be identical. Synthetic weights (tiny 2-block ViT-S at
224 x 224, and the full 12-block ViT-S at 322 x 322) on bundled real images.
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import onnx  # pinned in requirements-ci.txt: the export tests must run, not skip
import pytest
import torch

from fol_vpr_ros.cli import main
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.export import (
    FixedShapeFoL,
    export_onnx,
    local_cell_patches,
    max_local_rows,
    padded_local_rows,
)
from fol_vpr_ros.export.runners import OnnxRuntimeRunner, read_metadata
from fol_vpr_ros.image_io import read_image
from fol_vpr_ros.mapping import VprMap
from fol_vpr_ros.model import FoLConfig, arch_config, load_model, preprocess, save_checkpoint, synthetic_model
from fol_vpr_ros.pipeline.describe import Describer, DescriberConfig, load_descriptions_npz
from fol_vpr_ros.pipeline.localizer import Localizer, LocalizerConfig

TOL = 1e-4
FLOATS = ("global_desc", "attention", "confidence")
GARDEN = "gardenspoint_sample10_vpr_tutorial"


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def images(shared_data, kind: str, ids, size) -> torch.Tensor:
    return torch.stack([preprocess(read_image(shared_data / GARDEN / kind / f"{i}.jpg"), size) for i in ids])


def assert_round_trip(model, path, x: torch.Tensor) -> dict[str, float]:
    """ORT outputs vs the torch FoLNet forward (with its own data-dependent selection); returns the errors."""
    with torch.inference_mode():
        ref = model(x)
    out = OnnxRuntimeRunner(path)(x.numpy())
    n = ref.local.shape[1]
    assert np.array_equal(out["region_mask"], ref.region_mask.numpy())
    assert np.array_equal(out["local_count"], ref.local_count.numpy())
    assert np.array_equal(out["local_rc"][:, :n], ref.local_rc.numpy())
    assert (out["local_rc"][:, n:] == -1).all() and (out["local"][:, n:] == 0).all()
    errs = {k: rel_err(out[k], getattr(ref, "confidence" if k == "confidence" else k).numpy()) for k in FLOATS}
    errs["local"] = rel_err(out["local"][:, :n], ref.local.numpy())
    assert max(errs.values()) <= TOL, errs
    return errs


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    return save_checkpoint(synthetic_model(cfg, seed=5), tmp_path_factory.mktemp("w") / "tiny.pth")


@pytest.fixture(scope="module")
def tiny_onnx(tiny_ckpt, tmp_path_factory):
    return export_onnx(str(tiny_ckpt), tmp_path_factory.mktemp("onnx") / "tiny.onnx", resize=(224, 224))


# ---------------------------------------------------------------------------- fixed-shape form (torch only)
@pytest.mark.parametrize("size", [(224, 224), (224, 308), (322, 322)])
def test_fixed_shape_form_equals_the_torch_forward(size):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=size)
    model = synthetic_model(cfg, seed=1).eval()
    fixed = FixedShapeFoL(model)
    x = torch.randn(3, 3, *size, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref, out = model(x), fixed(x)
    g, rows, counts, rc, mask, att, conf = out
    n = ref.local.shape[1]
    assert rows.shape == (3, fixed.slots, cfg.local_head.out_dim) and n <= fixed.slots
    assert torch.equal(counts, ref.local_count) and torch.equal(mask, ref.region_mask)
    assert torch.equal(rows[:, :n], ref.local) and torch.equal(rc[:, :n], ref.local_rc)
    assert (rows[:, n:] == 0).all() and (rc[:, n:] == -1).all()
    assert torch.equal(g, ref.global_desc) and torch.equal(att, ref.attention) and torch.equal(conf, ref.confidence)


def test_slots_are_the_largest_possible_count():
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(322, 322))
    gh, gw = cfg.grid
    cells = local_cell_patches(cfg)
    per_patch = torch.bincount(cells, minlength=gh * gw)
    widest = per_patch.topk(cfg.aggregator.num_regions).indices
    mask = torch.zeros(1, gh * gw, dtype=torch.bool)
    mask[0, widest] = True  # the num_regions patches covering the most local cells
    dense = torch.randn(1, *cfg.local_grid, cfg.local_head.out_dim)
    slots = max_local_rows(cfg)
    rows, counts, rc = padded_local_rows(dense, mask.view(1, gh, gw), cells, slots)
    assert int(counts[0]) == slots and (rc[0] >= 0).all()  # every slot filled, none beyond
    assert torch.equal(rows[0], dense[0, rc[0, :, 0], rc[0, :, 1]])
    assert slots < cells.numel()


# ---------------------------------------------------------------------------- ONNX round trips
def test_onnx_round_trip_tiny_dynamic_batch(tiny_ckpt, tiny_onnx, shared_data):
    meta = read_metadata("onnxruntime", tiny_onnx.out)
    loaded = load_model(str(tiny_ckpt), input_size=(224, 224), warn=False)
    assert meta.model_hash == loaded.sha256 and meta.config == loaded.config and not meta.synthetic
    assert meta.precision == "fp32" and meta.local_slots == max_local_rows(loaded.config)
    batch = images(shared_data, "query", range(4), (224, 224))
    for x in (batch[:1], batch[1:4]):  # one graph, two batch sizes
        assert_round_trip(loaded.model, tiny_onnx.out, x)


def test_onnx_round_trip_vits14_322(tmp_path, shared_data):
    res = export_onnx("random:7", tmp_path / "vits.onnx", arch="vits14", resize=(322, 322))
    model = load_model("random:7", "vits14", (322, 322), warn=False).model
    errs = assert_round_trip(model, res.out, images(shared_data, "ref", (0, 5), (322, 322)))
    assert res.metadata.synthetic and res.metadata.config.backbone.depth == 12
    assert set(errs) == {"global_desc", "attention", "confidence", "local"}


def test_fp16_export_runs_the_vit_in_half_and_keeps_selection_in_float(tiny_ckpt, tmp_path, shared_data):
    res = export_onnx(str(tiny_ckpt), tmp_path / "half.onnx", resize=(224, 224), precision="fp16")
    graph = onnx.load(str(res.out))
    kinds = {i.name: i.data_type for i in graph.graph.initializer}
    vit = [k for k in kinds if "backbone" in k and k.endswith("weight")]
    agg = [k for k in kinds if "aggregator" in k and k.endswith("weight")]
    assert vit and agg
    assert all(kinds[k] == onnx.TensorProto.FLOAT16 for k in vit)
    assert all(kinds[k] == onnx.TensorProto.FLOAT for k in agg)
    x = images(shared_data, "query", range(3), (224, 224))
    out = OnnxRuntimeRunner(res.out)(x.numpy())
    with torch.inference_mode():
        ref = load_model(str(tiny_ckpt), input_size=(224, 224), warn=False).model(x)
    g = ref.global_desc.numpy()
    cos = (out["global_desc"] * g).sum(1)
    assert out["global_desc"].dtype == np.float32 and cos.min() > 0.999
    assert (out["region_mask"] == ref.region_mask.numpy()).mean() > 0.95


# ---------------------------------------------------------------------------- the backends
def test_map_built_with_torch_queried_with_onnxruntime(tiny_ckpt, tiny_onnx, shared_data, tmp_path):
    assert main(["build-map", "--weights", str(tiny_ckpt), "--resize", "224", "224", "--images",
                 str(shared_data / GARDEN / "ref"), "--out", str(tmp_path / "map"), "-q",
                 "--local-dtype", "float32"]) == 0
    vmap = VprMap.open(tmp_path / "map")
    torch_d = Describer.from_config(DescriberConfig(str(tiny_ckpt), input_size=(224, 224)))
    ort_d = Describer.from_config(DescriberConfig(str(tiny_onnx.out), input_size=(224, 224),
                                                  backend="onnxruntime"))
    assert ort_d.loaded.sha256 == torch_d.loaded.sha256 and ort_d.model.cfg == torch_d.model.cfg
    loc = Localizer(vmap, LocalizerConfig(top_k=5, rerank_k=5))
    paths = sorted((shared_data / GARDEN / "query").glob("*.jpg"))
    a, b = torch_d.describe_files(paths, progress=False), ort_d.describe_files(paths, progress=False)
    same_regions = 0
    for da, db in zip(a, b, strict=True):
        # 1e-6 differences may swap two patches that tie in the region top-k (synthetic weights): allow <= 1 %
        assert (da.region_mask != db.region_mask).mean() <= 0.01
        ra, rb = loc.query(da), loc.query(db)
        assert ra.best.keyframe_id == rb.best.keyframe_id
        assert np.array_equal(ra.global_ids, rb.global_ids)
        if np.array_equal(da.local_rc, db.local_rc):
            same_regions += 1
            assert [c.rerank_score for c in ra.candidates] == [c.rerank_score for c in rb.candidates]
    assert same_regions >= len(paths) - 1


def test_describe_cli_with_onnxruntime_matches_torch(tiny_ckpt, tiny_onnx, shared_data, tmp_path):
    # query 0 has two patches that tie in the region top-k under these synthetic weights (1e-6 apart):
    # exact-equality checks use images without such a tie; the map test above covers the tie
    imgs = [str(shared_data / GARDEN / "query" / f"{i}.jpg") for i in range(1, 4)]
    assert main(["describe", "--weights", str(tiny_ckpt), "--resize", "224", "224", "-q", *imgs,
                 "--out", str(tmp_path / "t.npz")]) == 0
    # no --resize: the exported model's own size
    assert main(["describe", "--backend", "onnxruntime", "--weights", str(tiny_onnx.out), "-q", *imgs,
                 "--out", str(tmp_path / "o.npz")]) == 0
    t, o = load_descriptions_npz(tmp_path / "t.npz"), load_descriptions_npz(tmp_path / "o.npz")
    assert set(t) == set(o)
    for key in ("local_count", "local_rc", "region_mask", "names", "image_size"):
        assert np.array_equal(t[key], o[key]), key
    for key in ("global", "local", "attention", "confidence"):
        assert rel_err(o[key], t[key]) <= TOL, key


def test_node_core_runs_the_onnx_backend(tiny_ckpt, tiny_onnx, shared_data, tmp_path):
    from fol_vpr_ros.node import ImagePayload, NodeCore, load_params

    assert main(["build-map", "--weights", str(tiny_ckpt), "--resize", "224", "224", "--images",
                 str(shared_data / GARDEN / "ref"), "--out", str(tmp_path / "map"), "-q"]) == 0
    base = {"input_size": [224, 224], "top_k": 3, "rerank_k": 3, "map_path": str(tmp_path / "map"),
            "latency_budget_ms": 0.0}  # the same candidates re-ranked on both backends, whatever the load
    cores = {b: NodeCore(load_params(None, overrides={**base, "backend": b, "weights": str(w)}))
             for b, w in (("torch", tiny_ckpt), ("onnxruntime", tiny_onnx.out))}
    assert cores["onnxruntime"].describer.backend == "onnxruntime"
    for i in range(3):
        im = read_image(shared_data / GARDEN / "query" / f"{i}.jpg")
        h, w = im.shape[:2]
        frame = ImagePayload((10 + i) * 10**9, "cam", "rgb8", h, w, w * 3, False, im.tobytes())
        outs = {b: core.process_now(frame) for b, core in cores.items()}
        assert outs["onnxruntime"].error_kind is None
        ids = {b: [c.keyframe_id for c in o.candidates] for b, o in outs.items()}
        assert ids["torch"] == ids["onnxruntime"]


# ---------------------------------------------------------------------------- errors
def test_export_cli_writes_and_reports(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_ckpt), "--resize", "224", "224", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "exported vits14 at 224x224 (fp32" in text and str(out) in text and out.is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]  # no temporary files left


@pytest.mark.parametrize("case, message", [
    ("bad-out", "must end in .onnx"),
    ("bad-size", "not a positive multiple of the patch size 14"),
    ("torch-with-onnx", "needs backend onnxruntime"),
    ("ort-with-pth", "runs a .onnx file"),
    ("ort-missing", "exported model file not found"),
    ("ort-not-onnx", "not a readable ONNX model"),
    ("ort-no-metadata", "no fol_vpr metadata"),
    ("ort-wrong-size", "exported for input size 224 x 224"),
    ("tensorrt-missing", "TensorRT is not installed here"),
])
def test_errors_are_one_line(case, message, tiny_ckpt, tiny_onnx, tmp_path, shared_data, capsys):
    if case == "tensorrt-missing" and importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the missing-TensorRT message cannot be checked")
    img = str(shared_data / GARDEN / "query" / "0.jpg")
    out = str(tmp_path / "o.npz")
    fake = tmp_path / "fake.onnx"
    if case == "bad-out":
        argv = ["export", "onnx", "--weights", str(tiny_ckpt), "--out", str(tmp_path / "m.pt")]
    elif case == "bad-size":
        argv = ["export", "onnx", "--weights", str(tiny_ckpt), "--resize", "100", "100", "--out", str(fake)]
    elif case == "torch-with-onnx":
        argv = ["describe", "--weights", str(tiny_onnx.out), img, "--out", out]
    elif case == "ort-with-pth":
        argv = ["describe", "--backend", "onnxruntime", "--weights", str(tiny_ckpt), img, "--out", out]
    elif case == "ort-missing":
        argv = ["describe", "--backend", "onnxruntime", "--weights", str(tmp_path / "no.onnx"), img, "--out", out]
    elif case == "ort-not-onnx":
        fake.write_bytes(b"not a protobuf at all \x00\xff")
        argv = ["describe", "--backend", "onnxruntime", "--weights", str(fake), img, "--out", out]
    elif case == "ort-no-metadata":
        with warnings.catch_warnings():  # the TorchScript exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(torch.nn.ReLU(), (torch.zeros(1, 3),), str(fake), dynamo=False)
        argv = ["describe", "--backend", "onnxruntime", "--weights", str(fake), img, "--out", out]
    elif case == "ort-wrong-size":
        argv = ["describe", "--backend", "onnxruntime", "--weights", str(tiny_onnx.out), "--resize", "322", "322",
                img, "--out", out]
    else:
        argv = ["export", "tensorrt", "--onnx", str(tiny_onnx.out), "--out", str(tmp_path / "m.engine")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o.npz").exists() and not (tmp_path / "m.engine").exists()


def test_node_backend_parameter_is_checked():
    from fol_vpr_ros.node import load_params

    with pytest.raises(ConfigError, match="backend: 'onnx' is not allowed; allowed: one of torch, onnxruntime"):
        load_params(None, overrides={"backend": "onnx"})
    assert load_params(None).backend == "torch"
