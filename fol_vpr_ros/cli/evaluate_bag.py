"""`fol-vpr evaluate-bag` and `fol-vpr demo`: argument parsers and commands (wired into cli/main.py).

The model options are those of every command (``add_model_arguments``); where evaluate-bag leaves one unset,
the node parameter applies (``--params``, else the node's defaults), as when the node runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..evaluation.bag_config import BagEvalConfig
from ..jobs.evaluate_bag import EvaluateBagJob
from ..sources.bag_ground_truth import GT_FRAMES, GroundTruthOptions
from ..sources.pose_choice import POSE_KINDS
from .common import (
    add_model_arguments,
    add_quiet_argument,
    add_subcommand,
    job_defaults,
    model_arch_and_size,
    node_defaults,
    show_size,
    synthetic_banner,
)

__all__ = ["add_demo_bags_parser", "add_evaluate_bag_parser", "cmd_demo_bags", "cmd_evaluate_bag", "node_override"]

GT_POSE_KINDS = tuple(k for k in POSE_KINDS if k != "none")  # evaluate-bag needs poses


def node_override(text: str) -> tuple[str, Any]:
    """argparse type of -p NAME=VALUE (``node.overrides``, imported on use: it loads the node parameters)."""
    from ..node.overrides import parse_override

    return parse_override(text)


def _ground_truth_arguments(p: argparse.ArgumentParser) -> None:
    gt = GroundTruthOptions()
    g = p.add_argument_group("ground truth (as build-map --bag)")
    g.add_argument("--pose-source", default=gt.pose_source, choices=GT_POSE_KINDS,
                   help="where ground-truth poses come from (auto: odometry, pose, tf, then GPS)")
    g.add_argument("--pose-topic", default=None, help="Odometry / PoseStamped / PoseWithCovarianceStamped topic")
    g.add_argument("--gps-topic", default=None, help="NavSatFix topic for UTM (default: the only one; 'none')")
    g.add_argument("--tf-fixed-frame", default=None, help="with --pose-source tf (default: map, else odom)")
    g.add_argument("--tf-target-frame", default=None, help="with --pose-source tf (default: image frame_id)")
    g.add_argument("--max-pose-gap", type=float, default=gt.max_pose_gap,
                   help="s; frames across larger pose gaps are not scored")
    g.add_argument("--gt-frame", default=gt.gt_frame, choices=GT_FRAMES,
                   help="compare positions in the pose frame or in UTM (auto: UTM when map and bag have it)")


def _scoring_arguments(p: argparse.ArgumentParser) -> None:
    cfg = BagEvalConfig()
    s = p.add_argument_group("scoring")
    s.add_argument("--thresholds", type=float, nargs="+", default=list(cfg.thresholds_m),
                   help="distance thresholds (m)")
    s.add_argument("--heading-limit", type=float, default=None, help="max orientation difference (deg; pose frame)")
    s.add_argument("--recall-values", type=int, nargs="+", default=list(cfg.recall_ns), help="N of recall@N (<= top-k)")
    s.add_argument("--examples", type=int, default=cfg.examples, help="correct and wrong examples drawn (0 = none)")


def _node_arguments(p: argparse.ArgumentParser) -> None:
    node = node_defaults()
    n = p.add_argument_group("node (unset: the --params file's value, else the node's default)")
    n.add_argument("--params", default=None, help="node parameter file (ROS 2 format, e.g. config/localize.yaml)")
    n.add_argument("--param", "-p", type=node_override, action="append", default=[], metavar="KEY=VALUE",
                   help="override a node parameter, e.g. -p exclusion.min_time_sec=10 (repeatable; typed as the "
                        "parameter, as `fol-vpr node --set`)")
    n.add_argument("--top-k", type=int, default=None, help=f"= -p top_k=N (default: {node.top_k})")
    n.add_argument("--rerank-k", type=int, default=None,
                   help=f"= -p rerank_k=N, 0 = no re-ranking (default: {node.rerank_k})")
    n.add_argument("--min-rerank-score", type=float, default=None,
                   help=f"= -p min_rerank_score=S (default: {node.min_rerank_score:g})")
    n.add_argument("--exclusion-time", type=float, default=None,
                   help=f"loop closure: = -p exclusion.min_time_sec=S (default: {node.exclusion.min_time_sec:g})")
    n.add_argument("--exclusion-keyframes", type=int, default=None,
                   help=f"loop closure: = -p exclusion.min_keyframes=N (default: {node.exclusion.min_keyframes})")
    n.add_argument("--every-frame", action="store_true", help="switch the node's keyframe gate off")
    n.add_argument("--no-odometry", action="store_true", help="do not feed the bag's poses to the node as odometry")


def add_evaluate_bag_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `evaluate-bag` to the CLI's subparsers; returns the parser (its func is ``cmd_evaluate_bag``)."""
    job, node = job_defaults(EvaluateBagJob), node_defaults()
    p = add_subcommand(
        subparsers, "evaluate-bag", help="replay a bag through the node core and score it against the bag's poses",
        description="Localization against a prebuilt map (--map) or loop closure of a run against itself "
                    "(--loop-closure); ground truth from the bag's poses (odometry, pose, tf or GPS). Writes "
                    "summary.json, report.md, per_frame.csv and plots to --out.")
    p.add_argument("--bag", required=True, help="query bag: rosbag2 folder / .mcap / .db3, or ROS 1 .bag")
    p.add_argument("--image-topic", required=True, help="sensor_msgs/Image or CompressedImage topic")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--map", default=None, help="map directory (built with build-map) to localise against")
    what.add_argument("--loop-closure", action="store_true", help="evaluate loop closure of the bag against itself")
    add_model_arguments(p, resize_default=f"the map's, else the node parameter input_size, "
                                          f"{show_size(node.input_size)}",
                        precision_default=None, precision_unset=f"the node parameter precision, {node.precision}",
                        backend=False, weights_note="; with --map, the map's model")
    _ground_truth_arguments(p)
    _scoring_arguments(p)
    _node_arguments(p)
    d = p.add_argument_group("through the node (the deployed path: the rclpy node over ROS 2 topics)")
    d.add_argument("--through-node", action="store_true",
                   help="replay through the rclpy node at bag rate (with /clock, the node on use_sim_time); frames "
                        "the node cannot keep up with are dropped and counted by cause")
    d.add_argument("--rate-factor", type=float, default=job["rate_factor"],
                   help="with --through-node: replay speed (1.0 = bag rate, 2.0 = twice as fast)")
    d.add_argument("--domain-id", type=int, default=None,
                   help="with --through-node: ROS domain id (default $ROS_DOMAIN_ID, else 0)")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--write-results", default=None, metavar="OUT.mcap|DIR",
                   help="also write a rosbag2 (mcap) with the images and the node's output messages")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --write-results bag")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_evaluate_bag)
    return p


