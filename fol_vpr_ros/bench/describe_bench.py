"""`fol-vpr bench describe`: model throughput, fused SDPA vs explicit-softmax attention, same run."""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from functools import partial

import torch

from ..model import DEFAULT_INPUT_SIZE, FoLConfig, arch_config, resolve_device, synthetic_model
from .common import BenchTable, time_call

__all__ = ["bench_describe"]


def bench_describe(
    archs: Sequence[str] = ("vits14", "vitb14"),
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    batches: Sequence[int] = (1, 8),
    devices: Sequence[str] | None = None,
    repeats: int = 3,
    out_dir: str | os.PathLike | None = None,
) -> BenchTable:
    """Images/s and ms/image per architecture, batch and device for both attention implementations.

    Synthetic weights: speed does not depend on the weight values. Outputs of both
    implementations are compared (max abs difference of the global descriptor).
    """
    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    table = BenchTable(
        title=f"FoL describe throughput at {size[0]} x {size[1]}",
        columns=["device", "arch", "batch", "attention", "ms/batch", "ms/image", "images/s", "speedup",
                 "max |Δglobal|"],
    )
    for dev_name in devices:
        dev = resolve_device(dev_name)
        for arch in archs:
            model = synthetic_model(FoLConfig(backbone=arch_config(arch), input_size=size), seed=0).eval().to(dev)
            for batch in batches:
                x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1)).to(dev)
                results = {}
                with torch.inference_mode():
                    for impl in ("explicit", "sdpa"):  # outputs, plus one warm-up call each
                        model.set_attention_impl(impl)
                        results[impl] = model(x).global_desc.float().cpu()
                    times: dict[str, list[float]] = {"explicit": [], "sdpa": []}
                    for _ in range(repeats):  # interleaved, so load from other processes hits both alike
                        for impl in times:
                            model.set_attention_impl(impl)
                            times[impl].append(time_call(partial(model, x), repeats=1, warmup=0, device=dev).median_ms)
                for impl, ts in times.items():
                    results[impl + "_ms"] = statistics.median(ts)
                diff = float((results["sdpa"] - results["explicit"]).abs().max())
                for impl in ("explicit", "sdpa"):
                    ms = results[impl + "_ms"]
                    table.add(**{
                        "device": dev.type, "arch": arch, "batch": batch, "attention": impl,
                        "ms/batch": ms, "ms/image": ms / batch, "images/s": 1e3 * batch / ms,
                        "speedup": results["explicit_ms"] / ms, "max |Δglobal|": f"{diff:.1e}",
                    })
    threads = torch.get_num_threads()
    table.notes.append(f"median of {repeats} interleaved runs after 1 warm-up; torch threads: {threads}")
    table.notes.append("speedup: explicit-softmax time / this row's time (same model, same input, same run)")
    if out_dir is not None:
        table.write(out_dir, "describe")
    return table
