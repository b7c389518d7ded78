"""The one decoder of sensor_msgs/Image and sensor_msgs/CompressedImage payloads to H x W x 3 uint8 RGB.

Used by the node (live and replayed frames) and by the bag sources (build-map, evaluate-bag).
Errors are ``ImageDecodeError`` (an ``ImageError``) with a short ``kind`` so that the node can count
them per kind and log each kind once; ``error_kind`` classifies any exception the same way.
The returned array never shares memory with the message buffer.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ConfigError, ImageError, MapError

__all__ = [
    "COMPRESSED_TYPE",
    "ERROR_KINDS",
    "IMAGE_TYPE",
    "SUPPORTED_ENCODINGS",
    "CompressedPayload",
    "ImageDecodeError",
    "ImagePayload",
    "check_payload",
    "decode",
    "decode_compressed",
    "decode_image",
    "error_kind",
    "payload_from_message",
]

UNKNOWN_ENCODING = "unknown_encoding"
BAD_STEP = "bad_step"
ZERO_SIZE = "zero_size"
CORRUPT_COMPRESSED = "corrupt_compressed"
UNKNOWN_FORMAT = "unknown_format"
TOO_LARGE = "too_large"
BAD_PAYLOAD = "bad_payload"
ERROR_KINDS = (UNKNOWN_ENCODING, BAD_STEP, ZERO_SIZE, CORRUPT_COMPRESSED, UNKNOWN_FORMAT, TOO_LARGE, BAD_PAYLOAD)

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
MAX_PIXELS = 64_000_000  # refuse larger images (decompression bombs, corrupt headers)

# encoding -> (channels, bytes per channel, channel order). 8UC1/8UC3/8UC4 as cv_bridge reads them;
# 16-bit encodings keep their top 8 bits.
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
    "rgb16": (3, 2, "rgb"),
    "bgr16": (3, 2, "bgr"),
    "rgba16": (4, 2, "rgba"),
    "bgra16": (4, 2, "bgra"),
}
SUPPORTED_ENCODINGS = tuple(_ENCODINGS)
_BY_LOWER = {k.lower(): v for k, v in _ENCODINGS.items()}
_CODECS = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}
_DEPTH_HEADER_BYTES = 12  # compressed_depth_image_transport's ConfigHeader (format + 2 floats)
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I")  # 16-bit grey PNG (older Pillow: "I")


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
    topic: str = ""  # the camera topic it came from ('' = the node's image_topic)


@dataclass(frozen=True, eq=False)
class CompressedPayload:
    """The fields of a sensor_msgs/CompressedImage (``format`` e.g. 'jpeg', 'bgr8; jpeg compressed bgr8')."""

    stamp_ns: int
    frame_id: str
    format: str
    data: Any
    topic: str = ""  # the camera topic it came from ('' = the node's image_topic)


def payload_from_message(msgtype: str, msg: Any, stamp_ns: int) -> ImagePayload | CompressedPayload:
    """The payload of a sensor_msgs Image or CompressedImage message object (duck-typed; data not copied)."""
    frame_id = str(msg.header.frame_id)
    if msgtype == COMPRESSED_TYPE:
        return CompressedPayload(stamp_ns, frame_id, str(msg.format), msg.data)
    if msgtype == IMAGE_TYPE:
        return ImagePayload(stamp_ns, frame_id, str(msg.encoding), int(msg.height), int(msg.width), int(msg.step),
                            bool(msg.is_bigendian), msg.data)
    raise ImageDecodeError(BAD_PAYLOAD, f"not an image message ({msgtype})")


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


# ---------------------------------------------------------------------------------------------- raw
def _rosbags_image() -> tuple[Callable[..., Any], Callable[[str], Any]] | None:
    """rosbags-image's (converter, encoding parser) where it and OpenCV are installed, else None."""
    try:
        from rosbags.image import image_to_cvimage
        from rosbags.image.image import to_cvtype
    except ImportError:
        return None
    return image_to_cvimage, to_cvtype


