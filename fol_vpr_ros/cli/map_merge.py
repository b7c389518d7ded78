"""`fol-vpr map merge`: argument parser and command (maps of several robots or sessions -> one map)."""

from __future__ import annotations

import argparse
from typing import Any

from ..jobs.merge_maps import merge_maps, write_id_map
from ..mapping import INDEX_KINDS, IndexConfig
from ..mapping.verify import VerifyMode
from .common import add_quiet_argument, add_subcommand

__all__ = ["add_map_merge_parser", "cmd_map_merge"]


def add_map_merge_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``merge`` (under ``map``) to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "merge", help="merge maps of one model (several robots or sessions) into one; "
                       "robot/session ids kept, keyframes renumbered, a session or keyframe in two inputs refused")
    p.add_argument("maps", nargs="+", metavar="MAP", help="input map directories (two or more), merged in this order")
    p.add_argument("--out", required=True, help="merged map directory (never one of the inputs)")
    p.add_argument("--index", default=None, help="global index KIND[:name=value,...] of the merged map, KIND one of "
                   f"{', '.join(INDEX_KINDS)} (default: the first input's index)")
    p.add_argument("--id-map", default=None, metavar="CSV", help="also write input,old_id,new_id for every keyframe")
    p.add_argument("--verify", default=VerifyMode.FULL.value, choices=[v.value for v in VerifyMode],
                   help="checks of each input when it opens (full: SHA-256 and NaN/inf of every file)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing map at --out (never an input)")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_map_merge)
    return p


def cmd_map_merge(a: argparse.Namespace) -> int:
    """Run ``fol-vpr map merge``; prints one line per input (old -> new ids) and the merged map."""
    index = IndexConfig.from_spec(a.index) if a.index is not None else None
    res = merge_maps(a.maps, a.out, index=index, verify=a.verify, overwrite=a.overwrite, progress=not a.quiet)
    print(res.summary())
    if a.id_map is not None:
        print(f"id map (input, old_id, new_id): {write_id_map(res, a.id_map)}")
    return 0
