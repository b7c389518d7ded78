"""Re-ranking of global candidates by mutual-nearest-neighbour matches of local descriptors (FoL).

For a query with local rows Q and a candidate with rows B, a pair (i, j) counts when candidate row i
and query row j are each other's nearest neighbour by dot product (first index on argmax ties, as
``torch.argmax`` / ``numpy.argmax``) and their dot product is strictly greater than ``threshold``.
A candidate's score is its number of counted pairs; empty images (count 0) score 0.

Differences from the authors' code, on purpose:

* The authors report 0 when exactly one pair passes; here it counts as 1.
* They order by ``np.argsort(scores)[::-1]`` (unstable, so the order of tied scores is machine
  dependent); :func:`rerank_order` breaks ties by global similarity, then by original rank.

:func:`mnn_scores` gives all K counts in one batched pass. Its key observation: a pair can only
count when its dot product exceeds the threshold, and for a row whose best value exceeds the
threshold, its first argmax is among the entries above the threshold. So each cache-sized tile of
the similarity matrix is reduced with a cheap ``amax`` only; rows with a value above the threshold
(few when matches are sparse) are kept, and argmaxes over rows and columns are taken from their
sparse above-threshold entries. The counts equal the per-candidate definition exactly (any
threshold, ties included) given the same dot products. Both implementations compute dot products
with one float32 GEMM per block of at least 16 rows and columns; with MKL (torch's CPU BLAS) a dot
product then did not depend on the block holding it in our checks, while blocks of 1-5 rows did
change the last bit. On GPUs (cuBLAS may pick shape-dependent kernels, and TF32 if enabled) counts
can differ only where dot products lie within rounding of each other or of the threshold.
Valid rows must be finite (ConfigError otherwise); the memory budget is approximate.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "DEFAULT_THRESHOLD",
    "RerankConfig",
    "RerankResult",
    "Reranker",
    "mnn_scores",
    "mnn_scores_loop",
    "rerank_order",
]

DEFAULT_THRESHOLD = 0.7
DEFAULT_MEMORY_BUDGET_MB = 256.0

_MIN_BLOCK = 16  # GEMM blocks are padded to at least this many rows / columns (see module docstring)
_CPU_TILE_BYTES = 16 << 20  # similarity tile size on CPU (measured: larger tiles gain nothing)
_ENTRY_BYTES = 40  # worst-case bytes per above-threshold entry (indices, value, key, masks)

ArrayLike = np.ndarray | torch.Tensor


# ---------------------------------------------------------------------------------------- validation
@dataclass
class _Inputs:
    query: torch.Tensor  # [max(nq, 16), D] float32 on device, zero rows beyond nq
    nq: int
    cand: ArrayLike  # [K, L, D], as given
    counts: np.ndarray  # [K] int64
    threshold: float  # rounded to float32
    device: torch.device
    budget: int  # bytes


def _resolve_device(device: str | torch.device | None) -> torch.device:
    try:
        dev = torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"invalid device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but CUDA is not available")
    return dev


def _check_threshold(threshold: float) -> float:
    try:
        thr = float(threshold)
    except (TypeError, ValueError):
        raise ConfigError(f"threshold must be a number, got {threshold!r}") from None
    if not -1.0 < thr <= 1.0:
        raise ConfigError(f"threshold must be in (-1, 1], got {threshold!r}")
    return float(np.float32(thr))


def _check_budget(memory_budget_mb: float) -> int:
    try:
        mb = float(memory_budget_mb)
    except (TypeError, ValueError):
        raise ConfigError(f"memory_budget_mb must be a number, got {memory_budget_mb!r}") from None
    if not (mb > 0 and np.isfinite(mb)):
        raise ConfigError(f"memory_budget_mb must be positive, got {memory_budget_mb!r}")
    return max(1, int(mb * (1 << 20)))


def _as_array(x: object, name: str) -> ArrayLike:
    if isinstance(x, torch.Tensor | np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: not an array ({exc})") from None
    floating = arr.dtype.is_floating_point if isinstance(arr, torch.Tensor) else arr.dtype.kind == "f"
    if not floating:
        raise ConfigError(f"{name} must hold floating-point rows, got dtype {arr.dtype}")
    return arr


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None


def _check_counts(cand_count: object, k: int, rows: int) -> np.ndarray:
    raw = cand_count.detach().cpu() if isinstance(cand_count, torch.Tensor) else cand_count
    raw = np.asarray(raw)
    if raw.shape != (k,):
        raise ConfigError(f"cand_count must have shape ({k},) (one count per candidate), got {raw.shape}")
    integral = raw.dtype.kind in "iu" or (raw.dtype.kind == "f" and np.array_equal(raw, np.round(raw)))
    if not integral:
        raise ConfigError(f"cand_count must hold integers, got {raw.dtype} values {raw[:5].tolist()}")
    counts = raw.astype(np.int64)
    if k and (counts.min() < 0 or counts.max() > rows):
        raise ConfigError(f"cand_count must lie in [0, {rows}] (rows per candidate), got "
                          f"min {counts.min()} max {counts.max()}")
    return counts


def _to_float32(x: ArrayLike, device: torch.device) -> torch.Tensor:
    """A float32 contiguous tensor on ``device`` (copies when needed; never a non-writable numpy view)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=torch.float32).contiguous()
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def _check_finite(x: torch.Tensor, name: str) -> None:
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise ConfigError(f"{name} contains NaN or infinite values in its valid rows")


