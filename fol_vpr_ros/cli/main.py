"""`fol-vpr` command line: parses arguments and calls the library functions; nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..console import banner
from ..errors import FolVprError

__all__ = ["build_parser", "main"]

log = logging.getLogger("fol_vpr_ros")


def _size(values: Sequence[int] | None) -> tuple[int, int] | None:
    return None if values is None else (int(values[0]), int(values[1]))


def _model_args(p: argparse.ArgumentParser, weights_required: bool = True) -> None:
    p.add_argument("--weights", required=weights_required, default=None if weights_required else "random:0",
                   help="checkpoint path (authors' FoL_base.pth / FoL_large.pth) or random:SEED (synthetic)")
    p.add_argument("--arch", default="auto", help="auto (from the checkpoint), vits14, vitb14, vitl14, vitg14")
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="model input size, multiples of 14 (default 322 322)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    _precision_arg(p, "fp32")


def _precision_arg(p: argparse.ArgumentParser, default: str | None) -> None:
    p.add_argument("--precision", default=default, choices=["fp32", "bf16", "fp16", "auto"],
                   help=f"ViT backbone precision (region selection and local head stay fp32); auto: bf16 where the "
                        f"device has it, else fp32 (default {default or 'the node parameter'})")


def _backend_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime", "tensorrt"],
                   help="torch (--weights checkpoint), onnxruntime (--weights model.onnx), "
                        "tensorrt (--weights model.engine); see `fol-vpr export`")


def cmd_describe(a: argparse.Namespace) -> int:
    from ..jobs.describe import describe

    res = describe(a.weights, a.images, a.out, a.arch, _size(a.resize), a.device, a.preprocessed,
                   a.batch_size, progress=not a.quiet, backend=a.backend, precision=a.precision)
    counts = res.local_counts
    print(f"described {res.count} image(s) with {res.arch} at {res.input_size[0]}x{res.input_size[1]} "
          f"({res.precision.value} backbone): "
          f"local rows min/mean/max {min(counts)}/{sum(counts) / len(counts):.0f}/{max(counts)} -> {res.out}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from ..jobs.demo_images import run_demo

    res = run_demo(a.data, a.out, a.weights, a.arch, _size(a.resize) or (322, 322), a.device, not a.quiet)
    print(res.table())
    print(f"\nresults in {res.out_dir}")
    if res.synthetic:
        print("\n" + banner("SYNTHETIC WEIGHTS: the regions above come from a random model and mean nothing.\n"
                            "Run `make demo-images WEIGHTS=/path/to/FoL_base.pth` for real results."))
    return 0


def cmd_build_map(a: argparse.Namespace) -> int:
    from ..jobs.build_map import build_map
    from ..mapping import IndexConfig

    if (a.images is None) == (a.bag is None):
        raise FolVprError("give either --images DIR or --bag PATH --image-topic T")
    if a.bag is not None:
        return _build_map_bag(a, IndexConfig.from_spec(a.index))

    res = build_map(a.images, a.out, a.weights, a.poses, a.arch, _size(a.resize), a.device, a.batch_size,
                    IndexConfig.from_spec(a.index), a.local_dtype, a.frame_id, a.session_id, a.overwrite,
                    progress=not a.quiet, backend=a.backend, precision=a.precision)
    print(f"map {res.out}: {res.keyframes} keyframes, {res.local_rows} local rows, {res.seconds:.1f} s"
          + (f", {len(res.skipped)} image(s) skipped" if res.skipped else ""))
    for path, why in res.skipped:
        print(f"  skipped {path}: {why}")
    if res.synthetic:
        print(banner("SYNTHETIC WEIGHTS: this map is only good for testing the pipeline."))
    return 0


def _build_map_bag(a: argparse.Namespace, index) -> int:
    from ..jobs.build_map_bag import build_map_from_bag

    if not a.image_topic:
        raise FolVprError("--bag needs --image-topic (run with a wrong topic to see the bag's topics)")
    res = build_map_from_bag(
        a.bag, a.image_topic, a.out, a.weights, pose_topic=a.pose_topic, pose_source=a.pose_source,
        gps_topic=None if a.gps_topic == "none" else (a.gps_topic or "auto"), tf_fixed_frame=a.tf_fixed_frame,
        tf_target_frame=a.tf_target_frame, max_pose_gap=a.max_pose_gap, min_distance=a.min_distance,
        min_angle=a.min_angle, min_interval=a.min_interval, arch=a.arch, resize=_size(a.resize), device=a.device,
        batch_size=a.batch_size, index=index, local_dtype=a.local_dtype, session_id=a.session_id,
        overwrite=a.overwrite, progress=not a.quiet, backend=a.backend, precision=a.precision)
    print(res.summary())
    if res.synthetic:
        print(banner("SYNTHETIC WEIGHTS: this map is only good for testing the pipeline."))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    from ..jobs.evaluate import EvaluateConfig, evaluate

    cfg = EvaluateConfig(top_k=a.top_k, rerank_k=a.rerank_k, threshold=a.threshold,
                         recall_values=tuple(a.recall_values) if a.recall_values else None,
                         utm_radius_m=a.radius, batch_size=a.batch_size,
                         verify=a.verify)
    res = evaluate(a.map, a.queries, a.ground_truth, a.weights, a.out, a.arch, _size(a.resize), a.device, cfg,
                   progress=not a.quiet, backend=a.backend, precision=a.precision)
    ns = list(res.recall_global)
    print("          " + "".join(f"R@{n:<7d}" for n in ns))
    print("global    " + "".join(f"{res.recall_global[n]:<9.1f}" for n in ns))
    if res.recall_rerank is not None:
        print("rerank    " + "".join(f"{res.recall_rerank[n]:<9.1f}" for n in ns))
    for stage, t in res.timing_ms.items():
        if t.count:
            print(f"{stage:8s}  mean {t.mean:8.1f} ms  median {t.median:8.1f} ms  p95 {t.p95:8.1f} ms")
    skipped = list(res.config.get("skipped_queries", []))
    if skipped:
        print(f"{len(skipped)} query image(s) skipped (not counted):")
        for line in skipped:
            print(f"  skipped {line}")
    print(f"report: {a.out}/report.md")
    if res.model.synthetic:
        print(banner("SYNTHETIC WEIGHTS: these recalls are meaningless for accuracy."))
    return 0


def cmd_map_check(a: argparse.Namespace) -> int:
    from ..mapping.check import check_map

    res = check_map(a.map)
    print(res.summary())
    return 0


def cmd_ground_truth(a: argparse.Namespace) -> int:
    from ..evaluation.ground_truth import write_bundled_ground_truth

    opts = {"nordland": {"subsample": a.nordland_subsample}}
    written = write_bundled_ground_truth(a.data, a.out, names=a.names or None, options=opts)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    devices = a.device or None
    if a.what == "describe":
        from ..bench.describe_bench import bench_describe

        table = bench_describe(a.archs or ("vits14", "vitb14"), _size(a.resize) or (322, 322),
                               a.batches or (1, 8), devices, a.repeats, a.out)
    elif a.what == "rerank":
        from ..bench.rerank_bench import bench_rerank

        table = bench_rerank(device=(devices or ["cpu"])[0], repeats=a.repeats, out_dir=a.out,
                             precisions=tuple(a.precisions or ("bf16",)))
    elif a.what == "precision":
        from ..bench.precision_bench import bench_precision

        table = bench_precision(a.data, arch=(a.archs or ["vitb14"])[0], size=_size(a.resize) or (322, 322),
                                precisions=a.precisions or ("bf16",), device=(devices or ["cpu"])[0],
                                repeats=a.repeats, out_dir=a.out)
    elif a.what == "map":
        from ..bench.map_bench import bench_map

        table = bench_map(sizes=tuple(a.sizes) if a.sizes else (1000, 10000, 100000), out_dir=a.out)
    elif a.what == "export":
        from ..bench.export_bench import bench_export

        table = bench_export(a.archs or ("vits14", "vitb14"), _size(a.resize) or (322, 322), a.batches or (1, 6),
                             repeats=a.repeats, out_dir=a.out)
    elif a.what == "train":
        from ..bench.train_bench import bench_train

        table = bench_train(device=(devices or ["cpu"])[0], out_dir=a.out)
    else:
        raise FolVprError(f"unknown benchmark {a.what!r}")
    print(table.to_markdown())
    if a.out:
        print(f"written to {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fol-vpr", description="FoL visual place recognition tools")
    parser.add_argument("--version", action="version", version=f"fol-vpr {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("describe", help="compute FoL descriptions of images into an .npz file")
    _model_args(p)
    _backend_arg(p)
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--preprocessed", default=None, help="float32 .npy B x 3 x H x W, already normalised")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("demo-images", help="describe bundled images, draw their regions, map + evaluate image sets")
    _model_args(p, weights_required=False)
    p.set_defaults(weights=None)
    p.add_argument("--data", default="../shared/data", help="bundled data folder")
    p.add_argument("--out", default="out/demo")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("build-map", help="describe an image folder or a bag into a map directory")
    _model_args(p)
    _backend_arg(p)
    p.add_argument("--images", default=None, help="image folder (plain or VPR '@utm@' names)")
    p.add_argument("--bag", default=None, help="rosbag2 folder / .mcap / .db3, or ROS 1 .bag")
    p.add_argument("--image-topic", default=None, help="with --bag: sensor_msgs/Image or CompressedImage topic")
    p.add_argument("--pose-source", default="auto", choices=["auto", "odometry", "pose", "tf", "gps", "none"])
    p.add_argument("--pose-topic", default=None, help="Odometry / PoseStamped / PoseWithCovarianceStamped topic")
    p.add_argument("--gps-topic", default=None, help="NavSatFix topic for UTM (default: the only one; 'none')")
    p.add_argument("--tf-fixed-frame", default=None, help="with --pose-source tf (default map, else odom)")
    p.add_argument("--tf-target-frame", default=None, help="with --pose-source tf (default: image frame_id)")
    p.add_argument("--max-pose-gap", type=float, default=2.0, help="s; images across larger pose gaps are skipped")
    p.add_argument("--min-distance", type=float, default=0.0, help="keyframe spacing in metres")
    p.add_argument("--min-angle", type=float, default=0.0, help="keyframe spacing in degrees")
    p.add_argument("--min-interval", type=float, default=0.0, help="keyframe spacing in seconds")
    p.add_argument("--poses", default=None, help="CSV: image[,stamp,x,y,z,qx,qy,qz,qw,frame_id,easting,...]")
    p.add_argument("--out", required=True, help="map directory")
    p.add_argument("--index", default="flat", help="flat (exact, default), ivf-flat, ivf-pq, hnsw")
    p.add_argument("--local-dtype", default="float16", choices=["float16", "float32"])
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--session-id", default=None)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--overwrite", action="store_true", help="replace an existing map at --out")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_build_map)

    p = sub.add_parser("evaluate", help="Recall@N of query images against a map, with a report")
    _model_args(p)
    _backend_arg(p)
    p.add_argument("--map", required=True)
    p.add_argument("--queries", required=True, help="query image folder")
    p.add_argument("--ground-truth", required=True, help="CSV (query,positives) or 'utm'")
    p.add_argument("--top-k", type=int, default=None, help="retrieved candidates (default min(100, map size))")
    p.add_argument("--rerank-k", type=int, default=None, help="re-ranked candidates (default top-k; 0 = off)")
    p.add_argument("--threshold", type=float, default=0.7, help="mutual-match similarity threshold")
    p.add_argument("--recall-values", type=int, nargs="+", default=None,
                   help="N of Recall@N (default 1 5 10 25 100, those up to the map size); each must be <= map size")
    p.add_argument("--radius", type=float, default=25.0, help="UTM positive radius in metres")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--verify", default="full", choices=["full", "size", "off"],
                   help="map checks at open: full (SHA-256 + NaN/inf, default), size, off")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("map", help="map maintenance: `map check MAP` verifies every file of a map")
    msub = p.add_subparsers(dest="map_command", required=True)
    c = msub.add_parser("check", help="verify sizes, SHA-256, NaN/inf, offsets and records of a saved map")
    c.add_argument("map", help="map directory")
    c.set_defaults(func=cmd_map_check)

    p = sub.add_parser("ground-truth", help="write ready ground-truth CSVs for the bundled datasets")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", required=True)
    p.add_argument("--names", nargs="*", help="gardenspoint, corridor, nordland (default all)")
    p.add_argument("--nordland-subsample", type=int, default=20)
    p.set_defaults(func=cmd_ground_truth)

    from .evaluate_bag import add_demo_bags_parser, add_evaluate_bag_parser
    from .export import add_export_parser
    from .node import add_node_parser
    from .train import add_train_parser

    add_evaluate_bag_parser(sub)
    add_demo_bags_parser(sub, name="demo")
    add_train_parser(sub)
    add_node_parser(sub)
    add_export_parser(sub)

    p = sub.add_parser("bench", help="benchmarks that print and write a table")
    p.add_argument("what", choices=["describe", "rerank", "precision", "map", "train", "export"])
    p.add_argument("--precisions", nargs="+", default=None, choices=["bf16", "fp16"],
                   help="`bench precision`: low precisions compared with fp32 (default bf16; fp16 is emulated on "
                        "most CPUs); `bench rerank`: low-precision kernels (default bf16)")
    p.add_argument("--data", default="../shared/data", help="`bench precision`: bundled data folder")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="map sizes for `bench map`")
    p.add_argument("--device", action="append", help="repeatable; default cpu (+cuda when present)")
    p.add_argument("--archs", nargs="+", default=None)
    p.add_argument("--batches", nargs="+", type=int, default=None)
    p.add_argument("--resize", nargs=2, type=int, default=None)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="folder for the table (.md + .json)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="[%(levelname)s] %(name)s: %(message)s")
    logging.getLogger("faiss").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    logging.captureWarnings(True)
    warnings.simplefilter("default")
    try:
        return int(args.func(args) or 0)
    except FolVprError as exc:
        print(f"fol-vpr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
