"""FoL training loop: frozen backbone but the last blocks, AdamW + linear LR decay, AMP on CUDA, atomic
checkpoints in the authors' layout, exact resume, CSV/JSON logs and a loss/recall plot.

Run directory::

    config.json    the TrainConfig (resume reads it)
    last.pth       {'model_state_dict': {'module.<key>': tensor}, 'step', 'epoch'}: loadable by the
                   authors' code and by ``fol-vpr describe``
    best.pth       same layout: best validation Recall@5 after re-ranking (validation after every
                   ``val.every_epochs`` epochs and at the end); without a validation set, the lowest
                   mean training loss over the steps since the previous checkpoint
    epoch_NNN.pth  after every finished epoch (``keep_epoch_checkpoints``)
    state.pth      optimiser, scheduler, grad scaler, counters, RNG states (torch, CUDA, numpy,
                   python), best score; plain tensors/containers only (``torch.load(weights_only=True)``)
    log.csv        one row per logged step; log.json the same plus config, validation, best
    curves.png     loss terms per step and validation recall

Determinism: batches are a pure function of (seed, epoch, batch index) (see ``data``); with
``deterministic`` the run calls ``torch.use_deterministic_algorithms(True, warn_only=True)``, turns
off cuDNN benchmarking and sets ``CUBLAS_WORKSPACE_CONFIG``. On CPU, with the same torch build and
thread count, a run and its resumed twin produce the same numbers; across thread counts or GPUs
only approximately.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_binary, atomic_write_text
from ..errors import CheckpointError, ConfigError
from ..model.checkpoint import resolve_device, save_checkpoint
from ..model.fol import FoLNet
from ..progress import progress_bar
from .config import TrainConfig
from .data import PlaceBatchDataset, TrainTransform, batches_per_epoch
from .losses import LossConfig, LossTerms, fol_loss
from .model_setup import amp_dtype_for, freeze_backbone, init_model
from .places import GsvCitiesSource, MapPlaceSource, PlaceSource, split_places
from .run_log import LOG_COLUMNS, read_log_csv, val_entry, write_curves
from .validation import ValSet, evaluate_recall, val_set_from_dataset, val_set_from_places

__all__ = [
    "TrainResult",
    "Trainer",
    "build_source",
    "resume",
    "train",
    "train_step",
]

log = logging.getLogger(__name__)

STATE_FORMAT = "fol_vpr_ros.train_state"
STATE_VERSION = 1


# ---------------------------------------------------------------------------------------- data
def build_source(cfg: TrainConfig) -> PlaceSource:
    src = cfg.source
    min_images = max(cfg.images_per_place, 2)
    if src.kind == "gsv":
        return GsvCitiesSource(src.root, src.cities, min_images=min_images, skip_missing=src.skip_missing)
    places = dataclasses.replace(src.map_places, min_images=min_images, skip_missing=src.skip_missing)
    return MapPlaceSource(src.root, places)


def train_step(model: FoLNet, images: torch.Tensor, labels: torch.Tensor, loss_cfg: LossConfig,
               optimizer: torch.optim.Optimizer, scheduler: Any, scaler: torch.amp.GradScaler,
               amp_dtype: torch.dtype | None, clip: float | None) -> LossTerms:
    """One optimisation step (forward under autocast, losses in float32, scaled backward, clipping)."""
    device = images.device
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        out = model(images)
    terms = fol_loss(out, labels, loss_cfg)
    if not torch.isfinite(terms.total):
        log.warning("non-finite loss %s: step skipped", terms.to_floats())
        scheduler.step()
        return terms
    scaler.scale(terms.total).backward()
    if clip is not None:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return terms


# ------------------------------------------------------------------------------------------ RNG state
def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _seed_everything(seed: int, deterministic: bool) -> tuple[bool, bool, bool]:
    """Seed python, numpy and torch; returns the previous (deterministic, warn_only, cudnn.benchmark)."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    return previous


def _restore_determinism(previous: tuple[bool, bool, bool]) -> None:
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    torch.backends.cudnn.benchmark = previous[2]


# -------------------------------------------------------------------------------------------- results
@dataclass
class TrainResult:
    """Where a run wrote its files and how it ended."""

    run_dir: Path
    last: Path
    best: Path | None
    step: int
    epoch: int
    best_metric: str
    best_value: float | None
    last_losses: dict[str, float] = field(default_factory=dict)
    validation: list[dict[str, Any]] = field(default_factory=list)
    synthetic: bool = False


