"""`fol-vpr data list|fetch`: the dataset catalog and its downloads (argument parsing only)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import add_quiet_argument, add_subcommand

__all__ = ["add_data_parser", "cmd_data"]


def add_data_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `fol-vpr data` with its `list` and `fetch` actions."""
    from ..datasets import CATALOG, default_data_dir

    p = add_subcommand(subparsers, "data", help="list the public datasets, fetch one (sha256 checked)")
    p.add_argument("action", choices=("list", "fetch"))
    p.add_argument("name", nargs="?", choices=sorted(CATALOG), help="dataset to fetch")
    p.add_argument("--root", default=str(default_data_dir()), help="folder that receives <dataset folder>/")
    p.add_argument("--mirror", default=None, help="base URL replacing the catalog's (a local copy, a mirror)")
    p.add_argument("--allow-unverified", action="store_true",
                   help="download files without a published checksum (their sha256 is printed)")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_data)
    return p


def _table() -> str:
    from ..datasets import CATALOG

    rows = ["| name | access | files | size | licence | source |", "|---|---|---|---|---|---|"]
    for d in CATALOG.values():
        n = len(d.remote_files())
        size = f"{d.approx_size_mb:g} MB" if d.approx_size_mb else "?"
        rows.append(f"| {d.name} | {d.access.value} | {n or '-'} | {size} | {d.licence} | {d.homepage} |")
    return "\n".join(rows)


def cmd_data(a: argparse.Namespace) -> int:
    """`data list` prints the catalog table; `data fetch NAME` downloads and verifies it."""
    from ..datasets import fetch_dataset

    if a.action == "list":
        print(_table())
        return 0
    if a.name is None:
        raise SystemExit("fol-vpr data fetch: give a dataset name (fol-vpr data list shows them)")
    res = fetch_dataset(a.name, a.root, mirror=a.mirror, allow_unverified=a.allow_unverified, progress=not a.quiet)
    print(f"{res.name}: {res.downloaded} files downloaded ({res.bytes / 1e6:.1f} MB), {res.present} already "
          f"present and verified -> {res.folder}")
    for path, sha in res.unverified.items():
        print(f"unverified {path}: sha256 {sha}")
    return 0
