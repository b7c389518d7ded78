"""The report folder of `evaluate-bag`: summary.json, report.md, per_frame.csv and figures.

Figures (``figures_bag``): ``trajectory.png`` (queries coloured by outcome, map keyframes on top),
``pr_curve.png`` (precision-recall per distance threshold, the node's threshold marked), ``latency.png``
(total latency per frame, p50/p95 per stage) and ``examples.png`` (queries with their top candidates;
images are read back into memory from the bags by stamp: the query bag, and for maps built from bags
the bag named in each keyframe's ``source`` ``<bag>#<topic>@<stamp_ns>``; maps built from image
folders use the files. Candidates whose image cannot be found are left out, and an example without
any is dropped). Figures made with synthetic weights carry a watermark. summary.json is written
last: its presence means the report is complete.
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

from ..atomic import atomic_write_text
from ..errors import FolVprError
from .bag_config import ScoreKind
from .bag_examples import ImageRef
from .bag_results import BagEvalResult
from .figures import auc_text, pct_text, save_figure
from .figures_bag import OUTCOME_COLORS, plot_latency, plot_pr_curves, plot_trajectory
from .frame_rows import FrameEval
from .plots import ExampleLegend, ExampleMatch, examples_figure
from .report import SYNTHETIC_BANNER

__all__ = [
    "EXAMPLES_PNG",
    "LATENCY_PNG",
    "OUTCOME_COLORS",
    "PER_FRAME_CSV",
    "PR_PNG",
    "TRAJECTORY_PNG",
    "bag_example_legend",
    "bag_example_matches",
    "bag_examples_figure",
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
_EXAMPLE_HEIGHT = 120  # pixels per example image (bag images are often small)


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
        "pr_verified": {_key(t): c.to_dict() for t, c in result.pr_verified.items()} or None,
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


# ---------------------------------------------------------------------------------------------- examples
def _fetch_images(refs: Sequence[ImageRef]) -> dict[ImageRef, np.ndarray]:
    """The referenced images (RGB arrays, read back from bags or files); refs that cannot be read are left out."""
    from ..image_io import read_image
    from ..sources.bag import BagImageSource

    out: dict[ImageRef, np.ndarray] = {}
    by_bag: dict[tuple[Path, str], set[int]] = {}
    for ref in refs:
        if ref.file is not None:
            if ref.file.is_file():
                out[ref] = read_image(ref.file)
        elif ref.bag is not None and ref.topic is not None and ref.stamp_ns is not None:
            by_bag.setdefault((ref.bag, ref.topic), set()).add(ref.stamp_ns)
    for (bag, topic), stamps in sorted(by_bag.items(), key=lambda kv: str(kv[0])):
        try:
            src = BagImageSource(bag, topic)
            wanted = [r.index for r in src.scan().records if r.stamp_ns in stamps]
            for im in src.images(wanted):
                out[ImageRef(bag=bag, topic=topic, stamp_ns=im.stamp_ns)] = im.rgb
        except FolVprError as exc:
            log.warning("example images from %s %s not available: %s", bag, topic, exc)
    return out


def bag_example_matches(result: BagEvalResult) -> list[ExampleMatch]:
    """The result's example specs with their images (in memory); examples without a readable candidate dropped."""
    specs = result.examples
    name = "(keyframe {})" if result.mode == "localize" else "{}"  # after 'map match' / 'earlier keyframe'
    images = _fetch_images([s.query for s in specs] + [c for s in specs for c in s.candidates if c is not None])
    examples = []
    for s in specs:
        q = images.get(s.query)
        keep = [k for k, c in enumerate(s.candidates) if c is not None and c in images]
        if q is None or not keep:
            continue
        examples.append(ExampleMatch(
            q, tuple(images[s.candidates[k]] for k in keep), (1, 1), correct=s.correct,
            candidate_correct=tuple(s.candidate_correct[k] for k in keep), scores=tuple(s.scores[k] for k in keep),
            title=s.title, candidate_distances_m=tuple(s.distances_m[k] for k in keep) if s.distances_m else (),
            candidate_names=tuple(name.format(s.keyframe_ids[k]) for k in keep) if s.keyframe_ids else ()))
    return examples


def bag_example_legend(result: BagEvalResult) -> ExampleLegend:
    """What the bag example sheet's scores, candidates and colours mean."""
    rerank = result.score_kind == ScoreKind.RERANK
    return ExampleLegend(
        score_name="re-rank score" if rerank else "global similarity",
        score_meaning=("the number of mutual nearest-neighbour local matches" if rerank
                       else "cosine similarity of the global descriptors (re-ranking off)"),
        match_label="map match" if result.mode == "localize" else "earlier keyframe",
        correct_means=f"within {result.thresholds_m[-1]:g} m of the query",
        negative_score="not re-ranked" if rerank else None,
        negative_meaning="beyond the node's re-ranking depth (rerank_k, lowered by latency_budget_ms)")


def bag_examples_figure(result: BagEvalResult):
    """The example sheet of a bag evaluation (FolVprError when no example image can be read back)."""
    examples = bag_example_matches(result)
    if not examples:
        raise FolVprError("the example images could not be read back")
    return examples_figure(examples, bag_example_legend(result), height=_EXAMPLE_HEIGHT)


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


