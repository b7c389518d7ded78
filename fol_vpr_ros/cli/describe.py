"""`fol-vpr describe`: argument parser and command (images -> an npz of FoL descriptions)."""

from __future__ import annotations

import argparse
from typing import Any

from ..model.config import DEFAULT_INPUT_SIZE
from .common import (
    DESCRIBER_DEFAULTS,
    add_model_arguments,
    add_quiet_argument,
    add_subcommand,
    model_arch_and_size,
    show_size,
    synthetic_banner,
)

__all__ = ["add_describe_parser", "cmd_describe"]


def add_describe_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``describe`` to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "describe", help="compute FoL descriptions of images into an .npz file")
    add_model_arguments(p, resize_default=f"an exported model's own size, else {show_size(DEFAULT_INPUT_SIZE)}")
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--preprocessed", default=None, help="float32 .npy B x 3 x H x W, already normalised")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--batch-size", type=int, default=DESCRIBER_DEFAULTS.batch_size, help="images per forward pass")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_describe)
    return p


def cmd_describe(a: argparse.Namespace) -> int:
    """Run ``fol-vpr describe``; prints what was described."""
    from ..jobs.describe import describe

    arch, size = model_arch_and_size(a)
    res = describe(a.weights, a.images, a.out, arch, size, a.device, a.preprocessed,
                   a.batch_size, progress=not a.quiet, backend=a.backend, precision=a.precision)
    counts = res.local_counts
    print(f"described {res.count} image(s) with {res.arch} at {res.input_size[0]}x{res.input_size[1]} "
          f"({res.precision.value} backbone): "
          f"local rows min/mean/max {min(counts)}/{sum(counts) / len(counts):.0f}/{max(counts)} -> {res.out}")
    if res.synthetic:
        print(synthetic_banner(f"these descriptions come from a random model ({a.weights}) and mean nothing."))
    return 0
