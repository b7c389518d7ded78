"""`fol-vpr bench verify`: the effect of geometric verification on the bundled sets (same run, on and off).

Each query's best re-ranked candidate (fp32 kernel, top ``rerank_k`` by global similarity) is
verified on its mutual patch matches (fundamental matrix in model-input pixels: the bundled sets
have no camera models). Precision-recall sweeps the re-rank score over the best candidates; *with*
verification a best candidate that fails the inlier test is not predicted. Also: how often correct
and wrong best candidates pass, and the verification time per query.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..evaluation.loop_metrics import precision_recall_curve
from ..image_io import read_image
from ..model import DEFAULT_INPUT_SIZE, FoLConfig, LoadedModel, arch_config, resolve_device, synthetic_model
from ..node.params import NodeParams
from ..pipeline.candidate_check import CandidateVerifier, MapView
from ..pipeline.describe import Describer, Description
from ..pipeline.rerank import DEFAULT_THRESHOLD
from ..progress import progress_bar
from .common import BenchTable
from .precision_bench import DEFAULT_SETS, bundled_subset, rerank_candidates

__all__ = ["bench_verify"]


def _best(q: Description, db: list[Description], rerank_k: int) -> tuple[int, int]:
    """(database index, re-rank score) of the query's best candidate after re-ranking its global top-k."""
    g = np.stack([d.global_desc for d in db]) @ q.global_desc
    cands = np.argsort(-g, kind="stable")[: min(rerank_k, len(db))]
    scores, ranked = rerank_candidates(q, db, cands, g[cands])
    return int(ranked[0]), int(scores[list(cands).index(ranked[0])])


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100.0 * x:.0f} %"


def _row(name: str, db: list[Description], qs: list[Description], positives: list[np.ndarray],
         verifier: CandidateVerifier, rerank_k: int) -> dict[str, object]:
    scores, correct, passed, ms = [], [], [], []
    for q, pos in zip(qs, positives, strict=True):
        best, score = _best(q, db, rerank_k)
        t0 = time.perf_counter()
        d = db[best]
        check = verifier.verify_one(q, None, MapView(d.local, d.local_rc, None))
        ms.append((time.perf_counter() - t0) * 1e3)
        scores.append(float(score))
        correct.append(best in set(pos.tolist()))
        passed.append(check.passed)
    s, c, v = np.array(scores), np.array(correct), np.array(passed)
    without = precision_recall_curve(s, c, len(qs))
    with_check = precision_recall_curve(np.where(v, s, np.nan), c, len(qs))
    return {
        "set": f"{name} ({len(db)} db, {len(qs)} q)", "R@1": _pct(c.mean()),
        "AP without": f"{without.auc:.3f}", "AP with": f"{with_check.auc:.3f}",
        "R@P100 without": _pct(without.recall_at_full_precision),
        "R@P100 with": _pct(with_check.recall_at_full_precision),
        "correct best passing": f"{int((v & c).sum())}/{int(c.sum())}",
        "wrong best passing": f"{int((v & ~c).sum())}/{int((~c).sum())}",
        "verify ms/query": statistics.median(ms),
    }


def bench_verify(
    data: str | os.PathLike = "data",
    sets: Sequence[str] = DEFAULT_SETS,
    arch: str = "vitb14",
    size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    device: str = "cpu",
    max_db: int = 30,
    max_queries: int = 20,
    rerank_k: int = 10,
    seed: int = 0,
    depth: int | None = None,
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> BenchTable:
    """Precision-recall of the best re-ranked candidate without and with the node's default verification."""
    dev = resolve_device(device)
    cfg = FoLConfig(backbone=arch_config(arch, depth), input_size=tuple(size))
    model = synthetic_model(cfg, seed).eval().to(dev)
    describer = Describer(LoadedModel(model, f"random:{seed}", f"synthetic:{seed}", True), batch_size=4)
    params = NodeParams()
    verifier = CandidateVerifier(params.verification.to_config(), params.rerank_threshold, tuple(size))
    table = BenchTable(
        f"SYNTHETIC WEIGHTS (random:{seed}) - geometric verification on the bundled sets: {arch} at "
        f"{size[0]}x{size[1]}, device {dev.type}, {torch.get_num_threads()} threads",
        ["set", "R@1", "AP without", "AP with", "R@P100 without", "R@P100 with", "correct best passing",
         "wrong best passing", "verify ms/query"])
    for name in progress_bar(list(sets), desc="verify", enabled=progress):
        db_paths, q_paths, positives = bundled_subset(Path(data), name, max_db, max_queries)
        db = describer.describe_arrays([read_image(p) for p in db_paths])
        qs = describer.describe_arrays([read_image(p) for p in q_paths])
        table.add(**_row(name, db, qs, positives, verifier, rerank_k))
    v = params.verification
    table.notes.append(f"SYNTHETIC WEIGHTS: random:{seed}, not the authors' checkpoint: the numbers show the "
                       "mechanism, not FoL's accuracy; measure again with real weights")
    table.notes.append(f"verification: node defaults (min_inliers {v.min_inliers}, min_inlier_ratio "
                       f"{v.min_inlier_ratio:g}, ransac_threshold_px {v.ransac_threshold_px:g} = from the patch "
                       f"size), fundamental matrix (no camera models); re-rank top-{rerank_k}, threshold "
                       f"{DEFAULT_THRESHOLD}")
    table.notes.append("PR sweeps the re-rank score of each query's best candidate; 'with': a best candidate "
                       "failing verification is not predicted (same run)")
    if out_dir is not None:
        table.write(out_dir, "verify")
    return table

