"""`fol-vpr demo-images`: describe bundled images, draw their regions, map + evaluate two image sets."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..console import percent
from ..errors import ConfigError
from ..evaluation.visualize import contact_sheet, region_caption, region_overlay
from ..image_io import list_images, read_image
from ..model import DEFAULT_INPUT_SIZE, SYNTHETIC_WARNING
from ..pipeline.describe import Describer, DescriberConfig, Description, save_descriptions_npz
from ..precision import Precision

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
# Candidates re-ranked per query in the demo (keeps it to minutes on 2 CPU cores; `evaluate` re-ranks as many
# as the node, rerank_k 100).
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
        """The terminal table: one line per described folder, one per mapped + evaluated dataset (recall in %)."""
        lines = [f"{'folder':48s} {'images':>6s} {'local rows':>10s} {'ms/img':>8s}  picture"]
        for r in self.rows:
            lines.append(f"{r.folder:48s} {r.images:6d} {r.mean_local_rows:10.0f} {r.ms_per_image:8.0f}  {r.overlay}")
        if self.retrieval:
            ns = (1, 5)
            heads = [f"R@{n} {kind}" for n in ns for kind in ("global", "rerank")]
            lines += ["", f"{'dataset':14s} {'queries':>7s} {'map':>5s}  " + " ".join(f"{h:>10s}" for h in heads)
                      + "  report"]
            for r in self.retrieval:
                rr = r.recall_rerank or {}
                cells = [percent(v.get(n)) for n in ns for v in (r.recall_global, rr)]
                lines.append(f"{r.dataset:14s} {r.queries:7d} {r.map_size:5d}  " + " ".join(f"{c:>10s}" for c in cells)
                             + f"  {r.report}")
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


def _retrieval(data_root: Path, name: str, out_dir: Path, describer: Describer, weights: str,
               progress: bool) -> DemoRetrieval:
    """Build a map from the dataset's reference run, evaluate its queries, write the report (one model)."""
    from ..evaluation.ground_truth import bundled_ground_truth, write_ground_truth
    from .build_map import build_map
    from .evaluate import EvaluateConfig, evaluate

    map_dir, queries_dir, gt = bundled_ground_truth(data_root, name)
    gt_csv = write_ground_truth(gt, out_dir / "ground_truth" / f"{name}.csv")
    built = build_map(map_dir, out_dir / "maps" / name, weights, overwrite=True, progress=progress,
                      describer=describer)
    cfg = EvaluateConfig(rerank_k=min(DEMO_RERANK_K, built.keyframes))
    res = evaluate(out_dir / "maps" / name, queries_dir, str(gt_csv), weights, out_dir / "reports" / name,
                   cfg=cfg, progress=progress, describer=describer)
    return DemoRetrieval(name, res.num_queries, res.num_database, res.recall_global, res.recall_rerank,
                         out_dir / "reports" / name / "report.md")


def run_demo(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    weights: str,
    arch: str = "auto",
    input_size: tuple[int, int] = DEFAULT_INPUT_SIZE,
    device: str = "cpu",
    progress: bool = True,
    precision: Precision | str = Precision.FP32,
) -> DemoResult:
    """Describe a spread of the bundled images (descriptions .npz, region pictures .png), then map and evaluate
    the DEMO_RETRIEVAL datasets, all with one model; synthetic weights also write SYNTHETIC_WEIGHTS.txt."""
    data_root, out_dir = Path(data_root), Path(out_dir)
    if not data_root.is_dir():
        raise ConfigError(f"{data_root}: bundled data folder not found (give --data, e.g. the repository's data/)")
    describer = Describer.from_config(DescriberConfig(weights, arch, input_size, device, batch_size=4,
                                                      precision=precision))
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
        result.retrieval.append(_retrieval(data_root, name, out_dir, describer, weights, progress))
    if describer.synthetic:
        (out_dir / "SYNTHETIC_WEIGHTS.txt").write_text(SYNTHETIC_WARNING.format(spec=weights) + "\n")
    return result
