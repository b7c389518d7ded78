"""ROS-free decoding of sensor_msgs/Image and sensor_msgs/CompressedImage payloads to H x W x 3 uint8 RGB.

Errors are ``ImageDecodeError`` (an ``ImageError``) with a short ``kind`` so that the node can count
them per kind and log each kind once; ``error_kind`` classifies any exception the same way.
The returned array never shares memory with the message buffer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, ImageError, MapError

__all__ = [
    "ERROR_KINDS",
    "SUPPORTED_ENCODINGS",
    "CompressedPayload",
    "ImageDecodeError",
    "ImagePayload",
    "decode",
    "decode_compressed",
    "decode_image",
    "error_kind",
]

UNKNOWN_ENCODING = "unknown_encoding"
BAD_STEP = "bad_step"
ZERO_SIZE = "zero_size"
CORRUPT_COMPRESSED = "corrupt_compressed"
UNKNOWN_FORMAT = "unknown_format"
TOO_LARGE = "too_large"
BAD_PAYLOAD = "bad_payload"
ERROR_KINDS = (UNKNOWN_ENCODING, BAD_STEP, ZERO_SIZE, CORRUPT_COMPRESSED, UNKNOWN_FORMAT, TOO_LARGE, BAD_PAYLOAD)

MAX_PIXELS = 64_000_000  # refuse larger images (decompression bombs, corrupt headers)

# encoding -> (channels, bytes per channel, channel order). 8UC1/8UC3/8UC4 as cv_bridge reads them.
_ENCODINGS: dict[str, tuple[int, int, str]] = {
    "rgb8": (3, 1, "rgb"),
    "bgr8": (3, 1, "bgr"),
    "rgba8": (4, 1, "rgba"),
    "bgra8": (4, 1, "bgra"),
    "mono8": (1, 1, "mono"),
    "mono16": (1, 2, "mono"),
    "16UC1": (1, 2, "mono"),
    "8UC1": (1, 1, "mono"),
    "8UC3": (3, 1, "bgr"),
    "8UC4": (4, 1, "bgra"),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
_BY_LOWER = {k.lower(): v for k, v in _ENCODINGS.items()}
_CODECS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}
_DEPTH_HEADER_BYTES = 12  # compressed_depth_image_transport's ConfigHeader (format + 2 floats)


class ImageDecodeError(ImageError):
    """An image payload that cannot be decoded; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def error_kind(exc: BaseException, stage: str = "") -> str:
    """Short classification of an exception: its ``kind``, else '<stage>_failed' / by exception type."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    if stage:
        return f"{stage}_failed"
    for cls, name in ((ImageError, "image_error"), (MapError, "map_error"), (ConfigError, "config_error")):
        if isinstance(exc, cls):
            return name
    return "internal_error"


@dataclass(frozen=True, eq=False)
class ImagePayload:
    """The fields of a sensor_msgs/Image; ``data`` is bytes, a memoryview, a uint8 array or a list of ints."""

    stamp_ns: int
    frame_id: str
    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: bool
    data: Any


@dataclass(frozen=True, eq=False)
class CompressedPayload:
    """The fields of a sensor_msgs/CompressedImage (``format`` e.g. 'jpeg', 'bgr8; jpeg compressed bgr8')."""

    stamp_ns: int
    frame_id: str
    format: str
    data: Any


def _as_uint8(data: Any) -> np.ndarray:
    """A flat uint8 view (or copy, for lists) of the payload bytes."""
    if isinstance(data, np.ndarray):
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        mv = memoryview(data)
        if not mv.contiguous:
            mv = memoryview(mv.tobytes())
        return np.frombuffer(mv.cast("B"), dtype=np.uint8)
    if isinstance(data, (list, tuple)):
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (ValueError, OverflowError, TypeError):
            raise ImageDecodeError(BAD_PAYLOAD, "image data is a sequence but not of bytes (0..255)") from None
    try:
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        raise ImageDecodeError(BAD_PAYLOAD, f"image data of type {type(data).__name__} is not a byte buffer") \
            from None


def _int_field(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ImageDecodeError(BAD_PAYLOAD, f"image {name} must be a non-negative integer, got {value!r}")
    return int(value)


def decode_image(p: ImagePayload) -> np.ndarray:
    """H x W x 3 uint8 RGB from a raw image (rgb8, bgr8, rgba8, bgra8, mono8, mono16/16UC1, 8UC1/3/4).

    Rows may be padded (``step`` > width * bytes per pixel); 16-bit images keep their top 8 bits
    (full range >> 8), read big- or little-endian as ``is_bigendian`` says.
    """
    height, width, step = _int_field(p.height, "height"), _int_field(p.width, "width"), _int_field(p.step, "step")
    enc = str(p.encoding).strip()
    spec = _ENCODINGS.get(enc) or _BY_LOWER.get(enc.lower())
    if spec is None:
        raise ImageDecodeError(UNKNOWN_ENCODING, f"unsupported image encoding {p.encoding!r}; supported: "
                               f"{', '.join(SUPPORTED_ENCODINGS)}")
    if height == 0 or width == 0:
        raise ImageDecodeError(ZERO_SIZE, f"image has zero size ({width} x {height})")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(TOO_LARGE, f"image of {width} x {height} exceeds {MAX_PIXELS} pixels")
    channels, nbytes, order = spec
    row_bytes = width * channels * nbytes
    if step < row_bytes:
        raise ImageDecodeError(BAD_STEP, f"{enc} image step {step} < width {width} x {channels * nbytes} bytes "
                               f"per pixel = {row_bytes}")
    buf = _as_uint8(p.data)
    if buf.size < step * height:
        raise ImageDecodeError(BAD_STEP, f"{enc} image data has {buf.size} bytes, fewer than step {step} x "
                               f"height {height} = {step * height}")
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if nbytes == 2:
        dtype = np.dtype(">u2" if p.is_bigendian else "<u2")
        mono = (np.ascontiguousarray(rows).view(dtype).reshape(height, width) >> 8).astype(np.uint8)
        return np.repeat(mono[:, :, None], 3, axis=2)
    px = rows.reshape(height, width, channels)
    if order == "mono":
        return np.repeat(px, 3, axis=2)
    if order == "rgb":
        return px.copy()
    if order == "bgr":
        return np.ascontiguousarray(px[:, :, ::-1])
    if order == "rgba":
        return np.ascontiguousarray(px[:, :, :3])
    return np.ascontiguousarray(px[:, :, 2::-1])  # bgra


def _codec(fmt: str) -> str | None:
    """'JPEG' / 'PNG' named by a CompressedImage format, None when it names no codec ('' = detect)."""
    tokens = fmt.lower().replace(";", " ").replace(",", " ").split()
    for t in tokens:
        if t in _CODECS:
            return _CODECS[t]
    return None


def decode_compressed(p: CompressedPayload) -> np.ndarray:
    """H x W x 3 uint8 RGB from a JPEG or PNG CompressedImage (also '16UC1; compressedDepth png')."""
    fmt = str(p.format or "").strip()
    codec = _codec(fmt)
    if fmt and codec is None:
        raise ImageDecodeError(UNKNOWN_FORMAT, f"unsupported compressed format {fmt!r}; supported: jpeg, png "
                               "(e.g. 'jpeg', 'png', 'bgr8; jpeg compressed bgr8')")
    buf = _as_uint8(p.data)
    if "compresseddepth" in fmt.lower():
        buf = buf[_DEPTH_HEADER_BYTES:]
    if buf.size == 0:
        raise ImageDecodeError(CORRUPT_COMPRESSED, f"compressed image ({fmt or 'no format'}) has no data")
    formats = [codec] if codec else ["JPEG", "PNG"]
    try:
        with Image.open(io.BytesIO(buf.tobytes()), formats=formats) as img:
            if img.width == 0 or img.height == 0:
                raise ImageDecodeError(ZERO_SIZE, f"compressed image has zero size ({img.width} x {img.height})")
            if img.width * img.height > MAX_PIXELS:
                raise ImageDecodeError(TOO_LARGE, f"compressed image of {img.width} x {img.height} exceeds "
                                       f"{MAX_PIXELS} pixels")
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                mono = ((arr >> 8) if img.mode != "I" else arr).clip(0, 255).astype(np.uint8)
                return np.repeat(mono[:, :, None], 3, axis=2)
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(CORRUPT_COMPRESSED, f"cannot decode compressed image ({fmt or 'no format'}, "
                               f"{buf.size} bytes): {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(TOO_LARGE, f"compressed image too large: {exc}") from None


def decode(p: ImagePayload | CompressedPayload) -> np.ndarray:
    """Decode either payload kind."""
    if isinstance(p, ImagePayload):
        return decode_image(p)
    if isinstance(p, CompressedPayload):
        return decode_compressed(p)
    raise ImageDecodeError(BAD_PAYLOAD, f"expected ImagePayload or CompressedPayload, got {type(p).__name__}")
