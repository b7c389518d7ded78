"""Every report figure rendered from real small runs on the bundled data: a PNG of sane size, not blank,
titled and labelled, and watermarked exactly when the weights were synthetic."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.evaluation.bag_config import BagEvalConfig
from fol_vpr_ros.evaluation.bag_report import write_bag_report
from fol_vpr_ros.evaluation.figures import WATERMARK, RenderedFigure, record_figures
from fol_vpr_ros.evaluation.ground_truth import bundled_ground_truth, write_ground_truth
from fol_vpr_ros.evaluation.loop_metrics import precision_recall_curve
from fol_vpr_ros.evaluation.matches import matched_points
from fol_vpr_ros.jobs.build_map import build_map
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag
from fol_vpr_ros.jobs.evaluate import EvaluateConfig, evaluate
from fol_vpr_ros.jobs.evaluate_bag import EvaluateBagJob, evaluate_bag
from fol_vpr_ros.mapping import VprMap
from fol_vpr_ros.model import save_checkpoint
from fol_vpr_ros.pipeline.describe import Describer, DescriberConfig
from fol_vpr_ros.pipeline.rerank import DEFAULT_THRESHOLD, mnn_scores
from fol_vpr_ros.stamps import NS_PER_SEC
from fol_vpr_ros.testing.bagfactory import write_image_bag

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PIXEL_STD = 10.0  # grey levels (0-255); a blank figure has 0
SIDE_PX = (200, 4000)  # a figure's width and height lie in this range
TOPIC = "/camera/image_raw"
SIZE = (224, 224)
T_MAP, T_QUERY = 1_650_000_000 * NS_PER_SEC, 1_660_000_000 * NS_PER_SEC
STEP_M = 100.0  # frames 100 m apart along x: a long thin track (the trajectory cannot use an equal aspect)
BAG_FIGURES = ("trajectory.png", "pr_curve.png", "latency.png", "examples.png")


def check_figure(fig: RenderedFigure, synthetic: bool, *needles: str) -> None:
    """PNG, size, pixel variance, watermark, titles and axis labels, and the texts that must appear."""
    assert fig.path.read_bytes()[:8] == PNG_SIGNATURE, fig.path
    grey = np.asarray(Image.open(fig.path).convert("L"), np.float32)
    assert grey.shape[::-1] == fig.size_px, fig.path
    assert all(SIDE_PX[0] <= side <= SIDE_PX[1] for side in fig.size_px), (fig.path, fig.size_px)
    assert grey.std() > MIN_PIXEL_STD, (fig.path, grey.std())
    assert (WATERMARK in fig.texts) == synthetic, (fig.path, synthetic)
    assert fig.axes, fig.path
    for ax in fig.axes:
        assert ax.title.strip(), (fig.path, ax)
        if not ax.image:
            assert ax.xlabel.strip() and ax.ylabel.strip(), (fig.path, ax)
    text = "\n".join(fig.texts)
    for needle in needles:
        assert needle in text, (fig.path.name, needle, fig.texts)
    assert not re.search(r"\d\.\de[+-]\d\d", text), (fig.path.name, "scientific notation")


def by_name(figs: list[RenderedFigure]) -> dict[str, RenderedFigure]:
    return {f.path.name: f for f in figs}


# ---------------------------------------------------------------------------------------------- bag runs
@pytest.fixture(scope="module")
def ckpt(tiny_model, tmp_path_factory):
    return str(save_checkpoint(tiny_model, tmp_path_factory.mktemp("w") / "tiny.pth"))


@pytest.fixture(scope="module")
def frames(nordland_frames):
    return nordland_frames


def _odom(stamps, xs):
    return [(s, (float(x), 0.0, 0.0), (0.0, 0.0, 0.0, 1.0)) for s, x in zip(stamps, xs)]


def _bag(path, frames, t0, xs):
    stamps = [t0 + k * NS_PER_SEC for k in range(len(frames))]
    return write_image_bag(path, frames, stamps, odometry=_odom(stamps, xs), odom_frame="map")


def _evaluate(bag, out, ckpt, **kw):
    cfg = BagEvalConfig(every_frame=True, examples=2)
    return evaluate_bag(EvaluateBagJob(bag, TOPIC, out, ckpt, resize=SIZE, progress=False, cfg=cfg, **kw))


@pytest.fixture(scope="module")
def localized(tmp_path_factory, ckpt, frames):
    """A map bag and a query bag of the same images along a straight 700 m track, evaluated; its figures."""
    root = tmp_path_factory.mktemp("loc")
    xs = [STEP_M * k for k in range(len(frames))]
    map_bag = _bag(root / "map_bag", frames, T_MAP, xs)
    query_bag = _bag(root / "query_bag", frames, T_QUERY, xs)
    build_map_from_bag(map_bag, TOPIC, root / "map", ckpt, resize=SIZE, batch_size=4, progress=False)
    with record_figures() as figs:
        res = _evaluate(query_bag, root / "report", ckpt, map_path=root / "map")
    return res, by_name(figs), root


def test_bag_figures_localize(localized):
    res, figs, root = localized
    assert not res.synthetic and set(figs) == set(BAG_FIGURES)
    check_figure(figs["trajectory.png"], False, "map keyframe (8)", "query: correct match (8)", "not to scale",
                 "x (m)", "start")
    check_figure(figs["pr_curve.png"], False, "5 / 10 / 25 m (identical): AP 1.000", "recall (%)",
                 "node's min_rerank_score 30")
    check_figure(figs["latency.png"], False, "camera period 1000 ms", "ms per frame (log scale)", "p50", "p95",
                 *[s for s in ("decode", "describe", "search", "rerank", "total")])
    for stage in ("decode", "search"):  # the small stages have their values printed
        s = res.latency_ms[stage]
        assert any(t.startswith("p50 ") and " p95 " in t for t in figs["latency.png"].texts), stage
        assert s.count == len(res.per_frame)
    ex = figs["examples.png"]
    check_figure(ex, False, "query", "map match", "re-rank score", "0 m away, correct", "within 25 m of the query",
                 "number of mutual nearest-neighbour local matches")
    scores = [m.group(1) for t in ex.texts for m in [re.search(r"re-rank score (\S+),", t)] if m]
    assert scores and all(s.isdigit() for s in scores), scores  # plain integers
    report = root / "report"
    assert not (report / "example_images").exists()  # the example images stay in memory
    md = (report / "report.md").read_text()
    for name in BAG_FIGURES:
        assert f"]({name})" in md, name
    assert "| 5 m | 8 | 1.000 | 100.0 % |" in md  # AP as a fraction, percentages with one decimal
    assert "1.000" in res.table().split("R@P100")[1]  # the terminal table prints AP the same way


def test_bag_figures_synthetic_watermark(localized, tmp_path):
    """The same result marked synthetic: every figure carries the watermark, visibly (pixels differ)."""
    res, plain, _ = localized
    with record_figures() as figs:
        write_bag_report(dataclasses.replace(res, synthetic=True), tmp_path)
    figs = by_name(figs)
    assert set(figs) == set(BAG_FIGURES)
    for fig in figs.values():
        check_figure(fig, True)
    a = np.asarray(Image.open(plain["trajectory.png"].path).convert("RGB"), np.int16)
    b = np.asarray(Image.open(figs["trajectory.png"].path).convert("RGB"), np.int16)
    assert a.shape == b.shape and np.abs(a - b).max() > 40  # the red text is drawn over the plot


def test_trajectory_equal_aspect_when_the_track_fills_the_axes(localized, tmp_path):
    res, _, _ = localized
    angles = np.linspace(0.0, 1.5 * np.pi, len(res.per_frame))
    ring = [(300.0 * np.cos(a), 200.0 * np.sin(a), 0.0) for a in angles]  # 600 x 400 m: fits without stretching
    rows = tuple(dataclasses.replace(r, position=p, best_position=p) for r, p in zip(res.per_frame, ring))
    with record_figures() as figs:
        write_bag_report(dataclasses.replace(res, per_frame=rows, map_positions=np.array(ring)), tmp_path)
    traj = by_name(figs)["trajectory.png"]
    check_figure(traj, False, "map keyframe (8)", "query: correct match (8)")
    assert not any("not to scale" in t for t in traj.texts)


def test_pr_figure_distinct_curves_and_no_positives(localized, tmp_path):
    res, _, _ = localized
    steep = precision_recall_curve([9.0, 8.0, 7.0, 6.0], [True, False, True, False], 2)
    flat = precision_recall_curve([9.0, 8.0, 7.0, 6.0], [True, True, False, True], 3)
    mixed = dataclasses.replace(res, pr={5.0: steep, 10.0: flat, 25.0: flat}, config={**res.config,
                                                                                       "min_rerank_score": 100.0})
    none = precision_recall_curve([9.0, 8.0], [False, False], 0)
    empty = dataclasses.replace(res, pr=dict.fromkeys(res.thresholds_m, none))
    with record_figures() as figs:
        write_bag_report(mixed, tmp_path / "mixed")
        write_bag_report(empty, tmp_path / "empty")
    pr_mixed, pr_empty = (f for f in figs if f.path.name == "pr_curve.png")
    check_figure(pr_mixed, False, "5 m: AP 0.833", "10 / 25 m (identical): AP 0.917",
                 "min_rerank_score 100 (5 m): above every score, accepts nothing")
    check_figure(pr_empty, False, "no positives: no scored query has a map keyframe", "5 / 10 / 25 m")


def test_bag_figures_loop_closure(tmp_path, ckpt, frames):
    imgs = [*frames[:6], frames[0], frames[1]]  # out along x, then back at the first two places
    xs = [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 0.5, 10.5]
    bag = _bag(tmp_path / "loop", imgs, T_MAP, xs)
    with record_figures() as figs:
        res = _evaluate(bag, tmp_path / "report", ckpt, loop_closure=True,
                        param_overrides={"exclusion.min_time_sec": 2.0, "exclusion.min_keyframes": 2})
    figs = by_name(figs)
    assert res.mode == "loop_closure" and set(figs) == set(BAG_FIGURES)
    check_figure(figs["trajectory.png"], False, "loop closure: outcome of each query", "trajectory")
    check_figure(figs["pr_curve.png"], False, "AP ")
    check_figure(figs["latency.png"], False, "total latency")
    check_figure(figs["examples.png"], False, "earlier keyframe", "re-rank score")


# ---------------------------------------------------------------------------------------------- image folders
@pytest.fixture(scope="module")
def gardens(shared_data, tmp_path_factory):
    """Gardens Point day map, night queries, synthetic weights (random:0): evaluate and its figures."""
    root = tmp_path_factory.mktemp("gp")
    map_dir, queries, gt = bundled_ground_truth(shared_data, "gardenspoint")
    csv = write_ground_truth(gt, root / "gt.csv")
    build_map(map_dir, root / "map", "random:0", resize=SIZE, progress=False)
    with record_figures() as figs:
        res = evaluate(root / "map", queries, str(csv), "random:0", root / "report", resize=SIZE,
                       cfg=EvaluateConfig(rerank_k=5, num_examples=2), progress=False)
    return res, by_name(figs), root, queries


def test_evaluate_figures(gardens):
    res, figs, root, _ = gardens
    assert res.model.synthetic and set(figs) == {"recall_at_n.png", "examples.png"}
    check_figure(figs["recall_at_n.png"], True, "recall@N (%)", "global retrieval", "re-ranked")
    ex = figs["examples.png"]
    check_figure(ex, True, "query", "map match", "Yellow tint: the query's FoL-selected regions",
                 "Re-rank score: the number of mutual nearest-neighbour local matches", "Green frame: correct")
    pair_titles = [t for t in ex.texts if t.startswith("#")]
    assert pair_titles and all(re.search(r"re-rank score \d+, (correct|wrong)$", t) for t in pair_titles), pair_titles
    md = (root / "report" / "report.md").read_text()
    rows = [line for line in md.splitlines() if re.match(r"\| \d+ \|", line)]
    assert rows and all(re.fullmatch(r"\| \d+ \| \d+\.\d \| \d+\.\d \|", r) for r in rows), rows  # one decimal


def test_drawn_matches_are_the_counted_ones(gardens):
    """The lines on examples.png are the pairs the re-rank score counts (float16 map rows, no renormalising)."""
    _, _, root, queries = gardens
    describer = Describer.from_config(DescriberConfig("random:0", input_size=SIZE))
    vmap = VprMap.open(root / "map", expect=describer.map_compat())
    q = describer.describe_files(sorted(queries.glob("*.jpg"))[:2], progress=False)
    ids = vmap.ids[:4]
    rows, counts, _ = vmap.local_batch(ids)
    for d in q:
        scores = mnn_scores(d.local, d.local_count, rows, counts, DEFAULT_THRESHOLD)
        for k, kid in enumerate(ids):
            r, rc = vmap.local_rows(int(kid))
            drawn, _ = matched_points(d.local, d.local_rc, np.asarray(r, np.float32), rc, DEFAULT_THRESHOLD)
            assert len(drawn) == scores[k], (d.name, int(kid))


def test_region_sheets(shared_data, tmp_path, monkeypatch):
    from fol_vpr_ros.jobs import demo_images as demo

    monkeypatch.setattr(demo, "DEMO_SETS", (("nordland_seqslam_64x32", "winter", 3),))
    monkeypatch.setattr(demo, "DEMO_RETRIEVAL", ())
    with record_figures() as figs:
        result = demo.run_demo(shared_data, tmp_path, "random:0", input_size=SIZE, progress=False)
    assert result.synthetic and len(figs) == 1
    sheet = figs[0]
    check_figure(sheet, True, "nordland_seqslam_64x32/winter: FoL-selected regions", "Cyan circle: the patch the "
                 "class token attends to most", "patches FoL selected as discriminative regions", "local features")
    assert len(sheet.axes) == 3 and all(ax.image for ax in sheet.axes)
    grey = np.asarray(Image.open(sheet.path).convert("L"), np.float32)
    h = grey.shape[0]
    band = grey[int(0.3 * h): int(0.7 * h)]  # inside the one row of tiles: image content on every pixel row
    assert (band.std(axis=1) > 1).all()
