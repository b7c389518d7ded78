"""Training FoL (fol-method.md section 7): place data, the five losses, the trainer, `fol-vpr train`.

Names are imported lazily, so ``from fol_vpr_ros.cli.train import add_train_parser`` (done by
the CLI at start-up) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OptimConfig": "config", "SourceConfig": "config", "TrainConfig": "config",
    "AugmentConfig": "data", "LIGHT_AUGMENT": "data", "GsvCitiesSource": "data", "MapPlaceSource": "data",
    "MapPlacesConfig": "data", "PlaceBatch": "data", "PlaceBatchDataset": "data", "PlaceSource": "data",
    "SubsetSource": "data",
    "TrainTransform": "data", "TransformConfig": "data", "epoch_plan": "data", "gsv_image_name": "data",
    "split_places": "data",
    "LossConfig": "losses", "LossTerms": "losses", "fol_loss": "losses",
    "TrainResult": "trainer", "Trainer": "trainer", "resume": "trainer", "train": "trainer",
    "ValConfig": "validation", "ValResult": "validation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
