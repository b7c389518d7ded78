"""Frozen configuration of a training run, with a JSON round trip (``RUN_DIR/config.json``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..model.config import ARCHITECTURES, FoLConfig, arch_config
from .data import AugmentConfig, TransformConfig
from .losses import LossConfig
from .places import MapPlacesConfig
from .validation import ValConfig

__all__ = ["AMP_MODES", "IMAGES_PER_PLACE", "PLACES_PER_BATCH", "OptimConfig", "SourceConfig", "TrainConfig"]

AMP_MODES = ("auto", "off", "float16", "bfloat16")
PLACES_PER_BATCH = 60  # P places per batch (the paper's)
IMAGES_PER_PLACE = 4  # K images per place (the paper's)


@dataclass(frozen=True)
class SourceConfig:
    """Where places come from: ``kind`` 'gsv' (GSV-Cities root) or 'map' (a map directory)."""

    kind: str
    root: str
    cities: tuple[str, ...] | None = None
    skip_missing: bool = False
    map_places: MapPlacesConfig = field(default_factory=MapPlacesConfig)

    def __post_init__(self) -> None:
        if self.kind not in ("gsv", "map"):
            raise ConfigError(f"data source kind must be 'gsv' or 'map', got {self.kind!r}")
        if not self.root:
            raise ConfigError("no training data given: pass --gsv-root DIR or --map MAP_DIR")
        object.__setattr__(self, "root", str(self.root))
        if self.cities is not None:
            object.__setattr__(self, "cities", tuple(str(c) for c in self.cities) or None)


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear LR decay to ``lr_end_factor`` x lr over ``lr_decay_iters`` steps, then constant."""

    lr: float = 6e-5
    weight_decay: float = 9.5e-9
    lr_end_factor: float = 0.1
    lr_decay_iters: int = 10_000
    clip_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"learning rate must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            raise ConfigError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 < self.lr_end_factor <= 1:
            raise ConfigError(f"lr_end_factor must be in (0, 1], got {self.lr_end_factor}")
        if self.lr_decay_iters < 1:
            raise ConfigError(f"lr_decay_iters must be >= 1, got {self.lr_decay_iters}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ConfigError(f"gradient clipping norm must be > 0 (or None), got {self.clip_grad_norm}")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Exactly one of ``steps`` / ``epochs``; ``weights`` None = synthetic start."""

    out_dir: str
    source: SourceConfig
    arch: str = "auto"
    depth: int | None = None
    weights: str | None = None
    steps: int | None = None
    epochs: int | None = None
    places_per_batch: int = PLACES_PER_BATCH
    images_per_place: int = IMAGES_PER_PLACE
    trainable_blocks: int = 4
    transform: TransformConfig = field(default_factory=TransformConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    device: str = "cpu"
    amp: str = "auto"
    seed: int = 0
    deterministic: bool = True
    workers: int = 0
    save_every_steps: int | None = None
    log_every_steps: int = 1
    keep_epoch_checkpoints: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", str(self.out_dir))
        if self.arch != "auto":
            object.__setattr__(self, "arch", arch_config(self.arch).name)
        elif self.weights is None or str(self.weights).startswith("random"):
            raise ConfigError(f"--arch is needed without a checkpoint (--weights); one of {', '.join(ARCHITECTURES)}")
        if self.depth is not None and self.depth < 1:
            raise ConfigError(f"depth must be >= 1, got {self.depth}")
        arch = "vits14" if self.arch == "auto" else self.arch  # all ViT/14: same grid constraints
        FoLConfig(backbone=arch_config(arch), input_size=self.transform.size)  # fail fast on a bad input size
        if (self.steps is None) == (self.epochs is None):
            raise ConfigError("give exactly one of --steps N or --epochs E")
        for name in ("steps", "epochs"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        if self.places_per_batch < 2:
            raise ConfigError(f"places per batch must be >= 2 (negatives come from other places), "
                              f"got {self.places_per_batch}")
        if self.images_per_place < 2:
            raise ConfigError(f"images per place must be >= 2 (positives), got {self.images_per_place}")
        if self.trainable_blocks < 1:
            raise ConfigError(f"trainable_blocks must be >= 1, got {self.trainable_blocks}")
        if self.amp not in AMP_MODES:
            raise ConfigError(f"amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.save_every_steps is not None and self.save_every_steps < 1:
            raise ConfigError(f"save_every_steps must be >= 1, got {self.save_every_steps}")
        if self.log_every_steps < 1:
            raise ConfigError(f"log_every_steps must be >= 1, got {self.log_every_steps}")

    @property
    def batch_images(self) -> int:
        return self.places_per_batch * self.images_per_place

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TrainConfig:
        """Inverse of ``to_dict`` (unknown keys are refused)."""
        nested = {"source": SourceConfig, "transform": TransformConfig, "optim": OptimConfig, "loss": LossConfig,
                  "val": ValConfig}
        try:
            d = dict(obj)
            for key, kind in nested.items():
                if key in d:
                    sub = dict(d[key])
                    if key == "source" and "map_places" in sub:
                        sub["map_places"] = MapPlacesConfig(**sub["map_places"])
                    if key == "transform" and "augment" in sub:
                        sub["augment"] = AugmentConfig(**sub["augment"])
                    d[key] = kind(**sub)
            return cls(**d)
        except TypeError as exc:
            raise ConfigError(f"invalid training configuration: {exc}") from None
