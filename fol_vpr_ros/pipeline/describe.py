"""Describer: batches of images -> per-image FoL descriptions (torch or an exported model); the npz file."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_binary
from ..errors import ConfigError, ImageError
from ..export.metadata import ExportMetadata
from ..export.runners import DEFAULT_BACKEND, ExportedRunner, check_backend_file, open_exported
from ..image_io import read_image
from ..mapping import MapCompat, VprMap
from ..mapping.index import IndexConfig
from ..model import DEFAULT_INPUT_SIZE, SYNTHETIC_WARNING, FoLConfig, FoLOutput, LoadedModel, load_model, preprocess
from ..outputs import writing
from ..precision import Precision, parse_precision, resolve_precision
from ..progress import progress_bar

__all__ = [
    "Describer",
    "DescriberConfig",
    "Description",
    "ExportedDescriber",
    "ExportedModel",
    "ExportedSource",
    "descriptions_from_arrays",
    "load_descriptions_npz",
    "load_exported_describer",
    "map_for_describer",
    "save_descriptions_npz",
]

log = logging.getLogger(__name__)

# Files are decoded at no less than this many times the model input on their longer side (larger ones
# are downscaled while decoding, so an 8000 x 6000 photo does not cost gigabytes for a 322 x 322 input).
DECODE_OVERSAMPLE = 2


@dataclass
class Description:
    """One image's FoL description (numpy, on the host)."""

    global_desc: np.ndarray  # [D] float32, unit norm
    local: np.ndarray  # [n, 128] float32, unit norm rows under the region mask
    local_rc: np.ndarray  # [n, 2] int32 (row, col) on the local grid
    region_mask: np.ndarray  # [h, w] bool, patch resolution
    attention: np.ndarray  # [h*w] float32 class attention of the last block
    confidence: np.ndarray  # [h*w] float32 region selection map
    local_grid: tuple[int, int]  # (H, W) of the dense local map
    image_size: tuple[int, int] = (0, 0)  # (height, width) of the source image, if known
    name: str = ""

    @property
    def local_count(self) -> int:
        return int(self.local.shape[0])


@dataclass(frozen=True)
class DescriberConfig:
    """How to build a Describer: weights path or ``random:SEED``, architecture, input size, device,
    backbone precision (fp32 reference, bf16, fp16 or auto)."""

    weights: str = "random:0"
    arch: str = "auto"
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    device: str = "cpu"
    batch_size: int = 8
    depth: int | None = None  # fewer ViT blocks, for tests with synthetic weights
    backend: str = DEFAULT_BACKEND  # torch | onnxruntime (weights: a .onnx) | tensorrt (weights: a .engine)
    precision: Precision = Precision.FP32

    def __post_init__(self) -> None:
        object.__setattr__(self, "precision", parse_precision(self.precision))
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if len(self.input_size) != 2:
            raise ConfigError(f"input_size must be (height, width), got {self.input_size}")


def descriptions_from_arrays(
    global_desc: np.ndarray, local: np.ndarray, local_count: np.ndarray, local_rc: np.ndarray,
    region_mask: np.ndarray, attention: np.ndarray, confidence: np.ndarray, local_grid: tuple[int, int],
    names: Sequence[str], sizes: Sequence[tuple[int, int]],
) -> list[Description]:
    """Per-image Descriptions from batched host arrays with zero-padded local rows (torch or exported)."""
    counts = np.asarray(local_count).astype(np.int64)
    g = np.asarray(global_desc, np.float32)
    rows = np.asarray(local, np.float32)
    rc = np.asarray(local_rc).astype(np.int32)
    mask = np.asarray(region_mask).astype(bool)
    att = np.asarray(attention, np.float32)
    conf = np.asarray(confidence, np.float32)
    grid = (int(local_grid[0]), int(local_grid[1]))
    return [
        Description(
            global_desc=g[i],
            local=rows[i, : counts[i]].copy(),
            local_rc=rc[i, : counts[i]].copy(),
            region_mask=mask[i],
            attention=att[i],
            confidence=conf[i],
            local_grid=grid,
            image_size=sizes[i],
            name=names[i],
        )
        for i in range(len(counts))
    ]


