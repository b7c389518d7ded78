"""`fol-vpr demo-images`: describe bundled images, draw their regions, map + evaluate two image sets."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..evaluation.visualize import contact_sheet, region_caption, region_overlay
from ..image_io import list_images, read_image
from ..model import DEFAULT_INPUT_SIZE, SYNTHETIC_WARNING
from ..pipeline.describe import Describer, DescriberConfig, Description, save_descriptions_npz

__all__ = ["DEMO_SETS", "DemoResult", "run_demo"]

log = logging.getLogger(__name__)

# (dataset folder, sub-folder, how many images): small enough for 2 CPU cores in about a minute.
DEMO_SETS: tuple[tuple[str, str, int], ...] = (
    ("gardenspoint_sample10_vpr_tutorial", "query", 10),
    ("gardenspoint_sample10_vpr_tutorial", "ref", 10),
    ("vprbench_corridor", "query", 8),
    ("nordland_seqslam_64x32", "summer", 8),
    ("nordland_seqslam_64x32", "winter", 8),
)

# Bundled datasets on which the demo builds a map and evaluates place recognition.
DEMO_RETRIEVAL: tuple[str, ...] = ("gardenspoint", "corridor")
# Candidates re-ranked per query in the demo (keeps it to minutes on 2 CPU cores; `evaluate` defaults to 100).
DEMO_RERANK_K = 25


@dataclass
class DemoRow:
    """Per-folder summary line."""

    folder: str
    images: int
    mean_local_rows: float
    ms_per_image: float
    overlay: Path


@dataclass
class DemoRetrieval:
    """Place recognition on one bundled dataset: map from one run, queries from the other."""

    dataset: str
    queries: int
    map_size: int
    recall_global: dict[int, float]
    recall_rerank: dict[int, float] | None
    report: Path


@dataclass
class DemoResult:
    """What the demo wrote and measured."""

    out_dir: Path
    synthetic: bool
    rows: list[DemoRow] = field(default_factory=list)
    retrieval: list[DemoRetrieval] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'folder':48s} {'images':>6s} {'local rows':>10s} {'ms/img':>8s}  picture"]
        for r in self.rows:
            lines.append(f"{r.folder:48s} {r.images:6d} {r.mean_local_rows:10.0f} {r.ms_per_image:8.0f}  {r.overlay}")
        if self.retrieval:
            lines += ["", f"{'dataset':14s} {'queries':>7s} {'map':>5s}  {'R@1 global':>10s} {'R@1 rerank':>10s} "
                      f"{'R@5 global':>10s} {'R@5 rerank':>10s}  report"]
            for r in self.retrieval:
                rr = r.recall_rerank or {}
                nan = float("nan")
                lines.append(f"{r.dataset:14s} {r.queries:7d} {r.map_size:5d}  {r.recall_global[1]:10.1f} "
                             f"{rr.get(1, nan):10.1f} {r.recall_global[5]:10.1f} {rr.get(5, nan):10.1f}  {r.report}")
        return "\n".join(lines)


def _spread(paths: list[Path], count: int) -> list[Path]:
    """``count`` paths spread evenly over the sorted list (the whole list if shorter)."""
    if len(paths) <= count:
        return paths
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in idx]


def _region_sheet(paths: list[Path], descs: list[Description], label: str, out: Path, synthetic: bool) -> Path:
    """The sheet of the images' selected regions, titled and captioned (what the tint and the circle are)."""
    pictures = [region_overlay(read_image(p), d.region_mask, d.attention) for p, d in zip(paths, descs)]
    titles = [f"{p.name}\n{int(d.region_mask.sum())} patches, {d.local_count} local features"
              for p, d in zip(paths, descs)]
    mask = descs[0].region_mask
    caption = region_caption(int(mask.sum()), int(mask.size))
    return contact_sheet(pictures, titles, out, title=f"{label}: FoL-selected regions", caption=caption,
                         synthetic=synthetic)


def _retrieval(data_root: Path, name: str, out_dir: Path, weights: str, arch: str, size: tuple[int, int],
               device: str, progress: bool) -> DemoRetrieval:
    """Build a map from the dataset's reference run, evaluate its queries, write the report."""
    from ..evaluation.ground_truth import bundled_ground_truth, write_ground_truth
    from .build_map import build_map
    from .evaluate import EvaluateConfig, evaluate

    map_dir, queries_dir, gt = bundled_ground_truth(data_root, name)
    gt_csv = write_ground_truth(gt, out_dir / "ground_truth" / f"{name}.csv")
    built = build_map(map_dir, out_dir / "maps" / name, weights, arch=arch, resize=size, device=device,
                      overwrite=True, progress=progress)
    cfg = EvaluateConfig(rerank_k=min(DEMO_RERANK_K, built.keyframes))
    res = evaluate(out_dir / "maps" / name, queries_dir, str(gt_csv), weights, out_dir / "reports" / name,
                   arch=arch, resize=size, device=device, cfg=cfg, progress=progress)
    return DemoRetrieval(name, res.num_queries, res.num_database, res.recall_global, res.recall_rerank,
                         out_dir / "reports" / name / "report.md")


def run_demo(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    weights: str | None = None,
    arch: str = "auto",
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    device: str = "cpu",
    progress: bool = True,
) -> DemoResult:
    """Describe a spread of the bundled images; write descriptions (.npz) and region pictures (.png)."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    if not data_root.is_dir():
        raise ConfigError(f"{data_root}: bundled data folder not found (expected ../shared/data next to the repo)")
    weights = weights or "random:0"
    describer = Describer.from_config(DescriberConfig(weights, arch, input_size, device, batch_size=4))
    result = DemoResult(out_dir, describer.synthetic)
    for dataset, sub, count in DEMO_SETS:
        folder = data_root / dataset / sub
        if not folder.is_dir():
            log.warning("skipping %s: not found", folder)
            continue
        paths = _spread(list_images([folder]), count)
        t0 = time.perf_counter()
        descs = describer.describe_files(paths, progress=progress)
        ms = (time.perf_counter() - t0) * 1e3 / max(1, len(descs))
        tag = f"{dataset}_{sub}"
        save_descriptions_npz(descs, out_dir / "descriptions" / f"{tag}.npz")
        sheet = _region_sheet(paths, descs, f"{dataset}/{sub}", out_dir / "regions" / f"{tag}.png",
                              describer.synthetic)
        result.rows.append(DemoRow(f"{dataset}/{sub}", len(descs),
                                   float(np.mean([d.local_count for d in descs])), ms, sheet))
    for name in DEMO_RETRIEVAL:
        result.retrieval.append(_retrieval(data_root, name, out_dir, weights, arch, input_size, device, progress))
    if describer.synthetic:
        (out_dir / "SYNTHETIC_WEIGHTS.txt").write_text(SYNTHETIC_WARNING.format(spec=weights) + "\n")
    return result
