"""Training-step benchmark: ms/step and images/s of one FoL optimisation step (model + five losses + AdamW).

Synthetic weights and random input (speed does not depend on the values; no data loading). On CUDA
the step runs under float16 autocast with a GradScaler, as the trainer does, and also ViT-B/14 with
the paper's 60 x 4 batch (peak memory reported; 'out of memory' when it does not fit).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings
from typing import Any

import torch

from ..model import DEFAULT_INPUT_SIZE, PRESETS, FoLConfig, arch_config, resolve_device, synthetic_model
from ..training.config import IMAGES_PER_PLACE, PLACES_PER_BATCH, OptimConfig
from ..training.losses import LossConfig, fol_loss
from ..training.model_setup import amp_dtype_for, freeze_backbone
from .common import BenchTable

__all__ = ["PAPER_PRESET", "bench_train"]

PAPER_PRESET = "vitb14-322"  # the model and input size the paper trains


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _one(arch: str, size: tuple[int, int], places: int, per_place: int, dev: torch.device, steps: int
         ) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = synthetic_model(FoLConfig(backbone=arch_config(arch), input_size=size), seed=0).to(dev).train()
    params = freeze_backbone(model)
    optim = OptimConfig()
    opt = torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay)
    amp = amp_dtype_for("auto", dev)
    scaler = torch.amp.GradScaler(dev.type, enabled=amp == torch.float16)
    n = places * per_place
    x = torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(0)).to(dev)
    labels = torch.arange(places).repeat_interleave(per_place).to(dev)
    cfg = LossConfig()
    phases: dict[str, list[float]] = {"forward": [], "loss": [], "backward": [], "step": []}
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for i in range(steps + 1):  # step 0 is the warm-up
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = model(x)
        _sync(dev)
        t1 = time.perf_counter()
        terms = fol_loss(out, labels, cfg)
        _sync(dev)
        t2 = time.perf_counter()
        scaler.scale(terms.total).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, optim.clip_grad_norm)
        scaler.step(opt)
        scaler.update()
        _sync(dev)
        t3 = time.perf_counter()
        if i:
            phases["forward"].append((t1 - t0) * 1e3)
            phases["loss"].append((t2 - t1) * 1e3)
            phases["backward"].append((t3 - t2) * 1e3)
            phases["step"].append((t3 - t0) * 1e3)
    ms = statistics.median(phases["step"])
    row: dict[str, Any] = {
        "device": dev.type, "arch": arch, "size": f"{size[0]}x{size[1]}", "batch": f"{places}x{per_place}",
        "amp": str(amp).replace("torch.", "") if amp else "off", "ms/step": ms, "images/s": 1e3 * n / ms,
        "forward ms": statistics.median(phases["forward"]), "loss ms": statistics.median(phases["loss"]),
        "backward+AdamW ms": statistics.median(phases["backward"]),
    }
    if dev.type == "cuda":
        row["peak MiB"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return row


def bench_train(arch: str = "vits14", size: tuple[int, int] = DEFAULT_INPUT_SIZE, places: int = 4, per_place: int = 2,
                device: str = "cpu", steps: int = 3, out_dir: str | os.PathLike | None = None) -> BenchTable:
    """Median ms/step and images/s over ``steps`` steps after one warm-up (``places`` x ``per_place``)."""
    dev = resolve_device(device)
    table = BenchTable(
        title="FoL training step (model + 5 losses + AdamW)",
        columns=["device", "arch", "size", "batch", "amp", "ms/step", "images/s", "forward ms", "loss ms",
                 "backward+AdamW ms", "peak MiB"],
    )
    configs = [(arch, size, places, per_place)]
    if dev.type == "cuda":  # also the paper's setting: ViT-B at 322 x 322, 60 places x 4 images per batch
        configs.append((*PRESETS[PAPER_PRESET], PLACES_PER_BATCH, IMAGES_PER_PLACE))
    for a, s, p, k in configs:
        try:
            table.add(**_one(a, tuple(s), p, k, dev, max(1, steps)))
        except torch.OutOfMemoryError:
            table.add(device=dev.type, arch=a, size=f"{s[0]}x{s[1]}", batch=f"{p}x{k}", amp="-",
                      **{"ms/step": "out of memory"})
        finally:
            if dev.type == "cuda":
                torch.cuda.empty_cache()
    table.notes.append(f"median of {max(1, steps)} steps after 1 warm-up; synthetic weights, random input, "
                       f"last 4 blocks trainable; torch threads: {torch.get_num_threads()}")
    if out_dir is not None:
        table.write(out_dir, "train")
    return table
