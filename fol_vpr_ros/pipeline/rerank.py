"""Re-ranking of global candidates by mutual-nearest-neighbour matches of local descriptors (FoL).

For a query with local rows Q and a candidate with rows B, a pair (i, j) counts when candidate row i
and query row j are each other's nearest neighbour by dot product (first index on argmax ties, as
``torch.argmax`` / ``numpy.argmax``) and their dot product is strictly greater than ``threshold``.
A candidate's score is its number of counted pairs; empty images (count 0) score 0.

Differences from the authors' code, on purpose:

* The authors report 0 when exactly one pair passes; here it counts as 1.
* They order by ``np.argsort(scores)[::-1]`` (unstable, so the order of tied scores is machine
  dependent); :func:`rerank_order` breaks ties by global similarity, then by original rank.

:func:`mnn_scores` gives all K counts in one batched pass over cache-sized tiles of the similarities
of the stacked candidate rows to the query rows. A pair counts only if its dot product v exceeds the
threshold and is both its row's and its column's maximum, so its row's maximum equals a column
maximum. Each tile is therefore reduced with cheap vectorised ``amax`` passes only: row maxima, then
column maxima of ``_BLOCK``-row blocks of each candidate. The rows whose maximum exceeds the threshold
and equals one of those column maxima (found by sorting; few, even when many dot products exceed
the threshold) are the only ones examined: their first argmax (the column whose maximum is v when
that is unambiguous, else an argmax of the row), and whether an earlier row of the candidate holds v
in that column (the earlier blocks' maxima, then the earlier rows of its own block). A candidate's
column maxima are merged over its tiles keeping the first tile that holds each maximum. When few rows
of a tile exceed the threshold, they are gathered, with those of the next tiles, and examined together.
So the cost beyond the GEMM is about two passes over the similarities whether few or many dot
products exceed the threshold, and the counts equal the per-candidate definition exactly (any
threshold, ties included) given the same dot products. Both implementations compute dot products
with one float32 GEMM per block of at least 16 rows and columns; with MKL (torch's CPU BLAS) a dot
product then did not depend on the block holding it in our checks, while blocks of 1-5 rows did
change the last bit. On GPUs (cuBLAS may pick shape-dependent kernels, and TF32 if enabled) counts
can differ only where dot products lie within rounding of each other or of the threshold.
Valid rows must be finite (ConfigError otherwise); the memory budget is approximate.

Long module: one kernel - the batched tiled count, the per-candidate reference it must equal and the
input checks both share - plus the small Reranker wrapper that callers use.
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

__all__ = [
    "DEFAULT_MEMORY_BUDGET_MB",
    "DEFAULT_THRESHOLD",
    "RerankConfig",
    "RerankResult",
    "Reranker",
    "mnn_pairs",
    "mnn_scores",
    "mnn_scores_loop",
    "rerank_order",
]

DEFAULT_THRESHOLD = 0.7
DEFAULT_MEMORY_BUDGET_MB = 256.0

_MIN_BLOCK = 16  # GEMM blocks are padded to at least this many rows / columns (see module docstring)
_CPU_TILE_BYTES = 16 << 20  # similarity tile size on CPU (measured: larger tiles gain nothing)
_TILE_ENTRY_BYTES = 16  # bytes per tile element: similarity, rows gathered twice, block maxima, input
_ROW_BYTES = 40  # bytes per chunk row at worst: its maximum, gathered index, pair (row, key, group)
_BLOCK = 32  # rows per block of column maxima in a tile
_DENSE_FRACTION = 0.25  # a tile with a larger share of rows above the threshold is examined in place

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
    """Per (candidate, query column): the best value over the row groups so far, and the first group holding it.

    Exact for every column whose best value exceeds the threshold (the only ones a counted pair can use),
    as each group reports the column maxima over at least all its rows with a value above the threshold.
    Host arrays: they are updated with a few thousand values per group.
    """

    def __init__(self, kc: int, nq: int) -> None:
        self.value = np.full((kc, nq), -np.inf, dtype=np.float32)
        self.group = np.full((kc, nq), -1, dtype=np.int64)

    def update(self, cands: list[int], group: int, col_max: np.ndarray) -> None:
        # groups come in increasing row order and a later one takes a column only with a strictly larger
        # value, so ``group`` ends as the first group holding the column's maximum (first index on ties)
        for s, c in enumerate(cands):
            value = self.value[c]
            self.group[c][col_max[s] > value] = group
            np.maximum(value, col_max[s], out=value)


class _Work:
    """Buffers reused by the tiles of a chunk (fresh large allocations page-fault on every tile)."""

    def __init__(self, tile_rows: int, dim: int, ncols: int, max_segments: int, device: torch.device) -> None:
        def buf(rows: int, cols: int) -> torch.Tensor:
            return torch.empty(rows, cols, dtype=torch.float32, device=device)

        self.rows = buf(tile_rows, dim)  # candidate rows of a tile, when they span candidates
        self.sim = buf(tile_rows, ncols)  # the tile's similarities
        self.sub = buf(tile_rows, ncols)  # rows above the threshold of sparse tiles, gathered
        self.pick = buf(tile_rows, ncols)  # rows examined for pairs
        self.block = buf(tile_rows // _BLOCK + max_segments, ncols)  # column maxima of row blocks

    @staticmethod
    def view(buf: torch.Tensor, rows: int, cols: int, offset: int = 0) -> torch.Tensor:
        """A contiguous [rows, cols] tensor on ``buf``'s memory, from element ``offset``."""
        return buf.view(-1)[offset:offset + rows * cols].view(rows, cols)


