"""What every report figure shares: a matplotlib Agg figure, the synthetic-weights watermark, saving, and a
record of the texts of each saved figure (for tests and for checking a report by eye)."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "WATERMARK",
    "AxesLabels",
    "RenderedFigure",
    "auc_text",
    "figure_texts",
    "new_figure",
    "pct_text",
    "record_figures",
    "save_figure",
    "watermark",
]

WATERMARK = "SYNTHETIC WEIGHTS \N{EM DASH} accuracy meaningless"
_WATERMARK_COLOR = "#d62728"
_WATERMARK_ALPHA = 0.32
_WATERMARK_SPAN = 0.8  # of the figure's diagonal
_CHAR_WIDTH_EM = 0.62  # mean advance of a bold DejaVu Sans character, in font sizes
_POINTS_PER_INCH = 72.0


def pct_text(value: float | None, fraction: bool = False) -> str:
    """A percentage as the reports print it: one decimal ('33.3'); ``fraction``: ``value`` is in [0, 1]."""
    if value is None or not math.isfinite(float(value)):
        return "-"
    return f"{100.0 * float(value) if fraction else float(value):.1f}"


def auc_text(value: float | None) -> str:
    """An average precision (AP, the area under the PR curve; a fraction) as the reports print it: '0.021'."""
    return "-" if value is None or not math.isfinite(float(value)) else f"{float(value):.3f}"


def new_figure(width_in: float, height_in: float, dpi: int = 110) -> Figure:
    """A matplotlib figure on the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def watermark(fig: Figure, text: str = WATERMARK) -> None:
    """Write ``text`` large, red and translucent diagonally across the whole figure, above everything."""
    w, h = fig.get_size_inches()
    angle = math.degrees(math.atan2(h, w))
    span = _WATERMARK_SPAN * math.hypot(w, h) * _POINTS_PER_INCH
    size = max(12.0, min(64.0, span / (_CHAR_WIDTH_EM * len(text))))
    t = fig.text(0.5, 0.5, text, rotation=angle, rotation_mode="anchor", ha="center", va="center",
                 fontsize=size, fontweight="bold", color=_WATERMARK_COLOR, alpha=_WATERMARK_ALPHA, zorder=1000)
    t.set_in_layout(False)


def figure_texts(fig: Figure) -> tuple[str, ...]:
    """Every visible non-empty text of the figure (titles, labels, legends, annotations, tick labels)."""
    from matplotlib.text import Text

    return tuple(t.get_text() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())


@dataclass(frozen=True)
class AxesLabels:
    """One axes of a saved figure: its titles and axis labels, and whether it shows an image."""

    title: str
    xlabel: str
    ylabel: str
    image: bool


@dataclass(frozen=True)
class RenderedFigure:
    """What a saved figure says: its file, pixel size, texts, axes labels, and whether it is watermarked."""

    path: Path
    size_px: tuple[int, int]
    texts: tuple[str, ...]
    axes: tuple[AxesLabels, ...]
    synthetic: bool


_recorders: list[list[RenderedFigure]] = []


@contextlib.contextmanager
def record_figures() -> Iterator[list[RenderedFigure]]:
    """Collect a :class:`RenderedFigure` for every figure :func:`save_figure` writes inside the block."""
    seen: list[RenderedFigure] = []
    _recorders.append(seen)
    try:
        yield seen
    finally:
        _recorders.remove(seen)


def _axes_labels(fig: Figure) -> tuple[AxesLabels, ...]:
    out = []
    for ax in fig.axes:
        title = " ".join(t for t in (ax.get_title("left"), ax.get_title("center"), ax.get_title("right")) if t)
        out.append(AxesLabels(title, ax.get_xlabel(), ax.get_ylabel(), bool(ax.images)))
    return tuple(out)


def save_figure(fig: Figure, path: str | os.PathLike, synthetic: bool) -> Path:
    """Write ``fig`` as a PNG (atomically), watermarked when the model had synthetic weights."""
    if synthetic:
        watermark(fig)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", facecolor=fig.get_facecolor())
    if _recorders:
        w, h = fig.canvas.get_width_height()
        rendered = RenderedFigure(path, (int(w), int(h)), figure_texts(fig), _axes_labels(fig), synthetic)
        for seen in _recorders:
            seen.append(rendered)
    return path
