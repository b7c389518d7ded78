"""`fol-vpr` command line: parses arguments and calls the library functions; nothing else."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from . import __version__
from .errors import FolVprError

__all__ = ["build_parser", "main"]

log = logging.getLogger("fol_vpr_ros")

BANNER = "!" * 100


def _size(values: Sequence[int] | None) -> tuple[int, int] | None:
    return None if values is None else (int(values[0]), int(values[1]))


def _model_args(p: argparse.ArgumentParser, weights_required: bool = True) -> None:
    p.add_argument("--weights", required=weights_required, default=None if weights_required else "random:0",
                   help="checkpoint path (authors' FoL_base.pth / FoL_large.pth) or random:SEED (synthetic)")
    p.add_argument("--arch", default="auto", help="auto (from the checkpoint), vits14, vitb14, vitl14, vitg14")
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="model input size, multiples of 14 (default 322 322)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")


def cmd_describe(a: argparse.Namespace) -> int:
    from .describe import describe

    res = describe(a.weights, a.images, a.out, a.arch, _size(a.resize), a.device, a.preprocessed,
                   a.batch_size, progress=not a.quiet)
    counts = res.local_counts
    print(f"described {res.count} image(s) with {res.arch} at {res.input_size[0]}x{res.input_size[1]}: "
          f"local rows min/mean/max {min(counts)}/{sum(counts) / len(counts):.0f}/{max(counts)} -> {res.out}")
    return 0


def cmd_demo(a: argparse.Namespace) -> int:
    from .demo import run_demo

    res = run_demo(a.data, a.out, a.weights, a.arch, _size(a.resize) or (322, 322), a.device, not a.quiet)
    print(res.table())
    print(f"\nresults in {res.out_dir}")
    if res.synthetic:
        print(f"\n{BANNER}\nSYNTHETIC WEIGHTS: the regions above come from a random model and mean nothing.\n"
              f"Run `make demo WEIGHTS=/path/to/FoL_base.pth` for real results.\n{BANNER}")
    return 0


def cmd_bench(a: argparse.Namespace) -> int:
    devices = a.device or None
    if a.what == "describe":
        from .bench.describe_bench import bench_describe

        table = bench_describe(a.archs or ("vits14", "vitb14"), _size(a.resize) or (322, 322),
                               a.batches or (1, 8), devices, a.repeats, a.out)
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
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--preprocessed", default=None, help="float32 .npy B x 3 x H x W, already normalised")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_describe)

    p = sub.add_parser("demo", help="run the main job on the bundled data")
    _model_args(p, weights_required=False)
    p.set_defaults(weights=None)
    p.add_argument("--data", default="../shared/data", help="bundled data folder")
    p.add_argument("--out", default="out/demo")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("bench", help="benchmarks that print and write a table")
    p.add_argument("what", choices=["describe"])
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
