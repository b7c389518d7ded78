"""Shared fixtures: the bundled data folder and small synthetic models; ROS isolation and `ros_import`.

Every test run gets its own ROS domain (from the pid) with discovery limited to this machine, set before
any rclpy context exists. Tests that need ROS import it with ``ros_import``: a skip on a developer's
machine without ROS, a failure under CI=true (a missing rclpy or fol_vpr_ros.msg must not pass silently).
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model

ROS_TEST_DOMAIN_BASE = 100  # test domains 100..199: away from ROS' default 0
os.environ["ROS_DOMAIN_ID"] = str(ROS_TEST_DOMAIN_BASE + os.getpid() % 100)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.pop("ROS_LOCALHOST_ONLY", None)  # deprecated since Jazzy; the range above replaces it

REPO = Path(__file__).resolve().parents[1]
# The data bundled in the repository (data/, installed to share/fol_vpr_ros/data by colcon).
SHARED_DATA = REPO / "data"


def in_ci() -> bool:
    """True in CI (CI=true): there, nothing that needs ROS may skip."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def ros_import(name: str) -> ModuleType:
    """Import a ROS module (rclpy, fol_vpr_ros.msg, ...): skip without it, fail under CI=true."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        hint = ("build the package with colcon and run plain `pytest` against the install (make test); "
                "`python -m pytest` from the source folder hides the generated fol_vpr_ros.msg")
        if in_ci():
            pytest.fail(f"CI=true: {name} cannot be imported ({exc}); {hint}", pytrace=False)
        pytest.skip(f"{name} not importable ({exc}); {hint}", allow_module_level=True)


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


def tiny_checkpoint(path: Path, seed: int, depth: int = 1) -> Path:
    """A checkpoint file of a synthetic ViT-S/14 with ``depth`` blocks at 224 x 224 (the node tests' model)."""
    cfg = FoLConfig(backbone=arch_config("vits14", depth=depth), input_size=(224, 224))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return save_checkpoint(synthetic_model(cfg, seed=seed), path)


@pytest.fixture(scope="module")
def nordland_frames(shared_data):
    """Eight bundled Nordland summer images of distinct places (the first stored frames repeat), as RGB arrays."""
    from PIL import Image

    files = sorted((shared_data / "nordland_seqslam_64x32" / "summer").glob("*.png"))[240::20][:8]
    return [np.asarray(Image.open(p).convert("RGB")) for p in files]
