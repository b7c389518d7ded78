"""`fol-vpr bench summary`: one table of describe, re-rank and an end-to-end query per precision and runtime.

Rows per (device, arch, stage, variant), every stage timed in interleaved rounds of the same run, and
each row's ratio taken against the fp32 row of its own stage from those rounds:

* describe: ms/img at batch 1 (``Describer.describe_tensor``) in fp32, bf16, fp16 and onnxruntime fp32;
* re-rank: one query against ``rerank_k`` candidates of ``max_local_rows`` rows (the node's default and
  the model configuration), fp32 kernel vs the low-precision screened kernels (counts checked equal to
  fp32) and the fp32 bare-matmul floor (``rerank_bench``'s data and floors);
* query: describe + FAISS search (the node's ``top_k``) + local batch + re-rank of the node's
  ``rerank_k`` against synthetic maps (``map_bench``'s builder) of each size.

The map's other keyframes carry one local row each: a query never reads the rows of keyframes it does
not retrieve (they are memory-mapped), and ``rerank_k`` "revisit" keyframes, planted near the query's
fp32 description, carry as many rows as the query, part of them perturbed copies of its rows.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from ..export.fixed_shape import max_local_rows
from ..export.runners import OnnxRuntimeRunner
from ..mapping import Keyframe, VprMap
from ..model import DEFAULT_INPUT_SIZE, FoLConfig, arch_config, load_model, resolve_device
from ..pipeline.describe import Describer, DescriberConfig, Description, load_exported_describer
from ..pipeline.rerank import DEFAULT_THRESHOLD, mnn_scores, rerank_order
from ..pipeline.rerank_lowp import mnn_scores_lowp
from ..precision import Precision, cpu_bf16_supported, cpu_fp16_supported, parse_precision
from .common import BenchTable, time_call
from .map_bench import build_synthetic_map
from .rerank_bench import dense_rerank_inputs, floor_tile_rows, matmul_floors, synthetic_rerank_inputs

__all__ = ["DEFAULT_SIZES", "SummaryOptions", "bench_summary", "default_arch"]

DEFAULT_SIZES = (1000, 10000)
AUTHORS_ARCH = "vitb14"  # the authors' released FoL checkpoint (FoL_base.pth); the node reads it from the file
ORT = "onnxruntime fp32"
FP32 = Precision.FP32.value
COLUMNS = ["device", "arch", "stage", "variant", "ms", "vs fp32", "x fp32 floor", "counts equal", "detail"]
_DATA = {"sparse": synthetic_rerank_inputs, "dense": dense_rerank_inputs}


def default_arch() -> str:
    """The node's ``arch`` default when it names one; ``auto`` (read from the checkpoint) -> the authors' ViT-B/14."""
    from ..node.params import NodeParams

    arch = NodeParams().arch
    return AUTHORS_ARCH if arch == "auto" else arch


def _node_retrieval() -> tuple[int, int]:
    """The node's (top_k, rerank_k) defaults."""
    from ..node.params import NodeParams

    p = NodeParams()
    return p.top_k, p.rerank_k


@dataclass(frozen=True)
class SummaryOptions:
    """What `bench summary` runs; None fields take the node's defaults (arch, input size, top_k, rerank_k)."""

    archs: Sequence[str] | None = None
    size: tuple[int, int] | None = None
    sizes: Sequence[int] = DEFAULT_SIZES
    precisions: Sequence[str] = ("bf16", "fp16")
    devices: Sequence[str] | None = None
    repeats: int = 3
    regimes: Sequence[str] = ("sparse",)
    rerank_k: int | None = None
    top_k: int | None = None
    emulated: bool = False  # also run emulated low precision (fp16 on most CPUs) in re-rank and query
    onnx: bool = True
    depth: int | None = None  # fewer ViT blocks (quick runs, tests)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        bad = [r for r in self.regimes if r not in _DATA]
        if bad:
            raise ConfigError(f"regimes: unknown {bad}; choose from {', '.join(_DATA)}")
        for p in self.precisions:
            if parse_precision(p, "precisions") in (Precision.FP32, Precision.AUTO):
                raise ConfigError(f"precisions: {p!r} is not a low precision (bf16, fp16)")


def _emulated(precision: str, device: torch.device) -> bool:
    """True where ``precision`` has no native arithmetic on ``device`` (a CPU without the instructions)."""
    if device.type != "cpu":
        return False
    return not (cpu_bf16_supported() if parse_precision(precision) is Precision.BF16 else cpu_fp16_supported())


