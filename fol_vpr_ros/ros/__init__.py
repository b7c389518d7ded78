"""ROS 2 side of fol_vpr_ros: message definitions and their (de)serialization, DDS adapter, node.

Submodules load on first use: `interfaces` needs only rosbags, `dds_types` needs cyclonedds and the rclpy
node needs a ROS 2 installation. Importing this package imports none of them (nor torch).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_LAZY_SUBMODULES = frozenset({"interfaces", "dds_types"})


def __getattr__(name: str) -> ModuleType:
    """Import `interfaces` / `dds_types` on first attribute access."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
