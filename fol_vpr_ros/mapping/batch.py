"""Checking a batch of keyframes before it is added to a map: global descriptors, local rows and rc."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["check_globals", "gather_local"]

_NORM_TOL = 1e-3  # how far from 1 the norm of a global descriptor may be


def check_globals(globals_: Any, n: int, dim: int) -> np.ndarray:
    """[n, dim] finite, unit-norm float32 global descriptors (a [dim] vector when n is 1), else ConfigError."""
    g = np.asarray(globals_, dtype=np.float32)
    if g.ndim == 1 and n == 1:
        g = g[None]
    if g.shape != (n, dim):
        raise ConfigError(f"globals must have shape [{n}, {dim}] for {n} keyframes, got {list(g.shape)}")
    if not np.isfinite(g).all():
        raise ConfigError("global descriptors contain NaN or infinite values")
    norms = np.linalg.norm(g, axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOL)
    if len(bad):
        raise ConfigError(f"global descriptor {int(bad[0])} of this batch has norm {norms[bad[0]]:.4g}; "
                          "descriptors must be L2-normalised (unit norm)")
    return np.ascontiguousarray(g)


def _as_rows(x: Any, width: int, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.size == 0:
        return a.reshape(0, width)
    if a.ndim != 2 or a.shape[1] != width:
        raise ConfigError(f"{what} must have shape [n, {width}], got {list(a.shape)}")
    return a


def _concatenate(local: Any, rc: Any, n: int, ldim: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """One [n_i, L] array per keyframe (and [n_i, 2] rc) -> (rows, rc, counts); None for an empty batch."""
    if isinstance(local, np.ndarray) and local.ndim != 3:
        raise ConfigError("local rows given as one 2-D array need counts (rows per keyframe)")
    local, rc = list(local), list(rc)
    if len(local) != n or len(rc) != n:
        raise ConfigError(f"{len(local)} local row arrays and {len(rc)} rc arrays for {n} keyframes")
    la = [_as_rows(x, ldim, f"local rows of keyframe {j}") for j, x in enumerate(local)]
    ra = [_as_rows(x, 2, f"rc of keyframe {j}") for j, x in enumerate(rc)]
    for j, (x, y) in enumerate(zip(la, ra)):
        if len(x) != len(y):
            raise ConfigError(f"keyframe {j} of this batch has {len(x)} local rows but {len(y)} rc rows")
    cnt = np.array([len(x) for x in la], dtype=np.int64)
    return (np.concatenate(la) if n else None), (np.concatenate(ra) if n else None), cnt


def gather_local(local: Any, rc: Any, counts: Any, n: int, ldim: int, local_dtype: str,
                 rc_dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows [R, L] ``local_dtype``, rc [R, 2] ``rc_dtype``, counts [n]) of a batch, checked.

    Local rows are either one [n_i, L] array per keyframe with matching [n_i, 2] ``rc`` arrays, or all
    rows concatenated ([sum n_i, L] and [sum n_i, 2]) with ``counts`` giving n_i.
    """
    ldt, rdt = np.dtype(local_dtype), np.dtype(rc_dtype)
    if counts is None:
        rows, pos, cnt = _concatenate(local, rc, n, ldim)
    else:
        cnt = np.asarray(counts, dtype=np.int64).reshape(-1)
        rows, pos = np.asarray(local), np.asarray(rc)
    if rows is None or pos is None:
        return np.empty((0, ldim), ldt), np.empty((0, 2), rdt), np.zeros(0, np.int64)
    if len(cnt) != n or (n and cnt.min() < 0):
        raise ConfigError(f"counts must be {n} non-negative integers, got {cnt.tolist()[:8]}")
    total = int(cnt.sum())
    if rows.ndim != 2 or rows.shape != (total, ldim):
        raise ConfigError(f"local rows must have shape [{total}, {ldim}] in all, got {list(rows.shape)}")
    if pos.shape != (total, 2):
        raise ConfigError(f"rc must have shape [{total}, 2] (row, col per local row), got {list(pos.shape)}")
    if total and not np.issubdtype(pos.dtype, np.integer):
        raise ConfigError(f"rc must be integers, got {pos.dtype}")
    info = np.iinfo(rdt)
    if total and (pos.min() < info.min or pos.max() > info.max):
        raise ConfigError(f"rc values outside the {rdt} range of this map; create it with rc_dtype='int32'")
    out = np.ascontiguousarray(rows, dtype=ldt)
    if not np.isfinite(out).all():
        raise ConfigError(f"local rows contain NaN or infinite values (after conversion to {ldt})")
    return out, np.ascontiguousarray(pos, dtype=rdt), cnt