def _verification_table(result: BagEvalResult) -> list[str]:
    """Markdown: AP and recall at 100 % precision without and with geometric verification."""
    if not result.pr_verified:
        return []
    lines = ["## Geometric verification", "",
             "| threshold | AP without | AP with | R@P100 without | R@P100 with | best candidates rejected |",
             "|---:|---:|---:|---:|---:|---:|"]
    for t in result.thresholds_m:
        a, b = result.pr.get(t), result.pr_verified.get(t)
        if a is None or b is None:
            continue
        lines.append(f"| {t:g} m | {auc_text(a.auc)} | {auc_text(b.auc)} | "
                     f"{pct_text(a.recall_at_full_precision, fraction=True)} % | "
                     f"{pct_text(b.recall_at_full_precision, fraction=True)} % | "
                     f"{a.num_predictions - b.num_predictions} |")
    note = ("*With*: a best candidate whose two-view fit fails the inlier test (parameters `verification.*`) is "
            "not predicted; candidates are never reordered, so *without* is the curve of the same run with the "
            "test off.")
    return [*lines, "", note, ""]


def _figure_captions(result: BagEvalResult) -> tuple[tuple[str, str, str], ...]:
    """(file, title, one-line caption) of each figure, in report order."""
    t = result.thresholds_m[-1]
    lines = ("black + = map keyframes; lines join accepted matches to the matched map keyframe"
             if result.mode == "localize" else "lines join accepted loop closures to the matched earlier keyframe")
    return (
        (TRAJECTORY_PNG, "trajectory", f"*Trajectory:* each query at its ground-truth position, coloured by outcome "
         f"at {t:g} m (hollow: not processed); {lines}."),
        (PR_PNG, "precision-recall", f"*Precision-recall:* a threshold swept over each query's best "
         f"{result.score_kind.replace('_', ' ')}; the star is the node's own threshold; AP = average precision (the "
         "area under the step curve)."),
        (LATENCY_PNG, "latency", "*Latency:* total per frame against the camera period, and p50 / p95 per stage "
         "(log scale)."),
        (EXAMPLES_PNG, "examples", "*Examples:* each query (left) with its top candidates (right), framed green "
         f"when within {t:g} m."),
    )


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
            lines.append(f"| {t:g} m | " + " | ".join(pct_text(result.recall[t].get(n)) for n in ns)
                         + f" | {result.queries_without_positives.get(t, 0)} |")
        lines.append("")
    lines += [f"## Precision-recall over the {result.score_kind.replace('_', ' ')}", "",
              "| threshold | positives | AP | recall at 100 % precision | node accepted | correct | precision |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for t in result.thresholds_m:
        c, a = result.pr[t], result.accepted.get(t, {})
        prec = a.get("precision")
        lines.append(f"| {t:g} m | {c.num_positives} | {auc_text(c.auc)} | "
                     f"{pct_text(c.recall_at_full_precision, fraction=True)} % | {a.get('accepted', 0)} | "
                     f"{a.get('correct', 0)} | {pct_text(prec, fraction=True) + ' %' if prec is not None else '-'} |")
    lines += ["", "The curve sweeps a threshold over each query's best candidate (one frame at a time, no "
              "consistency check); *node accepted* are the node's own decisions with its thresholds"
              + (" and consistency check." if result.mode == "loop_closure" else "."), ""]
    lines += _verification_table(result)
    lines += ["## Latency (ms per frame)", "", "| stage | mean | median | p95 | frames |", "|---|---:|---:|---:|---:|"]
    for stage, s in result.latency_ms.items():
        lines.append(f"| {stage} | {_fmt(s.mean)} | {_fmt(s.median)} | {_fmt(s.p95)} | {s.count} |")
    lines += ["", f"Bag duration {_fmt(rt.bag_duration_s)} s at {_fmt(rt.camera_rate_hz, 2)} Hz; node processing "
              f"{_fmt(rt.processing_s)} s: **{_fmt(rt.realtime_factor, 2)}x real time** "
              f"({rt.frames_over_budget} processed frames slower than the camera period; replay wall time "
              f"{_fmt(rt.wall_s)} s).", ""]
    for name, title, caption in _figure_captions(result):
        if name in files:
            lines += [f"![{title}]({name})", "", caption, ""]
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
            save_figure(bag_examples_figure(result), out / EXAMPLES_PNG, result.synthetic)
            files[EXAMPLES_PNG] = "example queries with their top candidates"
        except (FolVprError, OSError, ValueError) as exc:
            notes.append(f"examples not drawn: {exc}")
            log.warning(notes[-1])
    atomic_write_text(out / PER_FRAME_CSV, _per_frame_csv(result.per_frame))
    files[PER_FRAME_CSV] = "per-frame rows"
    report = atomic_write_text(out / REPORT_MD, _markdown(result, files, notes))
    summary = bag_summary_dict(result)
    summary["notes"] = notes
    summary["files"] = sorted([*files, REPORT_MD, SUMMARY_JSON])
    text = json.dumps(summary, indent=2, allow_nan=False, default=str) + "\n"
    return atomic_write_text(out / SUMMARY_JSON, text), report
