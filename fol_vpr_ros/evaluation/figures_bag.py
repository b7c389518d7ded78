"""The figures of a bag evaluation: trajectory by outcome, precision-recall, latency per stage.

Each ``*_figure`` builds a matplotlib figure from a :class:`BagEvalResult`; ``plot_*`` saves it
(watermarked when the weights were synthetic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..node.runners import RunnerStatus
from .bag_config import ScoreKind
from .bag_results import BagEvalResult
from .figures import auc_text, new_figure, pct_text, save_figure
from .frame_rows import FrameEval, Outcome
from .loop_metrics import PrCurve

__all__ = ["OUTCOME_COLORS", "OperatingPoint", "latency_figure", "operating_point", "plot_latency", "plot_pr_curves",
           "plot_trajectory", "pr_figure", "trajectory_figure"]

OUTCOME_COLORS = {Outcome.CORRECT: "#2ca02c", Outcome.WRONG: "#d62728", Outcome.NO_MATCH: "#9a9a9a"}
# Frames the node did not score: hollow markers.
_UNSCORED = {Outcome.DROPPED: "#1f77b4", Outcome.SKIPPED: "#9467bd", Outcome.FAILED: "#000000"}
_OUTCOME_LABELS = {Outcome.CORRECT: "correct match", Outcome.WRONG: "wrong match",
                   Outcome.NO_MATCH: "no match accepted", Outcome.DROPPED: "dropped (not processed)",
                   Outcome.SKIPPED: "skipped by the keyframe gate",
                   Outcome.FAILED: "failed"}
_MIN_FILL = 0.5  # equal aspect only when the track fills at least this share of the axes' short side
_FIG_WIDTH_IN = 9.0
_AXES_HEIGHT_IN = (2.6, 6.0)  # the trajectory axes' height range
_LINE_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")
_MAX_MARKERS = 40  # curve points marked per PR curve
_STAGE_ORDER = ("decode", "describe", "search", "rerank", "verify", "total")
_PCT = 100.0


def _legend_below(ax, ncol: int) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=max(1, ncol), fontsize=8.5,
                  frameon=False)


# ---------------------------------------------------------------------------------------------- trajectory
def _origin(result: BagEvalResult, pts: np.ndarray) -> np.ndarray:
    """UTM positions are drawn relative to a round point below their minimum (readable tick labels)."""
    if result.gt_frame == "utm" and len(pts):
        return np.floor(np.nanmin(pts, axis=0) / 100.0) * 100.0
    return np.zeros(3)


def _extent(points: Sequence[np.ndarray]) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) of all points, each side padded by 6 % of its span (at least 2 % of the
    longer span, and 1 m)."""
    allp = np.concatenate([p[:, :2] for p in points if len(p)], axis=0)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    span = hi - lo
    pad = np.maximum(np.maximum(0.06 * span, 0.02 * float(span.max())), 1.0)
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1])


def _draw_outcomes(ax, rows: Sequence[FrameEval], pts: np.ndarray) -> None:
    """Queries by outcome: no match (small) under wrong under correct, so a revisit shows over its first pass."""
    for outcome in (Outcome.NO_MATCH, Outcome.WRONG, Outcome.CORRECT):
        sel = np.array([r.outcome == outcome for r in rows], bool)
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=24 if outcome == Outcome.NO_MATCH else 48,
                       color=OUTCOME_COLORS[outcome], edgecolors="white", linewidths=0.6, zorder=4,
                       label=f"query: {_OUTCOME_LABELS[outcome]} ({int(sel.sum())})")
    for outcome, color in _UNSCORED.items():
        sel = np.array([r.outcome == outcome for r in rows], bool)
        if sel.any():
            ax.scatter(pts[sel, 0], pts[sel, 1], s=48, facecolors="none", edgecolors=color, linewidths=1.4, zorder=4,
                       label=f"query: {_OUTCOME_LABELS[outcome]} ({int(sel.sum())})")


def _fit_aspect(fig, ax, ext: tuple[float, float, float, float], utm: bool) -> str | None:
    """Equal aspect when the track fills the axes well enough, else free aspect; returns the scale note."""
    xspan, yspan = ext[1] - ext[0], ext[3] - ext[2]
    pos = ax.get_position()
    w_in, h_in = pos.width * fig.get_size_inches()[0], pos.height * fig.get_size_inches()[1]
    data_ratio, box_ratio = yspan / xspan, h_in / w_in
    fill = min(data_ratio / box_ratio, box_ratio / data_ratio)
    if fill >= _MIN_FILL:  # widen the shorter side so that one metre is as long on both axes
        cx, cy = (ext[0] + ext[1]) / 2, (ext[2] + ext[3]) / 2
        if data_ratio < box_ratio:
            yspan = xspan * box_ratio
        else:
            xspan = yspan / box_ratio
        ax.set_xlim(cx - xspan / 2, cx + xspan / 2)
        ax.set_ylim(cy - yspan / 2, cy + yspan / 2)
        ax.set_aspect("equal", adjustable="box")
        return None
    stretch = box_ratio / data_ratio
    ns, ew = ("north-south", "east-west") if utm else ("y", "x")
    return (f"not to scale: {ns} stretched {stretch:.1f}x" if stretch > 1
            else f"not to scale: {ew} stretched {1 / stretch:.1f}x")


