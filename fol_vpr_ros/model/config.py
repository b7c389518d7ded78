"""Frozen configuration of the FoL network: backbone, aggregator, local head, presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import ConfigError

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_INPUT_SIZE",
    "PRESETS",
    "AggregatorConfig",
    "FoLConfig",
    "LocalHeadConfig",
    "ViTConfig",
    "arch_config",
    "preset",
    "resolve_preset",
]


# The authors' evaluation size (FoL, AAAI 2025): 322 x 322 -> a 23 x 23 patch grid with ViT/14.
DEFAULT_INPUT_SIZE: tuple[int, int] = (322, 322)


@dataclass(frozen=True)
class ViTConfig:
    """DINOv2 ViT hyper-parameters (defaults: the hub models built for 518 x 518)."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    ffn: str = "mlp"  # "mlp" (fc1/fc2, GELU) or "swiglu" (w12/w3, ViT-G)
    patch_size: int = 14
    pos_grid: int = 37  # pos_embed holds pos_grid**2 patch positions (518 / 14)
    interpolate_offset: float = 0.1
    ln_eps: float = 1e-6
    qkv_bias: bool = True

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        hidden = int(self.embed_dim * self.mlp_ratio)
        if self.ffn == "swiglu":  # DINOv2's SwiGLUFFNFused rounding
            hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        return hidden


ARCHITECTURES: dict[str, ViTConfig] = {
    "vits14": ViTConfig("vits14", embed_dim=384, depth=12, num_heads=6),
    "vitb14": ViTConfig("vitb14", embed_dim=768, depth=12, num_heads=12),
    "vitl14": ViTConfig("vitl14", embed_dim=1024, depth=24, num_heads=16),
    "vitg14": ViTConfig("vitg14", embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}


@dataclass(frozen=True)
class AggregatorConfig:
    """Optimal-transport aggregator and region selection (authors' defaults)."""

    num_clusters: int = 64
    cluster_dim: int = 128
    token_dim: int = 256
    hidden_dim: int = 512
    dropout: float = 0.3
    sinkhorn_iters: int = 3
    attention_floor: float = 0.01  # class-attention values below this leave the dustbin score at 1
    num_regions: int = 225  # patches kept in the region mask
    clip_top: int = 3  # largest entries overwritten before the softmax
    clip_rank_fraction: float = 0.05  # ... with the value at this fraction of the sorted map

    @property
    def descriptor_dim(self) -> int:
        return self.token_dim + self.num_clusters * self.cluster_dim


@dataclass(frozen=True)
class LocalHeadConfig:
    """Two stride-2 transposed convolutions turning the patch map into dense local features."""

    hidden_dim: int = 256
    out_dim: int = 128
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1

    def output_side(self, side: int) -> int:
        """Side of the dense local map for a patch grid side (23 -> 45 -> 89)."""
        for _ in range(2):
            side = (side - 1) * self.stride - 2 * self.padding + self.kernel_size
        return side


@dataclass(frozen=True)
class FoLConfig:
    """Whole-network configuration; the input size fixes every grid size."""

    backbone: ViTConfig
    aggregator: AggregatorConfig = field(default_factory=AggregatorConfig)
    local_head: LocalHeadConfig = field(default_factory=LocalHeadConfig)
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE
    trainable_blocks: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        self.grid_for(self.input_size)

    @property
    def arch(self) -> str:
        return self.backbone.name

    @property
    def descriptor_dim(self) -> int:
        return self.aggregator.descriptor_dim

    @property
    def grid(self) -> tuple[int, int]:
        return self.grid_for(self.input_size)

    @property
    def local_grid(self) -> tuple[int, int]:
        gh, gw = self.grid
        return self.local_head.output_side(gh), self.local_head.output_side(gw)

    def grid_for(self, size: tuple[int, int]) -> tuple[int, int]:
        """Patch grid for an input size, validating the size against the method's constraints."""
        h, w = (int(v) for v in size)
        p = self.backbone.patch_size
        if h <= 0 or w <= 0 or h % p or w % p:
            raise ConfigError(
                f"input size {h} x {w} is not a positive multiple of the patch size {p}: "
                f"use e.g. {max(p, round(h / p) * p)} x {max(p, round(w / p) * p)}"
            )
        gh, gw = h // p, w // p
        patches = gh * gw
        agg = self.aggregator
        if patches <= agg.num_clusters:
            raise ConfigError(
                f"input size {h} x {w} gives {patches} patches, but the aggregator needs more patches "
                f"than its {agg.num_clusters} clusters (the dustbin mass is patches - clusters)"
            )
        if agg.num_regions > patches:
            raise ConfigError(
                f"num_regions={agg.num_regions} exceeds the {patches} patches of a {h} x {w} input"
            )
        return gh, gw

    def with_input_size(self, size: tuple[int, int]) -> FoLConfig:
        return dataclasses.replace(self, input_size=tuple(size))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> FoLConfig:
        """Inverse of :meth:`to_dict` (e.g. from an exported model's metadata); ConfigError when malformed."""
        try:
            return cls(
                backbone=ViTConfig(**data["backbone"]),
                aggregator=AggregatorConfig(**data["aggregator"]),
                local_head=LocalHeadConfig(**data["local_head"]),
                input_size=tuple(data["input_size"]),
                trainable_blocks=int(data["trainable_blocks"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a FoL configuration: {exc!r}") from None


def arch_config(arch: str, depth: int | None = None) -> ViTConfig:
    """ViT config by name (vits14, vitb14, vitl14, vitg14), optionally with fewer blocks for tests."""
    key = arch.lower().replace("dinov2_", "").replace("-", "").replace("_", "")
    if key not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHITECTURES)}")
    cfg = ARCHITECTURES[key]
    if depth is not None:
        if depth < 1:
            raise ConfigError(f"depth must be >= 1, got {depth}")
        cfg = dataclasses.replace(cfg, depth=depth)
    return cfg


# Architecture and input size by one name (``--arch vitb14-322``).
PRESETS: dict[str, tuple[str, tuple[int, int]]] = {
    "vits14-322": ("vits14", DEFAULT_INPUT_SIZE),
    "vitb14-322": ("vitb14", DEFAULT_INPUT_SIZE),
    "vitl14-322": ("vitl14", DEFAULT_INPUT_SIZE),
    "vitl14-504": ("vitl14", (504, 504)),
}


def preset(name: str) -> FoLConfig:
    """Named configuration, e.g. ``vitb14-322``."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    arch, size = PRESETS[name]
    return FoLConfig(backbone=arch_config(arch), input_size=size)


def resolve_preset(arch: str, input_size: tuple[int, int] | None = None) -> tuple[str, tuple[int, int] | None]:
    """(architecture, input size) of an ``arch`` that may name a preset: a preset gives both, any other name
    passes through with ``input_size``. ConfigError when a preset's size and ``input_size`` disagree."""
    if arch not in PRESETS:
        return arch, None if input_size is None else (int(input_size[0]), int(input_size[1]))
    cfg = preset(arch)
    if input_size is not None and tuple(int(v) for v in input_size) != cfg.input_size:
        raise ConfigError(f"arch {arch} is {cfg.arch} at {cfg.input_size[0]} x {cfg.input_size[1]}, but input size "
                          f"{input_size[0]} x {input_size[1]} was requested (--resize); give one of them")
    return cfg.arch, cfg.input_size