def _split_output(out: FoLOutput, names: Sequence[str], sizes: Sequence[tuple[int, int]]) -> list[Description]:
    return descriptions_from_arrays(
        out.global_desc.float().cpu().numpy(), out.local.float().cpu().numpy(), out.local_count.cpu().numpy(),
        out.local_rc.cpu().numpy(), out.region_mask.cpu().numpy(), out.attention.float().cpu().numpy(),
        out.confidence.float().cpu().numpy(), tuple(out.local_dense.shape[1:3]), names, sizes)


class Describer:
    """Runs the FoL model on batches of images on the configured device."""

    def __init__(self, loaded: LoadedModel, batch_size: int = 8, precision: Precision | str = Precision.FP32) -> None:
        self.loaded = loaded
        self.model = loaded.model.eval()
        self.batch_size = batch_size
        self.device = next(self.model.parameters()).device
        self.precision = resolve_precision(precision, self.device)  # the backbone's; the rest stays fp32
        self.model.set_precision(self.precision)

    def map_compat(self) -> MapCompat:
        """The map identity this describer needs (model hash, architecture, input size, dims, precision)."""
        cfg = self.model.cfg
        return MapCompat(self.loaded.sha256, cfg.arch, cfg.input_size, cfg.descriptor_dim, cfg.local_head.out_dim,
                         self.precision.value)

    @classmethod
    def from_config(cls, cfg: DescriberConfig) -> Describer:
        """A torch Describer, or an ExportedDescriber for the onnxruntime / tensorrt backends."""
        check_backend_file(cfg.backend, cfg.weights)
        if cfg.backend != DEFAULT_BACKEND:
            return load_exported_describer(cfg, cfg.backend)
        loaded = load_model(cfg.weights, cfg.arch, cfg.input_size, cfg.device, depth=cfg.depth, warn=False)
        if loaded.synthetic:
            log.warning(SYNTHETIC_WARNING.format(spec=cfg.weights))
        return cls(loaded, cfg.batch_size, cfg.precision)

    def read_image(self, path: str | os.PathLike) -> np.ndarray:
        """An image file as RGB uint8, downscaled while decoding to DECODE_OVERSAMPLE x the model input."""
        return read_image(path, max_side=DECODE_OVERSAMPLE * max(self.input_size))

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.cfg.input_size

    @property
    def synthetic(self) -> bool:
        return self.loaded.synthetic

    @torch.inference_mode()
    def describe_tensor(
        self, batch: torch.Tensor, names: Sequence[str] | None = None, sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[Description]:
        """Descriptions of a normalised [B, 3, H, W] batch."""
        n = batch.shape[0]
        out = self.model(batch.to(self.device, non_blocking=True))
        return _split_output(out, names or [""] * n, sizes or [tuple(batch.shape[-2:])] * n)

    def describe_arrays(self, images: Sequence[np.ndarray], order: str = "rgb", names: Sequence[str] | None = None):
        """Descriptions of uint8 image arrays (RGB, BGR, mono, RGBA...), in batches."""
        names = list(names) if names is not None else [""] * len(images)
        result: list[Description] = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            x = torch.stack([preprocess(im, self.input_size, order) for im in chunk])
            sizes = [tuple(im.shape[:2]) for im in chunk]
            result.extend(self.describe_tensor(x, names[start : start + self.batch_size], sizes))
        return result

    def describe_files(
        self,
        paths: Sequence[str | os.PathLike],
        progress: bool = True,
        on_error: Callable[[Path, ImageError], None] | None = None,
    ) -> list[Description]:
        """Descriptions of image files; a bad file raises ImageError unless ``on_error`` takes it."""
        paths = [Path(p) for p in paths]
        out: list[Description] = []
        bar = progress_bar(total=len(paths), desc="describe", unit="img", enabled=progress)
        pending: list[tuple[Path, np.ndarray]] = []

        def flush() -> None:
            if pending:
                out.extend(self.describe_arrays([a for _, a in pending], names=[str(p) for p, _ in pending]))
                bar.update(len(pending))
                pending.clear()

        for p in paths:
            try:
                pending.append((p, self.read_image(p)))
            except ImageError as exc:
                if on_error is None:
                    bar.close()
                    raise
                on_error(p, exc)
                bar.update(1)
            if len(pending) >= self.batch_size:
                flush()
        flush()
        bar.close()
        return out


@dataclass(frozen=True)
class ExportedSource:
    """Provenance of an exported model, shaped like LoadedModel's (source, sha256, synthetic)."""

    source: str
    sha256: str
    synthetic: bool
    config: FoLConfig


class ExportedModel:
    """Stands in for FoLNet where only the configuration is read (``describer.model.cfg``)."""

    def __init__(self, cfg: FoLConfig, backend: str, path: Path) -> None:
        self.cfg, self.backend, self.path = cfg, backend, path


class ExportedDescriber(Describer):
    """A Describer whose forward runs an exported model (export.runners); same Description contract as torch."""

    def __init__(self, runner: ExportedRunner, meta: ExportMetadata, backend: str, path: Path,
                 batch_size: int = 8) -> None:
        self.runner = runner
        self.meta = meta
        self.backend = backend
        self.model = ExportedModel(meta.config, backend, path)
        self.loaded = ExportedSource(str(path), meta.model_hash, meta.synthetic, meta.config)
        self.batch_size = batch_size
        self.device = torch.device("cpu")
        self.precision = parse_precision(meta.precision)  # the exported backbone's (the map records it)

    def describe_tensor(self, batch: torch.Tensor, names: Sequence[str] | None = None,
                        sizes: Sequence[tuple[int, int]] | None = None) -> list[Description]:
        """Descriptions of a normalised [B, 3, H, W] batch (H, W must be the exported size)."""
        n = batch.shape[0]
        if tuple(batch.shape[-2:]) != self.input_size:
            raise ConfigError(f"{self.model.path}: exported for {self.input_size[0]} x {self.input_size[1]}, "
                              f"got a {batch.shape[-2]} x {batch.shape[-1]} batch")
        out = self.runner(batch.detach().float().cpu().numpy())
        return descriptions_from_arrays(
            out["global_desc"], out["local"], out["local_count"], out["local_rc"], out["region_mask"],
            out["attention"], out["confidence"], self.meta.config.local_grid,
            names or [""] * n, sizes or [tuple(batch.shape[-2:])] * n)


def load_exported_describer(cfg: DescriberConfig, backend: str) -> ExportedDescriber:
    """An ExportedDescriber for ``cfg.weights`` (a .onnx or .engine file), checked against ``cfg``."""
    runner, meta = open_exported(backend, cfg.weights, cfg.input_size, cfg.arch, cfg.device)
    if meta.synthetic:
        log.warning(SYNTHETIC_WARNING.format(spec=meta.source))
    return ExportedDescriber(runner, meta, backend, Path(cfg.weights), cfg.batch_size)


def save_descriptions_npz(descriptions: Sequence[Description], out: str | os.PathLike) -> Path:
    """Write the `describe` contract (global, local, local_count, local_rc, region_mask, attention,
    confidence; plus names and image_size) atomically."""
    if not descriptions:
        raise ConfigError("nothing to save: no descriptions")
    out = Path(out)
    b = len(descriptions)
    lmax = max(d.local_count for d in descriptions)
    dim = descriptions[0].local.shape[1]
    local = np.zeros((b, lmax, dim), np.float32)
    rc = np.full((b, lmax, 2), -1, np.int32)
    for i, d in enumerate(descriptions):
        local[i, : d.local_count] = d.local
        rc[i, : d.local_count] = d.local_rc
    arrays = {
        "global": np.stack([d.global_desc for d in descriptions]).astype(np.float32),
        "local": local,
        "local_count": np.array([d.local_count for d in descriptions], np.int64),
        "local_rc": rc,
        "region_mask": np.stack([d.region_mask for d in descriptions]).astype(np.uint8),
        "attention": np.stack([d.attention for d in descriptions]).astype(np.float32),
        "confidence": np.stack([d.confidence for d in descriptions]).astype(np.float32),
        "names": np.array([d.name for d in descriptions], dtype=np.str_),
        "image_size": np.array([d.image_size for d in descriptions], np.int64),
    }
    with writing(out, "descriptions file"), atomic_binary(out) as f:
        np.savez(f, **arrays)
    return out


def load_descriptions_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a `describe` output file (no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def map_for_describer(describer: Describer, path: str | os.PathLike | None, index: IndexConfig | None = None,
                      local_dtype: str = "float16", overwrite: bool = False) -> VprMap:
    """An empty map stamped with the describer's model hash, architecture, input size and precision."""
    cfg = describer.model.cfg
    return VprMap.create(path, arch=cfg.arch, input_size=cfg.input_size, model_hash=describer.loaded.sha256,
                         descriptor_dim=cfg.descriptor_dim, local_dim=cfg.local_head.out_dim,
                         local_dtype=local_dtype, index=index, overwrite=overwrite,
                         precision=describer.precision.value)
