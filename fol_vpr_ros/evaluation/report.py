"""Evaluation results and the report folder: summary.json, per_query.csv, report.md and plots."""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import io
import json
import logging
import math
import os
import resource
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError, FolVprError
from .figures import pct_text
from .metrics import TimingStats, first_correct_rank
from .plots import ExampleLegend, ExampleMatch, example_montage, plot_recall_curves

__all__ = [
    "EXAMPLES_PNG",
    "PER_QUERY_CSV",
    "RECALL_PNG",
    "REPORT_MD",
    "SUMMARY_JSON",
    "SYNTHETIC_BANNER",
    "TIMING_STAGES",
    "EvaluationResult",
    "ModelInfo",
    "PerQueryRow",
    "build_per_query_rows",
    "peak_memory_mb",
    "summary_dict",
    "write_report",
]

log = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
PER_QUERY_CSV = "per_query.csv"
REPORT_MD = "report.md"
RECALL_PNG = "recall_at_n.png"
EXAMPLES_PNG = "examples.png"
TIMING_STAGES = ("describe", "search", "rerank")
SYNTHETIC_BANNER = (
    "WARNING: the model used synthetic (random) weights, so these results are meaningless for "
    "accuracy; only the pipeline and the timings are exercised."
)
PER_QUERY_COLUMNS = (
    "query",
    "num_positives",
    "global_top5",
    "rerank_top5",
    "first_correct_global",
    "first_correct_rerank",
    "rerank_top1_score",
)


@dataclass(frozen=True)
class ModelInfo:
    """Which model produced the descriptors."""

    arch: str
    weights: str  # checkpoint path or "random:SEED"
    synthetic: bool
    input_size: tuple[int, int] | None = None


@dataclass(frozen=True)
class EvaluationResult:
    """Everything summary.json and report.md say about one evaluation run."""

    dataset: str
    num_queries: int
    num_database: int
    recall_global: Mapping[int, float]
    recall_rerank: Mapping[int, float] | None  # None when re-ranking is off
    timing_ms: Mapping[str, TimingStats]  # stage (describe, search, rerank) -> per-call stats
    model: ModelInfo
    peak_rss_mb: float
    cuda_peak_allocated_mb: float | None = None
    queries_without_positives: int = 0
    config: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PerQueryRow:
    """One line of per_query.csv; ranks are 1-based, -1 when no positive is among the predictions."""

    query: str
    num_positives: int
    global_top: tuple[str, ...]
    first_correct_global: int
    rerank_top: tuple[str, ...] | None = None
    first_correct_rerank: int | None = None
    rerank_top1_score: float | None = None


