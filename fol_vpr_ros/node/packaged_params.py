"""The parameter file shipped with the package (config/localize.yaml): where it lies, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_NAME", "default_params_path"]

CONFIG_NAME = "localize.yaml"
PACKAGE = "fol_vpr_ros"


def default_params_path() -> Path | None:
    """share/fol_vpr_ros/config of the install (ament index), else config/ of the source checkout, else None."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / CONFIG_NAME)
    except Exception:  # ament_index not installed, or the package not in it
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "config" / CONFIG_NAME)
    return next((path for path in candidates if path.is_file()), None)
