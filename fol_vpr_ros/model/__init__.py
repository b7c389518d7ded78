"""The FoL network: config, DINOv2 backbone, aggregator, local head, checkpoints, preprocessing."""

from .checkpoint import (
    SYNTHETIC_WARNING,
    LoadedModel,
    infer_arch,
    load_model,
    read_state_dict,
    resolve_device,
    save_checkpoint,
    synthetic_model,
)
from .config import (
    ARCHITECTURES,
    DEFAULT_INPUT_SIZE,
    PRESETS,
    AggregatorConfig,
    FoLConfig,
    LocalHeadConfig,
    ViTConfig,
    arch_config,
    preset,
    resolve_preset,
)
from .fol import FoLNet, FoLOutput, select_local_rows
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess, preprocess_batch, to_rgb_uint8

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_INPUT_SIZE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PRESETS",
    "SYNTHETIC_WARNING",
    "AggregatorConfig",
    "FoLConfig",
    "FoLNet",
    "FoLOutput",
    "LoadedModel",
    "LocalHeadConfig",
    "ViTConfig",
    "arch_config",
    "infer_arch",
    "load_model",
    "preprocess",
    "preprocess_batch",
    "preset",
    "read_state_dict",
    "resolve_device",
    "resolve_preset",
    "save_checkpoint",
    "select_local_rows",
    "synthetic_model",
    "to_rgb_uint8",
]