def _unknown_encoding(enc: str) -> ImageDecodeError | None:
    """None when rosbags-image converts ``enc`` (bayer, yuv, ...), else the error to raise."""
    fallback = _rosbags_image()
    if fallback is not None:
        try:
            fallback[1](enc)
            return None
        except Exception:  # rosbags.image raises its own ImageError, KeyError or ValueError
            pass
    why = ("unknown to rosbags-image too" if fallback is not None
           else "others need opencv-python-headless for rosbags-image")
    return ImageDecodeError(UNKNOWN_ENCODING, f"unsupported encoding {enc!r}; supported: "
                            f"{', '.join(SUPPORTED_ENCODINGS)} ({why})")


@dataclass(frozen=True)
class _Layout:
    """A raw image's checked geometry; ``spec`` None: converted by rosbags-image."""

    encoding: str
    height: int
    width: int
    step: int
    spec: tuple[int, int, str] | None
    buf: np.ndarray


def _raw_layout(p: ImagePayload) -> _Layout:
    """Everything about a raw image that can be checked without decoding pixels; ImageDecodeError if bad."""
    height, width, step = _int_field(p.height, "height"), _int_field(p.width, "width"), _int_field(p.step, "step")
    enc = str(p.encoding).strip()
    spec = _ENCODINGS.get(enc) or _BY_LOWER.get(enc.lower())
    if spec is None and (err := _unknown_encoding(enc)) is not None:
        raise err
    if height == 0 or width == 0:
        raise ImageDecodeError(ZERO_SIZE, f"image has zero size ({width} x {height})")
    if height * width > MAX_PIXELS:
        raise ImageDecodeError(TOO_LARGE, f"image of {width} x {height} exceeds {MAX_PIXELS} pixels")
    buf = _as_uint8(p.data)
    if spec is None:
        return _Layout(enc, height, width, step, None, buf)
    channels, nbytes, _ = spec
    row_bytes = width * channels * nbytes
    if step < row_bytes:
        raise ImageDecodeError(BAD_STEP, f"{enc} image step {step} < width {width} x {channels * nbytes} bytes "
                               f"per pixel = {row_bytes}")
    need = step * (height - 1) + row_bytes  # the last row may come without its padding
    if buf.size < need:
        raise ImageDecodeError(BAD_STEP, f"image data too short for {width} x {height} {enc} (step {step}, "
                               f"{buf.size} bytes, needs {need})")
    return _Layout(enc, height, width, step, spec, buf)


def _to_rgb(px: np.ndarray, order: str) -> np.ndarray:
    """H x W x C uint8 in ``order`` -> a new C-contiguous H x W x 3 RGB array."""
    if order == "mono":
        return np.repeat(px, 3, axis=2)
    if order == "rgb":
        return px.copy()
    if order == "bgr":
        return np.ascontiguousarray(px[:, :, ::-1])
    if order == "rgba":
        return np.ascontiguousarray(px[:, :, :3])
    return np.ascontiguousarray(px[:, :, 2::-1])  # bgra


def _convert_other(p: ImagePayload, lay: _Layout) -> np.ndarray:
    """Encodings outside the table, through rosbags-image (needs OpenCV)."""
    convert = _rosbags_image()[0]
    try:
        rgb = convert(dataclasses.replace(p, encoding=lay.encoding, data=lay.buf), "rgb8")
        return np.array(rgb, dtype=np.uint8, copy=True).reshape(lay.height, lay.width, 3)
    except Exception as exc:  # rosbags.image.ImageError, OpenCV errors, buffers of the wrong size
        raise ImageDecodeError(BAD_PAYLOAD, f"cannot convert encoding {lay.encoding!r}: {exc}") from None


