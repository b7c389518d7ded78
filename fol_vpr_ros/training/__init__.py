"""Training FoL (fol-method.md section 7): places, batches, the five losses, the trainer, validation.

Names are imported lazily: importing ``fol_vpr_ros.training`` loads no submodule (and no torch)
until one of its names is used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "OptimConfig": "config", "SourceConfig": "config", "TrainConfig": "config",
    "AugmentConfig": "data", "LIGHT_AUGMENT": "data", "PlaceBatch": "data", "PlaceBatchDataset": "data",
    "TrainTransform": "data", "TransformConfig": "data", "epoch_plan": "data",
    "GsvCitiesSource": "places", "MapPlaceSource": "places", "MapPlacesConfig": "places", "PlaceSource": "places",
    "SubsetSource": "places", "gsv_image_name": "places", "split_places": "places",
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