# -------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Owns model, optimiser, data and run directory; ``run()`` trains until the configured length."""

    def __init__(self, cfg: TrainConfig, resume: bool = False) -> None:
        self.cfg = cfg
        self.run_dir = Path(cfg.out_dir)
        if not resume and ((self.run_dir / "last.pth").exists() or (self.run_dir / "state.pth").exists()):
            raise ConfigError(f"{self.run_dir} already holds a training run; continue it with --resume "
                              f"{self.run_dir} or choose another --out")
        self.device = resolve_device(cfg.device)
        self.amp_dtype = amp_dtype_for(cfg.amp, self.device)
        self._previous_determinism = _seed_everything(cfg.seed, cfg.deterministic)

        if resume:  # the architecture and weights come from the run's last.pth
            self.model, _, _ = init_model(dataclasses.replace(cfg, weights=str(self.run_dir / "last.pth")))
            self.weights_desc = cfg.weights or "synthetic"
            self.synthetic = cfg.weights is None or cfg.weights.startswith("random")
        else:
            self.model, self.weights_desc, self.synthetic = init_model(cfg)
        source = build_source(cfg)
        self.val_set: ValSet | None = None
        frac = cfg.val.holdout_fraction
        if frac is not None:
            source, held = split_places(source, frac, cfg.seed, cfg.val.max_places)
            self.val_set = val_set_from_places(held, f"holdout:{frac:g} ({len(held)} places)")
        elif cfg.val.spec is not None:
            self.val_set = val_set_from_dataset(cfg.val.spec, cfg.val.data_root)
        self.source = source
        self.per_epoch = batches_per_epoch(source, cfg.places_per_batch, cfg.images_per_place)
        if self.per_epoch < 1:
            raise ConfigError(f"{source.name}: {len(source)} places with >= {cfg.images_per_place} images, fewer "
                              f"than --places-per-batch {cfg.places_per_batch}: not one batch per epoch")
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * self.per_epoch
        self.transform = TrainTransform(cfg.transform, train=True)
        self.val_transform = TrainTransform(cfg.transform, train=False)

        self.model.to(self.device).train()
        params = freeze_backbone(self.model)
        oc = cfg.optim
        self.optimizer = torch.optim.AdamW(params, lr=oc.lr, weight_decay=oc.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LinearLR(self.optimizer, 1.0, oc.lr_end_factor, oc.lr_decay_iters)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16 and self.device.type == "cuda")
        self.step = 0
        self.epoch = 0  # 0-based epoch in progress
        self.batch_in_epoch = 0
        self.best: dict[str, Any] | None = None
        self.val_history: list[dict[str, Any]] = []
        self.rows: list[dict[str, Any]] = []
        self.loss_sum, self.loss_steps = 0.0, 0
        self.elapsed = 0.0
        self.last_saved_step = -1

    # ------------------------------------------------------------------ resume
    def load_state(self) -> None:
        """Restore model (last.pth), optimiser, scheduler, scaler, counters and RNG (state.pth)."""
        last, state_path = self.run_dir / "last.pth", self.run_dir / "state.pth"
        for p in (last, state_path):
            if not p.is_file():
                raise ConfigError(f"cannot resume: {p} not found")
        try:
            state = torch.load(state_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any unreadable state file is one clear error
            raise CheckpointError(f"{state_path}: unreadable training state: {exc}") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise CheckpointError(f"{state_path}: not a fol_vpr_ros training state")
        meta = torch.load(last, map_location="cpu", weights_only=True)
        if int(meta.get("step", -1)) != int(state["step"]):
            raise CheckpointError(f"{last} is from step {meta.get('step')} but {state_path} from step "
                                  f"{state['step']} (interrupted while saving?); restore a matching pair")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = int(state["step"]), int(state["epoch"]), int(state["batch"])
        self.best = state.get("best")
        self.val_history = list(state.get("val_history", []))
        self.loss_sum, self.loss_steps = float(state["loss_sum"]), int(state["loss_steps"])
        self.elapsed = float(state.get("elapsed", 0.0))
        _set_rng_state(state["rng"])
        self.rows = [r for r in read_log_csv(self.run_dir / "log.csv") if r["step"] <= self.step]
        self.last_saved_step = self.step
        log.info("resumed %s at step %d (epoch %d, batch %d)", self.run_dir, self.step, self.epoch + 1,
                 self.batch_in_epoch)

    # ------------------------------------------------------------------ saving
    def _save(self, epoch_file: bool) -> None:
        meta = {"step": self.step, "epoch": self.epoch}
        last = save_checkpoint(self.model, self.run_dir / "last.pth", meta)
        if epoch_file and self.cfg.keep_epoch_checkpoints:
            save_checkpoint(self.model, self.run_dir / f"epoch_{self.epoch:03d}.pth", meta)
        state = {
            "format": STATE_FORMAT, "version": STATE_VERSION,
            "step": self.step, "epoch": self.epoch, "batch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": _rng_state(), "best": self.best,
            "val_history": self.val_history, "loss_sum": self.loss_sum, "loss_steps": self.loss_steps,
            "elapsed": self.elapsed,
        }
        with atomic_binary(self.run_dir / "state.pth") as f:
            torch.save(state, f)
        self.last_saved_step = self.step
        log.debug("saved %s at step %d", last, self.step)

    def _checkpoint(self, epoch_file: bool, validate: bool) -> None:
        """Validate (when asked and a set is configured), update best.pth, save last/state, write logs, plot.

        With a validation set, best.pth only changes at validations; without one, at every checkpoint.
        """
        score = None
        if self.val_set is not None and validate:
            res = evaluate_recall(self.model, self.val_set, self.val_transform, self.cfg.val, self.device,
                                  self.amp_dtype)
            entry = val_entry(res, self.step, self.epoch)
            self.val_history.append(entry)
            log.info("validation %s at step %d: R@5 %.1f (global %.1f)", res.name, self.step, res.r5,
                     res.recall_global[5])
            score, metric, better = res.r5, "val_recall@5_rerank", (lambda new, old: new > old)
        elif self.val_set is None:
            score = self.loss_sum / max(1, self.loss_steps)
            metric, better = "train_loss", (lambda new, old: new < old)
        if score is not None and (self.best is None or better(score, self.best["value"])):
            self.best = {"metric": metric, "value": float(score), "step": self.step, "epoch": self.epoch}
            save_checkpoint(self.model, self.run_dir / "best.pth", {"step": self.step, "epoch": self.epoch})
        self.loss_sum, self.loss_steps = 0.0, 0
        self._save(epoch_file)
        self._write_logs(finished=False)

    # ------------------------------------------------------------------ logs
    def _write_logs(self, finished: bool) -> None:
        payload = {
            "config": self.cfg.to_dict(), "weights": self.weights_desc, "synthetic": self.synthetic,
            "source": {"name": self.source.name, "places": len(self.source), "batches_per_epoch": self.per_epoch},
            "validation_set": self.val_set.name if self.val_set else None,
            "best": self.best,
            "best_note": None if self.val_set else "no validation set: best.pth = lowest mean training loss "
                                                   "over the steps since the previous checkpoint",
            "step": self.step, "total_steps": self.total_steps, "finished": finished,
            "rows": self.rows, "validation": self.val_history,
        }
        atomic_write_text(self.run_dir / "log.json", json.dumps(payload, indent=1, default=str))
        try:
            write_curves(self.rows, self.val_history, self.run_dir / "curves.png")
        except Exception as exc:  # a failed plot must not stop training
            log.warning("could not draw curves.png: %s", exc)

    def _open_csv(self) -> io.TextIOBase:
        path = self.run_dir / "log.csv"
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(path, buf.getvalue())
        return path.open("a", encoding="utf-8", newline="")

    # ------------------------------------------------------------------ loop
    def _loader(self) -> torch.utils.data.DataLoader:
        ds = PlaceBatchDataset(self.source, self.transform, self.cfg.places_per_batch, self.cfg.images_per_place,
                               self.cfg.seed, self.epoch, self.batch_in_epoch)
        w = self.cfg.workers
        return torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=w,
                                           pin_memory=self.device.type == "cuda", generator=torch.Generator(),
                                           prefetch_factor=2 if w else None)

    def run(self) -> TrainResult:
        """Train until ``total_steps``; checkpoints at every epoch end and at the end."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / "config.json", cfg.to_json() + "\n")
        if self.val_set is None:
            log.info("no validation set: best.pth keeps the lowest mean training loss")
        csv_file = self._open_csv()
        writer = csv.DictWriter(csv_file, fieldnames=LOG_COLUMNS, lineterminator="\n")
        bar = progress_bar(total=self.total_steps, initial=self.step, enabled=cfg.progress, unit="step",
                           dynamic_ncols=True, desc="train")
        last_terms: dict[str, float] = {}
        try:
            while self.step < self.total_steps:
                t_req = time.perf_counter()
                for batch in self._loader():
                    images = batch.images.to(self.device, non_blocking=True)
                    lr = self.scheduler.get_last_lr()[0]
                    terms = train_step(self.model, images, batch.labels.to(self.device), cfg.loss, self.optimizer,
                                       self.scheduler, self.scaler, self.amp_dtype, cfg.optim.clip_grad_norm)
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                    dt = time.perf_counter() - t_req
                    self.elapsed += dt
                    self.step += 1
                    self.batch_in_epoch += 1
                    last_terms = terms.to_floats()
                    if math.isfinite(last_terms["total"]):
                        self.loss_sum += last_terms["total"]
                        self.loss_steps += 1
                    if self.step % cfg.log_every_steps == 0 or self.step == self.total_steps:
                        row = {"step": self.step, "epoch": self.epoch + 1, "lr": lr, **last_terms, "seconds": dt,
                               "images_per_s": len(images) / dt if dt > 0 else 0.0, "elapsed_s": self.elapsed}
                        row = {k: row[k] for k in LOG_COLUMNS}
                        self.rows.append(row)
                        writer.writerow(row)
                        csv_file.flush()
                    bar.update(1)
                    bar.set_postfix(loss=f"{last_terms['total']:.4f}", ep=self.epoch + 1)
                    epoch_done = self.batch_in_epoch >= self.per_epoch
                    if epoch_done:
                        self.epoch += 1
                        self.batch_in_epoch = 0
                        self._checkpoint(epoch_file=True, validate=self.epoch % cfg.val.every_epochs == 0)
                    elif cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                        self._checkpoint(epoch_file=False, validate=False)
                    if self.step >= self.total_steps:
                        break
                    t_req = time.perf_counter()
                if self.batch_in_epoch != 0 and self.step < self.total_steps:
                    raise ConfigError(f"data loader ended early in epoch {self.epoch + 1} (internal error)")
            validated = bool(self.val_history) and self.val_history[-1]["step"] == self.step
            if self.last_saved_step != self.step or (self.val_set is not None and not validated):
                self._checkpoint(epoch_file=False, validate=True)
            self._write_logs(finished=True)
        finally:
            bar.close()
            csv_file.close()
            _restore_determinism(self._previous_determinism)
        best = self.run_dir / "best.pth"
        return TrainResult(self.run_dir, self.run_dir / "last.pth", best if best.exists() else None, self.step,
                           self.epoch, self.best["metric"] if self.best else "", self.best["value"] if self.best
                           else None, last_terms, self.val_history, self.synthetic)


# ------------------------------------------------------------------------------------------ entry points
def train(cfg: TrainConfig) -> TrainResult:
    """Start a new run in ``cfg.out_dir``."""
    return Trainer(cfg).run()


def resume(run_dir: str | os.PathLike, steps: int | None = None, epochs: int | None = None,
           device: str | None = None, workers: int | None = None, progress: bool | None = None) -> TrainResult:
    """Continue the run in ``run_dir`` (its config.json), optionally with a new length or device."""
    run_dir = Path(run_dir)
    path = run_dir / "config.json"
    if not path.is_file():
        raise ConfigError(f"cannot resume: {path} not found (is {run_dir} a training run directory?)")
    try:
        cfg = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON: {exc}") from None
    changes: dict[str, Any] = {"out_dir": str(run_dir)}
    if steps is not None or epochs is not None:
        changes.update(steps=steps, epochs=epochs)
    if device is not None:
        changes["device"] = device
    if workers is not None:
        changes["workers"] = workers
    if progress is not None:
        changes["progress"] = progress
    cfg = dataclasses.replace(cfg, **changes)
    trainer = Trainer(cfg, resume=True)
    trainer.load_state()
    if trainer.step >= trainer.total_steps:
        log.info("run %s already at step %d of %d", run_dir, trainer.step, trainer.total_steps)
    return trainer.run()
