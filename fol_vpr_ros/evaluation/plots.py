"""Evaluation pictures: recall@N curves and a sheet of example queries with their top map matches."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from ..image_io import read_image
from .figures import new_figure, pct_text, save_figure
from .matches import grid_to_pixels

__all__ = ["ExampleLegend", "ExampleMatch", "example_montage", "examples_figure", "plot_recall_curves",
           "recall_figure", "region_tint", "score_text"]

_OK = "#2ca02c"
_BAD = "#d62728"
_NEUTRAL = "#8c8c8c"
_OK_TEXT = "#6fdc6f"  # the same, lighter, for text on the dark sheet
_BAD_TEXT = "#ff7a70"
_BG = "#181818"
_TINT = (255, 200, 0)  # the FoL-selected regions
_TINT_NAME = "yellow"
_LABEL_CHAR_PX = 6.4  # mean width of a 9 pt label character at 100 dpi
ImageLike = Path | np.ndarray


@dataclass(frozen=True, eq=False)
class ExampleMatch:
    """One query with its top candidates, for drawing.

    Images are files or RGB uint8 arrays [H, W, 3]. ``matches[k]`` is ``(query_rc, cand_rc)``: [m, 2]
    (row, col) positions on the local grid of the mutual matches with candidate k. Masks are bool [h, w]
    at patch resolution (or None). ``candidate_distances_m``: ground-truth distance of each candidate.
    """

    query_image: ImageLike
    candidate_images: tuple[ImageLike, ...]
    local_grid: tuple[int, int]
    matches: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    query_mask: np.ndarray | None = None
    candidate_masks: tuple[np.ndarray | None, ...] | None = None
    correct: bool = False  # top-1 is a positive
    candidate_correct: tuple[bool, ...] | None = None
    scores: tuple[float, ...] = ()
    title: str = ""
    candidate_distances_m: tuple[float | None, ...] = ()
    candidate_names: tuple[str, ...] = ()  # default: the file names

    def __post_init__(self) -> None:
        n = len(self.candidate_images)

        def as_image(x: ImageLike) -> ImageLike:
            return x if isinstance(x, np.ndarray) else Path(x)

        object.__setattr__(self, "query_image", as_image(self.query_image))
        object.__setattr__(self, "candidate_images", tuple(as_image(p) for p in self.candidate_images))
        object.__setattr__(self, "local_grid", tuple(int(v) for v in self.local_grid))
        if len(self.local_grid) != 2 or min(self.local_grid) < 1:
            raise ConfigError(f"example {self.query_name}: bad local grid {self.local_grid}")
        for what, seq in (("matches", self.matches), ("candidate_masks", self.candidate_masks),
                          ("candidate_correct", self.candidate_correct),
                          ("candidate_distances_m", self.candidate_distances_m),
                          ("candidate_names", self.candidate_names)):
            if seq is not None and len(seq) not in (0, n):
                raise ConfigError(f"example {self.query_name}: {len(seq)} {what} for {n} candidate images")
        if self.scores and len(self.scores) != n:
            raise ConfigError(f"example {self.query_name}: {len(self.scores)} scores for {n} candidates")

    @property
    def query_name(self) -> str:
        return self.query_image.name if isinstance(self.query_image, Path) else "query"

    def candidate_name(self, k: int) -> str:
        if self.candidate_names:
            return self.candidate_names[k]
        img = self.candidate_images[k]
        return img.name if isinstance(img, Path) else ""


@dataclass(frozen=True)
class ExampleLegend:
    """What the example sheet's parts mean, for its caption lines."""

    score_name: str | None = "re-rank score"  # None: no scores shown (e.g. re-ranking off)
    score_meaning: str = "the number of mutual nearest-neighbour local matches"
    match_label: str = "map match"
    correct_means: str = "a ground-truth positive"
    negative_score: str | None = "not re-ranked"  # printed for a score below 0 (None: an ordinary value)
    negative_meaning: str = "the candidate was beyond the re-ranking depth"


