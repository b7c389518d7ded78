"""Reading image files into uint8 RGB arrays, with one clear error per bad file."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError

__all__ = ["IMAGE_SUFFIXES", "list_images", "read_image"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


_OPEN_LOCK = threading.Lock()


def _not_a_file(path: Path) -> str:
    """Why ``path`` is not a readable regular file (for the one-line error)."""
    if path.is_symlink() and not path.exists():
        return f"{path}: broken symbolic link (points to {os.readlink(path)})"
    if not path.exists():
        return f"{path}: image file not found"
    mode = path.stat().st_mode
    kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a directory" if stat.S_ISDIR(mode)
            else "not a regular file")
    return f"{path}: {kind}, not an image file"


def _open_unbounded(path: Path) -> Image.Image:
    """``Image.open`` without Pillow's decompression-bomb refusal (the caller bounds memory itself)."""
    with _OPEN_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def read_image(path: str | os.PathLike, max_side: int | None = None,
               max_pixels: int | None = None) -> np.ndarray:
    """H x W x 3 uint8 RGB array from an image file (mono, 16-bit, RGBA and palette files converted).

    ``max_side`` downscales while decoding (JPEG: DCT scaling via ``draft``, others: ``reduce``) by
    the largest integer factor that keeps the longer side >= ``max_side``, so memory stays bounded.
    Non-JPEG images above ``max_pixels`` (default: twice Pillow's MAX_IMAGE_PIXELS) are refused,
    since they must be decoded in full first.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageError(_not_a_file(path))
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: image file is empty (0 bytes)")
    limit = max_pixels if max_pixels is not None else 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)
    try:
        with _open_unbounded(path) as img:
            if img.width == 0 or img.height == 0:
                raise ImageError(f"{path}: image has zero size ({img.width} x {img.height})")
            factor = max(1, max(img.width, img.height) // max_side) if max_side else 1
            if img.format == "JPEG" and factor > 1:
                img.draft("RGB", (-(-img.width // factor), -(-img.height // factor)))
                factor = max(1, max(img.width, img.height) // max_side)
            elif img.width * img.height > limit:
                raise ImageError(f"{path}: {img.width} x {img.height} = {img.width * img.height / 1e6:.0f} "
                                 f"megapixels is above the decoding limit ({limit / 1e6:.0f} MP) for "
                                 f"{img.format or 'this format'} files; downscale it (or save it as JPEG)")
            img.load()
            if factor > 1:
                img = img.reduce(factor)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                arr = (arr >> 8).clip(0, 255).astype(np.uint8) if img.mode != "I" else arr.clip(0, 255).astype(
                    np.uint8
                )
                return np.repeat(arr[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except ImageError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageError(f"{path}: cannot decode image (corrupt, truncated or not an image): {exc}") from None
    except MemoryError:
        raise ImageError(f"{path}: not enough memory to decode this image; downscale it") from None


def list_images(paths: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and directories into a sorted list of image files; errors name what is missing.

    Entries of a directory with an image suffix that are not regular files (FIFOs, broken links)
    are listed too, so that readers report them as skipped instead of dropping them silently.
    """
    out: list[Path] = []
    for p in (Path(x) for x in paths):
        if p.is_dir():
            pattern = "**/*" if recursive else "*"
            found = sorted(f for f in p.glob(pattern) if not f.is_dir() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"{p}: directory holds no images ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(found)
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise ImageError(f"{p}: no such file or directory")
    return out
