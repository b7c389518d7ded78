"""The report folder of `evaluate-bag`: summary.json, report.md, per_frame.csv and plots.

Plots (matplotlib Agg, object API): ``trajectory.png`` (ground-truth x/y or UTM, frames coloured by
outcome: correct / wrong / no match), ``pr_curve.png`` (one curve per distance threshold),
``latency.png`` (per-frame total latency and mean per stage) and ``examples.png`` (queries with their
top candidates; images are read back from the bags by stamp: the query bag, and for maps built
from bags the bag named in each keyframe's ``source`` ``<bag>#<topic>@<stamp_ns>``; maps built from
image folders use the files. Candidates whose image cannot be found are left out, and an example
without any is dropped). summary.json is written last: its presence means the report is complete.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path, atomic_write_text
from ..errors import FolVprError
from ..node.runners import RunnerStatus
from .bag_examples import ExampleSpec, ImageRef
from .bag_results import BagEvalResult
from .frame_rows import FrameEval, Outcome
from .plots import ExampleMatch, example_montage
from .report import SYNTHETIC_BANNER

__all__ = [
    "EXAMPLES_PNG",
    "LATENCY_PNG",
    "PER_FRAME_CSV",
    "PR_PNG",
    "TRAJECTORY_PNG",
    "bag_summary_dict",
    "plot_latency",
    "plot_pr_curves",
    "plot_trajectory",
    "write_bag_report",
]

log = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
REPORT_MD = "report.md"
PER_FRAME_CSV = "per_frame.csv"
TRAJECTORY_PNG = "trajectory.png"
PR_PNG = "pr_curve.png"
LATENCY_PNG = "latency.png"
EXAMPLES_PNG = "examples.png"
EXAMPLE_IMAGES = "example_images"
OUTCOME_COLORS = {Outcome.CORRECT: "#2ca02c", Outcome.WRONG: "#d62728", Outcome.NO_MATCH: "#9a9a9a"}


def _r(x: float | None, digits: int = 4) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), digits)


def _key(t: float) -> str:
    return f"{t:g}"


def bag_summary_dict(result: BagEvalResult) -> dict[str, object]:
    """The summary.json content (recall in percent, PR values as fractions, latency in ms)."""
    f = result.frames
    return {
        "mode": result.mode,
        "bag": str(result.bag),
        "image_topic": result.image_topic,
        "map": str(result.map_path) if result.map_path else None,
        "runner": result.runner,
        "ground_truth": result.ground_truth,
        "gt_frame": result.gt_frame,
        "thresholds_m": list(result.thresholds_m),
        "heading_limit_deg": result.heading_limit_deg,
        "recall_pct": {_key(t): {str(n): _r(v) for n, v in sorted(rec.items())} for t, rec in result.recall.items()}
        or None,
        "queries_without_positives": {_key(t): n for t, n in result.queries_without_positives.items()} or None,
        "score": result.score_kind,
        "pr_auc": {_key(t): _r(c.auc) for t, c in result.pr.items()},
        "recall_at_100_precision_pct": {_key(t): _r(100.0 * c.recall_at_full_precision) for t, c in result.pr.items()},
        "pr": {_key(t): c.to_dict() for t, c in result.pr.items()},
        "accepted": {_key(t): {k: (_r(v) if isinstance(v, float) else v) for k, v in a.items()}
                     for t, a in result.accepted.items()},
        "latency_ms": {stage: s.to_dict() for stage, s in result.latency_ms.items()},
        "frames_processed": f.processed,
        "frames_dropped": f.dropped,
        "frames_skipped": f.skipped_by_gate + sum(f.skipped_by_source.values()),
        "frames": f.to_dict(),
        "realtime": result.realtime.to_dict(),
        "map_size": result.map_size,
        "model": {"weights": result.weights, "input_size": list(result.input_size), "synthetic": result.synthetic},
        "synthetic_weights": result.synthetic,
        "warning": SYNTHETIC_BANNER if result.synthetic else None,
        "notes": list(result.notes),
        "results_bag": ({"path": str(result.results_bag), "messages": dict(result.results_counts)}
                        if result.results_bag else None),
        "config": dict(result.config),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------------------- plots
def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def plot_trajectory(result: BagEvalResult, path: Path) -> Path:
    """Ground-truth positions coloured by outcome at the primary threshold; accepted matches as lines."""
    fig = _figure((7.0, 6.0))
    ax = fig.add_subplot(1, 1, 1)
    rows = [r for r in result.per_frame if r.position is not None]
    pts = np.array([r.position for r in rows], np.float64).reshape(-1, 3)
    origin = np.zeros(3)
    if result.gt_frame == "utm" and len(pts):
        origin = np.floor(np.nanmin(pts, axis=0) / 100.0) * 100.0
    if result.map_positions is not None:
        m = result.map_positions[np.all(np.isfinite(result.map_positions), axis=1)] - origin
        ax.plot(m[:, 0], m[:, 1], "-", color="#c8c8c8", linewidth=1.0, zorder=1)
        ax.scatter(m[:, 0], m[:, 1], s=6, color="#7f7f7f", label=f"map keyframes ({len(m)})", zorder=2)
    elif len(pts):
        ax.plot(pts[:, 0] - origin[0], pts[:, 1] - origin[1], "-", color="#c8c8c8", linewidth=1.0, zorder=1,
                label="trajectory")
    t = result.thresholds_m[-1]
    for r in rows:
        if r.accepted and r.best_position is not None:
            color = OUTCOME_COLORS[Outcome.CORRECT if r.outcome == Outcome.CORRECT else Outcome.WRONG]
            ax.plot([r.position[0] - origin[0], r.best_position[0] - origin[0]],
                    [r.position[1] - origin[1], r.best_position[1] - origin[1]], "-", color=color, alpha=0.5,
                    linewidth=0.8, zorder=3)
    for outcome, color in OUTCOME_COLORS.items():
        sel = np.array([r.outcome == outcome for r in rows], bool)
        if sel.any():
            label = {Outcome.NO_MATCH: "no match"}.get(outcome, outcome.value)
            ax.scatter(pts[sel, 0] - origin[0], pts[sel, 1] - origin[1], s=14, color=color, zorder=4,
                       label=f"{label} ({int(sel.sum())})")
    if result.gt_frame == "utm":
        ax.set_xlabel(f"easting - {origin[0]:.0f} (m)")
        ax.set_ylabel(f"northing - {origin[1]:.0f} (m)")
    else:
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
    what = "localization" if result.mode == "localize" else "loop closure"
    ax.set_title(f"{what}: outcome of accepted matches at {t:g} m")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save(fig, path)


def plot_pr_curves(result: BagEvalResult, path: Path) -> Path:
    """Precision against recall over the acceptance score, one curve per distance threshold."""
    fig = _figure((6.4, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    for t, c in result.pr.items():
        if not c.recall or not math.isfinite(c.auc):
            continue
        r = [0.0, *c.recall]
        p = [c.precision[0], *c.precision]
        line = ax.step(r, p, where="pre", linewidth=1.8, label=f"{t:g} m: AUC {c.auc:.3f}, "
                       f"R@P100 {100 * c.recall_at_full_precision:.1f} %")[0]
        ax.plot([c.recall_at_full_precision], [1.0], "o", color=line.get_color(), markersize=5)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(0.0, 1.05)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall over the {result.score_kind.replace('_', ' ')}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    else:
        ax.text(0.5, 0.5, "no positives", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_latency(result: BagEvalResult, path: Path) -> Path:
    """Histogram of per-frame total latency (camera period marked) and mean latency per stage."""
    fig = _figure((9.0, 3.8))
    ax = fig.add_subplot(1, 2, 1)
    totals = np.array([r.total_ms for r in result.per_frame
                       if r.total_ms is not None and r.status == RunnerStatus.PROCESSED])
    if len(totals):
        ax.hist(totals, bins=min(40, max(5, len(totals) // 3)), color="#1f77b4", alpha=0.85)
        tot = result.latency_ms["total"]
        ax.axvline(tot.mean, color="k", linestyle="-", linewidth=1, label=f"mean {tot.mean:.0f} ms")
        ax.axvline(tot.p95, color="k", linestyle="--", linewidth=1, label=f"p95 {tot.p95:.0f} ms")
    rate = result.realtime.camera_rate_hz
    if math.isfinite(rate) and rate > 0:
        ax.axvline(1e3 / rate, color="#d62728", linewidth=1.5, label=f"camera period {1e3 / rate:.0f} ms")
    ax.set_xlabel("total latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax2 = fig.add_subplot(1, 2, 2)
    stages = [s for s in ("decode", "describe", "search", "rerank") if result.latency_ms[s].count]
    means = [result.latency_ms[s].mean for s in stages]
    p95 = [result.latency_ms[s].p95 for s in stages]
    x = np.arange(len(stages))
    ax2.bar(x - 0.2, means, 0.4, label="mean")
    ax2.bar(x + 0.2, p95, 0.4, label="p95")
    ax2.set_xticks(x)
    ax2.set_xticklabels(stages)
    ax2.set_ylabel("ms")
    ax2.set_title("per stage")
    ax2.legend(fontsize=8)
    ax2.grid(True, axis="y", alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- examples
def _fetch_images(refs: Sequence[ImageRef], folder: Path) -> dict[ImageRef, Path]:
    """Write the referenced images as PNGs into ``folder``; refs that cannot be read are left out."""
    from PIL import Image

    from ..sources.bag import BagImageSource

    out: dict[ImageRef, Path] = {}
    by_bag: dict[tuple[Path, str], set[int]] = {}
    for ref in refs:
        if ref.file is not None:
            if ref.file.is_file():
                out[ref] = ref.file
        elif ref.bag is not None and ref.topic is not None and ref.stamp_ns is not None:
            by_bag.setdefault((ref.bag, ref.topic), set()).add(ref.stamp_ns)
    folder.mkdir(parents=True, exist_ok=True)
    for k, ((bag, topic), stamps) in enumerate(sorted(by_bag.items(), key=lambda kv: str(kv[0]))):
        try:
            src = BagImageSource(bag, topic)
            scan = src.scan()
            wanted = [r.index for r in scan.records if r.stamp_ns in stamps]
            for im in src.images(wanted):
                p = folder / f"bag{k}_{im.stamp_ns}.png"
                with atomic_path(p) as tmp:
                    Image.fromarray(im.rgb).save(tmp, format="PNG")
                out[ImageRef(bag=bag, topic=topic, stamp_ns=im.stamp_ns)] = p
        except FolVprError as exc:
            log.warning("example images from %s %s not available: %s", bag, topic, exc)
    return out


def _draw_examples(specs: Sequence[ExampleSpec], out: Path) -> tuple[Path | None, str | None]:
    refs = [s.query for s in specs] + [c for s in specs for c in s.candidates if c is not None]
    paths = _fetch_images(refs, out / EXAMPLE_IMAGES)
    examples = []
    for s in specs:
        q = paths.get(s.query)
        keep = [k for k, c in enumerate(s.candidates) if c is not None and c in paths]
        if q is None or not keep:
            continue
        examples.append(ExampleMatch(q, tuple(paths[s.candidates[k]] for k in keep), (1, 1), correct=s.correct,
                                     candidate_correct=tuple(s.candidate_correct[k] for k in keep),
                                     scores=tuple(s.scores[k] for k in keep), title=s.title))
    if not examples:
        return None, "examples not drawn: the images could not be read back"
    return example_montage(examples, out / EXAMPLES_PNG, height=120), None


# ---------------------------------------------------------------------------------------------- files
def _per_frame_csv(rows: Sequence[FrameEval]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "stamp_ns", "status", "outcome", "x", "y", "z", "best_id", "best_score", "accepted",
                "best_distance_m", "total_ms", "error"])
    for r in rows:
        p = r.position or ("", "", "")
        w.writerow([r.index, r.stamp_ns, r.status, r.outcome, *(f"{v:.3f}" if v != "" else "" for v in p),
                    "" if r.best_id is None else r.best_id, "" if r.best_score is None else f"{r.best_score:.6g}",
                    int(r.accepted), "" if r.best_distance_m is None else f"{r.best_distance_m:.3f}",
                    "" if r.total_ms is None else f"{r.total_ms:.2f}", r.error or ""])
    return buf.getvalue()


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or not math.isfinite(float(x)) else f"{float(x):.{digits}f}"


def _markdown(result: BagEvalResult, files: dict[str, str], notes: Sequence[str]) -> str:
    f, rt = result.frames, result.realtime
    what = "localization against a map" if result.mode == "localize" else "loop closure (the run against itself)"
    lines = [f"# FoL VPR bag evaluation: {what}", ""]
    if result.synthetic:
        lines += [f"> **{SYNTHETIC_BANNER}**", ""]
    lines += [
        "| | |", "|---|---|",
        f"| bag | `{result.bag}` ({result.image_topic}) |",
        f"| map | {'`' + str(result.map_path) + '` (' + str(result.map_size) + ' keyframes)' if result.map_path else '-'} |",  # noqa: E501
        f"| ground truth | {result.ground_truth} |",
        f"| thresholds | {', '.join(f'{t:g} m' for t in result.thresholds_m)}"
        + (f", heading within {result.heading_limit_deg:g} deg" if result.heading_limit_deg else "") + " |",
        f"| runner | {result.runner} |",
        f"| model | weights `{result.weights}`, input {result.input_size[0]} x {result.input_size[1]} |",
        "",
        "## Frames", "",
        "| on the topic | usable | processed | skipped (keyframe gate) | failed | dropped | no ground truth | scored |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {f.on_topic} | {f.usable} | {f.processed} | {f.skipped_by_gate} | {sum(f.failed.values())} | {f.dropped} "
        f"| {f.without_ground_truth} | {f.evaluated} |", "",
    ]
    if f.skipped_by_source:
        lines += ["Skipped by the bag reader:", ""] + [f"- {n} x {reason}" for reason, n in
                                                        sorted(f.skipped_by_source.items(), key=lambda kv: -kv[1])]
        lines.append("")
    if result.recall:
        ns = sorted({n for r in result.recall.values() for n in r})
        lines += ["## Recall@N (%)", "", "| threshold | " + " | ".join(f"R@{n}" for n in ns)
                  + " | queries without positives |", "|---:|" + "---:|" * (len(ns) + 1)]
        for t in result.thresholds_m:
            lines.append(f"| {t:g} m | " + " | ".join(_fmt(result.recall[t].get(n)) for n in ns)
                         + f" | {result.queries_without_positives.get(t, 0)} |")
        lines.append("")
    lines += [f"## Precision-recall over the {result.score_kind.replace('_', ' ')}", "",
              "| threshold | positives | PR AUC | recall at 100 % precision | node accepted | correct | precision |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for t in result.thresholds_m:
        c, a = result.pr[t], result.accepted.get(t, {})
        prec = a.get("precision")
        lines.append(f"| {t:g} m | {c.num_positives} | {_fmt(c.auc, 3)} | {_fmt(100 * c.recall_at_full_precision)} % "
                     f"| {a.get('accepted', 0)} | {a.get('correct', 0)} | "
                     f"{_fmt(100 * prec) + ' %' if prec is not None else '-'} |")
    lines += ["", "The curve sweeps a threshold over each query's best candidate (one frame at a time, no "
              "consistency check); *node accepted* are the node's own decisions with its thresholds"
              + (" and consistency check." if result.mode == "loop_closure" else "."), ""]
    lines += ["## Latency (ms per frame)", "", "| stage | mean | median | p95 | frames |", "|---|---:|---:|---:|---:|"]
    for stage, s in result.latency_ms.items():
        lines.append(f"| {stage} | {_fmt(s.mean)} | {_fmt(s.median)} | {_fmt(s.p95)} | {s.count} |")
    lines += ["", f"Bag duration {_fmt(rt.bag_duration_s)} s at {_fmt(rt.camera_rate_hz, 2)} Hz; node processing "
              f"{_fmt(rt.processing_s)} s: **{_fmt(rt.realtime_factor, 2)}x real time** "
              f"({rt.frames_over_budget} processed frames slower than the camera period; replay wall time "
              f"{_fmt(rt.wall_s)} s).", ""]
    for name, title in ((TRAJECTORY_PNG, "trajectory"), (PR_PNG, "precision-recall"), (LATENCY_PNG, "latency"),
                        (EXAMPLES_PNG, "examples")):
        if name in files:
            lines += [f"![{title}]({name})", ""]
    if result.results_bag:
        counts = ", ".join(f"{t} {n}" for t, n in sorted(result.results_counts.items()))
        lines += [f"Results bag: `{result.results_bag}` ({counts})", ""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += [f"- [{PER_FRAME_CSV}]({PER_FRAME_CSV}): per-frame outcome, best candidate, distance, latency",
              f"- [{SUMMARY_JSON}]({SUMMARY_JSON}): machine-readable summary", ""]
    return "\n".join(lines)


def write_bag_report(result: BagEvalResult, out: str | Path) -> tuple[Path, Path]:
    """Write the report folder; returns (summary.json, report.md). A failing plot is logged and noted."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolVprError(f"{out}: cannot create report folder: {exc}") from None
    files: dict[str, str] = {}
    notes = list(result.notes)
    for name, fn, what in ((TRAJECTORY_PNG, plot_trajectory, "trajectory"), (PR_PNG, plot_pr_curves, "PR curves"),
                           (LATENCY_PNG, plot_latency, "latency")):
        try:
            fn(result, out / name)
            files[name] = what
        except (FolVprError, ValueError) as exc:
            notes.append(f"{name} not drawn: {exc}")
            log.warning("%s not drawn: %s", name, exc)
    if result.examples:
        try:
            path, note = _draw_examples(result.examples, out)
        except (FolVprError, OSError, ValueError) as exc:
            path, note = None, f"examples not drawn: {exc}"
        if path is not None:
            files[EXAMPLES_PNG] = "example queries with their top candidates"
        if note:
            notes.append(note)
            log.warning(note)
    atomic_write_text(out / PER_FRAME_CSV, _per_frame_csv(result.per_frame))
    files[PER_FRAME_CSV] = "per-frame rows"
    report = atomic_write_text(out / REPORT_MD, _markdown(result, files, notes))
    summary = bag_summary_dict(result)
    summary["notes"] = notes
    summary["files"] = sorted([*files, REPORT_MD, SUMMARY_JSON])
    text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write_text(out / SUMMARY_JSON, text), report
