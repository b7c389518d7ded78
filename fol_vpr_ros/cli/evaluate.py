"""`fol-vpr evaluate`: argument parser and command (Recall@N of query images against a map, a report)."""

from __future__ import annotations

import argparse
from typing import Any

from ..console import percent
from ..evaluation.ground_truth import GROUND_TRUTH_FORMATS
from ..evaluation.metrics import DEFAULT_NS
from ..jobs.evaluate import NODE_RERANK_K, EvaluateConfig, evaluate
from ..mapping.verify import VerifyMode
from .common import add_model_arguments, add_quiet_argument, add_subcommand, model_arch_and_size, synthetic_banner

__all__ = ["add_evaluate_parser", "cmd_evaluate", "recall_table"]


def add_evaluate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``evaluate`` to ``subparsers``; returns its parser."""
    d = EvaluateConfig()
    p = add_subcommand(subparsers, "evaluate", help="Recall@N of query images against a map, with a report")
    add_model_arguments(p, resize_default="the map's")
    p.add_argument("--map", required=True, help="map directory (fol-vpr build-map)")
    p.add_argument("--queries", required=True, help="query image folder")
    p.add_argument("--ground-truth", required=True,
                   help=f"a CSV ({GROUND_TRUTH_FORMATS}) or 'utm' (positives within --radius of the "
                        "'@easting@northing@' of the file names)")
    p.add_argument("--top-k", type=int, default=d.top_k, help="retrieved candidates (default: min(100, map size))")
    p.add_argument("--rerank-k", type=int, default=d.rerank_k,
                   help=f"re-ranked candidates; 0 = off (default: {NODE_RERANK_K}, the node's rerank_k, "
                        "at most --top-k)")
    p.add_argument("--threshold", type=float, default=d.threshold, help="mutual-match similarity threshold")
    p.add_argument("--recall-values", type=int, nargs="+", default=d.recall_values,
                   help=f"N of Recall@N; each must be <= map size (default: {' '.join(map(str, DEFAULT_NS))}, "
                        "those up to the map size)")
    p.add_argument("--radius", type=float, default=d.utm_radius_m, help="UTM positive radius in metres")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per forward pass")
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--verify", default=VerifyMode.parse(d.verify).value, choices=[m.value for m in VerifyMode],
                   help="map checks at open: full (SHA-256 + NaN/inf), size, off")
    add_quiet_argument(p)
    p.set_defaults(func=cmd_evaluate)
    return p


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Run ``fol-vpr evaluate``; prints recalls and timings."""
    cfg = EvaluateConfig(top_k=a.top_k, rerank_k=a.rerank_k, threshold=a.threshold,
                         recall_values=tuple(a.recall_values) if a.recall_values else None,
                         utm_radius_m=a.radius, batch_size=a.batch_size,
                         verify=a.verify)
    arch, size = model_arch_and_size(a)
    res = evaluate(a.map, a.queries, a.ground_truth, a.weights, a.out, arch, size, a.device, cfg,
                   progress=not a.quiet, backend=a.backend, precision=a.precision)
    print(recall_table(res.recall_global, res.recall_rerank))
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
        print(synthetic_banner("these recalls come from a random model and are meaningless for accuracy."))
    return 0


def recall_table(recall_global: dict[int, float], recall_rerank: dict[int, float] | None) -> str:
    """Recall@N (percent) before and after re-ranking, one column per N: ``global  62.5 %  80.0 %``."""
    ns = list(recall_global)
    rows = [("", [f"R@{n}" for n in ns]), ("global", [percent(recall_global[n]) for n in ns])]
    if recall_rerank is not None:
        rows.append(("rerank", [percent(recall_rerank.get(n)) for n in ns]))
    return "\n".join(f"{name:8s}" + "".join(f"{cell:>10s}" for cell in cells) for name, cells in rows)
