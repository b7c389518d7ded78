"""ROS 2 side of fol_vpr_ros: message definitions (rosbags typestore), message builders, the rclpy node, bag replay.

Submodules load on first use: `interfaces` and `messages` need only rosbags; `rclpy_node`, `replay` and
`log_bridge`'s users need rclpy and the colcon-built ``fol_vpr_ros.msg``. Importing this package imports
none of them (nor torch).
"""

from __future__ import annotations

import importlib
from types import ModuleType

_LAZY_SUBMODULES = frozenset({"interfaces"})


def __getattr__(name: str) -> ModuleType:
    """Import `interfaces` on first attribute access."""
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