def _label(precision: str, device: torch.device) -> str:
    return f"{precision} (emulated)" if _emulated(precision, device) else precision


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device
                 ) -> tuple[dict[str, object], dict[str, float]]:
    """(first results, median ms) of each function: one warm-up call each, then ``repeats`` interleaved rounds."""
    results = {name: fn() for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved, so load from other processes hits every variant alike
        for name, fn in fns.items():
            times[name].append(time_call(fn, repeats=1, warmup=0, device=device).median_ms)
    return results, {name: statistics.median(t) for name, t in times.items()}


def _add_stage(table: BenchTable, base: dict[str, object], ms: dict[str, float], extra: dict[str, dict]) -> None:
    """Rows of one stage; ``vs fp32`` = the stage's fp32 ms / the row's ms, both from the same rounds."""
    ref = ms[FP32]
    for variant, value in ms.items():
        row = {**base, "variant": variant, "ms": value, "vs fp32": ref / value, "fp32 ms": ref,
               "x fp32 floor": "", "counts equal": "", "detail": ""}
        row.update(extra.get(variant, {}))
        table.add(**row)


def _describers(cfg: FoLConfig, dev: torch.device, opts: SummaryOptions, tmp: Path, table: BenchTable
                ) -> tuple[Describer, Describer | None]:
    """The torch Describer (synthetic weights) and, where possible, one over the same weights exported to ONNX."""
    weights = f"random:{opts.seed}"
    torch_d = Describer(load_model(weights, cfg.arch, cfg.input_size, dev, depth=opts.depth, warn=False), 1)
    if not opts.onnx:
        return torch_d, None
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        table.notes.append(f"onnxruntime rows skipped: {' and '.join(missing)} not importable "
                           "(pip install 'fol_vpr_ros[export]')")
        return torch_d, None
    from ..export import export_onnx

    path = tmp / f"{cfg.arch}-{cfg.input_size[0]}x{cfg.input_size[1]}.onnx"
    if not path.exists():
        export_onnx(weights, path, cfg.arch, cfg.input_size, FP32, depth=opts.depth)
    try:
        ort_d = load_exported_describer(DescriberConfig(weights=str(path), arch=cfg.arch, input_size=cfg.input_size,
                                                        device=str(dev), batch_size=1, backend="onnxruntime"),
                                        "onnxruntime")
        # busy-waiting onnxruntime threads would slow the torch call timed right after them
        ort_d.runner = OnnxRuntimeRunner(path, str(dev), torch.get_num_threads(), spinning=False)
    except ConfigError as exc:
        table.notes.append(f"onnxruntime rows on {dev.type} skipped: {exc}")
        return torch_d, None
    return torch_d, ort_d


def _describe_fn(describer: Describer, x: torch.Tensor, precision: str | None) -> Callable[[], Description]:
    """Describe ``x`` (batch 1) with the torch backbone in ``precision``, or the exported model (None)."""
    def run() -> Description:
        if precision is not None:
            describer.model.set_precision(precision)
        return describer.describe_tensor(x)[0]
    return run


def _describe_variants(torch_d: Describer, ort_d: Describer | None, x: torch.Tensor, precisions: Sequence[str],
                       dev: torch.device) -> dict[str, Callable[[], Description]]:
    fns = {FP32: _describe_fn(torch_d, x, FP32)}
    fns.update({_label(p, dev): _describe_fn(torch_d, x, p) for p in precisions})
    if ort_d is not None:
        fns[ORT] = _describe_fn(ort_d, x, None)
    return fns


def _kernel(precision: str, dev: torch.device) -> Callable[..., np.ndarray]:
    """The re-rank kernel of a variant: the exact fp32 one, or the low-precision screened one."""
    if precision == FP32:
        return partial(mnn_scores, threshold=DEFAULT_THRESHOLD, device=dev)
    return partial(mnn_scores_lowp, threshold=DEFAULT_THRESHOLD, device=dev, precision=precision)


def _rerank_stage(table: BenchTable, base: dict[str, object], cfg: FoLConfig, k: int, regime: str,
                  precisions: Sequence[str], dev: torch.device, repeats: int) -> None:
    """One query's re-rank of ``k`` candidates with the model's most local rows: fp32, low precision, floor."""
    rows, dim = max_local_rows(cfg), cfg.local_head.out_dim
    query_np, nq, cand_np, counts = _DATA[regime](k, rows, dim)
    query, cand = torch.from_numpy(query_np).to(dev), torch.from_numpy(cand_np).to(dev)
    fns: dict[str, Callable[[], object]] = {FP32: partial(_kernel(FP32, dev), query, nq, cand, counts)}
    fns.update({_label(p, dev): partial(_kernel(p, dev), query, nq, cand, counts) for p in precisions})
    floors = matmul_floors(query, cand, floor_tile_rows(rows, dev))
    results, ms = _interleaved({**fns, **floors}, repeats, dev)
    floor_name = min(floors, key=lambda name: ms[name])
    floor = ms[floor_name]
    stage_ms = {name: ms[name] for name in fns} | {"fp32 matmul floor": floor}
    ref = results[FP32]
    extra: dict[str, dict] = {name: {"x fp32 floor": ms[name] / floor, "pairs": int(np.sum(results[name])),
                                     "counts equal": bool(np.array_equal(results[name], ref))} for name in fns}
    extra[FP32]["counts equal"] = "(reference)"
    extra["fp32 matmul floor"] = {"x fp32 floor": 1.0, "detail": floor_name.removeprefix("floor: ")}
    for name in fns:
        extra[name]["detail"] = f"{extra[name]['pairs']} pairs"
    _add_stage(table, {**base, "stage": f"re-rank K={k}, {rows} x {dim} rows, {regime}"}, stage_ms, extra)


def _revisit_rows(query: np.ndarray, k: int, rng: np.random.Generator, max_shared: float = 0.1) -> np.ndarray:
    """[k * n, dim] unit rows: per candidate, random rows with up to ``max_shared`` of them near query rows."""
    n, dim = query.shape
    out = rng.standard_normal((k, n, dim), dtype=np.float32)
    for i in range(k):
        m = int(rng.integers(0, int(max_shared * n) + 1))
        src, dst = rng.choice(n, m, replace=False), rng.choice(n, m, replace=False)
        noise = rng.uniform(0.2, 1.0, (m, 1)).astype(np.float32) * out[i, dst] / np.sqrt(dim)
        out[i, dst] = query[src] + noise
    out /= np.linalg.norm(out, axis=-1, keepdims=True)
    return out.reshape(k * n, dim)


def _planted_map(path: Path, n: int, k: int, cfg: FoLConfig, ref: Description, seed: int) -> VprMap:
    """A saved synthetic map of ``n`` keyframes whose ``k`` most similar to ``ref`` carry full local rows."""
    build_synthetic_map(path, n - k, 1, cfg, cfg.descriptor_dim, "float16", seed)
    rng = np.random.default_rng(seed + 1)
    dim = cfg.descriptor_dim
    noise = rng.standard_normal((k, dim), dtype=np.float32) * rng.uniform(0.1, 0.5, (k, 1)).astype(np.float32)
    g = ref.global_desc[None] + noise / np.sqrt(dim)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    rows = ref.local_count
    m = VprMap.open(path, verify="off")
    kfs = [Keyframe(stamp_ns=(n - k + i) * 100_000_000, frame_id="camera", source=f"revisit/{i}") for i in range(k)]
    m.add(kfs, g, _revisit_rows(ref.local, k, rng), np.tile(ref.local_rc, (k, 1)), counts=np.full(k, rows))
    m.save()
    m.close()
    return VprMap.open(path, verify="off")


def _query_fn(describe: Callable[[], Description], vmap: VprMap, top_k: int, rerank_k: int,
              kernel: Callable[..., np.ndarray], parts: list[dict[str, float]]) -> Callable[[], np.ndarray]:
    """One end-to-end query (the Localizer's steps); appends each call's per-step ms to ``parts``."""
    def run() -> np.ndarray:
        t0 = time.perf_counter()
        desc = describe()
        t1 = time.perf_counter()
        ids, sims = vmap.search(desc.global_desc[None], min(top_k, len(vmap)), allow_fewer=True)
        t2 = time.perf_counter()
        nr = min(rerank_k, ids.shape[1])
        local, counts, _ = vmap.local_batch(ids[0, :nr])
        scores = kernel(desc.local, desc.local_count, local, counts)
        order = ids[0, :nr][rerank_order(scores, sims[0, :nr])]
        t3 = time.perf_counter()
        parts.append({"describe": (t1 - t0) * 1e3, "search": (t2 - t1) * 1e3, "re-rank": (t3 - t2) * 1e3})
        return order
    return run


def _query_stage(table: BenchTable, base: dict[str, object], describes: dict[str, Callable[[], Description]],
                 vmap: VprMap, opts: SummaryOptions, retrieval: tuple[int, int], dev: torch.device) -> None:
    """End-to-end query rows against one map; low precision re-ranks in its own precision, onnxruntime in fp32."""
    top_k, rerank_k = retrieval
    parts: dict[str, list[dict[str, float]]] = {}
    fns = {}
    for name, describe in describes.items():
        precision = name.split()[0] if name != ORT else FP32
        if precision != FP32 and _emulated(precision, dev) and not opts.emulated:
            continue
        parts[name] = []
        fns[name] = _query_fn(describe, vmap, top_k, rerank_k, _kernel(precision, dev), parts[name])
    _, ms = _interleaved(fns, opts.repeats, dev)
    extra = {}
    for name, calls in parts.items():
        timed = calls[1:]  # without the warm-up call
        med = {step: statistics.median(c[step] for c in timed) for step in timed[0]}
        extra[name] = {"detail": " + ".join(f"{step} {v:.0f}" for step, v in med.items()), **{
            f"{step} ms": v for step, v in med.items()}}
    stage = f"query: {len(vmap)} keyframes, top-{min(top_k, len(vmap))}, re-rank {rerank_k}"
    _add_stage(table, {**base, "stage": stage}, ms, extra)


def _arch_rows(table: BenchTable, arch: str, dev: torch.device, opts: SummaryOptions, tmp: Path) -> None:
    """Every stage of one architecture on one device."""
    size = tuple(opts.size or DEFAULT_INPUT_SIZE)
    cfg = FoLConfig(backbone=arch_config(arch, opts.depth), input_size=size)
    node_top_k, node_rerank_k = _node_retrieval()
    rerank_k = node_rerank_k if opts.rerank_k is None else opts.rerank_k
    top_k = max(rerank_k, node_top_k if opts.top_k is None else opts.top_k)
    small = [n for n in opts.sizes if n <= rerank_k]
    if small:
        raise ConfigError(f"sizes: maps of {small} keyframes cannot hold the {rerank_k} re-ranked candidates; "
                          f"give sizes above rerank_k ({rerank_k})")
    base = {"device": dev.type, "arch": arch if opts.depth is None else f"{arch} ({opts.depth} blocks)"}
    torch_d, ort_d = _describers(cfg, dev, opts, tmp, table)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(opts.seed + 1)).to(dev)
    describes = _describe_variants(torch_d, ort_d, x, opts.precisions, dev)
    results, ms = _interleaved(describes, opts.repeats, dev)
    ref = results[FP32]
    _add_stage(table, {**base, "stage": f"describe b1, {size[0]} x {size[1]} (ms/img)"}, ms, {
        name: {"detail": f"{d.local_count} local rows"} for name, d in results.items()})
    lowp = [p for p in opts.precisions if opts.emulated or not _emulated(p, dev)]
    for regime in opts.regimes:
        _rerank_stage(table, base, cfg, rerank_k, regime, lowp, dev, opts.repeats)
    for n in opts.sizes:
        with tempfile.TemporaryDirectory(prefix="fol-bench-summary-map-") as mdir:
            vmap = _planted_map(Path(mdir) / "map", int(n), rerank_k, cfg, ref, opts.seed)
            try:
                _query_stage(table, base, describes, vmap, opts, (top_k, rerank_k), dev)
            finally:
                vmap.close()


