"""Shared benchmark helpers: timing with device sync, table formatting, writing results."""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = ["BenchTable", "Timing", "environment", "time_call"]


@dataclass
class Timing:
    """Wall-clock statistics of repeated calls, in milliseconds."""

    mean_ms: float
    median_ms: float
    min_ms: float
    repeats: int


def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object], repeats: int = 5, warmup: int = 1, device: torch.device | str | None = None
) -> Timing:
    """Time ``fn`` ``repeats`` times after ``warmup`` calls, synchronising CUDA around each call."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return Timing(statistics.fmean(times), statistics.median(times), min(times), len(times))


def environment() -> dict[str, object]:
    """Where a benchmark ran: CPU/GPU, threads, library versions."""
    env: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return env


@dataclass
class BenchTable:
    """A titled table of rows (dicts with the same keys), printable as Markdown and savable as JSON."""

    title: str
    columns: Sequence[str]
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **row: object) -> None:
        self.rows.append(row)

    @staticmethod
    def _fmt(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    def to_markdown(self) -> str:
        head = "| " + " | ".join(self.columns) + " |"
        sep = "| " + " | ".join("---" for _ in self.columns) + " |"
        body = ["| " + " | ".join(self._fmt(r.get(c, "")) for c in self.columns) + " |" for r in self.rows]
        notes = [f"- {n}" for n in self.notes]
        return "\n".join([f"### {self.title}", "", head, sep, *body, "", *notes]).rstrip() + "\n"

    def write(self, out_dir: str | Path, stem: str) -> tuple[Path, Path]:
        """Write ``stem.md`` and ``stem.json`` under ``out_dir``; returns both paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        md, js = out / f"{stem}.md", out / f"{stem}.json"
        md.write_text(self.to_markdown(), encoding="utf-8")
        payload = {"title": self.title, "columns": list(self.columns), "rows": self.rows,
                   "notes": self.notes, "environment": environment()}
        js.write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        return md, js