def score_text(score: float) -> str:
    """A candidate score as the sheets print it: integer counts plainly ('971'), similarities with 3 decimals."""
    s = float(score)
    return f"{round(s)}" if s.is_integer() else f"{s:.3f}"


# ---------------------------------------------------------------------------------------------- recall@N
def recall_figure(recall_global: Mapping[int, float], recall_rerank: Mapping[int, float] | None, title: str = ""):
    """Recall@N (percent) against N, global retrieval vs re-ranked, values printed at the points."""
    fig = new_figure(7.2, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    curves = [("global retrieval", recall_global, "o-", -13)]
    if recall_rerank:
        curves.append(("re-ranked (FoL local matches)", recall_rerank, "s--", 6))
    ns_all: set[int] = set()
    for label, rec, style, dy in curves:
        ns = sorted(int(n) for n in rec)
        ns_all.update(ns)
        ys = [float(rec[n]) for n in ns]
        ax.plot(ns, ys, style, label=label, linewidth=2, markersize=6)
        for n, y in zip(ns, ys):
            ax.annotate(pct_text(y), (n, y), textcoords="offset points", xytext=(0, dy), ha="center", fontsize=8)
    if len(ns_all) > 1 and max(ns_all) / min(ns_all) >= 10:
        ax.set_xscale("log")
    ticks = sorted(ns_all)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 108)
    ax.set_xlabel("N (top-N map images considered)")
    ax.set_ylabel("recall@N (%)")
    ax.set_title(title or "recall@N")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=9, frameon=False)
    fig.tight_layout()
    return fig


def plot_recall_curves(
    recall_global: Mapping[int, float],
    recall_rerank: Mapping[int, float] | None,
    path: str | os.PathLike,
    title: str = "",
    synthetic: bool = False,
) -> Path:
    """PNG of :func:`recall_figure` (watermarked when ``synthetic``)."""
    return save_figure(recall_figure(recall_global, recall_rerank, title), path, synthetic)