def _host(x: torch.Tensor) -> np.ndarray:
    """A numpy array of ``x`` (no copy on CPU)."""
    return x.detach().cpu().numpy()


def _tile_pairs(mat: torch.Tensor, row_max: np.ndarray, bounds: list[tuple[int, int]], thr: float,
                work: _Work) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group-local mutual best matches, each segment ``mat[a:b]`` (``bounds``) holding one candidate's rows.

    ``mat`` (contiguous, ours to modify) holds a group of rows, ``row_max`` their maxima. Returns (rows,
    columns, segments of the pairs, column maxima [segments, nq]): row r with ``row_max[r] > thr`` whose
    first argmax is column c, and which is the first row of its segment holding the maximum of column c.
    Such a row's maximum equals a column maximum of its segment; few rows do, and only they are examined,
    through column maxima of ``_BLOCK``-row blocks: no argmax over the whole tile. The reductions over
    the tile run on its device, the bookkeeping of the few rows on the host (numpy).
    """
    dev = mat.device
    m, nq = mat.shape
    seg_blocks = [-(-(b - a) // _BLOCK) for a, b in bounds]
    block_max = work.view(work.block, sum(seg_blocks), nq)
    col_max_t = torch.empty(len(bounds), nq, dtype=mat.dtype, device=dev)
    base = 0
    for s, (a, b) in enumerate(bounds):
        nb, rem = divmod(b - a, _BLOCK)
        if nb:
            torch.amax(mat[a:a + nb * _BLOCK].unflatten(0, (nb, _BLOCK)), dim=1, out=block_max[base:base + nb])
        if rem:
            torch.amax(mat[a + nb * _BLOCK:b], dim=0, keepdim=True, out=block_max[base + nb:base + nb + 1])
        torch.amax(block_max[base:base + seg_blocks[s]], dim=0, out=col_max_t[s])
        base += seg_blocks[s]
    col_max = _host(col_max_t)
    # rows whose maximum v > thr equals some column maximum (of any segment; == as comparisons see it,
    # -0.0 == 0.0): a sorted copy of the column maxima, with a sentinel equal to nothing (NaN sorts last)
    order = np.argsort(col_max, axis=None)
    ordered = np.append(col_max.reshape(-1)[order], np.float32(np.nan))
    lo = np.searchsorted(ordered, row_max)
    sel = np.flatnonzero((ordered[lo] == row_max) & (row_max > thr))
    if sel.size == 0:
        return sel, sel, sel, col_max
    lo, val = lo[sel], row_max[sel]
    col = order[lo] % nq  # a column with maximum v
    single = ordered[lo + 1] != val  # ... and the only one
    # the row's value at that column, and its maximum off it (masked, then restored when in place)
    sel_t, col_t = torch.from_numpy(sel).to(dev), torch.from_numpy(col).to(dev)
    if 3 * sel.size > m:
        flat = mat.view(-1)
        at = sel_t * nq + col_t
        held = flat.index_select(0, at)
        flat.index_fill_(0, at, -torch.inf)
        others = torch.amax(mat, dim=1).index_select(0, sel_t)
        flat.index_copy_(0, at, held)
    else:
        rows = torch.index_select(mat, 0, sel_t, out=work.view(work.pick, sel.size, nq))
        held = rows.gather(1, col_t[:, None]).squeeze(1)
        rows.scatter_(1, col_t[:, None], -torch.inf)
        others = torch.amax(rows, dim=1)
    at_col = _host(held) == val
    # v once in the row, at the only column with maximum v: that column is the row's first argmax.
    # v not at that column: the row's argmax column has a larger maximum, no pair. Else (ties): argmax.
    direct = single & at_col & (_host(others) < val)
    slow = ~(direct | (single & ~at_col))
    if slow.any():
        col[slow] = _host(mat.index_select(0, sel_t[torch.from_numpy(slow).to(dev)]).argmax(dim=1))
        direct |= slow
    sel, col, val = sel[direct], col[direct], val[direct]
    # the row must come first in column c among the rows of its segment holding v == col_max[c]:
    # the segment's earlier blocks, and the earlier rows of the row's own block, stay below v
    starts = np.array([a for a, _ in bounds])
    seg = np.searchsorted(starts, sel, "right") - 1
    local = sel - starts[seg]
    seg_base = np.cumsum([0, *seg_blocks[:-1]])[seg]
    ids = np.arange(block_max.shape[0])[:, None]
    earlier = (ids >= seg_base) & (ids < seg_base + local // _BLOCK)
    block_col = _host(block_max.index_select(1, torch.from_numpy(col).to(dev)))
    before = np.where(earlier, block_col, -np.inf).max(axis=0, initial=-np.inf)
    inner = (sel - local % _BLOCK)[:, None] + np.arange(_BLOCK)
    at = torch.from_numpy((np.minimum(inner, m - 1) * nq + col[:, None]).reshape(-1)).to(dev)
    vals = _host(mat.view(-1).index_select(0, at)).reshape(inner.shape)
    before = np.maximum(before, np.where(inner < sel[:, None], vals, -np.inf).max(axis=1))
    ok = (before < val) & (col_max[seg, col] == val)
    return sel[ok], col[ok], seg[ok], col_max


def _tile_input(inp: _Inputs, k0: int, starts: list[int], segs: list[tuple[int, int, int]],
                out: torch.Tensor) -> torch.Tensor:
    """Candidate rows of a tile, [rows, D] float32: a view when they lie in one candidate, else copied."""
    parts = [(a, b, inp.cand[k0 + c, a - starts[c]:b - starts[c]]) for c, a, b in segs]
    if len(parts) == 1:
        return _to_float32(parts[0][2], inp.device)
    t0 = segs[0][1]
    for a, b, src in parts:
        out[a - t0:b - t0].copy_(_to_float32(src, inp.device))
    return out[: segs[-1][2] - t0]


def _score_chunk(inp: _Inputs, k0: int, k1: int, tile_rows: int) -> np.ndarray:
    """Counts of candidates k0..k1-1 (see the module docstring)."""
    cands, _, _ = _chunk_pairs(inp, k0, k1, tile_rows)
    return np.bincount(cands, minlength=k1 - k0).astype(np.int64)


def _chunk_pairs(inp: _Inputs, k0: int, k1: int, tile_rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The counted pairs of candidates k0..k1-1, one similarity tile at a time: (candidate - k0, candidate
    row, query row) int64 arrays, in chunk-row order."""
    kc, total, nq, thr = k1 - k0, int(inp.counts[k0:k1].sum()), inp.nq, inp.threshold
    empty = np.zeros(0, dtype=np.int64)
    if total == 0 or nq == 0:
        return empty, empty, empty
    dev = inp.device
    starts_np = np.concatenate([[0], np.cumsum(inp.counts[k0:k1])])  # first chunk row of each candidate
    starts = starts_np.tolist()
    query_t = inp.query.T
    tile_rows = min(tile_rows, total)
    work = _Work(tile_rows, int(inp.query.shape[1]), int(inp.query.shape[0]), min(kc, tile_rows), dev)
    row_max = torch.empty(total, dtype=torch.float32, device=dev)
    cols = _ColumnBest(kc, nq)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]] = []  # (chunk rows, candidates, columns, group)
    pending: list[tuple[np.ndarray, torch.Tensor]] = []  # chunk rows in work.sub and their maxima
    filled = 0

    def examine(mat: torch.Tensor, mat_max: np.ndarray, chunk_rows: np.ndarray,
                segs: list[tuple[int, int, int]]) -> None:
        """Pairs of the next row group: ``mat`` holds the similarities of chunk rows ``chunk_rows`` (increasing),
        ``mat_max`` their maxima; ``segs`` are (candidate, first, end) in ``mat``."""
        loc, col, seg, col_max = _tile_pairs(mat, mat_max, [(a, b) for _, a, b in segs], thr, work)
        cands = [c for c, _, _ in segs]
        cols.update(cands, len(found), col_max)
        found.append((chunk_rows[loc], np.array(cands, dtype=np.int64)[seg], col, len(found)))

    def flush() -> None:
        nonlocal filled
        if filled:
            chunk_rows = np.concatenate([r for r, _ in pending])
            edges = np.searchsorted(chunk_rows, starts_np).tolist()
            c0 = bisect.bisect_right(starts, int(chunk_rows[0])) - 1
            segs = [(c, edges[c], edges[c + 1]) for c in range(c0, kc) if edges[c + 1] > edges[c]]
            mat_max = np.concatenate([_host(m) for _, m in pending])
            examine(work.view(work.sub, filled, nq), mat_max, chunk_rows, segs)
            pending.clear()
            filled = 0

    j = 0  # first candidate with rows in the current tile
    for t0 in range(0, total, tile_rows):
        t1 = min(t0 + tile_rows, total)
        while starts[j + 1] <= t0:
            j += 1
        segs = []  # (candidate, first chunk row, end) of the candidates with rows in the tile
        for c in range(j, kc):
            if starts[c] >= t1:
                break
            if starts[c + 1] > starts[c]:
                segs.append((c, max(starts[c], t0), min(starts[c + 1], t1)))
        sim = _similarity(_tile_input(inp, k0, starts, segs, work.rows), query_t, out=work.sim)[:, :nq]
        tile_max = row_max[t0:t1]
        torch.amax(sim, dim=1, out=tile_max)
        keep = (tile_max > thr).nonzero().squeeze(1)
        n = keep.numel()
        if n > _DENSE_FRACTION * (t1 - t0):  # many rows above the threshold: the tile in place
            flush()
            examine(sim if sim.is_contiguous() else sim.contiguous(), _host(tile_max), np.arange(t0, t1),
                    [(c, a - t0, b - t0) for c, a, b in segs])
        elif n:  # few: gathered with the next tiles' (rows never above the threshold can neither count
            if filled + n > tile_rows:  # nor block a pair)
                flush()
            torch.index_select(sim, 0, keep, out=work.view(work.sub, n, nq, filled * nq))
            pending.append((_host(keep) + t0, tile_max.index_select(0, keep)))
            filled += n
    flush()
    if not bool(torch.isfinite(row_max).all()):
        raise ConfigError("cand_local contains NaN or infinite values in its valid rows "
                          "(or its dot products overflow float32)")
    if not found:
        return empty, empty, empty
    rows = np.concatenate([r for r, _, _, _ in found])
    cands = np.concatenate([c for _, c, _, _ in found])
    col = np.concatenate([k for _, _, k, _ in found])
    group = np.concatenate([np.full(len(r), g) for r, _, _, g in found])
    # a local pair counts when its group is the first holding the column's candidate-wide maximum, its value
    mutual = (cols.group[cands, col] == group) & (cols.value[cands, col] == _host(row_max)[rows])
    c = cands[mutual].astype(np.int64)
    return c, rows[mutual].astype(np.int64) - starts_np[c].astype(np.int64), col[mutual].astype(np.int64)