def peak_memory_mb() -> tuple[float, float | None]:
    """(peak RSS of this process in MB, peak CUDA memory allocated by torch in MB or None)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_mb = rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere
    cuda_mb = None
    torch = sys.modules.get("torch")  # only if the pipeline loaded it
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda_mb = torch.cuda.max_memory_allocated() / (1024 * 1024)
    return float(rss_mb), cuda_mb


def build_per_query_rows(
    query_names: Sequence[str],
    database_names: Sequence[str],
    positives: Sequence[np.ndarray],
    global_predictions: np.ndarray,
    rerank_predictions: np.ndarray | None = None,
    rerank_scores: np.ndarray | None = None,
    top: int = 5,
) -> list[PerQueryRow]:
    """Per-query rows from [Q, K] database-index predictions (re-ranked ones and their scores optional)."""
    gpred = np.asarray(global_predictions)
    if len(query_names) != gpred.shape[0]:
        raise ConfigError(f"{len(query_names)} query names but {gpred.shape[0]} prediction rows")
    g_rank = first_correct_rank(gpred, positives)
    r_rank = None
    rpred = None
    if rerank_predictions is not None:
        rpred = np.asarray(rerank_predictions)
        r_rank = first_correct_rank(rpred, positives)
    scores = None if rerank_scores is None else np.asarray(rerank_scores, dtype=np.float64)

    def names(row: np.ndarray) -> tuple[str, ...]:
        return tuple(database_names[int(i)] for i in row[:top] if 0 <= int(i) < len(database_names))

    rows = []
    for q, name in enumerate(query_names):
        top1 = None
        if scores is not None and scores.ndim >= 1 and scores.shape[0] > q:
            s = np.atleast_1d(scores[q])
            top1 = float(s[0]) if s.size else None
        rows.append(
            PerQueryRow(
                query=name,
                num_positives=len(positives[q]),
                global_top=names(gpred[q]),
                first_correct_global=int(g_rank[q]),
                rerank_top=None if rpred is None else names(rpred[q]),
                first_correct_rerank=None if r_rank is None else int(r_rank[q]),
                rerank_top1_score=top1,
            )
        )
    return rows


def _jsonable(obj: object) -> object:
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=str)
    return str(obj)


def _finite(x: float | None, digits: int = 4) -> float | None:
    if x is None or not math.isfinite(float(x)):
        return None
    return round(float(x), digits)


def _recall_json(rec: Mapping[int, float] | None) -> dict[str, float | None] | None:
    if rec is None:
        return None
    return {str(int(n)): _finite(v) for n, v in sorted(rec.items(), key=lambda kv: int(kv[0]))}


def summary_dict(result: EvaluationResult) -> dict[str, object]:
    """The summary.json content (contract keys: recall_global, recall_rerank, timing_ms)."""
    return {
        "dataset": result.dataset,
        "num_queries": result.num_queries,
        "num_database": result.num_database,
        "queries_without_positives": result.queries_without_positives,
        "recall_global": _recall_json(result.recall_global),
        "recall_rerank": _recall_json(result.recall_rerank),
        "timing_ms": {stage: t.to_dict() for stage, t in result.timing_ms.items()},
        "memory_mb": {
            "peak_rss": _finite(result.peak_rss_mb, 1),
            "cuda_peak_allocated": _finite(result.cuda_peak_allocated_mb, 1),
        },
        "model": dataclasses.asdict(result.model),
        "synthetic_weights": result.model.synthetic,
        "warning": SYNTHETIC_BANNER if result.model.synthetic else None,
        "config": dict(result.config),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _per_query_csv(rows: Sequence[PerQueryRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(PER_QUERY_COLUMNS)
    for r in rows:
        w.writerow([
            r.query,
            r.num_positives,
            " ".join(r.global_top),
            "" if r.rerank_top is None else " ".join(r.rerank_top),
            r.first_correct_global,
            "" if r.first_correct_rerank is None else r.first_correct_rerank,
            "" if r.rerank_top1_score is None else f"{r.rerank_top1_score:.6g}",
        ])
    return buf.getvalue()


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _markdown(result: EvaluationResult, files: Mapping[str, str], notes: Sequence[str]) -> str:
    m = result.model
    lines = [f"# FoL VPR evaluation: {result.dataset}", ""]
    if m.synthetic:
        lines += [f"> **{SYNTHETIC_BANNER}**", ""]
    cuda = result.cuda_peak_allocated_mb
    lines += [
        "| | |",
        "|---|---|",
        f"| dataset | {result.dataset} |",
        f"| queries | {result.num_queries} ({result.queries_without_positives} without positives, "
        "counted as misses) |",
        f"| database (map) images | {result.num_database} |",
        f"| model | {m.arch}, weights `{m.weights}`" + (f", input {m.input_size[0]} x {m.input_size[1]}"
                                                       if m.input_size else "") + " |",
        f"| peak memory | RSS {_fmt(result.peak_rss_mb, 0)} MB"
        + (f", CUDA allocated {_fmt(cuda, 0)} MB" if cuda is not None else "") + " |",
        "",
        "## Recall@N (%)",
        "",
    ]
    rerank = result.recall_rerank
    ns = sorted({int(n) for n in result.recall_global} | {int(n) for n in (rerank or {})})
    lines += ["| N | global | re-ranked |", "|---:|---:|---:|"]
    for n in ns:
        r = "off" if rerank is None else pct_text(rerank.get(n))
        lines.append(f"| {n} | {pct_text(result.recall_global.get(n))} | {r} |")
    lines += ["", "## Timing (ms per call)", "", "| stage | mean | median | p95 | calls |",
              "|---|---:|---:|---:|---:|"]
    for stage, t in result.timing_ms.items():
        lines.append(f"| {stage} | {_fmt(t.mean)} | {_fmt(t.median)} | {_fmt(t.p95)} | {t.count} |")
    lines += ["", "## Files", ""]
    if RECALL_PNG in files:
        lines += [f"![recall@N]({RECALL_PNG})", ""]
    if EXAMPLES_PNG in files:
        counted = (", which the re-rank score counts" if result.recall_rerank is not None
                   else " (re-ranking off: ranked by global similarity)")
        lines += ["Examples: each query (left) with its top map matches (right); green frame = a ground-truth "
                  "positive, red = not; yellow tint = the query's FoL-selected regions; lines = mutual "
                  f"nearest-neighbour local matches{counted}.", "", f"![examples]({EXAMPLES_PNG})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [f"- [{PER_QUERY_CSV}]({PER_QUERY_CSV}): per-query predictions and ranks",
              f"- [{SUMMARY_JSON}]({SUMMARY_JSON}): machine-readable summary", ""]
    if result.config:
        lines += ["## Configuration", "", "```json",
                  json.dumps(dict(result.config), indent=2, default=_jsonable, sort_keys=True), "```", ""]
    return "\n".join(lines)


def write_report(
    result: EvaluationResult,
    per_query_rows: Sequence[PerQueryRow],
    out_dir: str | os.PathLike,
    examples: Sequence[ExampleMatch] | None = None,
) -> Path:
    """Write the report folder and return its summary.json path.

    Every file is written under a temporary name and renamed; summary.json comes last, so its
    presence means the report is complete. A failure drawing the examples is logged and noted.
    """
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolVprError(f"{out}: cannot create report folder: {exc}") from None
    files: dict[str, str] = {}
    synthetic = result.model.synthetic
    plot_recall_curves(result.recall_global, result.recall_rerank, out / RECALL_PNG,
                       title=f"{result.dataset}: recall@N", synthetic=synthetic)
    files[RECALL_PNG] = "recall@N curves"
    notes: list[str] = []
    if examples:
        try:
            legend = ExampleLegend(score_name="re-rank score" if result.recall_rerank is not None else None)
            example_montage(examples, out / EXAMPLES_PNG, legend=legend, synthetic=synthetic)
            files[EXAMPLES_PNG] = "example queries with candidates and matches"
        except FolVprError as exc:
            notes.append(f"examples not drawn: {exc}")
            log.warning(notes[-1])
    atomic_write_text(out / PER_QUERY_CSV, _per_query_csv(per_query_rows))
    files[PER_QUERY_CSV] = "per-query predictions"
    atomic_write_text(out / REPORT_MD, _markdown(result, files, notes))
    files[REPORT_MD] = "human-readable report"
    summary = summary_dict(result)
    summary["files"] = sorted([*files, SUMMARY_JSON])
    summary["notes"] = notes  # as evaluate-bag's summary.json: a list, empty when there is nothing to say
    text = json.dumps(summary, indent=2, default=_jsonable, allow_nan=False) + "\n"
    return atomic_write_text(out / SUMMARY_JSON, text)
