"""``fol-vpr map check``: a full integrity check of a saved map, with a one-screen summary."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MapError
from .layout import GLOBAL_NAME, backups, stale_temp_dirs
from .store import VprMap
from .verify import VerifyMode

__all__ = ["MapCheckResult", "check_map"]

_NORM_TOL = 1e-3
_ROWS_PER_CHUNK = 4096


@dataclass(frozen=True)
class MapCheckResult:
    """What ``check_map`` verified, and leftovers it found next to the map."""

    path: Path
    keyframes: int
    local_rows: int
    files: int
    bytes: int
    seconds: float
    leftovers: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        rate = self.bytes / 1e6 / self.seconds if self.seconds > 0 else float("inf")
        text = (f"{self.path}: OK: {self.keyframes} keyframes, {self.local_rows} local rows, {self.files} files "
                f"({self.bytes / 1e6:.1f} MB) verified (sizes, SHA-256, NaN/inf, unit-norm globals, offsets, "
                f"records) in {self.seconds:.2f} s ({rate:.0f} MB/s)")
        for p in self.leftovers:
            text += f"\n  note: leftover {p} from an interrupted save (safe to remove once this map is good)"
        return text


def check_map(path: str | os.PathLike) -> MapCheckResult:
    """Open ``path`` with full verification and check that every global descriptor has unit norm."""
    path = Path(path)
    t0 = time.perf_counter()
    with VprMap.open(path, verify=VerifyMode.FULL) as m:
        n, rows = len(m), m.num_local_rows
        g = np.load(path / GLOBAL_NAME, mmap_mode="r", allow_pickle=False) if n else np.empty((0, 1))
        for start in range(0, n, _ROWS_PER_CHUNK):
            norms = np.linalg.norm(np.asarray(g[start : start + _ROWS_PER_CHUNK], np.float64), axis=1)
            bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOL)
            if len(bad):
                raise MapError(f"{path / GLOBAL_NAME}: row {start + int(bad[0])} has norm "
                               f"{norms[bad[0]]:.4g}, not 1; the file is corrupt: rebuild the map")
        files = m.manifest.files
    seconds = time.perf_counter() - t0
    return MapCheckResult(path, n, rows, len(files), sum(e.bytes for e in files.values()), seconds,
                          backups(path.absolute()) + stale_temp_dirs(path.absolute()))
