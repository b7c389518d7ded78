"""Map benchmark: disk and RAM bytes per keyframe, open time, and query time (search + local batch).

Maps are synthetic (random unit descriptors) and written to a temporary directory removed afterwards.
The real FoL ~3400 local rows per image would need 87 GB at 100k keyframes, so by default the rows
per keyframe are capped by a total row budget (``row_budget``) and the disk size is extrapolated
to 3400 rows per keyframe; RAM does not depend on the row count (local rows are memory-mapped).
Descriptor sizes and the local grid come from the FoL configuration of ``arch`` at ``input_size``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..mapping import Keyframe, VprMap
from ..model.config import DEFAULT_INPUT_SIZE, FoLConfig, arch_config
from .common import BenchTable, time_call

__all__ = ["bench_map", "build_synthetic_map"]

REAL_ROWS = 3400  # typical FoL local rows per image
AUTHORS_ROWS = 3600  # the authors keep 3600 x 128 float32 local rows per image in RAM

_CHILD = r"""
import gc, json, sys, time
import numpy as np
from fol_vpr_ros.mapping import VprMap

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0

gc.collect()
before = rss()
t0 = time.perf_counter()
m = VprMap.open(sys.argv[1])
open_s = time.perf_counter() - t0
after_open = rss()
q = np.asarray(m.global_descriptor(int(m.ids[len(m) // 2])), dtype=np.float32)
ids, _ = m.search(q, min(100, len(m)))
m.local_batch(ids[0])
after_query = rss()
print(json.dumps({"open_s": open_s, "before": before, "after_open": after_open, "after_query": after_query}))
"""


def _unit(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    return x


def build_synthetic_map(path: Path, n: int, rows: int, cfg: FoLConfig, dim: int, local_dtype: str, seed: int
           ) -> tuple[float, float]:
    """Create a synthetic map of ``n`` keyframes at ``path``; returns (add seconds, save seconds)."""
    rng = np.random.default_rng(seed)
    local_dim = cfg.local_head.out_dim
    m = VprMap.create(path, arch=cfg.arch, input_size=cfg.input_size, model_hash=f"synthetic:{seed}",
                      descriptor_dim=dim, local_dim=local_dim, local_dtype=local_dtype)
    per_kf_bytes = rows * local_dim * 4 + dim * 4
    step = max(1, min(1000, (64 << 20) // per_kf_bytes))
    grid = np.stack(np.divmod(np.arange(rows), cfg.local_grid[1]), axis=1)
    t_add = 0.0
    for start in range(0, n, step):
        b = min(step, n - start)
        g = _unit(rng.standard_normal((b, dim), dtype=np.float32))
        loc = _unit(rng.standard_normal((b * rows, local_dim), dtype=np.float32))
        rc = np.tile(grid, (b, 1))
        kfs = [Keyframe(stamp_ns=(start + i) * 100_000_000, frame_id="camera", source=f"synthetic/{start + i}")
               for i in range(b)]
        t0 = time.perf_counter()
        m.add(kfs, g, loc, rc, counts=np.full(b, rows))
        t_add += time.perf_counter() - t0
    t0 = time.perf_counter()
    m.save()
    t_save = time.perf_counter() - t0
    m.close()
    return t_add, t_save


def _measure_child(path: Path) -> dict[str, float]:
    """Open the map in a fresh interpreter (clean RSS); returns its open time and RSS readings."""
    out = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True,
                         check=False, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"map open benchmark child failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_map(sizes: tuple[int, ...] = (1000, 10000, 100000), out_dir: str | Path | None = None,
              rows_per_keyframe: int | None = None, global_dim: int | None = None, local_dtype: str = "float16",
              row_budget: int = 3_400_000, repeats: int = 5, seed: int = 0, arch: str = "vitb14",
              input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> BenchTable:
    """Build, save, open and query synthetic maps of each size; write ``map_bench.{md,json}`` to out_dir.

    ``rows_per_keyframe`` None means min(3400, row_budget // size) rows per keyframe; ``global_dim``
    None means the descriptor size of ``arch`` at ``input_size``.
    """
    cfg = FoLConfig(backbone=arch_config(arch), input_size=tuple(input_size))
    global_dim = cfg.descriptor_dim if global_dim is None else int(global_dim)
    local_dim = cfg.local_head.out_dim
    itemsize = np.dtype(local_dtype).itemsize
    rc_itemsize = 2  # int16
    table = BenchTable(
        "Map: size, open and query time",
        ["keyframes", "rows/kf", "global_dim", "disk_MB", "disk_B/kf", "disk_B/kf@3400rows", "ram_B/kf",
         "authors_ram_B/kf", "build_add_s", "save_s", "open_s", "open_warm_s", "open_size_s", "open_off_s",
         "verify_full_s", "verify_MB/s", "search_k100_ms",
         "local_batch100_ms", "local_batch100_f16_ms", "local_batch100_ms@3400rows_est"])
    for n in sizes:
        rows = rows_per_keyframe if rows_per_keyframe is not None else max(1, min(REAL_ROWS, row_budget // n))
        with tempfile.TemporaryDirectory(prefix="fol-map-bench-") as tmp:
            path = Path(tmp) / "map"
            t_add, t_save = build_synthetic_map(path, n, rows, cfg, global_dim, local_dtype, seed)
            gc.collect()
            disk = sum(f.stat().st_size for f in path.iterdir())
            child = _measure_child(path)
            opens = {}
            for mode in ("size", "off", "full"):  # full last: its map stays open for the query timings
                t0 = time.perf_counter()
                m = VprMap.open(path, verify=mode)
                opens[mode] = time.perf_counter() - t0
                if mode != "full":
                    m.close()
            open_warm = opens["full"]
            q = np.asarray(m.global_descriptor(int(m.ids[n // 2])), dtype=np.float32)
            k = min(100, n)
            search = time_call(lambda m=m, q=q, k=k: m.search(q, k), repeats=repeats)
            ids, _ = m.search(q, k)
            batch = time_call(lambda m=m, ids=ids: m.local_batch(ids[0]), repeats=repeats)
            batch16 = time_call(lambda m=m, ids=ids: m.local_batch(ids[0], dtype=np.float16), repeats=repeats)
            m.close()
            del m
            gc.collect()
        local_per_row = local_dim * itemsize + 2 * rc_itemsize
        table.add(**{
            "keyframes": n, "rows/kf": rows, "global_dim": global_dim,
            "disk_MB": disk / 1e6, "disk_B/kf": disk / n,
            "disk_B/kf@3400rows": disk / n + (REAL_ROWS - rows) * local_per_row,
            "ram_B/kf": (child["after_open"] - child["before"]) / n,
            "authors_ram_B/kf": AUTHORS_ROWS * local_dim * 4 + global_dim * 4,
            "build_add_s": t_add, "save_s": t_save, "open_s": child["open_s"], "open_warm_s": open_warm,
            "open_size_s": opens["size"], "open_off_s": opens["off"], "verify_full_s": open_warm - opens["size"],
            "verify_MB/s": disk / 1e6 / max(open_warm - opens["size"], 1e-9),
            "search_k100_ms": search.median_ms, "local_batch100_ms": batch.median_ms,
            "local_batch100_f16_ms": batch16.median_ms,
            "local_batch100_ms@3400rows_est": batch.median_ms * REAL_ROWS / rows,
        })
    table.notes += [
        "Synthetic random unit descriptors; exact flat inner-product index (FAISS CPU), "
        f"local rows {local_dtype}, rc int16; machine: {os.cpu_count()} CPU cores.",
        f"rows/kf = min({REAL_ROWS}, {row_budget} // keyframes) unless given, to bound disk use; "
        f"disk_B/kf@3400rows adds the missing rows at {local_dim * itemsize + 2 * rc_itemsize} B each.",
        "ram_B/kf: RSS growth of a fresh process opening the map (globals copied into the FAISS index, "
        "offsets, records; local rows memory-mapped, not read).",
        f"authors_ram_B/kf: {AUTHORS_ROWS} x {local_dim} float32 local rows + the float32 global "
        "descriptor per image held in RAM.",
        "open_s: fresh process, files in the page cache (just written), verify=full (the default: SHA-256 and "
        "NaN/inf of every file); open_warm_s: same, in-process; open_size_s / open_off_s: verify=size / off; "
        "verify_full_s = open_warm_s - open_size_s, the cost of reading and checking every byte once. "
        "search: one query, k=100 (or all keyframes when fewer); local_batch100: padded float32 batch of "
        "the 100 candidates' local rows (_f16: same, kept float16, no conversion); median of repeats. The "
        "@3400rows estimate scales the float32 batch linearly.",
    ]
    if out_dir is not None:
        table.write(out_dir, "map_bench")
    return table


if __name__ == "__main__":  # pragma: no cover
    print(bench_map(out_dir=sys.argv[1] if len(sys.argv) > 1 else None).to_markdown())
