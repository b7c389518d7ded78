"""`fol-vpr map check`: argument parser and command (verify every file of a saved map)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_subcommand
from .map_merge import add_map_merge_parser

__all__ = ["add_map_parser", "cmd_map_check"]


def add_map_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``map`` (map maintenance: ``check``, ``merge``) to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "map", help="map maintenance: `map check MAP` verifies every file of a map, "
                       "`map merge A B --out C` merges maps of several robots or sessions")
    sub = p.add_subparsers(dest="map_command", required=True)
    c = add_subcommand(sub, "check", help="verify sizes, SHA-256, NaN/inf, offsets and records of a saved map")
    c.add_argument("map", help="map directory")
    c.set_defaults(func=cmd_map_check)
    add_map_merge_parser(sub)
    return p


def cmd_map_check(a: argparse.Namespace) -> int:
    """Run ``fol-vpr map check``; prints the summary (a damaged map raises MapError)."""
    from ..mapping.check import check_map

    print(check_map(a.map).summary())
    return 0
