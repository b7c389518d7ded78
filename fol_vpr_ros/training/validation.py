"""Validation during training: Recall@N after re-ranking, on held-out places or a VPR dataset.

Sets (``ValConfig.spec``):

* ``holdout:FRACTION`` - places held out of the training source (never trained on); per place the
  first image is the query and its other images are the database (positives: same place).
* ``bundled:NAME`` - a bundled dataset (gardenspoint, corridor, nordland) under ``data_root``.
* a directory in the common VPR layout (``images/test/{database,queries}`` with UTM file names,
  positives within 25 m).

Images go through the training transform without augmentation (so a model trained without
ImageNet normalisation is validated the same way). Retrieval: exact inner product over global
descriptors, top ``top_k``; re-ranking by mutual-nearest-neighbour counts (``mnn_scores``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..evaluation.metrics import recall_at_n
from ..image_io import read_image
from ..model.fol import FoLNet
from ..pipeline.rerank import DEFAULT_THRESHOLD, mnn_scores, rerank_order
from .data import TrainTransform
from .places import PlaceSource

__all__ = ["ValConfig", "ValResult", "ValSet", "evaluate_recall", "val_set_from_dataset", "val_set_from_places"]


@dataclass(frozen=True)
class ValConfig:
    """Which validation set, how often (epochs), and retrieval settings."""

    spec: str | None = None
    data_root: str = "../shared/data"
    every_epochs: int = 1
    max_places: int = 200
    top_k: int = 100
    threshold: float = DEFAULT_THRESHOLD
    batch_size: int = 16
    recall_values: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recall_values", tuple(int(n) for n in self.recall_values))
        if self.every_epochs < 1 or self.max_places < 1 or self.top_k < 1 or self.batch_size < 1:
            raise ConfigError("validation every_epochs, max_places, top_k and batch_size must be >= 1")
        if 5 not in self.recall_values:
            raise ConfigError("recall_values must include 5 (best.pth is chosen by Recall@5)")
        if self.spec is not None:
            self.holdout_fraction  # noqa: B018 - validates the spec

    @property
    def holdout_fraction(self) -> float | None:
        if self.spec is None or not self.spec.startswith("holdout"):
            return None
        _, _, frac = self.spec.partition(":")
        try:
            value = float(frac or 0.05)
        except ValueError:
            raise ConfigError(f"--val holdout:FRACTION needs a number, got {self.spec!r}") from None
        if not 0 < value < 1:
            raise ConfigError(f"--val holdout fraction must be in (0, 1), got {value}")
        return value


@dataclass
class ValSet:
    """Query and database images (loaders returning uint8 RGB) with per-query positive indices."""

    name: str
    queries: list[Callable[[], np.ndarray]]
    database: list[Callable[[], np.ndarray]]
    positives: list[np.ndarray]

    def __post_init__(self) -> None:
        if not self.queries or not self.database:
            raise ConfigError(f"validation set {self.name!r} has no queries or no database images")


@dataclass
class ValResult:
    """Recall@N (percent) with global retrieval only and after re-ranking."""

    name: str
    recall_global: dict[int, float]
    recall_rerank: dict[int, float]

    @property
    def r5(self) -> float:
        return self.recall_rerank[5]


def val_set_from_places(source: PlaceSource, name: str = "holdout") -> ValSet:
    """Per place: image 0 is the query, the others are the database."""
    queries, database, positives = [], [], []
    for p in range(len(source)):
        n = source.place_size(p)
        if n < 2:
            continue
        queries.append(lambda p=p: source.load(p, 0))
        start = len(database)
        database.extend(lambda p=p, k=k: source.load(p, k) for k in range(1, n))
        positives.append(np.arange(start, len(database), dtype=np.int64))
    return ValSet(name, queries, database, positives)


def val_set_from_dataset(spec: str, data_root: str | os.PathLike = "../shared/data") -> ValSet:
    """A bundled dataset (``bundled:NAME``) or a VPR-layout folder."""
    from ..evaluation.ground_truth import bundled_ground_truth, image_names, utm_ground_truth

    if spec.startswith("bundled:"):
        ds = bundled_ground_truth(data_root, spec.partition(":")[2])
    elif Path(spec).is_dir():
        ds = utm_ground_truth(spec)
    else:
        raise ConfigError(f"--val {spec!r}: not holdout:FRACTION, bundled:NAME or an existing VPR folder")
    db_names = list(ds.ground_truth.database or image_names(ds.map_dir))
    positives = ds.ground_truth.positive_indices(db_names)
    queries = [lambda n=n: read_image(ds.queries_dir / n) for n in ds.ground_truth.queries]
    database = [lambda n=n: read_image(ds.map_dir / n) for n in db_names]
    return ValSet(spec, queries, database, positives)


@torch.no_grad()
def _describe(model: FoLNet, loaders: Sequence[Callable[[], np.ndarray]], transform: TrainTransform,
              device: torch.device, batch_size: int, amp_dtype: torch.dtype | None
              ) -> tuple[np.ndarray, list[np.ndarray]]:
    globals_, locals_ = [], []
    for s in range(0, len(loaders), batch_size):
        x = torch.stack([transform(f()) for f in loaders[s : s + batch_size]]).to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(x)
        globals_.append(out.global_desc.float().cpu().numpy())
        rows = out.local.to(torch.float16).cpu().numpy()
        locals_.extend(rows[i, : int(c)] for i, c in enumerate(out.local_count.tolist()))
    return np.concatenate(globals_), locals_


def evaluate_recall(model: FoLNet, val: ValSet, transform: TrainTransform, cfg: ValConfig, device: torch.device,
                    amp_dtype: torch.dtype | None = None) -> ValResult:
    """Recall@N of ``val`` (model switched to eval mode and back)."""
    was_training = model.training
    model.eval()
    try:
        qg, ql = _describe(model, val.queries, transform, device, cfg.batch_size, amp_dtype)
        dg, dl = _describe(model, val.database, transform, device, cfg.batch_size, amp_dtype)
    finally:
        model.train(was_training)
    k = min(cfg.top_k, len(dg))
    sims = qg @ dg.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    reranked = np.empty_like(top)
    lmax = max(1, max(len(x) for x in dl))
    cand = np.zeros((k, lmax, qg.shape[1] if not dl else dl[0].shape[1]), dtype=np.float16)
    counts = np.zeros(k, dtype=np.int64)
    for q in range(len(qg)):  # rows past counts[r] are ignored by mnn_scores: no need to clear them
        for r, d in enumerate(top[q]):
            cand[r, : len(dl[d])] = dl[d]
            counts[r] = len(dl[d])
        scores = mnn_scores(ql[q], len(ql[q]), cand, counts, cfg.threshold, device="cpu")
        reranked[q] = top[q][rerank_order(scores, sims[q, top[q]])]
    ns = cfg.recall_values
    return ValResult(val.name, recall_at_n(top, val.positives, ns), recall_at_n(reranked, val.positives, ns))
