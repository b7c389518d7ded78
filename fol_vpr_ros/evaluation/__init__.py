"""Dataset evaluation: ground truth, recall@N metrics, reports and plots."""

from __future__ import annotations

from .ground_truth import (
    BUNDLED_DATASETS,
    BundledDataset,
    EvalDataset,
    GroundTruth,
    bundled_ground_truth,
    corridor_ground_truth,
    find_layout,
    gardenspoint_ground_truth,
    image_names,
    nordland_ground_truth,
    parse_utm,
    positives_within,
    read_ground_truth_csv,
    utm_ground_truth,
    validate_ground_truth,
    write_bundled_ground_truth,
    write_ground_truth,
)
from .matches import grid_to_pixels, matched_points, mnn_pairs
from .metrics import DEFAULT_NS, TimingStats, first_correct_rank, pick_examples, recall_at_n
from .plots import ExampleMatch, example_montage, plot_recall_curves
from .report import (
    EvaluationResult,
    ModelInfo,
    PerQueryRow,
    build_per_query_rows,
    peak_memory_mb,
    summary_dict,
    write_report,
)

__all__ = [
    "BUNDLED_DATASETS",
    "DEFAULT_NS",
    "BundledDataset",
    "EvalDataset",
    "EvaluationResult",
    "ExampleMatch",
    "GroundTruth",
    "ModelInfo",
    "PerQueryRow",
    "TimingStats",
    "build_per_query_rows",
    "bundled_ground_truth",
    "corridor_ground_truth",
    "example_montage",
    "find_layout",
    "first_correct_rank",
    "gardenspoint_ground_truth",
    "grid_to_pixels",
    "image_names",
    "matched_points",
    "mnn_pairs",
    "nordland_ground_truth",
    "parse_utm",
    "peak_memory_mb",
    "pick_examples",
    "plot_recall_curves",
    "positives_within",
    "read_ground_truth_csv",
    "recall_at_n",
    "summary_dict",
    "utm_ground_truth",
    "validate_ground_truth",
    "write_bundled_ground_truth",
    "write_ground_truth",
    "write_report",
]
