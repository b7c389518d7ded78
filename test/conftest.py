"""Shared fixtures: the bundled data folder and small synthetic models."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from fol_vpr_ros.model import FoLConfig, arch_config, synthetic_model

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"bundled data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_model():
    """ViT-S/14 with 2 blocks at 224 x 224 (16 x 16 patches): fast, same code path as the real model."""
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return synthetic_model(cfg, seed=3).eval()
