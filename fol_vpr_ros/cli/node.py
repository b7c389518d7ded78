"""`fol-vpr node`: start the rclpy node from the command line, with the packaged parameter file by default.

    fol-vpr node --weights FoL.pth --map maps/campus [--params config/localize.yaml] [--set min_rerank_score=30] \\
        [--ros-args -p top_k:=50 -r image:=/camera/image_raw -r __ns:=/robot1 --log-level debug]

The same as ``ros2 run fol_vpr_ros fol_vpr_node --ros-args --params-file ... -p map_path:=... -p weights:=...``;
needs rclpy and this package built with colcon (``make ros``, then source ``ws/jazzy/install/setup.bash``).
``--set NAME=VALUE`` is typed as the parameter (``node.overrides``, as ``evaluate-bag -p``: 30 for a float
parameter is 30.0) and passed on as ``-p NAME:=VALUE``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigError, FolVprError
from ..node.packaged_params import default_params_path

__all__ = ["add_node_parser", "cmd_node", "default_params_path", "node_arguments"]

def node_arguments(params: str | os.PathLike | None, map_path: str | None, weights: str | None,
                   ros_args: list[str], overrides: Iterable[tuple[str, Any]] = ()) -> list[str]:
    """The node's command line: one --ros-args section with the parameter file, map, weights and typed
    ``overrides`` (``node.overrides``), then ``ros_args``."""
    from ..node.overrides import ros_argument

    extra = list(ros_args)
    if extra and extra[0] == "--ros-args":
        extra = extra[1:]
    out = ["fol_vpr_node", "--ros-args"]
    if params is not None:
        out += ["--params-file", os.fspath(params)]
    if map_path is not None:
        out += ["-p", f"map_path:={map_path}"]
    if weights is not None:
        out += ["-p", f"weights:={weights}"]
    for name, value in overrides:
        out += ["-p", ros_argument(name, value)]
    return out + extra


def _override(text: str) -> tuple[str, Any]:
    """argparse type of --set (imported on use: node.overrides loads the node parameters)."""
    from ..node.overrides import parse_override

    return parse_override(text)


def add_node_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `node` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("node", help="run the place-recognition node (rclpy; needs the colcon build)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=None, help="ROS 2 parameter file (default: the packaged config/localize.yaml)")
    p.add_argument("--map", default=None, help="place map (parameter map_path)")
    p.add_argument("--weights", default=None, help="FoL checkpoint or random:SEED (parameter weights)")
    p.add_argument("--set", dest="overrides", type=_override, action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter, typed as it (e.g. --set min_rerank_score=30; repeatable)")
    p.add_argument("--ros-args", dest="ros_args", nargs=argparse.REMAINDER, default=[], metavar="ARG",
                   help="everything after --ros-args is passed to the node unchanged (last option)")
    p.set_defaults(func=cmd_node)
    return p


def cmd_node(args: argparse.Namespace) -> int:
    """Run the rclpy node until SIGINT/SIGTERM; its exit code (0 on a clean stop, 2 for bad input)."""
    try:
        from ..ros.rclpy_node import main
    except ImportError as exc:
        raise FolVprError(f"`fol-vpr node` needs rclpy and this package built with colcon ({exc}); run `make ros` "
                          "and source ws/jazzy/install/setup.bash (README, 'The ROS 2 node')") from None
    params = args.params if args.params is not None else default_params_path()
    if params is not None and not Path(params).is_file():
        raise ConfigError(f"--params {params}: no such file")
    return main(node_arguments(params, args.map, args.weights, args.ros_args, args.overrides))