def _plan(inp: _Inputs) -> tuple[int, int]:
    """(candidate rows per chunk, tile rows) from the memory budget."""
    ncols = int(inp.query.shape[0])
    quarter = max(1, inp.budget // 4)
    chunk_rows = max(1, quarter // _ROW_BYTES)
    # a tile holds its similarities and, at worst, gathered copies of its rows and columns
    tile_rows = 2 * quarter // (ncols * _TILE_ENTRY_BYTES)
    if inp.device.type == "cpu":
        tile_rows = min(tile_rows, _CPU_TILE_BYTES // (ncols * 4))
    return chunk_rows, max(_MIN_BLOCK, tile_rows)


def mnn_scores(query_local: ArrayLike, query_count: int, cand_local: ArrayLike,
               cand_count: ArrayLike | Sequence[int], threshold: float = DEFAULT_THRESHOLD,
               device: str | torch.device | None = None,
               memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> np.ndarray:
    """Mutual-nearest-neighbour pair counts [K] int64 of K candidates, batched and chunked.

    ``query_local`` [Lq, D] (rows past ``query_count`` ignored), ``cand_local`` [K, Lc, D]
    (rows past ``cand_count[k]`` ignored); any float dtype, numpy or torch; computed in float32.
    """
    inp = _prepare(query_local, query_count, cand_local, cand_count, threshold, device, memory_budget_mb)
    chunk_rows, tile_rows = _plan(inp)
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
        scores[k0:k1] = _score_chunk(inp, k0, k1, tile_rows)
        k0 = k1
    return scores


def mnn_pairs(query_local: ArrayLike, query_count: int, cand_local: ArrayLike, cand_count: int,
              threshold: float = DEFAULT_THRESHOLD, device: str | torch.device | None = None,
              memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB) -> tuple[np.ndarray, np.ndarray]:
    """The pairs :func:`mnn_scores` counts for ONE candidate ``cand_local`` [Lc, D]: (query rows, candidate
    rows) int64, in candidate-row order; the same tiled kernel, so their number is that candidate's score."""
    cand = cand_local[None] if isinstance(cand_local, torch.Tensor | np.ndarray) else np.asarray(cand_local)[None]
    inp = _prepare(query_local, query_count, cand, [cand_count], threshold, device, memory_budget_mb)
    _, tile_rows = _plan(inp)
    _, rows, cols = _chunk_pairs(inp, 0, 1, tile_rows)
    return cols, rows


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