def _prepare(query_local: object, query_count: object, cand_local: object, cand_count: object,
             threshold: float, device: str | torch.device | None, memory_budget_mb: float) -> _Inputs:
    thr = _check_threshold(threshold)
    budget = _check_budget(memory_budget_mb)
    dev = _resolve_device(device)
    q = _as_array(query_local, "query_local")
    c = _as_array(cand_local, "cand_local")
    if q.ndim != 2:
        raise ConfigError(f"query_local must be [rows, dim], got shape {tuple(q.shape)}")
    if c.ndim != 3:
        raise ConfigError(f"cand_local must be [K, rows, dim], got shape {tuple(c.shape)}")
    k, rows, dim = (int(s) for s in c.shape)
    if k == 0:
        raise ConfigError("no candidates to re-rank (K = 0)")
    if int(q.shape[1]) != dim or dim == 0:
        raise ConfigError(f"descriptor dims differ or are empty: query {int(q.shape[1])}, candidates {dim}")
    nq = _check_count(query_count, "query_count")
    if not 0 <= nq <= int(q.shape[0]):
        raise ConfigError(f"query_count must lie in [0, {int(q.shape[0])}] (query rows), got {nq}")
    counts = _check_counts(cand_count, k, rows)
    qv = _to_float32(q[:nq], dev)
    _check_finite(qv, "query_local")
    qpad = torch.zeros(max(nq, _MIN_BLOCK), dim, dtype=torch.float32, device=dev)
    qpad[:nq] = qv
    return _Inputs(qpad, nq, c, counts, thr, dev, budget)


def _candidate_rows(inp: _Inputs, k0: int, k1: int) -> torch.Tensor:
    """Valid rows of candidates k0..k1-1 concatenated, [sum counts, D] float32 on the device."""
    counts = inp.counts[k0:k1]
    rows = int(inp.cand.shape[1])
    if rows and int(counts.min()) == rows:
        block = inp.cand[k0:k1].reshape(-1, inp.cand.shape[2])
    else:
        keep = np.arange(rows)[None, :] < counts[:, None]
        if isinstance(inp.cand, torch.Tensor):
            block = inp.cand[k0:k1][torch.from_numpy(keep).to(inp.cand.device)]
        else:
            block = inp.cand[k0:k1][keep]
    return _to_float32(block, inp.device)


