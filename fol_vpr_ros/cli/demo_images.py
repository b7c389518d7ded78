"""`fol-vpr demo-images`: argument parser and command (bundled images: regions, a map, an evaluation)."""

from __future__ import annotations

import argparse
from typing import Any

from ..model.config import DEFAULT_INPUT_SIZE
from .common import (
    DEFAULT_DATA_ROOT,
    add_model_arguments,
    add_quiet_argument,
    add_subcommand,
    model_arch_and_size,
    synthetic_banner,
)

__all__ = ["add_demo_images_parser", "cmd_demo_images"]


def add_demo_images_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``demo-images`` to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "demo-images",
                       help="describe bundled images, draw their regions, map + evaluate image sets")
    add_model_arguments(p, backend=False)
    p.add_argument("--data", default=DEFAULT_DATA_ROOT, help="bundled data folder")
    p.add_argument("--out", default="out/demo_images", help="output folder")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_demo_images)
    return p


def cmd_demo_images(a: argparse.Namespace) -> int:
    """Run the image demo and print its table."""
    from ..jobs.demo_images import run_demo

    arch, size = model_arch_and_size(a)
    res = run_demo(a.data, a.out, a.weights, arch, size or DEFAULT_INPUT_SIZE, a.device, not a.quiet,
                   precision=a.precision)
    print(res.table())
    print(f"\nresults in {res.out_dir}")
    if res.synthetic:
        print("\n" + synthetic_banner(f"the regions and recalls above come from a random model ({a.weights}) and "
                                      f"mean nothing (also in {res.out_dir / 'SYNTHETIC_WEIGHTS.txt'}).\n"
                                      "Run `make demo-images WEIGHTS=/path/to/FoL_base.pth` for real results."))
    return 0
