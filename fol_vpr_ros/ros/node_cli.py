"""`fol-vpr node`: run the fol_vpr node over Cyclone DDS (ROS 2 wire protocol) without a ROS installation.

    fol-vpr node --params config/localize.yaml --weights FoL.pth --map maps/campus \\
        [--set name=value ...] [--node-name N] [--namespace NS] [--domain-id D] [--no-loopback] [--duration S]

DDS traffic stays on 127.0.0.1 by default (``--loopback``); pass ``--no-loopback`` on a robot.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError, FolVprError

__all__ = ["add_node_parser", "cmd_node", "default_params_path", "main", "parse_overrides"]

CONFIG_NAME = "localize.yaml"
PACKAGE = "fol_vpr_ros"


def default_params_path() -> Path | None:
    """config/localize.yaml of the source checkout, else share/fol_vpr_ros/config of an install, else None."""
    candidates = [Path(__file__).resolve().parents[2] / "config" / CONFIG_NAME]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / CONFIG_NAME)
    except Exception:  # ament_index not installed, or the package not in it
        pass
    candidates += [Path(prefix) / "share" / PACKAGE / "config" / CONFIG_NAME
                   for prefix in (sys.prefix, sys.base_prefix)]
    return next((path for path in candidates if path.is_file()), None)


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``name=value`` strings -> typed values (YAML: 3 -> int, 0.5 -> float, [224, 224] -> list, true -> bool).

    An integer given for a float parameter is accepted as that float (``--set min_rerank_score=30``).
    """
    from ..node.params import param_specs

    kinds = {spec.name: spec.type for spec in param_specs()}
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ConfigError(f"--set {item!r}: expected name=value, e.g. --set top_k=50")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML: {exc}") from None
        kind = kinds.get(name)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif kind is str and value is not None and not isinstance(value, str):
            value = text.strip()  # a path like 2024 or a name like 'on' stays text
        out[name] = value
    return out


def add_node_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `node` subcommand to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser("node", help="run the place-recognition node over DDS (ROS 2 wire protocol, no ROS)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=None,
                   help="ROS 2 parameter file (default: the packaged config/localize.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter, repeatable (e.g. --set mode=loop_closure --set top_k=50)")
    p.add_argument("--map", default=None, help="place map (parameter map_path)")
    p.add_argument("--weights", default=None, help="FoL checkpoint or random:SEED (parameter weights)")
    p.add_argument("--node-name", default="fol_vpr", help="node name (default fol_vpr)")
    p.add_argument("--namespace", default="", help="node namespace (default none)")
    p.add_argument("--domain-id", type=int, default=None, help="DDS domain (default $ROS_DOMAIN_ID or 0)")
    p.add_argument("--loopback", action=argparse.BooleanOptionalAction, default=True,
                   help="keep DDS traffic on 127.0.0.1 (default); --no-loopback to use the network")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds")
    p.set_defaults(func=cmd_node)
    return p


def cmd_node(args: argparse.Namespace) -> int:
    """Run the DDS node until SIGINT/SIGTERM or --duration; 0 on a clean stop."""
    try:
        from .dds_node import run
    except ImportError as exc:
        raise FolVprError(f"`fol-vpr node` needs cyclonedds and rosbags ({exc}); pip install -e '.[ros]'") from None
    params = args.params if args.params is not None else default_params_path()
    if params is None:
        logging.getLogger("fol_vpr_ros").warning("no config/localize.yaml found: using built-in defaults")
    elif not Path(params).is_file():
        raise ConfigError(f"--params {params}: no such file")
    overrides = parse_overrides(args.overrides)
    if args.map is not None:
        overrides["map_path"] = os.fspath(args.map)
    if args.weights is not None:
        overrides["weights"] = args.weights
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration must be > 0, got {args.duration}")
    summary = run(params, overrides, node_name=args.node_name, namespace=args.namespace, domain_id=args.domain_id,
                  loopback=args.loopback, duration_sec=args.duration)
    print(f"fol_vpr node: {summary['received']} frame(s) received, {summary['processed']} processed, "
          f"{summary['dropped']} dropped, {summary['failed']} failed"
          + (f"; map saved to {summary['saved_map']}" if summary["saved_map"] else ""), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone `python -m fol_vpr_ros.ros.node_cli [options]` (same options as `fol-vpr node`)."""
    parser = argparse.ArgumentParser(prog="fol-vpr")
    add_node_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["node", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="[%(levelname)s] %(name)s: %(message)s")
    try:
        return cmd_node(args)
    except FolVprError as exc:
        print(f"fol-vpr node: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
