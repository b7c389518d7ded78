"""`fol-vpr ground-truth`: argument parser and command (ground-truth CSVs of the bundled datasets)."""

from __future__ import annotations

import argparse
from typing import Any

from ..evaluation.ground_truth import BUNDLED_DATASETS, write_bundled_ground_truth
from .common import DEFAULT_DATA_ROOT, add_subcommand

__all__ = ["NORDLAND_SUBSAMPLE", "add_ground_truth_parser", "cmd_ground_truth"]

NORDLAND_SUBSAMPLE = 20  # `ground-truth` keeps every 20th Nordland place unless told otherwise


def add_ground_truth_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``ground-truth`` to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "ground-truth", help="write ready ground-truth CSVs for the bundled datasets")
    p.add_argument("--data", default=DEFAULT_DATA_ROOT, help="bundled data folder")
    p.add_argument("--out", required=True, help="folder for the CSVs")
    p.add_argument("--names", nargs="*", help=f"{', '.join(BUNDLED_DATASETS)} (default: all)")
    p.add_argument("--nordland-subsample", type=int, default=NORDLAND_SUBSAMPLE, help="keep every N-th place")
    p.set_defaults(func=cmd_ground_truth)
    return p


def cmd_ground_truth(a: argparse.Namespace) -> int:
    """Run ``fol-vpr ground-truth``; prints each written CSV."""
    opts = {"nordland": {"subsample": a.nordland_subsample}}
    written = write_bundled_ground_truth(a.data, a.out, names=a.names or None, options=opts)
    for name, path in written.items():
        print(f"{name}: {path}")
    return 0
