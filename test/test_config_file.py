"""config/localize.yaml documents every node parameter with its default, and nothing else."""

from __future__ import annotations

from pathlib import Path

import yaml

from fol_vpr_ros.node.params import load_params, param_specs

CONFIG = Path(__file__).resolve().parents[1] / "config" / "localize.yaml"


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def test_every_parameter_with_its_default():
    flat = _flatten(yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"])
    specs = {s.name: s.default for s in param_specs()}
    assert set(flat) == set(specs), (set(flat) ^ set(specs))
    for name, default in specs.items():
        assert flat[name] == default and type(flat[name]) is type(default), name


def test_config_loads():
    params = load_params(CONFIG)
    assert params.to_flat_dict()["rerank_k"] == 100
