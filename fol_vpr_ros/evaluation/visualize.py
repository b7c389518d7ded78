"""Pictures of what the model selected: region masks over images, contact sheets."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["contact_sheet", "region_overlay"]

_TINT = np.array([255, 64, 32], dtype=np.float32)


def region_overlay(image: np.ndarray, region_mask: np.ndarray, attention: np.ndarray | None = None,
                   min_side: int = 256) -> Image.Image:
    """RGB image with the selected patches tinted and outlined, the rest dimmed.

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
                draw.rectangle([x0, y0, x0 + w / gw, y0 + h / gh], outline=(255, 220, 0))
    if attention is not None:
        peak = int(np.argmax(attention))
        r, c = divmod(peak, gw)
        x, y = (c + 0.5) * w / gw, (r + 0.5) * h / gh
        rad = max(3.0, min(w, h) / 40)
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], outline=(0, 255, 255), width=2)
    return pil


def contact_sheet(images: Sequence[Image.Image], titles: Sequence[str], out: str | os.PathLike,
                  columns: int = 4, cell: int = 320) -> Path:
    """Tile images (with titles) into one PNG."""
    n = len(images)
    cols = max(1, min(columns, n))
    rows = max(1, (n + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * cell, rows * (cell + 18)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for i, (im, title) in enumerate(zip(images, titles)):
        thumb = im.copy()
        thumb.thumbnail((cell, cell))
        x, y = (i % cols) * cell, (i // cols) * (cell + 18)
        sheet.paste(thumb, (x + (cell - thumb.width) // 2, y + 18 + (cell - thumb.height) // 2))
        draw.text((x + 4, y + 3), title[:48], fill=(235, 235, 235))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
