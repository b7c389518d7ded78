"""Evaluation pictures: recall@N curves and a montage of example queries with their matches."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..atomic import atomic_path
from ..errors import ConfigError
from ..image_io import read_image
from .matches import grid_to_pixels

__all__ = ["ExampleMatch", "example_montage", "plot_recall_curves", "region_tint"]

_OK = (40, 190, 70)
_BAD = (220, 50, 40)
_NEUTRAL = (150, 150, 150)
_BG = (24, 24, 24)


@dataclass(frozen=True, eq=False)
class ExampleMatch:
    """One query with its top candidates, for drawing.

    ``matches[k]`` is ``(query_rc, cand_rc)``: [m, 2] (row, col) positions on the local grid of the
    mutual matches with candidate k. Masks are bool [h, w] at patch resolution (or None).
    """

    query_image: Path
    candidate_images: tuple[Path, ...]
    local_grid: tuple[int, int]
    matches: tuple[tuple[np.ndarray, np.ndarray], ...] = ()
    query_mask: np.ndarray | None = None
    candidate_masks: tuple[np.ndarray | None, ...] | None = None
    correct: bool = False  # top-1 is a positive
    candidate_correct: tuple[bool, ...] | None = None
    scores: tuple[float, ...] = ()
    title: str = ""

    def __post_init__(self) -> None:
        n = len(self.candidate_images)
        object.__setattr__(self, "query_image", Path(self.query_image))
        object.__setattr__(self, "candidate_images", tuple(Path(p) for p in self.candidate_images))
        object.__setattr__(self, "local_grid", tuple(int(v) for v in self.local_grid))
        if len(self.local_grid) != 2 or min(self.local_grid) < 1:
            raise ConfigError(f"example {self.query_image.name}: bad local grid {self.local_grid}")
        for what, seq in (("matches", self.matches), ("candidate_masks", self.candidate_masks),
                          ("candidate_correct", self.candidate_correct)):
            if seq is not None and len(seq) not in (0, n):
                raise ConfigError(
                    f"example {self.query_image.name}: {len(seq)} {what} for {n} candidate images"
                )
        if self.scores and len(self.scores) != n:
            raise ConfigError(
                f"example {self.query_image.name}: {len(self.scores)} scores for {n} candidates"
            )


def plot_recall_curves(
    recall_global: Mapping[int, float],
    recall_rerank: Mapping[int, float] | None,
    path: str | os.PathLike,
    title: str = "",
) -> Path:
    """PNG of recall@N (percent) against N, global retrieval vs re-ranked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    curves = [("global", recall_global, "o-", -13)]
    if recall_rerank:
        curves.append(("re-ranked", recall_rerank, "s-", 6))
    ns_all: set[int] = set()
    for label, rec, style, dy in curves:
        ns = sorted(int(n) for n in rec)
        ns_all.update(ns)
        ys = [float(rec[n]) for n in ns]
        ax.plot(ns, ys, style, label=label, linewidth=2, markersize=5)
        for n, y in zip(ns, ys):
            ax.annotate(f"{y:.1f}", (n, y), textcoords="offset points", xytext=(0, dy), ha="center",
                        fontsize=7)
    if len(ns_all) > 1 and max(ns_all) / min(ns_all) >= 10:
        ax.set_xscale("log")
    ticks = sorted(ns_all)
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 108)
    ax.set_xlabel("N")
    ax.set_ylabel("recall@N (%)")
    ax.set_title(title or "recall@N")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def region_tint(image: Image.Image, mask: np.ndarray | None, alpha: float = 0.4,
                color: tuple[int, int, int] = (255, 200, 0)) -> Image.Image:
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


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _load(path: Path, height: int, mask: np.ndarray | None) -> Image.Image:
    img = Image.fromarray(read_image(path))
    width = max(1, round(img.width * height / img.height))
    img = img.resize((width, height), Image.BILINEAR)
    return region_tint(img, mask)


