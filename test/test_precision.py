"""Precision as a setting: parsing, auto resolution, backbone-only autocast, CLI, node parameter, map field."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fol_vpr_ros.cli import main
from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.model import LoadedModel
from fol_vpr_ros.node import load_params
from fol_vpr_ros.pipeline.describe import Describer, DescriberConfig, load_descriptions_npz, map_for_describer
from fol_vpr_ros.precision import Precision, cpu_bf16_supported, parse_precision, resolve_precision


def test_parse_and_resolve():
    assert parse_precision("BF16") is Precision.BF16 and parse_precision("float32") is Precision.FP32
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, fp16, auto; got 'int8'"):
        parse_precision("int8")
    assert resolve_precision("fp16", "cpu") is Precision.FP16
    auto = resolve_precision("auto", "cpu")
    assert auto is (Precision.BF16 if cpu_bf16_supported() else Precision.FP32)
    with pytest.raises(ConfigError, match="no dtype"):
        _ = Precision.AUTO.dtype


def test_backbone_only_autocast_keeps_region_patches(tiny_model):
    model = copy.deepcopy(tiny_model)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x)
        model.set_precision("bf16")
        low = model(x)
    assert low.global_desc.dtype == torch.float32 and low.local.dtype == torch.float32
    assert not torch.equal(low.global_desc, ref.global_desc)  # the backbone really ran in bf16
    cos = torch.nn.functional.cosine_similarity(low.global_desc, ref.global_desc)
    assert float(cos.min()) > 0.999
    kept = (low.region_mask & ref.region_mask).flatten(1).sum(1)
    assert int(kept.min()) >= 0.95 * int(ref.region_mask.flatten(1).sum(1).min())
    with pytest.raises(ValueError, match="resolve precision 'auto'"):
        model.set_precision("auto")


def test_describer_and_map_record_precision(tiny_model):
    d = Describer(LoadedModel(copy.deepcopy(tiny_model), "random:3", "synthetic:3", True), precision="bf16")
    assert d.precision is Precision.BF16 and d.model.backbone_precision is Precision.BF16
    assert map_for_describer(d, None).manifest.precision == "bf16"
    assert DescriberConfig(precision="fp16").precision is Precision.FP16
    with pytest.raises(ConfigError, match="precision must be one of"):
        DescriberConfig(precision="half-ish")


def test_node_parameter():
    assert load_params(None).precision == "auto"
    assert load_params(None, overrides={"precision": "bf16"}).precision == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        load_params(None, overrides={"precision": "int8"})


def test_cli_describe_precision(shared_data, tmp_path, capsys):
    img = sorted((shared_data / "gardenspoint_sample10_vpr_tutorial" / "ref").iterdir())[0]
    out = tmp_path / "d.npz"
    args = ["describe", "--weights", "random:0", "--resize", "224", "224", "-q", str(img), "--out", str(out)]
    assert main([*args, "--precision", "bf16"]) == 0
    assert "(bf16 backbone)" in capsys.readouterr().out
    assert np.isfinite(load_descriptions_npz(out)["global"]).all()
    with pytest.raises(SystemExit) as info:
        main([*args, "--precision", "int8"])
    assert info.value.code == 2
