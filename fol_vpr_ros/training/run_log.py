"""A training run's log: the log.csv columns, reading them back on resume, validation entries, curves.png."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..atomic import atomic_path
from .validation import ValResult

__all__ = ["LOG_COLUMNS", "read_log_csv", "val_entry", "write_curves"]

# seconds: wall time of the step including the wait for its batch; images_per_s = batch images / seconds;
# loss columns are the unweighted terms and the weighted total (LossTerms.to_floats)
LOG_COLUMNS = ("step", "epoch", "lr", "total", "ms", "local", "sal", "cel", "weak", "mined_pos", "mined_neg",
               "weak_pairs", "seconds", "images_per_s", "elapsed_s")


def val_entry(res: ValResult, step: int, epoch: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"step": step, "epoch": epoch, "set": res.name}
    entry.update({f"global_r{n}": v for n, v in res.recall_global.items()})
    entry.update({f"rerank_r{n}": v for n, v in res.recall_rerank.items()})
    return entry


def read_log_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with path.open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            try:
                rows.append({k: (int(v) if k in ("step", "epoch", "mined_pos", "mined_neg", "weak_pairs")
                                 else float(v)) for k, v in r.items() if k in LOG_COLUMNS})
            except (TypeError, ValueError):
                continue
    return rows


def write_curves(rows: list[dict[str, Any]], val: list[dict[str, Any]], path: Path) -> Path:
    """Loss terms per step (left) and validation Recall@5 (right), matplotlib object API (Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4))
    FigureCanvasAgg(fig)
    ax, axr = fig.subplots(1, 2)
    steps = [r["step"] for r in rows]
    for key in ("total", "ms", "local", "cel", "sal", "weak"):
        ax.plot(steps, [r[key] for r in rows], label=key, linewidth=1.5 if key == "total" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (unweighted terms, weighted total)")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    if val:
        vs = [v["step"] for v in val]
        axr.plot(vs, [v["rerank_r5"] for v in val], "o-", label="R@5 re-ranked")
        axr.plot(vs, [v["global_r5"] for v in val], "s--", label="R@5 global")
        axr.set_ylim(0, 100)
        axr.legend(fontsize=8)
    else:
        axr.text(0.5, 0.5, "no validation set", ha="center", va="center", transform=axr.transAxes)
    axr.set_xlabel("step")
    axr.set_ylabel("Recall@5 (%)")
    axr.grid(alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    return path