def _pair(query: Image.Image, cand: Image.Image, match: tuple[np.ndarray, np.ndarray] | None,
          grid: tuple[int, int], gap: int, max_lines: int) -> Image.Image:
    out = Image.new("RGB", (query.width + gap + cand.width, query.height), _BG)
    out.paste(query, (0, 0))
    out.paste(cand, (query.width + gap, 0))
    if match is None:
        return out
    q_rc, c_rc = (np.asarray(a).reshape(-1, 2) for a in match)
    if q_rc.shape != c_rc.shape:
        raise ConfigError(f"matched points differ in count: {q_rc.shape[0]} vs {c_rc.shape[0]}")
    if q_rc.shape[0] > max_lines:
        keep = np.linspace(0, q_rc.shape[0] - 1, max_lines).round().astype(int)
        q_rc, c_rc = q_rc[keep], c_rc[keep]
    qxy = grid_to_pixels(q_rc, grid, (query.height, query.width))
    cxy = grid_to_pixels(c_rc, grid, (cand.height, cand.width))
    cxy[:, 0] += query.width + gap
    draw = ImageDraw.Draw(out)
    n = qxy.shape[0]
    for k in range(n):
        r, g, b = colorsys.hsv_to_rgb(k / max(1, n), 0.9, 1.0)
        col = (int(r * 255), int(g * 255), int(b * 255))
        (x0, y0), (x1, y1) = qxy[k], cxy[k]
        draw.line([(x0, y0), (x1, y1)], fill=col, width=1)
        draw.ellipse([x0 - 2, y0 - 2, x0 + 2, y0 + 2], outline=col)
        draw.ellipse([x1 - 2, y1 - 2, x1 + 2, y1 + 2], outline=col)
    return out


def example_montage(
    examples: Sequence[ExampleMatch],
    path: str | os.PathLike,
    max_candidates: int = 3,
    height: int = 180,
    max_lines: int = 60,
) -> Path:
    """PNG with one row per example: (query | candidate) pairs with regions tinted and matches drawn."""
    if not examples:
        raise ConfigError("example montage needs at least one example")
    font, small = _font(15), _font(12)
    gap, pad, head, cap = 6, 8, 22, 18
    rows: list[Image.Image] = []
    for ex in examples:
        query = _load(ex.query_image, height, ex.query_mask)
        pairs: list[Image.Image] = []
        for k, cpath in enumerate(ex.candidate_images[:max_candidates]):
            cmask = ex.candidate_masks[k] if ex.candidate_masks else None
            cand = _load(cpath, height, cmask)
            match = ex.matches[k] if ex.matches else None
            pair = _pair(query, cand, match, ex.local_grid, gap, max_lines)
            ok = ex.candidate_correct[k] if ex.candidate_correct else None
            colour = _NEUTRAL if ok is None else (_OK if ok else _BAD)
            cell = Image.new("RGB", (pair.width + 4, pair.height + cap + 4), colour)
            cell.paste(pair, (2, cap + 2))
            draw = ImageDraw.Draw(cell)
            label = f"#{k + 1} {cpath.name}"
            if ex.scores:
                label += f"  score {ex.scores[k]:.3g}"
            if match is not None:
                label += f"  {np.asarray(match[0]).reshape(-1, 2).shape[0]} matches"
            draw.text((4, 2), label[:90], fill=(0, 0, 0), font=small)
            pairs.append(cell)
        if not pairs:
            pairs.append(query)
        width = sum(p.width for p in pairs) + pad * (len(pairs) - 1)
        row = Image.new("RGB", (width, head + max(p.height for p in pairs)), _BG)
        draw = ImageDraw.Draw(row)
        verdict = "top-1 correct" if ex.correct else "top-1 wrong"
        text = f"query {ex.query_image.name}: {verdict}" + (f"  ({ex.title})" if ex.title else "")
        draw.text((4, 3), text[:140], fill=_OK if ex.correct else _BAD, font=font)
        x = 0
        for p in pairs:
            row.paste(p, (x, head))
            x += p.width + pad
        rows.append(row)
    sheet = Image.new("RGB", (max(r.width for r in rows) + 2 * pad,
                              sum(r.height for r in rows) + pad * (len(rows) + 1)), _BG)
    y = pad
    for r in rows:
        sheet.paste(r, (pad, y))
        y += r.height + pad
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path
