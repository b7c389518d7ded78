"""Where the data bundled with the package lies: data/ of a source checkout, share/fol_vpr_ros/data installed."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV", "bundled_data_dir", "default_data_dir"]

PACKAGE = "fol_vpr_ros"
# Overrides the bundled folder (e.g. a folder with the full sets from `fol-vpr data fetch`).
DATA_ENV = "FOL_VPR_DATA"


def bundled_data_dir() -> Path | None:
    """The bundled data folder: the checkout's data/, else the install's share/fol_vpr_ros/data, else None."""
    candidates = [Path(__file__).resolve().parents[2] / "data"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "data")
    except Exception:  # ament_index not installed, or the package not in it
        pass
    return next((path for path in candidates if (path / "nordland_seqslam_64x32").is_dir()), None)


def default_data_dir() -> Path:
    """$FOL_VPR_DATA when set, else the bundled folder, else data/ next to the package (reported missing later)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return bundled_data_dir() or Path(__file__).resolve().parents[2] / "data"
