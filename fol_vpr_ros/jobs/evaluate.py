"""`fol-vpr evaluate`: query images against a map, Recall@N before/after re-ranking, timings, report."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ImageError
from ..evaluation.ground_truth import GroundTruth, image_names, parse_utm, positives_within, read_ground_truth_csv
from ..evaluation.matches import matched_points
from ..evaluation.metrics import DEFAULT_NS, TimingStats, pick_examples, recall_at_n
from ..evaluation.plots import ExampleMatch
from ..evaluation.report import EvaluationResult, ModelInfo, build_per_query_rows, peak_memory_mb, write_report
from ..mapping import VprMap
from ..node.params import NodeParams
from ..outputs import check_output_dir, writing
from ..pipeline.describe import Describer, DescriberConfig, Description
from ..pipeline.localizer import Localizer, LocalizerConfig, QueryResult
from ..pipeline.rerank import DEFAULT_THRESHOLD
from ..precision import Precision
from ..progress import progress_bar

__all__ = ["NODE_RERANK_K", "EvaluateConfig", "evaluate"]

log = logging.getLogger(__name__)

NODE_RERANK_K = NodeParams().rerank_k  # re-ranked candidates by default: as many as the node re-ranks


@dataclass(frozen=True)
class EvaluateConfig:
    """Evaluation parameters (K values, threshold, examples)."""

    top_k: int | None = None  # None: min(max(recall_values), map size)
    rerank_k: int | None = None  # None: the node's rerank_k (NODE_RERANK_K), at most top_k; 0 disables re-ranking
    threshold: float = DEFAULT_THRESHOLD  # local-feature match similarity when re-ranking
    recall_values: tuple[int, ...] | None = None  # None: DEFAULT_NS up to the map size; given: all must fit
    utm_radius_m: float = 25.0
    batch_size: int = 8
    num_examples: int = 6
    verify: str = "full"  # map checks at open: full | size | off (VerifyMode)


def _utm_ground_truth(query_names: Sequence[str], vpr_map: VprMap, db_names: Sequence[str],
                      radius: float) -> GroundTruth:
    db_xy = []
    for kf in vpr_map.keyframes():
        if kf.geo is None or kf.geo.easting is None:
            raise ConfigError(f"map keyframe {kf.id} ({kf.source}) has no UTM position; "
                              "build the map from '@utm' file names or give --ground-truth CSV")
        db_xy.append((kf.geo.easting, kf.geo.northing))
    q_xy = np.array([parse_utm(n) for n in query_names], dtype=np.float64)
    pos = positives_within(q_xy, np.asarray(db_xy, dtype=np.float64), radius)
    return GroundTruth(tuple(query_names), tuple(tuple(db_names[int(i)] for i in p) for p in pos))


def _example(query_path: Path, desc: Description, vpr_map: VprMap, ranked_ids: np.ndarray, positives: set[int],
             scores: Sequence[int], threshold: float, n: int = 3) -> ExampleMatch:
    ids = ranked_ids[:n]
    matches, masks = [], []
    for kid in ids:
        rows, rc = vpr_map.local_rows(int(kid))
        matches.append(matched_points(desc.local, desc.local_rc, np.asarray(rows, np.float32), rc, threshold))
        masks.append(None)
    return ExampleMatch(
        query_image=query_path,
        candidate_images=tuple(Path(vpr_map.keyframe(int(k)).source) for k in ids),
        local_grid=desc.local_grid,
        matches=tuple(matches),
        query_mask=desc.region_mask,
        candidate_masks=tuple(masks),
        correct=bool(len(ids) and int(ids[0]) in positives),
        candidate_correct=tuple(int(k) in positives for k in ids),
        scores=tuple(float(s) for s in scores[:n]),
        title=query_path.name,
    )


@dataclass
class _Predictions:
    """Per query (rows of the ground truth): global and re-ranked map indices [Q, K] (-1: none), re-ranking
    scores, descriptions (None: unreadable), the skipped queries and per-stage timings."""

    gpred: np.ndarray
    rpred: np.ndarray
    rscores: np.ndarray
    descs: list[Description | None]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    timing: dict[str, list[float]] = field(default_factory=lambda: {"describe": [], "search": [], "rerank": []})

    @classmethod
    def empty(cls, num_queries: int, top_k: int) -> _Predictions:
        def rows() -> np.ndarray:
            return np.full((num_queries, top_k), -1, dtype=np.int64)

        return cls(rows(), rows(), rows(), [None] * num_queries)

    def record(self, q: int, desc: Description, res: QueryResult, describe_ms: float,
               id_to_index: dict[int, int]) -> None:
        """One query's result; an index may return fewer than top_k (or -1 slots): the rest stays -1."""
        top_k = self.gpred.shape[1]
        self.timing["describe"].append(describe_ms)
        self.timing["search"].append(res.timing_ms["search"])
        if "rerank" in res.timing_ms:
            self.timing["rerank"].append(res.timing_ms["rerank"])
        g = [id_to_index[int(i)] for i in res.global_ids if int(i) in id_to_index][:top_k]
        r = [(id_to_index[int(c.keyframe_id)], c.rerank_score) for c in res.candidates
             if int(c.keyframe_id) in id_to_index][:top_k]
        self.gpred[q, : len(g)] = g
        self.rpred[q, : len(r)] = [i for i, _ in r]
        self.rscores[q, : len(r)] = [sc for _, sc in r]
        self.descs[q] = desc

    def kept(self) -> list[int]:
        """The rows of the queries that could be read."""
        return [q for q, d in enumerate(self.descs) if d is not None]

    def only(self, rows: list[int]) -> _Predictions:
        return _Predictions(self.gpred[rows], self.rpred[rows], self.rscores[rows], [self.descs[q] for q in rows],
                            self.skipped, self.timing)


