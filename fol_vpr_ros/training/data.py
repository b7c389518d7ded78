"""Training data: place batches (P places x K images) and the training transform.

Every batch holds P distinct places of a ``PlaceSource`` (``training.places``) with K images each
(place-major order: image ``i`` belongs to place ``i // K``). Which places and images a batch holds is
a pure function of (seed, epoch, batch index), so runs are reproducible and a resumed run sees exactly
the batches an uninterrupted run would have seen, with or without loader workers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..model.config import DEFAULT_INPUT_SIZE
from ..model.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .places import PlaceSource

__all__ = [
    "LIGHT_AUGMENT",
    "AugmentConfig",
    "PlaceBatch",
    "PlaceBatchDataset",
    "TrainTransform",
    "TransformConfig",
    "batches_per_epoch",
    "epoch_plan",
]


# ------------------------------------------------------------------------------------------ transform
@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation, all off by default: random resized crop (area fraction range), horizontal
    flip probability, colour jitter strengths (factors drawn from [1 - s, 1 + s])."""

    crop_scale: tuple[float, float] = (1.0, 1.0)
    hflip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.crop_scale)
        object.__setattr__(self, "crop_scale", (lo, hi))
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"hflip probability must be in [0, 1], got {self.hflip}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} jitter must be in [0, 1), got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


# `fol-vpr train --augment`: crop 0.7-1.0 of the area, colour jitter 0.2
LIGHT_AUGMENT = AugmentConfig(crop_scale=(0.7, 1.0), brightness=0.2, contrast=0.2, saturation=0.2)


@dataclass(frozen=True)
class TransformConfig:
    """Training input: resize to ``size`` (PIL bilinear), scale to [0, 1]; ImageNet normalisation only
    with ``normalize`` (the authors train without it); optional augmentation."""

    size: tuple[int, int] = DEFAULT_INPUT_SIZE
    normalize: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input size must be (height, width), got {self.size}")
        object.__setattr__(self, "size", size)


class TrainTransform:
    """uint8 RGB array -> [3, H, W] float32 tensor; ``rng`` drives the (optional) augmentation."""

    def __init__(self, cfg: TransformConfig, train: bool = True) -> None:
        self.cfg = cfg
        self.train = train

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        cfg, aug = self.cfg, self.cfg.augment
        use_aug = self.train and aug.enabled and rng is not None
        img = Image.fromarray(image)
        if use_aug and aug.crop_scale != (1.0, 1.0):
            s = math.sqrt(rng.uniform(*aug.crop_scale))
            w, h = max(1, round(img.width * s)), max(1, round(img.height * s))
            x0, y0 = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
            img = img.crop((x0, y0, x0 + w, y0 + h))
        h, w = cfg.size
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        if use_aug and rng.random() < aug.hflip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        if use_aug:
            x = _jitter(x, aug, rng)
        if cfg.normalize:
            x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return x


def _jitter(x: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    def factor(s: float) -> float:
        return float(rng.uniform(1 - s, 1 + s)) if s > 0 else 1.0

    x = x * factor(aug.brightness)
    c = factor(aug.contrast)
    if c != 1.0:
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
        x = (x - gray) * c + gray
    s = factor(aug.saturation)
    if s != 1.0:
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        x = (x - gray) * s + gray
    return x.clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------------- batches
@dataclass
class PlaceBatch:
    """P places x K images, place-major: ``images`` [P*K, 3, H, W], ``labels`` [P*K] (place index in
    the source), ``epoch`` and ``index`` (batch number within the epoch)."""

    images: torch.Tensor
    labels: torch.Tensor
    epoch: int
    index: int

    def pin_memory(self) -> PlaceBatch:
        return PlaceBatch(self.images.pin_memory(), self.labels.pin_memory(), self.epoch, self.index)


def epoch_plan(place_sizes: Sequence[int], places_per_batch: int, images_per_place: int, seed: int,
               epoch: int) -> list[list[tuple[int, list[int]]]]:
    """Batches of one epoch: each a list of (place, image indices). Every place appears at most once per
    epoch, images of a place are drawn without replacement; the last incomplete batch is dropped."""
    rng = np.random.default_rng([int(seed), int(epoch), 104729])
    eligible = np.flatnonzero(np.asarray(place_sizes) >= images_per_place)
    order = eligible[rng.permutation(len(eligible))]
    batches = []
    for b in range(len(order) // places_per_batch):
        chunk = order[b * places_per_batch : (b + 1) * places_per_batch]
        batches.append([(int(p), sorted(rng.choice(place_sizes[p], images_per_place, replace=False).tolist()))
                        for p in chunk])
    return batches


class PlaceBatchDataset(torch.utils.data.Dataset):
    """Batches ``start..`` of one epoch as a map-style dataset (use a DataLoader with ``batch_size=None``)."""

    def __init__(self, source: PlaceSource, transform: TrainTransform, places_per_batch: int,
                 images_per_place: int, seed: int, epoch: int, start: int = 0) -> None:
        self.source = source
        self.transform = transform
        self.seed, self.epoch, self.start = int(seed), int(epoch), int(start)
        sizes = [source.place_size(p) for p in range(len(source))]
        self.plan = epoch_plan(sizes, places_per_batch, images_per_place, seed, epoch)

    def __len__(self) -> int:
        return max(0, len(self.plan) - self.start)

    def __getitem__(self, i: int) -> PlaceBatch:
        b = self.start + int(i)
        images, labels = [], []
        for j, (place, idx) in enumerate(self.plan[b]):
            for m, k in enumerate(idx):
                rng = np.random.default_rng([self.seed, self.epoch, b, j, m])
                images.append(self.transform(self.source.load(place, k), rng))
                labels.append(place)
        return PlaceBatch(torch.stack(images), torch.tensor(labels, dtype=torch.long), self.epoch, b)


def batches_per_epoch(source: PlaceSource, places_per_batch: int, images_per_place: int) -> int:
    eligible = sum(1 for p in range(len(source)) if source.place_size(p) >= images_per_place)
    return eligible // places_per_batch
