"""`fol-vpr build-map`: argument parser and command (an image folder or a bag -> a map directory)."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import FolVprError
from ..jobs.build_map import build_map
from ..jobs.build_map_bag import build_map_from_bag
from ..mapping import INDEX_KINDS, IndexConfig
from ..mapping.manifest import LOCAL_DTYPES
from ..model.config import DEFAULT_INPUT_SIZE
from ..sources.pose_choice import POSE_KINDS
from .common import (
    add_model_arguments,
    add_quiet_argument,
    add_subcommand,
    job_defaults,
    model_arch_and_size,
    show_size,
    synthetic_banner,
)

__all__ = ["add_build_map_parser", "cmd_build_map"]

SYNTHETIC_MAP = "this map comes from a random model and is only good for testing the pipeline."


def add_build_map_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``build-map`` to ``subparsers``; returns its parser."""
    folder, bag = job_defaults(build_map), job_defaults(build_map_from_bag)
    p = add_subcommand(subparsers, "build-map", help="describe an image folder or a bag into a map directory")
    add_model_arguments(p, resize_default=f"an exported model's own size, else {show_size(DEFAULT_INPUT_SIZE)}")
    p.add_argument("--images", default=None, help="image folder (plain or VPR '@utm@' names)")
    p.add_argument("--bag", default=None, help="rosbag2 folder / .mcap / .db3, or ROS 1 .bag")
    p.add_argument("--image-topic", default=None, help="with --bag: sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--pose-source", default=bag["pose_source"], choices=POSE_KINDS, help="with --bag: where poses "
                   "come from (auto: odometry, else pose, else tf, else GPS, else none)")
    p.add_argument("--pose-topic", default=None, help="Odometry / PoseStamped / PoseWithCovarianceStamped topic")
    p.add_argument("--gps-topic", default=None, help="NavSatFix topic for UTM (default: the only one; 'none')")
    p.add_argument("--tf-fixed-frame", default=None, help="with --pose-source tf (default: map, else odom)")
    p.add_argument("--tf-target-frame", default=None, help="with --pose-source tf (default: image frame_id)")
    p.add_argument("--max-pose-gap", type=float, default=bag["max_pose_gap"],
                   help="s; images across larger pose gaps are skipped")
    p.add_argument("--min-distance", type=float, default=bag["min_distance"],
                   help="with --bag: keyframe spacing in metres, as the node's keyframe.min_distance_m (0 = off)")
    p.add_argument("--min-angle", type=float, default=bag["min_angle"],
                   help="with --bag: keyframe spacing in degrees, as the node's keyframe.min_angle_deg (0 = off)")
    p.add_argument("--min-interval", type=float, default=bag["min_interval"],
                   help="with --bag: keyframe spacing in seconds, as the node's keyframe.min_interval_sec (0 = off; "
                        "a keyframe needs the interval AND the distance or the angle; all 0: every frame)")
    p.add_argument("--poses", default=None, help="CSV: image[,stamp,x,y,z,qx,qy,qz,qw,frame_id,easting,...]")
    p.add_argument("--out", required=True, help="map directory")
    p.add_argument("--index", default=IndexConfig().kind,
                   help=f"global index KIND[:name=value,...], KIND one of {', '.join(INDEX_KINDS)} "
                        "(flat: exact), e.g. ivf-pq:nlist=1024,pq_m=64")
    p.add_argument("--local-dtype", default=folder["local_dtype"], choices=LOCAL_DTYPES,
                   help="storage type of the local rows")
    p.add_argument("--frame-id", default=folder["frame_id"], help="with --images: the keyframes' frame_id")
    p.add_argument("--session-id", default=None, help="session id recorded with every keyframe (default: with "
                   "--bag the bag's name, with --images none); `map merge` refuses a session in two maps")
    p.add_argument("--robot-id", default=None, help="robot id recorded with every keyframe (default: none)")
    p.add_argument("--camera-info-topic", default=None, help="with --bag: sensor_msgs/CameraInfo topic stored with "
                   "each keyframe (latest at or before its stamp; default: the image topic's sibling camera_info "
                   "if the bag has it; 'none': no cameras)")
    p.add_argument("--batch-size", type=int, default=folder["batch_size"], help="images per forward pass")
    p.add_argument("--overwrite", action="store_true", help="replace an existing map at --out")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_build_map)
    return p


def cmd_build_map(a: argparse.Namespace) -> int:
    """Run ``fol-vpr build-map`` from --images or --bag; prints what the map holds."""
    if (a.images is None) == (a.bag is None):
        raise FolVprError("give either --images DIR or --bag PATH --image-topic T")
    index = IndexConfig.from_spec(a.index)
    if a.bag is not None:
        return _build_map_bag(a, index)
    arch, size = model_arch_and_size(a)
    res = build_map(a.images, a.out, a.weights, a.poses, arch, size, a.device, a.batch_size,
                    index, a.local_dtype, a.frame_id, a.session_id, a.overwrite,
                    progress=not a.quiet, backend=a.backend, precision=a.precision, robot_id=a.robot_id)
    print(f"map {res.out}: {res.keyframes} keyframes, {res.local_rows} local rows, {res.seconds:.1f} s"
          + (f", {len(res.skipped)} image(s) skipped" if res.skipped else ""))
    for path, why in res.skipped:  # the reason names the file already, as a rule
        print(f"  skipped {why}" if path in why else f"  skipped {path}: {why}")
    if res.synthetic:
        print(synthetic_banner(SYNTHETIC_MAP))
    return 0


def _build_map_bag(a: argparse.Namespace, index: IndexConfig) -> int:
    if not a.image_topic:
        raise FolVprError("--bag needs --image-topic (run with a wrong topic to see the bag's topics)")
    arch, size = model_arch_and_size(a)
    res = build_map_from_bag(
        a.bag, a.image_topic, a.out, a.weights, pose_topic=a.pose_topic, pose_source=a.pose_source,
        gps_topic=None if a.gps_topic == "none" else (a.gps_topic or "auto"), tf_fixed_frame=a.tf_fixed_frame,
        camera_info_topic=None if a.camera_info_topic == "none" else (a.camera_info_topic or "auto"),
        tf_target_frame=a.tf_target_frame, max_pose_gap=a.max_pose_gap, min_distance=a.min_distance,
        min_angle=a.min_angle, min_interval=a.min_interval, arch=arch, resize=size, device=a.device,
        batch_size=a.batch_size, index=index, local_dtype=a.local_dtype, session_id=a.session_id,
        robot_id=a.robot_id, overwrite=a.overwrite, progress=not a.quiet, backend=a.backend, precision=a.precision)
    print(res.summary())
    if res.synthetic:
        print(synthetic_banner(SYNTHETIC_MAP))
    return 0