def _recall_values(cfg: EvaluateConfig, num_keyframes: int) -> EvaluateConfig:
    """``cfg`` with recall values (default: DEFAULT_NS up to the map size); values beyond the map are refused."""
    if cfg.recall_values is None:
        ns = tuple(n for n in DEFAULT_NS if n <= num_keyframes) or (1,)
        cfg = dataclasses.replace(cfg, recall_values=ns)
    too_big = [n for n in cfg.recall_values if n > num_keyframes]
    if too_big:
        raise ConfigError(f"--recall-values {' '.join(map(str, too_big))}: larger than the map "
                          f"({num_keyframes} keyframes); use values up to {num_keyframes}")
    return cfg


def _ground_truth(ground_truth: str, query_names: Sequence[str], vpr_map: VprMap, db_names: Sequence[str],
                  radius: float) -> GroundTruth:
    """``utm`` (positives within ``radius`` of the map keyframes' UTM), else a ground-truth CSV."""
    if ground_truth == "utm":
        return _utm_ground_truth(query_names, vpr_map, db_names, radius)
    return read_ground_truth_csv(ground_truth, query_names, db_names)


def _top_k(cfg: EvaluateConfig, map_size: int) -> tuple[int, int]:
    """(top_k, rerank_k): top_k defaults to the largest recall value (at most the map), rerank_k to the node's
    rerank_k (at most top_k)."""
    top_k = cfg.top_k if cfg.top_k is not None else min(max(cfg.recall_values), map_size)
    if top_k > map_size:
        raise ConfigError(f"--top-k {top_k} is larger than the map ({map_size} keyframes)")
    return top_k, min(NODE_RERANK_K, top_k) if cfg.rerank_k is None else cfg.rerank_k


def _read_batch(describer: Describer, qdir: Path, gt: GroundTruth, rows: range,
                skipped: list[tuple[str, str]]) -> tuple[list[str], list[np.ndarray], list[int]]:
    """The readable queries of ``rows``: (names, images, rows); unreadable ones go to ``skipped``."""
    names, arrays, kept = [], [], []
    for q in rows:
        try:
            arrays.append(describer.read_image(qdir / gt.queries[q]))
        except ImageError as exc:
            skipped.append((gt.queries[q], str(exc)))
            log.debug("skipping query %s", exc)  # listed in the result (the CLI prints each once)
            continue
        names.append(gt.queries[q])
        kept.append(q)
    return names, arrays, kept


def _predict(describer: Describer, localizer: Localizer, qdir: Path, gt: GroundTruth, top_k: int,
             id_to_index: dict[int, int], batch_size: int, progress: bool) -> _Predictions:
    """Describe the queries in batches and query the map with each."""
    pred = _Predictions.empty(gt.num_queries, top_k)
    bar = progress_bar(total=gt.num_queries, desc="evaluate", unit="query", enabled=progress)
    for start in range(0, gt.num_queries, batch_size):
        batch_rows = range(start, min(start + batch_size, gt.num_queries))
        names, arrays, rows = _read_batch(describer, qdir, gt, batch_rows, pred.skipped)
        bar.update(len(batch_rows) - len(rows))
        if not rows:
            continue
        t0 = time.perf_counter()
        batch = describer.describe_arrays(arrays, names=names)
        per_image = (time.perf_counter() - t0) * 1e3 / len(batch)
        for q, d in zip(rows, batch):
            pred.record(q, d, localizer.query(d), per_image, id_to_index)
        bar.update(len(batch))
    bar.close()
    return pred


