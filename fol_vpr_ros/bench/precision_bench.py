"""`fol-vpr bench precision`: fidelity and speed of low-precision describe against fp32, on the bundled sets.

Each variant describes the same images as the fp32 reference and is compared to it: global cosine, region
patches kept, local-row counts, global top-1/top-10 retrieval, re-rank counts (fp32 kernel, the fp32
top-K candidates of each query) and Recall@N after re-ranking. ``bf16 whole model`` autocasts the whole
network (aggregator and local head included): the negative control of the issue. Speed: ms/img at batch 1
on one image, interleaved rounds, same run.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..evaluation.ground_truth import bundled_ground_truth, image_names
from ..evaluation.metrics import recall_at_n
from ..image_io import read_image
from ..model import DEFAULT_INPUT_SIZE, FoLConfig, LoadedModel, arch_config, resolve_device, synthetic_model
from ..pipeline.describe import Describer, Description
from ..pipeline.rerank import DEFAULT_THRESHOLD, mnn_scores, rerank_order
from ..precision import Precision, autocast, parse_precision
from ..progress import progress_bar
from .common import BenchTable, time_call

__all__ = ["DEFAULT_SETS", "VariantFidelity", "bench_precision", "bundled_subset", "rerank_candidates"]

DEFAULT_SETS = ("gardenspoint", "corridor", "nordland")
WHOLE_MODEL = "bf16 whole model"


@dataclass
class VariantFidelity:
    """One variant's agreement with fp32 on one image set."""

    cos_min: float
    cos_median: float
    patches_min: int
    patches_mean: float
    patches_total: int
    rows_diff_max: int
    top1: float
    top10: float
    rerank_diff_max: int
    recall_fp32: dict[int, float]
    recall: dict[int, float]


def bundled_subset(data: Path, name: str, max_db: int, max_queries: int
                   ) -> tuple[list[Path], list[Path], list[np.ndarray]]:
    """Database and query image paths (capped) with each query's positive database indices."""
    opts = {"subsample": 20} if name == "nordland" else {}
    ds = bundled_ground_truth(data, name, **opts)
    db_names = list(ds.ground_truth.database or image_names(ds.map_dir))[:max_db]
    index = {n: i for i, n in enumerate(db_names)}
    queries, positives = [], []
    for q, ps in zip(ds.ground_truth.queries, ds.ground_truth.positives, strict=True):
        pos = [index[p] for p in ps if p in index]
        if pos:
            queries.append(ds.queries_dir / q)
            positives.append(np.asarray(pos, np.int64))
        if len(queries) >= max_queries:
            break
    return [ds.map_dir / n for n in db_names], queries, positives


def _describe(describer: Describer, images: list[np.ndarray], variant: str) -> list[Description]:
    whole = variant == WHOLE_MODEL
    describer.model.set_precision(Precision.FP32 if whole else parse_precision(variant))
    ctx = autocast(Precision.BF16, describer.device) if whole else contextlib.nullcontext()
    with ctx:
        return describer.describe_arrays(images)


