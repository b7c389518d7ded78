"""Depth images (REP-118: 16UC1 in millimetres, 32FC1 in metres) and depth at patch centres.

The depth image must be registered to the colour camera (same pixels, as ``depth_registered``
topics are); a depth image of another resolution is sampled at the scaled pixel. Invalid depth (0,
NaN, inf, negative) reads as NaN.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

from .image_decode import BAD_PAYLOAD, BAD_STEP, UNKNOWN_ENCODING, ZERO_SIZE, ImageDecodeError, ImagePayload

__all__ = ["DEPTH_ENCODINGS", "DepthBuffer", "DepthFrame", "decode_depth", "sample_depth"]

MM_PER_M = 1000.0
# encoding -> (numpy little-endian dtype, metres per unit)
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {"16UC1": ("u2", 1.0 / MM_PER_M), "mono16": ("u2", 1.0 / MM_PER_M),
                                                 "32FC1": ("f4", 1.0)}


@dataclass(frozen=True)
class DepthFrame:
    """One decoded depth image: metres per pixel (NaN where invalid), with its stamp and camera frame."""

    stamp_ns: int
    frame_id: str
    metres: np.ndarray  # [H, W] float32


def decode_depth(p: ImagePayload) -> np.ndarray:
    """[H, W] float32 metres from a raw depth image; ImageDecodeError naming the problem when it is not one."""
    spec = DEPTH_ENCODINGS.get(str(p.encoding).strip())
    if spec is None:
        raise ImageDecodeError(UNKNOWN_ENCODING, f"depth image encoding {p.encoding!r} is not one of "
                               f"{', '.join(DEPTH_ENCODINGS)}")
    height, width, step = int(p.height), int(p.width), int(p.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(ZERO_SIZE, f"depth image has zero size ({width} x {height})")
    kind, scale = spec
    dtype = np.dtype((">" if p.is_bigendian else "<") + kind)
    row_bytes = width * dtype.itemsize
    try:
        buf = np.frombuffer(bytes(p.data) if isinstance(p.data, list) else p.data, dtype=np.uint8)
    except (TypeError, ValueError) as exc:
        raise ImageDecodeError(BAD_PAYLOAD, f"depth image data is not a byte buffer ({exc})") from None
    if step < row_bytes or buf.size < step * (height - 1) + row_bytes:
        raise ImageDecodeError(BAD_STEP, f"{p.encoding} depth image {width} x {height}: step {step}, "
                               f"{buf.size} bytes of data do not hold it")
    if buf.size < step * height:
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = np.ascontiguousarray(buf[: step * height].reshape(height, step)[:, :row_bytes])
    metres = rows.view(dtype).reshape(height, width).astype(np.float32) * np.float32(scale)
    metres[~(np.isfinite(metres) & (metres > 0))] = np.nan
    return metres


def sample_depth(metres: np.ndarray, points_xy: np.ndarray, image_size_hw: tuple[int, int],
                 radius_px: int = 2) -> np.ndarray:
    """Median valid depth in a (2r+1)^2 window around each point ([n, 2] x, y in ``image_size_hw`` pixels)."""
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    h, w = metres.shape
    sx, sy = w / float(image_size_hw[1]), h / float(image_size_hw[0])
    out = np.full(len(pts), np.nan, np.float32)
    for k, (x, y) in enumerate(pts):
        c, r = int(np.floor(x * sx)), int(np.floor(y * sy))
        if not (0 <= r < h and 0 <= c < w):
            continue
        win = metres[max(0, r - radius_px): r + radius_px + 1, max(0, c - radius_px): c + radius_px + 1]
        valid = win[np.isfinite(win)]
        if valid.size:
            out[k] = float(np.median(valid))
    return out


class DepthBuffer:
    """The last few depth frames per camera; ``at`` gives the one nearest a stamp within a tolerance."""

    def __init__(self, tolerance_ns: int, keep: int = 8) -> None:
        self.tolerance_ns = int(tolerance_ns)
        self.keep = max(1, int(keep))
        self._frames: dict[str, list[DepthFrame]] = {}
        self._lock = threading.Lock()

    def add(self, frame: DepthFrame) -> None:
        """Store a depth frame (kept in stamp order; the oldest beyond ``keep`` are forgotten)."""
        with self._lock:
            frames = self._frames.setdefault(frame.frame_id, [])
            bisect.insort(frames, frame, key=lambda f: f.stamp_ns)
            del frames[: max(0, len(frames) - self.keep)]

    def at(self, frame_id: str, stamp_ns: int) -> DepthFrame | None:
        """The frame of camera ``frame_id`` nearest ``stamp_ns``, if within the tolerance."""
        with self._lock:
            frames = list(self._frames.get(frame_id, ()))
        best = min(frames, key=lambda f: abs(f.stamp_ns - stamp_ns), default=None)
        if best is None or abs(best.stamp_ns - stamp_ns) > self.tolerance_ns:
            return None
        return best