# ---------------------------------------------------------------------------------------------- examples
def region_tint(image: Image.Image, mask: np.ndarray | None, alpha: float = 0.4,
                color: tuple[int, int, int] = _TINT) -> Image.Image:
    """``image`` with the cells of a patch-resolution bool mask (stretched over it) tinted."""
    if mask is None:
        return image
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or m.size == 0:
        raise ConfigError(f"region mask must be a 2-D bool array, got shape {m.shape}")
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w = rgb.shape[:2]
    rows = np.minimum((np.arange(h) * m.shape[0]) // h, m.shape[0] - 1)
    cols = np.minimum((np.arange(w) * m.shape[1]) // w, m.shape[1] - 1)
    up = m[rows][:, cols]
    rgb[up] = rgb[up] * (1 - alpha) + np.asarray(color, dtype=np.float32) * alpha
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def _load(image: ImageLike, height: int, mask: np.ndarray | None) -> Image.Image:
    arr = image if isinstance(image, np.ndarray) else read_image(image)
    img = Image.fromarray(np.asarray(arr, np.uint8)).convert("RGB")
    width = max(1, round(img.width * height / img.height))
    img = img.resize((width, height), Image.BILINEAR)
    return region_tint(img, mask)


def _match_lines(match: tuple[np.ndarray, np.ndarray], grid: tuple[int, int], query: Image.Image,
                 cand: Image.Image, gap: int, max_lines: int) -> np.ndarray:
    """[n, 2, 2] pixel segments (query point -> candidate point) in the pair image, at most ``max_lines``."""
    q_rc, c_rc = (np.asarray(a).reshape(-1, 2) for a in match)
    if q_rc.shape != c_rc.shape:
        raise ConfigError(f"matched points differ in count: {q_rc.shape[0]} vs {c_rc.shape[0]}")
    if q_rc.shape[0] > max_lines:
        keep = np.linspace(0, q_rc.shape[0] - 1, max_lines).round().astype(int)
        q_rc, c_rc = q_rc[keep], c_rc[keep]
    qxy = grid_to_pixels(q_rc, grid, (query.height, query.width))
    cxy = grid_to_pixels(c_rc, grid, (cand.height, cand.width))
    cxy[:, 0] += query.width + gap
    return np.stack([qxy, cxy], axis=1)


def _pair_label(ex: ExampleMatch, k: int, legend: ExampleLegend) -> tuple[str, str]:
    """(label, colour) of candidate k: rank, name, score, ground-truth distance, correct or not."""
    parts = [f"#{k + 1} {legend.match_label}"]
    name = ex.candidate_name(k)
    if name:
        parts[0] += f" {name}"
    if ex.scores and legend.score_name:
        score = ex.scores[k]
        parts.append(legend.negative_score if score < 0 and legend.negative_score
                     else f"{legend.score_name} {score_text(score)}")
    if ex.candidate_distances_m and ex.candidate_distances_m[k] is not None:
        parts.append(f"{ex.candidate_distances_m[k]:.0f} m away")
    ok = ex.candidate_correct[k] if ex.candidate_correct else None
    if ok is not None:
        parts.append("correct" if ok else "wrong")
    return ", ".join(parts), _NEUTRAL if ok is None else (_OK_TEXT if ok else _BAD_TEXT)


def _row_title(ex: ExampleMatch) -> str:
    """'query 4.jpg (title): top-1 correct' without repeating a title that is the name."""
    name = ex.query_name if isinstance(ex.query_image, Path) else ""
    what = " ".join(p for p in (name, ex.title if ex.title != name else "") if p)
    return f"query {what}: top-1 {'correct' if ex.correct else 'wrong'}" if what else \
        f"query: top-1 {'correct' if ex.correct else 'wrong'}"


def _caption(examples: Sequence[ExampleMatch], legend: ExampleLegend, max_lines: int) -> list[str]:
    lines = [f"Each pair: left = the query, right = its #k {legend.match_label} (rank k of the final ranking). "
             f"Green frame: correct ({legend.correct_means}); red: wrong."]
    cand_masks = any(m is not None for ex in examples for m in (ex.candidate_masks or ()))
    if cand_masks or any(ex.query_mask is not None for ex in examples):
        whose = "the" if cand_masks else "the query's"
        lines.append(f"{_TINT_NAME.capitalize()} tint: {whose} FoL-selected regions (the patches whose local features "
                     "are matched when re-ranking).")
    if legend.score_name and any(ex.scores for ex in examples):
        text = f"{legend.score_name.capitalize()}: {legend.score_meaning}."
        if legend.negative_score and any(s < 0 for ex in examples for s in ex.scores):
            text += f" '{legend.negative_score}': {legend.negative_meaning}."
        if any(ex.matches for ex in examples):
            text += f" Coloured lines: those matches (at most {max_lines} drawn per pair)."
        lines.append(text)
    elif any(ex.matches for ex in examples):
        lines.append(f"Coloured lines: mutual nearest-neighbour local matches (at most {max_lines} drawn per pair).")
    return lines


def _draw_pair(fig, box: tuple[float, float, float, float], query: Image.Image, cand: Image.Image,
               segments: np.ndarray | None, gap: int, match_label: str):
    """One axes with the (query | candidate) image, its match lines and the two half labels."""
    from matplotlib.collections import LineCollection

    pair = Image.new("RGB", (query.width + gap + cand.width, query.height), (24, 24, 24))
    pair.paste(query, (0, 0))
    pair.paste(cand, (query.width + gap, 0))
    ax = fig.add_axes(box)
    ax.imshow(np.asarray(pair), interpolation="bilinear")
    if segments is not None and len(segments):
        n = len(segments)
        colours = [colorsys.hsv_to_rgb(k / n, 0.9, 1.0) for k in range(n)]
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.8, alpha=0.85))
        pts = segments.reshape(-1, 2)
        ax.scatter(pts[:, 0], pts[:, 1], s=5, c=np.repeat(colours, 2, axis=0), linewidths=0)
    tag = {"fontsize": 8, "color": "white", "va": "top",
           "bbox": {"boxstyle": "round,pad=0.2", "facecolor": "black", "alpha": 0.65, "linewidth": 0}}
    ax.text(4, 4, "query", ha="left", **tag)
    ax.text(query.width + gap + 4, 4, match_label, ha="left", **tag)
    ax.set_xlim(-0.5, pair.width - 0.5)
    ax.set_ylim(pair.height - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def examples_figure(examples: Sequence[ExampleMatch], legend: ExampleLegend | None = None, max_candidates: int = 3,
                    height: int = 180, max_lines: int = 60, title: str = "example queries and their top matches"):
    """One row per example: (query | candidate) pairs, framed green/red, regions tinted, matches drawn."""
    if not examples:
        raise ConfigError("example sheet needs at least one example")
    legend = legend or ExampleLegend()
    dpi, gap, pad, head, cap, line_h, top = 100, 6, 14, 26, 22, 19, 40
    rows = []
    for ex in examples:
        query = _load(ex.query_image, height, ex.query_mask)
        cands = [_load(p, height, ex.candidate_masks[k] if ex.candidate_masks else None)
                 for k, p in enumerate(ex.candidate_images[:max_candidates])]
        rows.append((ex, query, cands))
    widths = [sum(query.width + gap + c.width for c in cands) + pad * max(0, len(cands) - 1)
              for _, query, cands in rows]
    caption = _caption(examples, legend, max_lines)
    width_px = max(max(widths) + 2 * pad, 900)
    height_px = top + sum(head + cap + height + pad for _ in rows) + len(caption) * line_h + pad
    fig = new_figure(width_px / dpi, height_px / dpi, dpi=dpi)
    fig.set_facecolor(_BG)

    def fx(x: float) -> float:
        return x / width_px

    def fy(y: float) -> float:  # y in pixels from the top
        return 1.0 - y / height_px

    fig.text(fx(pad), fy(top / 2), title, color="white", fontsize=13, fontweight="bold", va="center")
    y = top
    for ex, query, cands in rows:
        fig.text(fx(pad), fy(y + head / 2), _row_title(ex), color=_OK_TEXT if ex.correct else _BAD_TEXT, fontsize=11,
                 va="center")
        x = pad
        for k, cand in enumerate(cands):
            w = query.width + gap + cand.width
            segs = None
            if ex.matches:
                segs = _match_lines(ex.matches[k], ex.local_grid, query, cand, gap, max_lines)
            box = (fx(x), fy(y + head + cap + height), fx(w), height / height_px)
            ax = _draw_pair(fig, box, query, cand, segs, gap, legend.match_label)
            label, colour = _pair_label(ex, k, legend)
            most = max(8, int(w / _LABEL_CHAR_PX))
            ax.set_title(label if len(label) <= most else label[: most - 1] + "\N{HORIZONTAL ELLIPSIS}", loc="left",
                         fontsize=9, color=colour, pad=3)
            ok = ex.candidate_correct[k] if ex.candidate_correct else None
            for spine in ax.spines.values():
                spine.set_edgecolor(_NEUTRAL if ok is None else (_OK if ok else _BAD))
                spine.set_linewidth(3)
            x += w + pad
        y += head + cap + height + pad
    for k, text in enumerate(caption):
        fig.text(fx(pad), fy(y + (k + 0.5) * line_h), text, color="#dddddd", fontsize=10, va="center")
    return fig


def example_montage(
    examples: Sequence[ExampleMatch],
    path: str | os.PathLike,
    max_candidates: int = 3,
    height: int = 180,
    max_lines: int = 60,
    legend: ExampleLegend | None = None,
    synthetic: bool = False,
) -> Path:
    """PNG of :func:`examples_figure` (watermarked when ``synthetic``)."""
    fig = examples_figure(examples, legend, max_candidates=max_candidates, height=height, max_lines=max_lines)
    return save_figure(fig, path, synthetic)