def rerank_candidates(q: Description, db: list[Description], cands: np.ndarray,
            sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(counts, re-ranked candidate indices) of one query over its candidates, fp32 kernel."""
    rows = max(d.local_count for d in db)
    dim = q.local.shape[1]
    stack = np.zeros((len(cands), max(rows, 1), dim), np.float32)
    counts = np.zeros(len(cands), np.int64)
    for j, c in enumerate(cands):
        stack[j, : db[c].local_count] = db[c].local
        counts[j] = db[c].local_count
    scores = mnn_scores(q.local, q.local_count, stack, counts, DEFAULT_THRESHOLD)
    return scores, cands[rerank_order(scores, sims)]


def _fidelity(ref_db: list[Description], ref_q: list[Description], var_db: list[Description],
              var_q: list[Description], positives: list[np.ndarray], rerank_k: int,
              ns: Sequence[int]) -> VariantFidelity:
    ref_all, var_all = ref_db + ref_q, var_db + var_q
    cos = [float(np.dot(a.global_desc, b.global_desc) / (np.linalg.norm(a.global_desc) * np.linalg.norm(b.global_desc)))
           for a, b in zip(ref_all, var_all, strict=True)]
    kept = [int((a.region_mask & b.region_mask).sum()) for a, b in zip(ref_all, var_all, strict=True)]
    rows = [abs(a.local_count - b.local_count) for a, b in zip(ref_all, var_all, strict=True)]
    k = min(rerank_k, len(ref_db))
    top1, top10, rr_diff, pred_ref, pred_var = [], [], [], [], []
    g_ref, g_var = (np.stack([d.global_desc for d in s]) for s in (ref_db, var_db))
    for qr, qv in zip(ref_q, var_q, strict=True):
        s_ref, s_var = g_ref @ qr.global_desc, g_var @ qv.global_desc
        o_ref, o_var = np.argsort(-s_ref, kind="stable"), np.argsort(-s_var, kind="stable")
        top1.append(o_ref[0] == o_var[0])
        t = min(10, len(o_ref))
        top10.append(len(set(o_ref[:t]) & set(o_var[:t])) / t)
        cands = o_ref[:k]  # the same candidates for both, so that counts compare pair for pair
        c_ref, r_ref = rerank_candidates(qr, ref_db, cands, s_ref[cands])
        c_var, _ = rerank_candidates(qv, var_db, cands, s_var[cands])
        rr_diff.append(int(np.abs(c_ref - c_var).max()))
        cv = o_var[:k]  # the variant's own pipeline, for its recall
        _, r_var = rerank_candidates(qv, var_db, cv, s_var[cv])
        pred_ref.append(r_ref)
        pred_var.append(r_var)
    return VariantFidelity(
        cos_min=min(cos), cos_median=statistics.median(cos), patches_min=min(kept),
        patches_mean=float(np.mean(kept)), patches_total=int(ref_all[0].region_mask.sum()),
        rows_diff_max=max(rows), top1=float(np.mean(top1)), top10=float(np.mean(top10)),
        rerank_diff_max=max(rr_diff), recall_fp32=recall_at_n(np.stack(pred_ref), positives, ns),
        recall=recall_at_n(np.stack(pred_var), positives, ns))


def _speed(describer: Describer, variants: Sequence[str], size: tuple[int, int], repeats: int) -> dict[str, float]:
    """Median ms/img at batch 1 of each variant on one random image, interleaved rounds."""
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1)).to(describer.device)
    fns = {v: partial(_describe_tensor, describer, x, v) for v in variants}
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(max(1, repeats)):
        for v, fn in fns.items():
            times[v].append(time_call(fn, repeats=1, warmup=0, device=describer.device).median_ms)
    return {v: statistics.median(t) for v, t in times.items()}


def _describe_tensor(describer: Describer, x: torch.Tensor, variant: str) -> object:
    whole = variant == WHOLE_MODEL
    describer.model.set_precision(Precision.FP32 if whole else parse_precision(variant))
    with autocast(Precision.BF16, describer.device) if whole else contextlib.nullcontext():
        return describer.describe_tensor(x)


def bench_precision(
    data: str | os.PathLike = "../shared/data",
    sets: Sequence[str] = DEFAULT_SETS,
    arch: str = "vitb14",
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    precisions: Sequence[str] = ("bf16",),
    whole_model: bool = True,
    device: str = "cpu",
    max_db: int = 30,
    max_queries: int = 20,
    rerank_k: int = 10,
    repeats: int = 3,
    ns: Sequence[int] = (1, 5, 10),
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> BenchTable:
    """Fidelity of each low precision (and the whole-model bf16 control) against fp32, and its speed."""
    dev = resolve_device(device)
    cfg = FoLConfig(backbone=arch_config(arch), input_size=tuple(size))
    model = synthetic_model(cfg, seed).eval().to(dev)
    describer = Describer(LoadedModel(model, f"random:{seed}", f"synthetic:{seed}", True), batch_size=1)
    variants = [parse_precision(p).value for p in precisions if parse_precision(p) is not Precision.FP32]
    variants += [WHOLE_MODEL] if whole_model else []
    ms = _speed(describer, ["fp32", *variants], tuple(size), repeats)
    table = BenchTable(
        f"SYNTHETIC WEIGHTS (random:{seed}) - precision fidelity vs fp32: {arch} at {size[0]}x{size[1]}, "
        f"device {dev.type}, {torch.get_num_threads()} threads",
        ["set", "variant", "ms/img b1", "speedup", "cos min", "cos median", "patches kept min/mean of total",
         "local rows |Δ| max", "top-1 agree", "top-10 agree", "re-rank counts |Δ| max",
         "R@" + "/".join(map(str, ns)) + " fp32", "R@N Δ (pp)"],
    )
    for name in sets:
        db_paths, q_paths, positives = bundled_subset(Path(data), name, max_db, max_queries)
        db_img = [read_image(p) for p in db_paths]
        q_img = [read_image(p) for p in q_paths]
        described: dict[str, tuple[list[Description], list[Description]]] = {}
        for v in progress_bar(["fp32", *variants], desc=f"precision {name}", enabled=progress):
            described[v] = (_describe(describer, db_img, v), _describe(describer, q_img, v))
        ref_db, ref_q = described["fp32"]
        for v in variants:
            f = _fidelity(ref_db, ref_q, *described[v], positives, rerank_k, ns)
            table.add(**{
                "set": f"{name} ({len(db_paths)} db, {len(q_paths)} q)", "variant": v, "ms/img b1": ms[v],
                "speedup": ms["fp32"] / ms[v], "cos min": f"{f.cos_min:.6f}", "cos median": f"{f.cos_median:.6f}",
                "patches kept min/mean of total": f"{f.patches_min}/{f.patches_mean:.1f} of {f.patches_total}",
                "local rows |Δ| max": f.rows_diff_max, "top-1 agree": f"{100 * f.top1:.0f} %",
                "top-10 agree": f"{100 * f.top10:.0f} %", "re-rank counts |Δ| max": f.rerank_diff_max,
                "R@" + "/".join(map(str, ns)) + " fp32": "/".join(f"{f.recall_fp32[n]:.0f}" for n in ns),
                "R@N Δ (pp)": "/".join(f"{f.recall[n] - f.recall_fp32[n]:+.0f}" for n in ns),
            })
    table.notes.append(f"SYNTHETIC WEIGHTS: random:{seed} structured synthetic weights, not the authors' "
                       "checkpoint; fidelity of real weights must be measured again with them")
    table.notes.append(f"fp32 ms/img b1: {ms['fp32']:.0f}; speed: median of {repeats} interleaved rounds at batch 1 "
                       "after one warm-up; speedup = fp32 ms / variant ms")
    table.notes.append("bf16/fp16: ViT backbone under autocast, aggregator (region selection) and local head in fp32; "
                       f"'{WHOLE_MODEL}': everything under bf16 autocast (the issue's negative control)")
    table.notes.append(f"re-rank: fp32 kernel, threshold {DEFAULT_THRESHOLD}, top-{rerank_k} fp32 global candidates "
                       "for the count difference; R@N after re-ranking with each variant's own candidates")
    if out_dir is not None:
        table.write(out_dir, "precision")
    return table
