"""`fol-vpr bench export`: torch fp32 vs the exported model under onnxruntime (fp32, fp16), same run."""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..export import export_onnx
from ..export.runners import OnnxRuntimeRunner
from ..model import DEFAULT_INPUT_SIZE, load_model
from .common import BenchTable, time_call

__all__ = ["bench_export"]


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).max() / np.abs(b).max())


def bench_export(
    archs: Sequence[str] = ("vits14", "vitb14"),
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    batches: Sequence[int] = (1, 6),
    precisions: Sequence[str] = ("fp32", "fp16"),
    repeats: int = 3,
    out_dir: str | os.PathLike | None = None,
) -> BenchTable:
    """ms/image of torch (FoLNet, fp32) and onnxruntime per exported precision, CPU, interleaved runs.

    Synthetic weights (speed does not depend on them). Each row also gives the exported model's
    relative error of the global descriptor against torch fp32 and the share of equal region-mask
    patches.
    """
    table = BenchTable(
        title=f"Describe: torch vs onnxruntime at {size[0]} x {size[1]} (CPU)",
        columns=["arch", "batch", "runtime", "ms/batch", "ms/image", "vs torch fp32", "global rel err",
                 "mask agreement"],
    )
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="fol-bench-export-") as tmp:
        for arch in archs:
            model = load_model("random:0", arch, size, "cpu", warn=False).model
            runners = {}
            for precision in precisions:
                path = Path(tmp) / f"{arch}-{precision}.onnx"
                export_onnx("random:0", path, arch, size, precision)
                runners[f"onnxruntime {precision}"] = OnnxRuntimeRunner(path, "cpu", threads)
            for batch in batches:
                x = torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(1))
                xn = x.numpy()
                with torch.inference_mode():
                    ref = model(x)
                    calls = {"torch fp32": partial(model, x)}
                    calls.update({name: partial(r, xn) for name, r in runners.items()})
                    outputs = {name: r(xn) for name, r in runners.items()}  # also the warm-up
                    times: dict[str, list[float]] = {name: [] for name in calls}
                    for _ in range(repeats):  # interleaved: load from other processes hits all alike
                        for name, fn in calls.items():
                            times[name].append(time_call(fn, repeats=1, warmup=0).median_ms)
                base = statistics.median(times["torch fp32"])
                for name, ts in times.items():
                    ms = statistics.median(ts)
                    row = {"arch": arch, "batch": batch, "runtime": name, "ms/batch": ms, "ms/image": ms / batch,
                           "vs torch fp32": base / ms, "global rel err": "0 (reference)", "mask agreement": "1"}
                    if name in outputs:
                        out = outputs[name]
                        row["global rel err"] = f"{_rel(out['global_desc'], ref.global_desc.numpy()):.1e}"
                        agree = (out["region_mask"] == ref.region_mask.numpy()).mean()
                        row["mask agreement"] = f"{agree:.4f}"
                    table.add(**row)
    table.notes.append(f"median of {repeats} interleaved runs after 1 warm-up; torch and onnxruntime threads: "
                       f"{threads}")
    table.notes.append("vs torch fp32: torch fp32 time / this row's time (same input, same run); onnxruntime "
                       "fp16 = ViT in float16, selection and local head float32")
    if out_dir is not None:
        table.write(out_dir, "export")
    return table
