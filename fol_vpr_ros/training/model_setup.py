"""The model a training run starts from (synthetic, a FoL checkpoint or a DINOv2 backbone), which of its
parameters train, and the autocast dtype."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch

from ..console import banner
from ..errors import CheckpointError, ConfigError
from ..model.checkpoint import SYNTHETIC_WARNING, _check_keys, infer_arch, read_state_dict, synthetic_model
from ..model.config import ARCHITECTURES, FoLConfig, arch_config
from ..model.fol import FoLNet
from .config import TrainConfig

__all__ = ["amp_dtype_for", "freeze_backbone", "init_model"]

log = logging.getLogger(__name__)


def init_model(cfg: TrainConfig) -> tuple[FoLNet, str, bool]:
    """Model for ``cfg`` and a description of its weights: synthetic (warning), a FoL checkpoint, or a
    plain DINOv2 backbone state dict (keys ``cls_token``, ``blocks.N...``; heads synthetic)."""
    size = cfg.transform.size
    weights = cfg.weights

    def config(arch: str, depth: int | None) -> FoLConfig:
        return FoLConfig(backbone=arch_config(arch, depth), input_size=size, trainable_blocks=cfg.trainable_blocks)

    if weights is None or weights.startswith("random"):
        seed_text = weights.partition(":")[2] if weights else ""
        try:
            seed = int(seed_text) if seed_text else cfg.seed
        except ValueError:
            raise ConfigError(f"--weights random:SEED needs an integer seed, got {weights!r}") from None
        model = synthetic_model(config(cfg.arch, cfg.depth), seed)
        spec = f"random:{seed}"
        warnings.warn(SYNTHETIC_WARNING.format(spec=spec) + " Training starts from random weights, not DINOv2: "
                      "pass --weights (a FoL checkpoint or a DINOv2 backbone state dict).", UserWarning, stacklevel=2)
        log.warning("%s", banner("TRAINING FROM SYNTHETIC (RANDOM) WEIGHTS - no DINOv2 initialisation."))
        return model, spec, True

    state = read_state_dict(weights)
    if "backbone.model.cls_token" in state:
        found, depth = infer_arch(state, weights)
        if cfg.arch != "auto" and cfg.arch != found:
            raise CheckpointError(f"{weights}: checkpoint holds a {found} backbone, but --arch {cfg.arch} was asked")
        if cfg.depth is not None and cfg.depth != depth:
            raise CheckpointError(f"{weights}: checkpoint has {depth} blocks, but --depth {cfg.depth} was asked")
        model = FoLNet(config(found, depth))
        _check_keys(model, state, weights)
        model.load_state_dict(state)
        return model, f"fol:{weights}", False
    if "cls_token" in state and any(k.startswith("blocks.") for k in state):
        return _from_dinov2(cfg, state, weights, config)
    raise CheckpointError(f"{weights}: neither a FoL checkpoint nor a DINOv2 backbone state dict "
                          f"(first keys: {', '.join(list(state)[:5])})")


def _from_dinov2(cfg: TrainConfig, state: dict[str, torch.Tensor], weights: str, config: Any
                 ) -> tuple[FoLNet, str, bool]:
    width = state["cls_token"].shape[-1]
    names = [n for n, a in ARCHITECTURES.items() if a.embed_dim == width]
    if not names:
        raise CheckpointError(f"{weights}: backbone width {width} matches no DINOv2 ViT/14")
    if cfg.arch != "auto" and cfg.arch != names[0]:
        raise CheckpointError(f"{weights}: DINOv2 backbone is {names[0]}, but --arch {cfg.arch} was asked")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    if cfg.depth is not None and cfg.depth != depth:
        raise CheckpointError(f"{weights}: backbone has {depth} blocks, but --depth {cfg.depth} was asked")
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    if any(k.startswith("register_tokens") for k in state):
        raise CheckpointError(f"{weights}: DINOv2 with register tokens is not supported by FoL")
    model = synthetic_model(config(names[0], depth), cfg.seed)
    vit = model.backbone.model
    expected = vit.state_dict()
    missing = sorted(set(expected) - set(state) - {"mask_token"})
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise CheckpointError(f"{weights}: DINOv2 state dict does not fit the {names[0]} backbone: missing "
                              f"{missing[:5]}, unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    vit.load_state_dict(state, strict=False)
    log.warning("backbone initialised from DINOv2 weights %s; aggregator and local head start random", weights)
    return model, f"dinov2:{weights}", False


def freeze_backbone(model: FoLNet) -> list[torch.nn.Parameter]:
    """requires_grad=False on the patch embedding, position/class/mask tokens and all but the last
    ``trainable_blocks`` blocks; returns the parameters left trainable."""
    vit = model.backbone.model
    frozen = len(vit.blocks) - model.backbone.trainable_blocks
    for p in vit.patch_embed.parameters():
        p.requires_grad_(False)
    for p in (vit.pos_embed, vit.cls_token, vit.mask_token):
        p.requires_grad_(False)
    for blk in vit.blocks[:frozen]:
        for p in blk.parameters():
            p.requires_grad_(False)
    return [p for p in model.parameters() if p.requires_grad]


def amp_dtype_for(mode: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: float16 on CUDA for 'auto'; None (full precision) on CPU or 'off'."""
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return None
    if device.type != "cuda":
        raise ConfigError(f"mixed precision ({mode}) is only supported on CUDA; use --amp off on {device}")
    return torch.bfloat16 if mode == "bfloat16" else torch.float16
