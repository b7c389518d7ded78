"""Local matches for drawing (numpy): mutual nearest neighbours of one pair, grid-to-pixel mapping."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = ["grid_to_pixels", "matched_points", "mnn_pairs"]


def _rows(x: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float32)
    if a.ndim != 2:
        raise ConfigError(f"{what} must be [n, dim], got shape {a.shape}")
    return a


def _threshold(threshold: float | None) -> float:
    """``threshold``, or the re-ranking's own default (``pipeline.rerank.DEFAULT_THRESHOLD``)."""
    if threshold is not None:
        return float(threshold)
    from ..pipeline.rerank import DEFAULT_THRESHOLD  # torch: only when the default is asked for

    return DEFAULT_THRESHOLD


def mnn_pairs(
    query_rows: np.ndarray, cand_rows: np.ndarray, threshold: float | None = None, normalize: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (qi, ci) of mutual nearest neighbours with similarity above ``threshold``, by query row.

    ``normalize``: rows are L2-normalised first (cosine similarity, so a threshold >= 1 finds nothing);
    without it the raw dot products are compared. The pairs are the re-ranking's own
    (``pipeline.matches.mutual_matches``, whose ``DEFAULT_THRESHOLD`` is the default here).
    """
    threshold = _threshold(threshold)
    q, c = _rows(query_rows, "query_rows"), _rows(cand_rows, "cand_rows")
    empty = np.zeros(0, dtype=np.int64)
    if q.shape[0] == 0 or c.shape[0] == 0 or (normalize and threshold >= 1.0):
        return empty, empty.copy()
    if q.shape[1] != c.shape[1]:
        raise ConfigError(f"local rows differ in width: query {q.shape[1]}, candidate {c.shape[1]}")
    if normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    from ..pipeline.matches import mutual_matches  # torch: only when pairs are asked for

    qi, ci = mutual_matches(q, len(q), c, len(c), threshold)
    order = np.argsort(qi, kind="stable")
    return qi[order], ci[order]


def matched_points(
    query_rows: np.ndarray,
    query_rc: np.ndarray,
    cand_rows: np.ndarray,
    cand_rc: np.ndarray,
    threshold: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) local-grid positions [m, 2] of the mutual matches in the query and the candidate.

    The pairs are the ones the re-ranking counts (raw dot products of the rows as stored, e.g. a
    float16 map's), so their number equals the candidate's re-rank score.
    """
    qi, ci = mnn_pairs(query_rows, cand_rows, threshold, normalize=False)
    q_rc = np.asarray(query_rc).reshape(-1, 2)
    c_rc = np.asarray(cand_rc).reshape(-1, 2)
    if q_rc.shape[0] != np.shape(query_rows)[0] or c_rc.shape[0] != np.shape(cand_rows)[0]:
        raise ConfigError("local positions and local rows differ in count")
    return q_rc[qi].astype(np.int64), c_rc[ci].astype(np.int64)


def grid_to_pixels(rc: np.ndarray, grid: Sequence[int], image_size: Sequence[int]) -> np.ndarray:
    """(x, y) pixel centres [n, 2] of (row, col) cells of a ``grid`` (H, W) over an image (height, width).

    pixel = (rc + 0.5) * image_side / grid_side.
    """
    gh, gw = (int(v) for v in grid)
    h, w = (float(v) for v in image_size)
    if gh < 1 or gw < 1:
        raise ConfigError(f"grid must be positive, got {tuple(grid)}")
    a = np.asarray(rc, dtype=np.float64).reshape(-1, 2)
    x = (a[:, 1] + 0.5) * w / gw
    y = (a[:, 0] + 0.5) * h / gh
    return np.stack([x, y], axis=1)