def _examples(pred: _Predictions, final: np.ndarray, positives: Sequence[np.ndarray], ids: np.ndarray,
              qdir: Path, gt: GroundTruth, vpr_map: VprMap, cfg: EvaluateConfig) -> list[ExampleMatch]:
    correct = [bool(len(p)) and int(final[q, 0]) in set(p.tolist()) for q, p in enumerate(positives)]
    examples = []
    for q in pick_examples(correct, (cfg.num_examples + 1) // 2, cfg.num_examples // 2):
        pos_ids = {int(ids[i]) for i in positives[q]}
        ranked = np.array([int(ids[i]) for i in final[q] if i >= 0], dtype=np.int64)
        desc = pred.descs[q]
        assert desc is not None
        examples.append(_example(qdir / gt.queries[q], desc, vpr_map, ranked, pos_ids, pred.rscores[q].tolist(),
                                 cfg.threshold))
    return examples


def evaluate(
    map_dir: str | os.PathLike,
    queries: str | os.PathLike,
    ground_truth: str,
    weights: str,
    out: str | os.PathLike,
    arch: str = "auto",
    resize: tuple[int, int] | None = None,
    device: str = "cpu",
    cfg: EvaluateConfig | None = None,
    progress: bool = True,
    backend: str = "torch",
    precision: Precision | str = Precision.FP32,
    describer: Describer | None = None,
) -> EvaluationResult:
    """Evaluate ``queries`` against a saved map; ``ground_truth`` is a CSV path or ``utm``.

    Writes ``summary.json``, ``per_query.csv``, ``report.md`` and plots into ``out``. Query images
    that cannot be read are skipped (not counted) and listed in ``config["skipped_queries"]``.
    ``describer`` reuses a loaded model (the model arguments are then not used).
    """
    t_start = time.perf_counter()
    check_output_dir(out, "--out")
    probe = VprMap.read_manifest(map_dir)
    if probe.num_keyframes == 0:
        raise ConfigError(f"{map_dir}: the map is empty")
    cfg = _recall_values(cfg or EvaluateConfig(), probe.num_keyframes)
    if describer is None:
        size = tuple(resize) if resize is not None else probe.input_size
        describer = Describer.from_config(DescriberConfig(weights, arch, size, device, cfg.batch_size,
                                                          backend=backend, precision=precision))
    vpr_map = VprMap.open(map_dir, expect=describer.map_compat(), device=device, verify=cfg.verify)
    ids = vpr_map.ids
    db_names = [Path(vpr_map.keyframe(int(i)).source).name for i in ids]
    qdir = Path(queries)
    gt = _ground_truth(ground_truth, image_names(qdir), vpr_map, db_names, cfg.utm_radius_m)
    positives = gt.positive_indices(db_names)
    top_k, rerank_k = _top_k(cfg, len(vpr_map))
    localizer = Localizer(vpr_map, LocalizerConfig(top_k=top_k, rerank_k=rerank_k,
                                                   rerank_threshold=cfg.threshold, device=device))
    pred = _predict(describer, localizer, qdir, gt, top_k, {int(i): j for j, i in enumerate(ids)}, cfg.batch_size,
                    progress)
    kept = pred.kept()
    if not kept:
        raise ImageError(f"{qdir}: no readable query images ({len(pred.skipped)} skipped; first: "
                         f"{pred.skipped[0][1]})")
    if pred.skipped:
        gt = GroundTruth(tuple(gt.queries[q] for q in kept), tuple(gt.positives[q] for q in kept), gt.database)
        positives = [positives[q] for q in kept]
        pred = pred.only(kept)
    reranked = rerank_k > 0
    final = pred.rpred if reranked else pred.gpred
    rows = build_per_query_rows(gt.queries, db_names, positives, pred.gpred, pred.rpred if reranked else None,
                                pred.rscores if reranked else None)
    examples = _examples(pred, final, positives, ids, qdir, gt, vpr_map, cfg)
    rss, cuda_mb = peak_memory_mb()
    mcfg = describer.model.cfg
    result = EvaluationResult(
        dataset=f"{Path(map_dir).name} <- {qdir.name}",
        num_queries=gt.num_queries,
        num_database=len(vpr_map),
        recall_global=recall_at_n(pred.gpred, positives, cfg.recall_values),
        recall_rerank=recall_at_n(pred.rpred, positives, cfg.recall_values) if reranked else None,
        timing_ms={k: TimingStats.from_ms(v) for k, v in pred.timing.items()},
        model=ModelInfo(mcfg.arch, describer.loaded.source, describer.synthetic, mcfg.input_size),
        peak_rss_mb=rss,
        cuda_peak_allocated_mb=cuda_mb,
        queries_without_positives=gt.num_without_positives,
        config={"top_k": top_k, "rerank_k": rerank_k, "threshold": cfg.threshold, "device": device,
                "map": str(map_dir), "queries": str(qdir), "ground_truth": str(ground_truth),
                "seconds": round(time.perf_counter() - t_start, 2),
                "skipped_queries": [why if name in why else f"{name}: {why}" for name, why in pred.skipped]},
    )
    with writing(out, "report folder"):
        write_report(result, rows, out, examples=examples or None)
    return result
