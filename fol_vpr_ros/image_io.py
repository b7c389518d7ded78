"""Reading image files into uint8 RGB arrays, with one clear error per bad file."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_image(path: str | os.PathLike) -> np.ndarray:
    """H x W x 3 uint8 RGB array from an image file (mono, 16-bit, RGBA and palette files converted)."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: image file not found")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    try:
        with Image.open(path) as img:
            img.load()
            if img.width == 0 or img.height == 0:
                raise ImageError(f"{path}: image has zero size ({img.width} x {img.height})")
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                arr = (arr >> 8).clip(0, 255).astype(np.uint8) if img.mode != "I" else arr.clip(0, 255).astype(
                    np.uint8
                )
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{path}: cannot decode image (corrupt, truncated or not an image): {exc}") from None


def list_images(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and directories into a sorted list of image files; errors name what is missing."""
    out: list[Path] = []
    for p in (Path(x) for x in paths):
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in p.glob(pattern) if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{p}: directory holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or directory")
    return out