def trajectory_figure(result: BagEvalResult):
    """Query positions coloured by outcome at the primary threshold, map keyframes on top, accepted matches as
    lines; equal aspect when the track fills the axes, else stretched with a note saying so."""
    rows = [r for r in result.per_frame if r.position is not None]
    pts = np.array([r.position for r in rows], np.float64).reshape(-1, 3)
    origin = _origin(result, pts)
    pts = pts - origin
    m = None
    if result.map_positions is not None:
        m = result.map_positions[np.all(np.isfinite(result.map_positions), axis=1)] - origin
    drawn = [p for p in (pts, m) if p is not None and len(p)]
    ext = _extent(drawn) if drawn else (0.0, 1.0, 0.0, 1.0)
    ratio = (ext[3] - ext[2]) / (ext[1] - ext[0])
    axes_w = _FIG_WIDTH_IN - 1.4
    axes_h = min(max(axes_w * ratio, _AXES_HEIGHT_IN[0]), _AXES_HEIGHT_IN[1])
    fig = new_figure(_FIG_WIDTH_IN, axes_h + 2.4)
    ax = fig.add_subplot(1, 1, 1)
    if m is not None:
        ax.plot(m[:, 0], m[:, 1], "-", color="#c8c8c8", linewidth=1.0, zorder=1)
        ax.scatter(m[:, 0], m[:, 1], s=26, marker="+", color="black", linewidths=1.1, zorder=5,
                   label=f"map keyframe ({len(m)})")
    elif len(pts):
        ax.plot(pts[:, 0], pts[:, 1], "-", color="#c8c8c8", linewidth=1.0, zorder=1, label="trajectory")
    line_label = "accepted match: query -> matched " + ("keyframe" if m is not None else "earlier keyframe")
    for r in rows:
        if r.accepted and r.best_position is not None:
            color = OUTCOME_COLORS[Outcome.CORRECT if r.outcome == Outcome.CORRECT else Outcome.WRONG]
            b = np.asarray(r.best_position) - origin
            ax.plot([r.position[0] - origin[0], b[0]], [r.position[1] - origin[1], b[1]], "-", color=color,
                    alpha=0.55, linewidth=0.9, zorder=3, label=line_label)
            line_label = "_"
    _draw_outcomes(ax, rows, pts)
    if len(pts):
        ax.annotate("start", (pts[0, 0], pts[0, 1]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if result.gt_frame == "utm":
        ax.set_xlabel(f"easting - {origin[0]:.0f} (m)")
        ax.set_ylabel(f"northing - {origin[1]:.0f} (m)")
    else:
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
    what = "localization" if result.mode == "localize" else "loop closure"
    ax.set_title(f"{what}: outcome of each query at {result.thresholds_m[-1]:g} m")
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.grid(True, alpha=0.3)
    _legend_below(ax, 3)
    fig.tight_layout()
    note = _fit_aspect(fig, ax, ext, result.gt_frame == "utm")
    if note:
        ax.text(0.01, 0.98, note, transform=ax.transAxes, ha="left", va="top", fontsize=8.5, style="italic",
                bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
    return fig


def plot_trajectory(result: BagEvalResult, path: Path) -> Path:
    """PNG of :func:`trajectory_figure`."""
    return save_figure(trajectory_figure(result), path, result.synthetic)


# ---------------------------------------------------------------------------------------------- PR
@dataclass(frozen=True)
class OperatingPoint:
    """Where the node's own score threshold sits on a PR curve (``index`` None: it accepts nothing)."""

    parameter: str
    threshold: float
    index: int | None


def operating_point(result: BagEvalResult, curve: PrCurve) -> OperatingPoint | None:
    """The curve point of the node's threshold on the swept score (min_rerank_score or min_global_similarity)."""
    name = "min_rerank_score" if result.score_kind == ScoreKind.RERANK else "min_global_similarity"
    value = result.config.get(name)
    if not isinstance(value, (int, float)) or not curve.thresholds:
        return None
    above = [k for k, t in enumerate(curve.thresholds) if t >= float(value)]
    return OperatingPoint(name, float(value), above[-1] if above else None)


def _curve_groups(result: BagEvalResult) -> list[tuple[list[float], PrCurve]]:
    """Curves with positives, those identical over several thresholds merged: [(thresholds, curve)]."""
    groups: list[tuple[list[float], PrCurve]] = []
    for t in result.thresholds_m:
        c = result.pr.get(t)
        if c is None or not c.recall or not math.isfinite(c.auc):
            continue
        for ts, g in groups:
            if g.recall == c.recall and g.precision == c.precision:
                ts.append(t)
                break
        else:
            groups.append(([t], c))
    return groups


def _no_positives_text(result: BagEvalResult) -> str:
    ts = " / ".join(f"{t:g}" for t in result.thresholds_m)
    if result.mode == "localize":
        return f"no positives: no scored query has a map keyframe\nwithin {ts} m, so there is no curve"
    return f"no positives: no revisit of an earlier place\n(outside the exclusion window) within {ts} m"


def _score_name(result: BagEvalResult) -> str:
    return result.score_kind.value.replace("_", " ")


def _mark_operating_point(ax, result: BagEvalResult, c: PrCurve, color: str, which: str) -> None:
    """A star where the node's own threshold sits on the curve (at recall 0 when it accepts nothing)."""
    op = operating_point(result, c)
    if op is None:
        return
    if op.index is None:
        rr, pp = 0.0, _PCT
        label = f"node's {op.parameter} {op.threshold:g}{which}: above every score, accepts nothing"
    else:
        rr, pp = _PCT * c.recall[op.index], _PCT * c.precision[op.index]
        label = (f"node's {op.parameter} {op.threshold:g}{which}: precision {pct_text(pp)} %, "
                 f"recall {pct_text(rr)} %")
    ax.plot([rr], [pp], "*", color=color, markersize=15, markeredgecolor="black", label=label, zorder=10)


def _verified_curve(ax, result: BagEvalResult, groups: list) -> float:
    """The curve with geometric verification at the first plotted threshold (black, dotted); its max recall."""
    if not groups or not result.pr_verified:
        return 0.0
    t = groups[0][0][0]
    c = result.pr_verified.get(t)
    if c is None or not c.recall or not math.isfinite(c.auc):
        return 0.0
    r = [0.0, *(_PCT * v for v in c.recall)]
    p = [_PCT * c.precision[0], *(_PCT * v for v in c.precision)]
    ax.step(r, p, where="pre", linestyle=":", color="black", linewidth=2.2, zorder=20,
            label=f"{t:g} m with geometric verification: AP {auc_text(c.auc)}, recall at 100 % precision "
                  f"{pct_text(c.recall_at_full_precision, fraction=True)} %")
    return max(r)


def pr_figure(result: BagEvalResult):
    """Precision (%) against recall (%) over the acceptance score, one curve per distinct distance threshold
    (identical ones merged), axes fitted to the data, the node's threshold marked, the legend below."""
    fig = new_figure(7.6, 6.0)
    ax = fig.add_subplot(1, 1, 1)
    groups = _curve_groups(result)
    rmax, pmin, pmax = 0.0, _PCT, 0.0
    for g, (ts, c) in enumerate(groups):
        r = [0.0, *(_PCT * v for v in c.recall)]
        p = [_PCT * c.precision[0], *(_PCT * v for v in c.precision)]
        rmax, pmin, pmax = max(rmax, max(r)), min(pmin, min(p)), max(pmax, max(p))
        dists = " / ".join(f"{t:g}" for t in ts) + " m"
        which = dists + (" (identical)" if len(ts) > 1 else "")
        label = (f"{which}: AP {auc_text(c.auc)}, recall at 100 % precision "
                 f"{pct_text(c.recall_at_full_precision, fraction=True)} %")
        style = _LINE_STYLES[g % len(_LINE_STYLES)]
        line = ax.step(r, p, where="pre", linestyle=style, linewidth=2.0, label=label, zorder=3 + g)[0]
        every = max(1, len(c.recall) // _MAX_MARKERS)
        ax.plot(r[1::every], p[1::every], _MARKERS[g % len(_MARKERS)], color=line.get_color(), markersize=4.5,
                markerfacecolor="white", zorder=3 + g)
        _mark_operating_point(ax, result, c, line.get_color(), f" ({dists})" if len(groups) > 1 else "")
    rmax = max(rmax, _verified_curve(ax, result, groups))
    ax.set_xlabel("recall (%)")
    ax.set_ylabel("precision (%)")
    ax.set_title(f"precision-recall over the {_score_name(result)} (best candidate of each query)")
    ax.grid(True, alpha=0.3)
    if groups:
        xmax = min(_PCT, max(rmax * 1.1, rmax + 0.5))
        ax.set_xlim(-0.025 * xmax, 1.025 * xmax)
        ylo = max(0.0, pmin - 0.08 * (pmax - pmin) - 2.0)
        ax.set_ylim(ylo, min(_PCT + 0.04 * (_PCT - ylo), pmax + max(5.0, 0.1 * (pmax - ylo))))
        _legend_below(ax, 1)
    else:
        ax.set_xlim(0, _PCT)
        ax.set_ylim(0, _PCT)
        ax.text(0.5, 0.5, _no_positives_text(result), ha="center", va="center", transform=ax.transAxes, fontsize=11,
                bbox={"facecolor": "#fff3cd", "edgecolor": "#d4a017", "boxstyle": "round,pad=0.6"})
    fig.tight_layout()
    return fig


def plot_pr_curves(result: BagEvalResult, path: Path) -> Path:
    """PNG of :func:`pr_figure`."""
    return save_figure(pr_figure(result), path, result.synthetic)


# ---------------------------------------------------------------------------------------------- latency
def _ms_text(x: float) -> str:
    if not math.isfinite(x):
        return "-"
    return f"{x:.2f}" if x < 1 else (f"{x:.1f}" if x < 100 else f"{x:.0f}")


def _latency_histogram(ax, result: BagEvalResult) -> None:
    totals = np.array([r.total_ms for r in result.per_frame
                       if r.total_ms is not None and r.status == RunnerStatus.PROCESSED])
    if len(totals):
        ax.hist(totals, bins=min(40, max(5, len(totals) // 3)), color="#1f77b4", alpha=0.85)
        tot = result.latency_ms["total"]
        ax.axvline(tot.median, color="k", linestyle="-", linewidth=1.2, label=f"p50 {_ms_text(tot.median)} ms")
        ax.axvline(tot.p95, color="k", linestyle="--", linewidth=1.2, label=f"p95 {_ms_text(tot.p95)} ms")
    else:
        ax.text(0.5, 0.5, "no processed frames", ha="center", va="center", transform=ax.transAxes)
    rate = result.realtime.camera_rate_hz
    if math.isfinite(rate) and rate > 0:
        ax.axvline(1e3 / rate, color="#d62728", linewidth=1.6, label=f"camera period {1e3 / rate:.0f} ms")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("total latency per frame (ms)")
    ax.set_ylabel("frames")
    ax.set_title(f"total latency, {len(totals)} processed frames")
    ax.grid(True, alpha=0.3)
    _legend_below(ax, 3)


def _stage_bars(ax, result: BagEvalResult) -> None:
    stages = [s for s in _STAGE_ORDER if s in result.latency_ms and result.latency_ms[s].count]
    p50 = np.array([result.latency_ms[s].median for s in stages], np.float64)
    p95 = np.array([result.latency_ms[s].p95 for s in stages], np.float64)
    y = np.arange(len(stages))[::-1]
    ax.barh(y, p95, 0.7, color="#ffbb78", label="p95")
    ax.barh(y, p50, 0.4, color="#1f77b4", label="p50 (median)")
    floor = float(np.nanmin(p50[p50 > 0])) / 3 if np.any(p50 > 0) else 0.01
    ax.set_xscale("log")
    top = float(np.nanmax(p95)) if len(p95) else 1.0
    ax.set_xlim(floor, top * 30)  # room for the value labels right of the bars
    for yy, a, b in zip(y, p50, p95):
        ax.text(max(b, floor) * 1.15, yy, f"p50 {_ms_text(a)}  p95 {_ms_text(b)} ms", va="center", fontsize=8.5)
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.set_yticks(y)
    ax.set_yticklabels(stages)
    ax.set_xlabel("ms per frame (log scale)")
    ax.set_ylabel("pipeline stage")
    ax.set_title("latency per stage")
    ax.set_axisbelow(True)
    ax.grid(True, axis="x", alpha=0.3)
    _legend_below(ax, 2)


def latency_figure(result: BagEvalResult):
    """Histogram of per-frame total latency (p50, p95, camera period marked) and p50/p95 per stage, log scale,
    values printed at the bars."""
    fig = new_figure(11.0, 4.4)
    _latency_histogram(fig.add_subplot(1, 2, 1), result)
    _stage_bars(fig.add_subplot(1, 2, 2), result)
    fig.tight_layout()
    return fig


def plot_latency(result: BagEvalResult, path: Path) -> Path:
    """PNG of :func:`latency_figure`."""
    return save_figure(latency_figure(result), path, result.synthetic)