def _similarity(rows: torch.Tensor, query_t: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``rows @ query_t`` as one float32 GEMM of at least 16 rows (zero padded); returns [len(rows), N]."""
    m = rows.shape[0]
    if m < _MIN_BLOCK:
        padded = rows.new_zeros(_MIN_BLOCK, rows.shape[1])
        padded[:m] = rows
        return torch.mm(padded, query_t)[:m]
    if out is None:
        return torch.mm(rows, query_t)
    return torch.mm(rows, query_t, out=out[:m])


# ------------------------------------------------------------------------------------------ batched
class _ColumnBest:
    """Running best row per (candidate, query column) over row blocks fed in increasing row order."""

    def __init__(self, size: int, device: torch.device) -> None:
        self.value = torch.full((size,), -torch.inf, dtype=torch.float32, device=device)
        self.row = torch.full((size,), -1, dtype=torch.int64, device=device)

    def update(self, key: torch.Tensor, row: torch.Tensor, val: torch.Tensor) -> None:
        before = self.value[key]
        self.value.scatter_reduce_(0, key, val, "amax")
        after = self.value[key]
        # a strictly larger maximum in this block resets the column's row to its first row here;
        # an equal one keeps the earlier row (first index on ties)
        top = (val == after) & (after > before)
        if bool(top.any()):
            self.row.scatter_reduce_(0, key[top], row[top], "amin", include_self=False)


def _score_chunk(inp: _Inputs, k0: int, k1: int, tile_rows: int, flush_entries: int) -> np.ndarray:
    """Counts of candidates k0..k1-1: tiles reduced by ``amax``, then sparse above-threshold entries."""
    kc, total, nq, thr = k1 - k0, int(inp.counts[k0:k1].sum()), inp.nq, inp.threshold
    if total == 0 or nq == 0:
        return np.zeros(kc, dtype=np.int64)
    dev = inp.device
    rows = _candidate_rows(inp, k0, k1)
    counts = torch.from_numpy(inp.counts[k0:k1]).to(dev)
    owner = torch.repeat_interleave(torch.arange(kc, device=dev), counts)  # candidate of each row
    query_t = inp.query.T
    buf = torch.empty(min(tile_rows, total), inp.query.shape[0], dtype=torch.float32, device=dev)
    row_max = torch.empty(total, dtype=torch.float32, device=dev)
    cols = _ColumnBest(kc * nq, dev)
    pair_row: list[torch.Tensor] = []
    pair_key: list[torch.Tensor] = []
    entries: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    pending = 0

    def flush() -> None:
        row, col, val = (torch.cat(parts) for parts in zip(*entries, strict=True))
        entries.clear()
        keyed = owner[row] * nq
        cols.update(keyed + col, row, val)
        # first argmax of a row above the threshold: its smallest column holding the row maximum
        at_max = val == row_max[row]
        best_rows, slot = torch.unique(row[at_max], return_inverse=True)
        first = torch.full((len(best_rows),), nq, dtype=torch.int64, device=dev)
        first.scatter_reduce_(0, slot, col[at_max], "amin")
        pair_row.append(best_rows)
        pair_key.append(owner[best_rows] * nq + first)

    for t0 in range(0, total, tile_rows):
        t1 = min(t0 + tile_rows, total)
        sim = _similarity(rows[t0:t1], query_t, out=buf)[:, :nq]
        torch.amax(sim, dim=1, out=row_max[t0:t1])
        keep = (row_max[t0:t1] > thr).nonzero().squeeze(1)
        if keep.numel():
            sub = sim.index_select(0, keep)
            loc, col = (sub > thr).nonzero(as_tuple=True)
            entries.append((keep[loc] + t0, col, sub[loc, col]))
            pending += int(loc.numel())
            if pending >= flush_entries:
                flush()
                pending = 0
    if not bool(torch.isfinite(row_max).all()):
        raise ConfigError("cand_local contains NaN or infinite values in its valid rows "
                          "(or its dot products overflow float32)")
    if entries:
        flush()
    if not pair_row:
        return np.zeros(kc, dtype=np.int64)
    prow, pkey = torch.cat(pair_row), torch.cat(pair_key)
    mutual = cols.row[pkey] == prow
    return torch.bincount(owner[prow[mutual]], minlength=kc).cpu().numpy().astype(np.int64)


def _plan(inp: _Inputs) -> tuple[int, int, int]:
    """(candidate rows per chunk, tile rows, pending entries per flush) from the memory budget."""
    dim = int(inp.query.shape[1])
    ncols = int(inp.query.shape[0])
    quarter = max(1, inp.budget // 4)
    chunk_rows = max(1, quarter // (dim * 4 + 32))
    # a tile holds its similarities, the above-threshold mask and, at worst, one entry per element
    tile_rows = 2 * quarter // (ncols * (4 + 1 + _ENTRY_BYTES))
    if inp.device.type == "cpu":
        tile_rows = min(tile_rows, _CPU_TILE_BYTES // (ncols * 4))
    tile_rows = max(_MIN_BLOCK, tile_rows)
    flush_entries = max(1, quarter // _ENTRY_BYTES)
    return chunk_rows, tile_rows, flush_entries


def mnn_scores(query_local: ArrayLike, query_count: int, cand_local: ArrayLike,
               cand_count: ArrayLike | Sequence[int], threshold: float = DEFAULT_THRESHOLD,
               device: str | torch.device | None = None,
               memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> np.ndarray:
    """Mutual-nearest-neighbour pair counts [K] int64 of K candidates, batched and chunked.

    ``query_local`` [Lq, D] (rows past ``query_count`` ignored), ``cand_local`` [K, Lc, D]
    (rows past ``cand_count[k]`` ignored); any float dtype, numpy or torch; computed in float32.
    """
    inp = _prepare(query_local, query_count, cand_local, cand_count, threshold, device, memory_budget_mb)
    chunk_rows, tile_rows, flush_entries = _plan(inp)
    k = len(inp.counts)
    col_cost = inp.nq * 12  # column-best state per candidate, bytes
    scores = np.zeros(k, dtype=np.int64)
    k0 = 0
    while k0 < k:
        k1, rows = k0 + 1, int(inp.counts[k0])
        while (k1 < k and rows + int(inp.counts[k1]) <= chunk_rows
               and (k1 + 1 - k0) * col_cost <= inp.budget // 4):
            rows += int(inp.counts[k1])
            k1 += 1
        scores[k0:k1] = _score_chunk(inp, k0, k1, tile_rows, flush_entries)
        k0 = k1
    return scores


# ---------------------------------------------------------------------------------------- reference
def mnn_scores_loop(query_local: ArrayLike, query_count: int, cand_local: ArrayLike,
                    cand_count: ArrayLike | Sequence[int], threshold: float = DEFAULT_THRESHOLD,
                    device: str | torch.device | None = None,
                    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> np.ndarray:
    """Reference: the per-candidate definition, one candidate at a time (full matrix, argmax both ways)."""
    inp = _prepare(query_local, query_count, cand_local, cand_count, threshold, device, memory_budget_mb)
    query_t = inp.query.T
    scores = np.zeros(len(inp.counts), dtype=np.int64)
    for k, n in enumerate(inp.counts.tolist()):
        if n == 0 or inp.nq == 0:
            continue
        rows = _to_float32(inp.cand[k, :n], inp.device)
        _check_finite(rows, "cand_local")
        sim = _similarity(rows, query_t)[:, : inp.nq]
        best_col = sim.argmax(dim=1)  # nearest query row of each candidate row
        best_row = sim.argmax(dim=0)  # nearest candidate row of each query row
        idx = torch.arange(n, device=inp.device)
        mutual = best_row[best_col] == idx
        passed = sim[idx, best_col] > inp.threshold
        scores[k] = int((mutual & passed).sum())
    return scores


# -------------------------------------------------------------------------------------------- order
def rerank_order(scores: np.ndarray, global_sims: np.ndarray) -> np.ndarray:
    """Permutation sorting candidates by score desc, then global similarity desc, then original rank."""
    s = np.asarray(scores)
    g = np.asarray(global_sims, dtype=np.float64)
    if s.ndim != 1 or g.shape != s.shape:
        raise ConfigError(f"scores and global_sims must be 1-D of equal length, got {s.shape} and {g.shape}")
    return np.lexsort((np.arange(len(s)), -g, -s.astype(np.float64))).astype(np.int64)


# ------------------------------------------------------------------------------------------ wrapper
@dataclass(frozen=True)
class RerankConfig:
    """Re-ranking settings: pair threshold, candidates re-ranked, torch device, memory budget (MiB)."""

    threshold: float = DEFAULT_THRESHOLD
    top_k: int = 100
    device: str = "cpu"
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB

    def __post_init__(self) -> None:
        _check_threshold(self.threshold)
        _check_budget(self.memory_budget_mb)
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int | np.integer) or self.top_k < 1:
            raise ConfigError(f"top_k must be a positive integer, got {self.top_k!r}")
        _resolve_device(self.device)


@dataclass
class RerankResult:
    """Candidates in re-ranked order; ``order`` indexes the input candidates."""

    ids: np.ndarray
    scores: np.ndarray
    global_sims: np.ndarray
    order: np.ndarray


class Reranker:
    """Scores and re-orders global candidates with :func:`mnn_scores`."""

    def __init__(self, cfg: RerankConfig | None = None) -> None:
        self.cfg = cfg or RerankConfig()

    def score(self, query_local: ArrayLike, query_count: int, cand_local: ArrayLike,
              cand_count: ArrayLike | Sequence[int]) -> np.ndarray:
        """Pair counts [K] int64 of all given candidates."""
        return mnn_scores(query_local, query_count, cand_local, cand_count, self.cfg.threshold,
                          self.cfg.device, self.cfg.memory_budget_mb)

    def rerank(self, candidate_ids: Any, global_sims: Any, query_local: ArrayLike, query_count: int,
               cand_local: ArrayLike, cand_count: ArrayLike | Sequence[int]) -> RerankResult:
        """Re-rank the first ``top_k`` candidates (given in global order); later ones are dropped."""
        ids = np.asarray(candidate_ids).reshape(-1)
        sims = np.asarray(global_sims, dtype=np.float64).reshape(-1)
        k = len(ids)
        shape = tuple(cand_local.shape) if hasattr(cand_local, "shape") else np.shape(cand_local)
        if len(shape) != 3:
            raise ConfigError(f"cand_local must be [K, rows, dim], got shape {shape}")
        if len(sims) != k or shape[0] != k:
            raise ConfigError(f"candidate_ids ({k}), global_sims ({len(sims)}) and cand_local "
                              f"({shape[0]}) must have the same length")
        n = min(k, self.cfg.top_k)
        counts = (cand_count.detach().cpu().numpy() if isinstance(cand_count, torch.Tensor)
                  else np.asarray(cand_count))
        if counts.shape != (k,):
            raise ConfigError(f"cand_count must have shape ({k},), got {counts.shape}")
        scores = self.score(query_local, query_count, cand_local[:n], counts[:n])
        order = rerank_order(scores, sims[:n])
        return RerankResult(ids[:n][order], scores[order], sims[:n][order], order)