def decode_image(p: ImagePayload) -> np.ndarray:
    """H x W x 3 uint8 RGB from a raw image (the encodings of SUPPORTED_ENCODINGS; others via rosbags-image).

    Rows may be padded (``step`` > width * bytes per pixel, the last row possibly without its padding);
    16-bit images keep their top 8 bits (full range >> 8), read big- or little-endian as ``is_bigendian`` says.
    """
    lay = _raw_layout(p)
    if lay.spec is None:
        return _convert_other(p, lay)
    channels, nbytes, order = lay.spec
    height, width, step = lay.height, lay.width, lay.step
    buf = lay.buf
    if buf.size < step * height:
        buf = np.concatenate([buf, np.zeros(step * height - buf.size, np.uint8)])
    rows = buf[: step * height].reshape(height, step)[:, : width * channels * nbytes]
    if nbytes == 2:
        dtype = np.dtype(">u2" if p.is_bigendian else "<u2")
        px = (np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels) >> 8).astype(np.uint8)
    else:
        px = rows.reshape(height, width, channels)
    return _to_rgb(px, order)


# ---------------------------------------------------------------------------------------------- compressed
def _codec(fmt: str) -> str | None:
    """'JPEG' / 'PNG' named by a CompressedImage format, None when it names no codec ('' = detect)."""
    tokens = fmt.lower().replace(";", " ").replace(",", " ").split()
    for t in tokens:
        if t in _CODECS:
            return _CODECS[t]
    return None


def _compressed_bytes(p: CompressedPayload) -> tuple[str, list[str], np.ndarray]:
    """(format text, PIL formats to try, image bytes) of a CompressedImage; ImageDecodeError if unusable."""
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
    return fmt, [codec] if codec else ["JPEG", "PNG"], buf


def decode_compressed(p: CompressedPayload) -> np.ndarray:
    """H x W x 3 uint8 RGB from a JPEG or PNG CompressedImage (also '16UC1; compressedDepth png')."""
    fmt, formats, buf = _compressed_bytes(p)
    try:
        with Image.open(io.BytesIO(buf.tobytes()), formats=formats) as img:
            if img.width == 0 or img.height == 0:
                raise ImageDecodeError(ZERO_SIZE, f"compressed image has zero size ({img.width} x {img.height})")
            if img.width * img.height > MAX_PIXELS:
                raise ImageDecodeError(TOO_LARGE, f"compressed image of {img.width} x {img.height} exceeds "
                                       f"{MAX_PIXELS} pixels")
            img.load()
            if img.mode in _WIDE_MODES:  # 16-bit grey: keep the top 8 bits, as for raw 16-bit images
                mono = (np.asarray(img, dtype=np.int64).clip(0, 65535) >> 8).astype(np.uint8)
                return np.repeat(mono[:, :, None], 3, axis=2)
            return np.array(img.convert("RGB"), dtype=np.uint8)
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageDecodeError(CORRUPT_COMPRESSED, f"cannot decode compressed image ({fmt or 'no format'}, "
                               f"{buf.size} bytes): {exc}") from None
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(TOO_LARGE, f"compressed image too large: {exc}") from None


# ---------------------------------------------------------------------------------------------- either
def check_payload(p: ImagePayload | CompressedPayload) -> None:
    """Raise the ImageDecodeError that decoding would raise, as far as it shows without decoding pixels."""
    if isinstance(p, ImagePayload):
        _raw_layout(p)
    elif isinstance(p, CompressedPayload):
        _compressed_bytes(p)
    else:
        raise ImageDecodeError(BAD_PAYLOAD, f"expected ImagePayload or CompressedPayload, got {type(p).__name__}")


def decode(p: ImagePayload | CompressedPayload) -> np.ndarray:
    """Decode either payload kind."""
    if isinstance(p, ImagePayload):
        return decode_image(p)
    if isinstance(p, CompressedPayload):
        return decode_compressed(p)
    raise ImageDecodeError(BAD_PAYLOAD, f"expected ImagePayload or CompressedPayload, got {type(p).__name__}")