def _overrides(a: argparse.Namespace) -> dict[str, Any]:
    out = dict(a.param)
    for key, value in (("top_k", a.top_k), ("rerank_k", a.rerank_k), ("exclusion.min_keyframes",
                                                                     a.exclusion_keyframes)):
        if value is not None:
            out[key] = int(value)
    for key, value in (("min_rerank_score", a.min_rerank_score), ("exclusion.min_time_sec", a.exclusion_time)):
        if value is not None:
            out[key] = float(value)
    return out


def _job(a: argparse.Namespace) -> Any:
    """The EvaluateBagJob of the parsed arguments."""
    arch, size = model_arch_and_size(a)
    gt = GroundTruthOptions(
        pose_source=a.pose_source, pose_topic=a.pose_topic,
        gps_topic=None if a.gps_topic == "none" else (a.gps_topic or "auto"), tf_fixed_frame=a.tf_fixed_frame,
        tf_target_frame=a.tf_target_frame, max_pose_gap=a.max_pose_gap, gt_frame=a.gt_frame)
    cfg = BagEvalConfig(thresholds_m=tuple(a.thresholds), heading_limit_deg=a.heading_limit,
                        recall_ns=tuple(a.recall_values), every_frame=a.every_frame,
                        feed_odometry=not a.no_odometry, examples=a.examples)
    return EvaluateBagJob(
        a.bag, a.image_topic, a.out, a.weights, map_path=a.map, loop_closure=a.loop_closure, gt=gt, cfg=cfg,
        params_file=a.params, param_overrides=_overrides(a), arch=arch, resize=size, device=a.device,
        precision=a.precision, write_results=a.write_results, overwrite=a.overwrite, through_node=a.through_node,
        rate_factor=a.rate_factor, domain_id=a.domain_id, progress=not a.quiet)


def cmd_evaluate_bag(a: argparse.Namespace) -> int:
    """Run `evaluate-bag` and print the summary table."""
    from ..jobs.evaluate_bag import evaluate_bag

    res = evaluate_bag(_job(a))
    print(res.table())
    if res.synthetic:
        print(synthetic_banner("recall and precision above come from a random model and are meaningless; only the "
                               "pipeline and the timings are exercised."))
    return 0


def add_demo_bags_parser(subparsers: Any, name: str = "demo-bags") -> argparse.ArgumentParser:
    """Add the bag demo (Nordland summer map, winter replay) to the CLI's subparsers, as ``name``."""
    from ..jobs.demo_bags import DEMO_FIRST_FRAME, DEMO_FRAMES, DEMO_RATE_FACTOR
    from ..model.config import DEFAULT_INPUT_SIZE
    from .common import DEFAULT_DATA_ROOT

    p = add_subcommand(subparsers, name, help="Nordland route driven twice as ROS 2 bags: map, localize, loop "
                                              "closures through the rclpy node")
    add_model_arguments(p, resize_default=show_size(DEFAULT_INPUT_SIZE), precision=False, backend=False)
    p.add_argument("--data", default=DEFAULT_DATA_ROOT, help="data folder (the repository's data/)")
    p.add_argument("--out", default=f"out/{name.replace('-', '_')}", help="output folder (bags, map, reports)")
    p.add_argument("--first", type=int, default=DEMO_FIRST_FRAME, help="first Nordland frame (images-FIRST.png)")
    p.add_argument("--frames", type=int, default=DEMO_FRAMES, help="consecutive frames per season (10 m apart)")
    p.add_argument("--offline", action="store_true",
                   help="replay winter offline (NodeCore.process_now, no drops) instead of through the rclpy node")
    p.add_argument("--rate-factor", type=float, default=DEMO_RATE_FACTOR,
                   help="through the node: replay speed (1.0 = the 1 Hz camera in real time)")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_demo_bags)
    return p


def cmd_demo_bags(a: argparse.Namespace) -> int:
    """Run the bag demo and print its table."""
    from ..jobs.demo_bags import run_bag_demo

    arch, size = model_arch_and_size(a)
    res = run_bag_demo(a.data, a.out, a.weights, arch=arch, input_size=size, device=a.device, first=a.first,
                       frames=a.frames, through_node=not a.offline, rate_factor=a.rate_factor, progress=not a.quiet)
    print(res.table())
    if res.synthetic:
        print("\n" + synthetic_banner(f"accuracy above is meaningless (a random model, {a.weights}); only the "
                                      "pipeline and timings are real.\nRun `make demo WEIGHTS=/path/to/FoL_base.pth` "
                                      "for real results."))
    return 0
