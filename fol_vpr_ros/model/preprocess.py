"""Image arrays -> normalised tensors, exactly as the authors' test transform does it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ImageError

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "preprocess", "preprocess_batch", "to_rgb_uint8"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_ORDERS = ("rgb", "bgr", "rgba", "bgra", "mono")


def to_rgb_uint8(image: np.ndarray, order: str = "rgb") -> np.ndarray:
    """H x W x 3 uint8 RGB from an RGB/BGR/RGBA/BGRA/mono uint8 or uint16 array.

    uint16 (16-bit mono depth-style images) is scaled to 8 bits by its full range.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(image).__name__}")
    order = order.lower()
    if order not in _ORDERS:
        raise ImageError(f"unknown channel order {order!r}; valid: {', '.join(_ORDERS)}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"unsupported image dtype {image.dtype}; expected uint8 (or uint16 mono)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image has shape {image.shape}; expected a non-empty H x W or H x W x C array")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    channels = image.shape[2]
    if channels == 3 and order in ("rgb", "bgr", "mono"):
        return np.ascontiguousarray(image[:, :, ::-1]) if order == "bgr" else image
    if channels == 4 and order in ("rgba", "bgra", "rgb", "bgr"):
        rgb = image[:, :, :3]
        return np.ascontiguousarray(rgb[:, :, ::-1]) if order.startswith("bgr") else np.ascontiguousarray(rgb)
    raise ImageError(f"image with {channels} channels does not fit channel order {order!r}")


def preprocess(image: np.ndarray, size: tuple[int, int], order: str = "rgb") -> torch.Tensor:
    """[3, H, W] float32: uint8 -> [0, 1] -> ImageNet normalisation -> bilinear resize (no antialias)."""
    rgb = to_rgb_uint8(image, order)
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = (x - mean) / std
    h, w = (int(v) for v in size)
    if x.shape[-2:] != (h, w):
        x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False, antialias=False)[0]
    return x


def preprocess_batch(images: Sequence[np.ndarray], size: tuple[int, int], order: str = "rgb") -> torch.Tensor:
    """[B, 3, H, W] from a sequence of arrays of any sizes."""
    if len(images) == 0:
        raise ImageError("no images given")
    return torch.stack([preprocess(im, size, order) for im in images])
