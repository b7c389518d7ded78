"""Pictures of what the model selected: region masks over images, and a captioned sheet of them."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .figures import new_figure, save_figure

__all__ = ["REGION_CAPTION", "contact_sheet", "contact_sheet_figure", "region_caption", "region_overlay"]

_TINT = np.array([255, 64, 32], dtype=np.float32)
_OUTLINE = (255, 220, 0)
_PEAK = (0, 255, 255)
_BG = "#181818"
_CAPTION_CHAR_PX = 6.9  # mean width of a caption character at 9.5 pt and 100 dpi
# What region_overlay draws (the caption line of every region sheet).
REGION_CAPTION = ("Orange cells outlined in yellow: the patches FoL selected as discriminative regions (their local "
                  "features are the ones matched when re-ranking); dimmed: the rest. Cyan circle: the patch the class "
                  "token attends to most in the last ViT block.")


def region_caption(selected: int, patches: int) -> str:
    """The caption, with how many patches were selected out of how many."""
    return REGION_CAPTION.replace("the patches FoL selected", f"the {selected} of {patches} patches FoL selected")


def region_overlay(image: np.ndarray, region_mask: np.ndarray, attention: np.ndarray | None = None,
                   min_side: int = 256) -> Image.Image:
    """RGB image with the selected patches tinted and outlined, the rest dimmed, and a circle on the patch
    with the highest class-token attention.

    ``region_mask`` is [h, w] at patch resolution; it is stretched over the whole image (the
    model sees the image resized to the input size, so patch cells map to image cells).
    Small images are upscaled so that their short side is at least ``min_side`` pixels.
    """
    img = Image.fromarray(image)
    scale = max(1, int(np.ceil(min_side / max(1, min(img.size)))))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    rgb = np.asarray(img, dtype=np.float32)
    h, w = rgb.shape[:2]
    gh, gw = region_mask.shape
    rows = np.minimum((np.arange(h) * gh) // h, gh - 1)
    cols = np.minimum((np.arange(w) * gw) // w, gw - 1)
    up = region_mask[rows][:, cols].astype(bool)
    out = rgb * 0.45
    out[up] = rgb[up] * 0.6 + _TINT * 0.4
    pil = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for r in range(gh):
        for c in range(gw):
            if region_mask[r, c]:
                x0, y0 = c * w / gw, r * h / gh
                draw.rectangle([x0, y0, x0 + w / gw, y0 + h / gh], outline=_OUTLINE)
    if attention is not None:
        peak = int(np.argmax(attention))
        r, c = divmod(peak, gw)
        x, y = (c + 0.5) * w / gw, (r + 0.5) * h / gh
        rad = max(4.0, min(w, h) / 30)
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], outline=_PEAK, width=3)
    return pil


def contact_sheet_figure(images: Sequence[Image.Image], titles: Sequence[str], columns: int = 4, cell: int = 320,
                         title: str = "", caption: str = ""):
    """Images in a grid with a title each (may have several lines), spaced, cells shaped like the images (no
    empty bands), the sheet's title on top and a caption (what the marks mean) below."""
    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, math.ceil(n / cols))
    aspect = float(np.median([im.height / im.width for im in images])) if n else 1.0
    dpi, gap, top = 100, 14, (34 if title else 8)
    head = 8 + 15 * max((t.count("\n") + 1 for t in titles), default=1)
    cap_lines = textwrap.wrap(caption, max(40, int(cols * (cell + gap) / _CAPTION_CHAR_PX))) if caption else []
    cell_h = round(cell * aspect)
    width = cols * cell + (cols + 1) * gap
    height = top + rows * (head + cell_h + gap) + len(cap_lines) * 18 + gap
    fig = new_figure(width / dpi, height / dpi, dpi=dpi)
    fig.set_facecolor(_BG)
    if title:
        fig.text(gap / width, 1 - 17 / height, title, color="white", fontsize=13, fontweight="bold", va="center")
    for i, (im, name) in enumerate(zip(images, titles)):
        r, c = divmod(i, cols)
        x = gap + c * (cell + gap)
        y = top + r * (head + cell_h + gap) + head  # top of the image, pixels from the figure's top
        ax = fig.add_axes((x / width, 1 - (y + cell_h) / height, cell / width, cell_h / height))
        ax.imshow(np.asarray(im.convert("RGB")), aspect="auto", interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name, loc="left", fontsize=9, color="#eeeeee", pad=3)
    y = top + rows * (head + cell_h + gap)
    for k, line in enumerate(cap_lines):
        fig.text(gap / width, 1 - (y + 9 + 18 * k) / height, line, color="#dddddd", fontsize=9.5, va="center")
    return fig


def contact_sheet(images: Sequence[Image.Image], titles: Sequence[str], out: str | os.PathLike,
                  columns: int = 4, cell: int = 320, title: str = "", caption: str = "",
                  synthetic: bool = False) -> Path:
    """PNG of :func:`contact_sheet_figure` (watermarked when ``synthetic``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = contact_sheet_figure(images, titles, columns=columns, cell=cell, title=title, caption=caption)
    return save_figure(fig, out, synthetic)