def _notes(table: BenchTable, opts: SummaryOptions, devices: Sequence[torch.device]) -> None:
    table.notes.append(f"SYNTHETIC WEIGHTS (random:{opts.seed}): speed does not depend on the weight values")
    table.notes.append(f"ms: median of {opts.repeats} interleaved rounds after one warm-up call; vs fp32 = the "
                       "stage's fp32 ms / this row's ms and x fp32 floor = this row's ms / the floor's ms, "
                       f"all from the same rounds of this run; torch threads: {torch.get_num_threads()}, "
                       f"{os.cpu_count()} CPU cores; onnxruntime threads sleep when idle (no spinning)")
    table.notes.append("bf16/fp16: ViT backbone under autocast, region selection and local head fp32; re-rank "
                       "low precision: bf16/fp16 screening with the exact fp32 counts (counts equal: same "
                       f"per-candidate counts as the fp32 kernel on the same data, threshold {DEFAULT_THRESHOLD})")
    table.notes.append("query: describe + FAISS search + re-rank (reading the candidates' local rows included) of "
                       "the map's revisit keyframes (module doc); bf16/fp16 re-rank in their own precision, "
                       "onnxruntime and fp32 in fp32")
    if any(d.type == "cpu" for d in devices):
        emulated = [p for p in opts.precisions if _emulated(p, torch.device("cpu"))]
        if emulated and not opts.emulated:
            table.notes.append(f"{', '.join(emulated)} emulated on this CPU (no native instructions): describe "
                               "row only; re-rank and query rows with --emulated")


def bench_summary(opts: SummaryOptions | None = None, out_dir: str | os.PathLike | None = None) -> BenchTable:
    """The summary table (module doc); written as ``summary.{md,json}`` under ``out_dir``."""
    opts = opts or SummaryOptions()
    devices = [resolve_device(d) for d in (opts.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))]
    archs = list(opts.archs or [default_arch()])
    size = tuple(opts.size or DEFAULT_INPUT_SIZE)
    table = BenchTable(f"SYNTHETIC WEIGHTS - speed summary: {', '.join(archs)} at {size[0]} x {size[1]}, "
                       f"one run", COLUMNS)
    with tempfile.TemporaryDirectory(prefix="fol-bench-summary-") as tmp:
        for dev in devices:
            for arch in archs:
                _arch_rows(table, arch, dev, opts, Path(tmp))
    _notes(table, opts, devices)
    if out_dir is not None:
        table.write(out_dir, "summary")
    return table
