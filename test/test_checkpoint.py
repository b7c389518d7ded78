"""Checkpoints: authors' layout round trip, arch inference, strict key errors, unsafe/corrupt files."""

from __future__ import annotations

import os
import warnings

import pytest
import torch

from fol_vpr_ros.errors import CheckpointError, ConfigError
from fol_vpr_ros.model import load_model, read_state_dict, save_checkpoint, synthetic_model
from fol_vpr_ros.model.config import FoLConfig, arch_config


@pytest.fixture(scope="module")
def small():
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    return synthetic_model(cfg, seed=11).eval()


def _x():
    return torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_save_in_authors_layout_and_load_back(small, tmp_path):
    path = save_checkpoint(small, tmp_path / "run" / "last.pth")
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"model_state_dict"}
    keys = list(raw["model_state_dict"])
    assert all(k.startswith("module.") for k in keys)
    for key in ("module.backbone.model.cls_token", "module.backbone.model.pos_embed",
                "module.backbone.model.mask_token", "module.backbone.model.patch_embed.proj.weight",
                "module.backbone.model.blocks.1.ls2.gamma", "module.backbone.model.blocks.0.attn.qkv.bias",
                "module.backbone.model.norm.weight", "module.aggregator.token_features.2.weight",
                "module.aggregator.cluster_features.3.weight", "module.aggregator.score.0.bias",
                "module.upconv.weight", "module.upconv2.bias"):
        assert key in keys
    assert raw["model_state_dict"]["module.backbone.model.pos_embed"].shape == (1, 1 + 37 * 37, 384)
    loaded = load_model(str(path), arch="auto", input_size=(224, 224))
    assert loaded.config.arch == "vits14" and loaded.config.backbone.depth == 2 and not loaded.synthetic
    assert len(loaded.sha256) == 64
    with torch.no_grad():
        assert torch.equal(small(_x()).global_desc, loaded.model(_x()).global_desc)


def test_plain_state_dict_without_prefix_loads(small, tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(small.state_dict(), path)
    assert set(read_state_dict(path)) == set(small.state_dict())
    assert load_model(str(path), arch="vits14", input_size=(224, 224)).config.arch == "vits14"


def test_arch_inferred_from_width(tmp_path):
    for arch, width in (("vitb14", 768), ("vitl14", 1024)):
        cfg = FoLConfig(backbone=arch_config(arch, depth=1), input_size=(224, 224))
        path = save_checkpoint(synthetic_model(cfg, 0), tmp_path / f"{arch}.pth")
        loaded = load_model(str(path))
        assert loaded.config.arch == arch and loaded.config.backbone.embed_dim == width


def test_missing_and_unexpected_keys_are_listed(small, tmp_path):
    state = {f"module.{k}": v for k, v in small.state_dict().items()}
    del state["module.upconv.weight"]
    state["module.extra_head.weight"] = torch.zeros(3)
    path = tmp_path / "bad.pth"
    torch.save({"model_state_dict": state}, path)
    with pytest.raises(CheckpointError) as err:
        load_model(str(path))
    msg = str(err.value)
    assert "missing keys (1): upconv.weight" in msg and "unexpected keys (1): extra_head.weight" in msg
    assert str(path) in msg


def test_shape_mismatch_and_wrong_arch(small, tmp_path):
    state = dict(small.state_dict())
    state["aggregator.score.3.weight"] = torch.zeros(32, 512, 1, 1)
    path = tmp_path / "shape.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"shape mismatches .*aggregator\.score\.3\.weight"):
        load_model(str(path))
    good = save_checkpoint(small, tmp_path / "good.pth")
    with pytest.raises(CheckpointError, match="holds a vits14 backbone, but --arch vitb14"):
        load_model(str(good), arch="vitb14")


def test_not_a_fol_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not a FoL checkpoint"):
        load_model(str(path))


def test_truncated_empty_missing(small, tmp_path):
    good = save_checkpoint(small, tmp_path / "good.pth")
    data = good.read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(str(cut))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_model(str(tmp_path / "empty.pth"))
    with pytest.raises(CheckpointError, match="not found"):
        load_model(str(tmp_path / "nope.pth"))


class _Payload:
    """Pickles into a call of os.system: loading it with weights_only=False would run a command."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"x": torch.zeros(1)}, "hook": _Payload()}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        load_model(str(path))


def test_random_weights_warn_and_validate():
    with pytest.warns(UserWarning, match="SYNTHETIC WEIGHTS"):
        lm = load_model("random:4", arch="vits14", depth=1, input_size=(224, 224))
    assert lm.synthetic and lm.sha256.startswith("synthetic:4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match="integer seed"):
            load_model("random:abc")
        with pytest.raises(ConfigError, match="unknown architecture"):
            load_model("random:1", arch="resnet50")
        with pytest.raises(ConfigError, match=r"CUDA is not available|invalid device"):
            if torch.cuda.is_available():
                pytest.skip("CUDA present")
            load_model("random:1", arch="vits14", depth=1, device="cuda")
