"""`fol-vpr describe`: image files (or one preprocessed batch) -> an npz of FoL descriptions."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError, ImageError
from ..export.runners import DEFAULT_BACKEND, exported_input_size
from ..image_io import list_images
from ..model import DEFAULT_INPUT_SIZE
from ..outputs import check_output_file
from ..pipeline.describe import Describer, DescriberConfig, save_descriptions_npz
from ..precision import Precision

__all__ = ["DescribeResult", "default_input_size", "describe"]


@dataclass
class DescribeResult:
    """What `fol-vpr describe` produced."""

    out: Path
    count: int
    synthetic: bool
    arch: str
    input_size: tuple[int, int]
    local_counts: list[int] = field(default_factory=list)
    precision: Precision = Precision.FP32


def default_input_size(weights: str, backend: str = DEFAULT_BACKEND) -> tuple[int, int]:
    """The input size used without --resize: an exported model's own size, else ``model.DEFAULT_INPUT_SIZE``."""
    return exported_input_size(backend, weights) or DEFAULT_INPUT_SIZE


def _read_preprocessed(path: Path) -> torch.Tensor:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot read preprocessed array (.npy float32 B x 3 x H x W): {exc}") from None
    if arr.dtype != np.float32:
        raise ImageError(f"{path}: preprocessed array has dtype {arr.dtype}; expected float32")
    if arr.ndim != 4 or arr.shape[1] != 3 or arr.shape[0] == 0:
        raise ImageError(f"{path}: preprocessed array has shape {arr.shape}; expected B x 3 x H x W with B >= 1")
    if not np.isfinite(arr).all():
        raise ImageError(f"{path}: preprocessed array contains NaN or infinite values")
    return torch.from_numpy(arr)


def describe(
    weights: str,
    images: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "descriptions.npz",
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    device: str = "cpu",
    preprocessed: str | os.PathLike | None = None,
    batch_size: int = 8,
    progress: bool = True,
    backend: str = DEFAULT_BACKEND,
    precision: Precision | str = Precision.FP32,
) -> DescribeResult:
    """Describe image files (or one preprocessed .npy batch) and write the npz contract."""
    if bool(images) == (preprocessed is not None):
        raise ConfigError("give either image files or --preprocessed X.npy, not both and not neither")
    check_output_file(out, "--out")
    tensor = _read_preprocessed(Path(preprocessed)) if preprocessed is not None else None
    if tensor is not None:
        size = tuple(tensor.shape[-2:])
        if resize is not None and tuple(resize) != size:
            raise ConfigError(
                f"--resize {resize[0]} {resize[1]} differs from the preprocessed size {size[0]} {size[1]}"
            )
    else:
        size = tuple(resize) if resize is not None else default_input_size(weights, backend)
    describer = Describer.from_config(DescriberConfig(weights, arch, size, device, batch_size, backend=backend,
                                                      precision=precision))
    if tensor is not None:
        descs = []
        names = [f"{preprocessed}[{i}]" for i in range(tensor.shape[0])]
        for s in range(0, tensor.shape[0], batch_size):
            descs.extend(describer.describe_tensor(tensor[s : s + batch_size], names[s : s + batch_size]))
    else:
        descs = describer.describe_files(list_images(images), progress=progress)
    path = save_descriptions_npz(descs, out)
    cfg = describer.model.cfg
    return DescribeResult(path, len(descs), describer.synthetic, cfg.arch, size, [d.local_count for d in descs],
                          describer.precision)
