"""`fol-vpr bench WHAT`: argument parser and command (benchmarks that print and write a table).

Options left out keep each benchmark function's own defaults (``fol_vpr_ros.bench``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from ..precision import Precision
from .common import DEFAULT_DATA_ROOT, add_quiet_argument, add_subcommand, archs_and_size

__all__ = ["BENCHMARKS", "add_bench_parser", "cmd_bench"]

LOW_PRECISIONS = tuple(p.value for p in Precision if p not in (Precision.FP32, Precision.AUTO))


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments that were given (not None): the rest keep the benchmark's defaults."""
    return {k: v for k, v in kwargs.items() if v is not None}


def _first(values: list[str] | None) -> str | None:
    return values[0] if values else None


def _describe(a: argparse.Namespace) -> Any:
    from ..bench.describe_bench import bench_describe

    archs, size = archs_and_size(a.archs, a.resize)
    return bench_describe(**_given(archs=archs, size=size, batches=a.batches, devices=a.device, repeats=a.repeats),
                          out_dir=a.out)


def _rerank(a: argparse.Namespace) -> Any:
    from ..bench.rerank_bench import bench_rerank

    precisions = tuple(a.precisions) if a.precisions else None
    return bench_rerank(**_given(device=_first(a.device), repeats=a.repeats, precisions=precisions), out_dir=a.out)


def _precision(a: argparse.Namespace) -> Any:
    from ..bench.precision_bench import bench_precision

    archs, size = archs_and_size(a.archs, a.resize)
    return bench_precision(a.data, **_given(arch=_first(archs), size=size, precisions=a.precisions,
                                            device=_first(a.device), repeats=a.repeats), out_dir=a.out,
                           progress=not a.quiet)


def _map(a: argparse.Namespace) -> Any:
    from ..bench.map_bench import bench_map

    archs, size = archs_and_size(a.archs, a.resize)
    sizes = tuple(a.sizes) if a.sizes else None
    return bench_map(**_given(sizes=sizes, arch=_first(archs), input_size=size, repeats=a.repeats), out_dir=a.out)


def _train(a: argparse.Namespace) -> Any:
    from ..bench.train_bench import bench_train

    archs, size = archs_and_size(a.archs, a.resize)
    return bench_train(**_given(arch=_first(archs), size=size, device=_first(a.device)), out_dir=a.out)


def _export(a: argparse.Namespace) -> Any:
    from ..bench.export_bench import bench_export

    archs, size = archs_and_size(a.archs, a.resize)
    return bench_export(**_given(archs=archs, size=size, batches=a.batches, repeats=a.repeats), out_dir=a.out)


def _verify(a: argparse.Namespace) -> Any:
    from ..bench.verify_bench import bench_verify

    archs, size = archs_and_size(a.archs, a.resize)
    given = _given(arch=_first(archs), size=size, device=_first(a.device), depth=a.depth)
    return bench_verify(a.data, **given, out_dir=a.out, progress=not a.quiet)


def _summary(a: argparse.Namespace) -> Any:
    from ..bench.summary_bench import SummaryOptions, bench_summary

    archs, size = archs_and_size(a.archs, a.resize)
    opts = SummaryOptions(**_given(
        archs=archs, size=size, sizes=tuple(a.sizes) if a.sizes else None, devices=a.device, repeats=a.repeats,
        precisions=tuple(a.precisions) if a.precisions else None, regimes=tuple(a.regimes) if a.regimes else None,
        rerank_k=a.rerank_k, depth=a.depth), emulated=a.emulated, onnx=not a.no_onnx)
    return bench_summary(opts, out_dir=a.out)


BENCHMARKS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "describe": _describe, "rerank": _rerank, "precision": _precision, "map": _map, "train": _train,
    "export": _export, "summary": _summary, "verify": _verify,
}


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` to ``subparsers``; returns its parser."""
    p = add_subcommand(subparsers, "bench", help="benchmarks that print and write a table",
                       description="Benchmarks that print and write a table; options left out keep each "
                                   "benchmark's own defaults.")
    p.add_argument("what", choices=list(BENCHMARKS), help="which benchmark")
    p.add_argument("--precisions", nargs="+", default=None, choices=LOW_PRECISIONS,
                   help="`bench precision`: low precisions compared with fp32 (fp16 is emulated on most CPUs); "
                        "`bench rerank`: low-precision kernels (default: bf16); `bench summary`: low-precision "
                        "variants (default: bf16 fp16)")
    p.add_argument("--data", default=DEFAULT_DATA_ROOT, help="`bench precision` / `bench verify`: bundled data folder")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="map sizes in keyframes: `bench map` (default: 1000 10000 100000), `bench summary` "
                        "(default: 1000 10000)")
    p.add_argument("--device", action="append", help="repeatable (default: cpu, + cuda when present for describe)")
    p.add_argument("--archs", nargs="+", default=None,
                   help="architectures or presets (vitb14-322: arch and input size) (default: each benchmark's)")
    p.add_argument("--batches", nargs="+", type=int, default=None, help="batch sizes (default: each benchmark's)")
    p.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"), default=None,
                   help="model input size (default: each benchmark's)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default: each benchmark's)")
    p.add_argument("--rerank-k", type=int, default=None,
                   help="`bench summary`: candidates re-ranked per query (default: the node's rerank_k)")
    p.add_argument("--regimes", nargs="+", default=None, choices=("sparse", "dense"),
                   help="`bench summary`: re-rank data (default: sparse; see `bench rerank`)")
    p.add_argument("--emulated", action="store_true",
                   help="`bench summary`: also re-rank and query in precisions the CPU only emulates (slow)")
    p.add_argument("--no-onnx", action="store_true", help="`bench summary`: leave out the onnxruntime rows")
    p.add_argument("--depth", type=int, default=None,
                   help="`bench summary` / `bench verify`: fewer ViT blocks (quick runs; default: the architecture's)")
    p.add_argument("--out", default=None, help="folder for the table (.md + .json)")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(a: argparse.Namespace) -> int:
    """Run ``fol-vpr bench WHAT``; prints the table (and where it was written)."""
    table = BENCHMARKS[a.what](a)
    print(table.to_markdown())
    if a.out:
        print(f"written to {a.out}")
    return 0
