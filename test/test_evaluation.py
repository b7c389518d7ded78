"""Tests of fol_vpr_ros.evaluation: metrics, ground truth, bundled datasets, report writing."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.evaluation import (
    EvaluationResult,
    ExampleMatch,
    GroundTruth,
    ModelInfo,
    TimingStats,
    build_per_query_rows,
    bundled_ground_truth,
    find_layout,
    first_correct_rank,
    grid_to_pixels,
    image_names,
    matched_points,
    mnn_pairs,
    parse_utm,
    pick_examples,
    positives_within,
    read_ground_truth_csv,
    recall_at_n,
    utm_ground_truth,
    write_bundled_ground_truth,
    write_ground_truth,
    write_report,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _needs(data: Path, dirname: str) -> Path:
    path = data / dirname
    if not path.is_dir():
        pytest.skip(f"bundled dataset {dirname} not found at {path} (expected repo-root/../shared/data)")
    return path


def _image(path: Path, size: tuple[int, int] = (96, 64), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


# --- metrics ------------------------------------------------------------------------------------


def test_recall_hand_computed():
    preds = np.array([[5, 2, 7], [1, 3, 4], [0, 6, 8], [9, 8, 3]])
    positives = [np.array([2]), np.array([1, 9]), np.array([], dtype=np.int64), np.array([3])]
    assert first_correct_rank(preds, positives).tolist() == [2, 1, -1, 3]
    rec = recall_at_n(preds, positives, ns=(1, 2, 3, 5, 100))
    # the query without positives is a miss; N > K uses all K predictions
    assert rec == {1: 25.0, 2: 50.0, 3: 75.0, 5: 75.0, 100: 75.0}


def test_recall_errors():
    with pytest.raises(ConfigError):
        recall_at_n(np.zeros((2, 3), dtype=int), [np.array([0])])
    with pytest.raises(ConfigError):
        recall_at_n(np.zeros((1, 3), dtype=int), [np.array([0])], ns=(0,))


def test_timing_stats():
    t = TimingStats.from_ms(list(range(1, 11)))
    assert (t.mean, t.median, t.count) == (5.5, 5.5, 10)
    assert t.p95 == pytest.approx(9.55)
    empty = TimingStats.from_ms([])
    assert empty.count == 0 and math.isnan(empty.mean)
    assert empty.to_dict()["mean"] is None


def test_pick_examples():
    picked = pick_examples([True, False, True, True, False], n_correct=2, n_wrong=5)
    assert picked == [0, 3, 1, 4]


# --- matches ------------------------------------------------------------------------------------


def test_mnn_pairs_hand_made():
    q = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    c = np.array([[0, 1, 0], [1, 0, 0], [0.6, 0.8, 0]], dtype=np.float32)
    qi, ci = mnn_pairs(q, c)
    assert list(zip(qi.tolist(), ci.tolist())) == [(0, 1), (1, 0)]
    qi2, ci2 = mnn_pairs(q * 3.0, c * 0.5)  # rows are normalised
    assert qi2.tolist() == qi.tolist() and ci2.tolist() == ci.tolist()
    assert mnn_pairs(q, c, threshold=1.01)[0].size == 0
    assert mnn_pairs(q[:0], c)[0].size == 0
    q_rc, c_rc = matched_points(q, np.array([[0, 0], [1, 1], [2, 2]]), c, np.array([[5, 5], [6, 6], [7, 7]]))
    assert q_rc.tolist() == [[0, 0], [1, 1]] and c_rc.tolist() == [[6, 6], [5, 5]]


def test_grid_to_pixels():
    xy = grid_to_pixels(np.array([[0, 0], [88, 10]]), (89, 89), (322, 644))
    assert xy[0] == pytest.approx([0.5 * 644 / 89, 0.5 * 322 / 89])
    assert xy[1] == pytest.approx([10.5 * 644 / 89, 88.5 * 322 / 89])


# --- ground-truth CSV ----------------------------------------------------------------------------


def test_ground_truth_round_trip(tmp_path):
    gt = GroundTruth(("q1.jpg", "q2.jpg", "q3.jpg"), (("a.jpg", "b.jpg"), (), ("c.jpg",)))
    path = write_ground_truth(gt, tmp_path / "gt.csv")
    assert path.read_text().splitlines()[0] == "query,positives"
    back = read_ground_truth_csv(path, ["q1.jpg", "q2.jpg", "q3.jpg"], ["a.jpg", "b.jpg", "c.jpg", "d.jpg"])
    assert back == gt
    assert back.num_without_positives == 1
    idx = back.positive_indices(["c.jpg", "b.jpg", "a.jpg"])
    assert [i.tolist() for i in idx] == [[2, 1], [], [0]]
    # a restricted database travels in a sidecar file
    sub = GroundTruth(gt.queries, gt.positives, ("a.jpg", "b.jpg", "c.jpg"))
    write_ground_truth(sub, tmp_path / "sub.csv")
    assert (tmp_path / "sub.database.txt").is_file()
    assert read_ground_truth_csv(tmp_path / "sub.csv").database == ("a.jpg", "b.jpg", "c.jpg")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("a,b\nq1.jpg,a.jpg\n", "header"),
        ("query,positives\n", "no query rows"),
        ("query,positives\nq1.jpg,a.jpg\nq1.jpg,b.jpg\n", "more than once"),
        ("query,positives\nx9.jpg,a.jpg\nx8.jpg,a.jpg\n", "x9.jpg"),
        ("query,positives\nq1.jpg,zz.jpg\n", "zz.jpg"),
    ],
)
def test_ground_truth_errors(tmp_path, content, message):
    path = tmp_path / "gt.csv"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as err:
        read_ground_truth_csv(path, ["q1.jpg", "q2.jpg"], ["a.jpg", "b.jpg"])
    assert "gt.csv" in str(err.value)


def test_ground_truth_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        read_ground_truth_csv(tmp_path / "nope.csv")


def test_unknown_header_lists_the_accepted_formats(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("image,matches\nq1.jpg,a.jpg\n")
    with pytest.raises(ConfigError) as err:
        read_ground_truth_csv(path, ["q1.jpg"], ["a.jpg"])
    text = str(err.value)
    assert "gt.csv" in text and "'image,matches'" in text
    assert "'query,positives'" in text and "'query_index,matching_ref_indices'" in text


def test_index_ground_truth_resolves_frame_numbers(tmp_path):
    """VPR-Bench's form: frame numbers of the file names, positives space-separated (a blank list is a miss)."""
    path = tmp_path / "gt.csv"
    path.write_text("query_index,matching_ref_indices\n0,0 1\n2,\n5,4 5 6\n")
    queries = ["0000000.jpg", "0000002.jpg", "0000005.jpg", "0000009.jpg"]
    refs = [f"{i:07d}.jpg" for i in range(8)]
    gt = read_ground_truth_csv(path, queries, refs)
    assert gt.queries == ("0000000.jpg", "0000002.jpg", "0000005.jpg")
    assert gt.positives == (("0000000.jpg", "0000001.jpg"), (), ("0000004.jpg", "0000005.jpg", "0000006.jpg"))
    assert gt.num_without_positives == 1
    assert [i.tolist() for i in gt.positive_indices(refs)] == [[0, 1], [], [4, 5, 6]]


@pytest.mark.parametrize(
    ("content", "names", "message"),
    [
        ("query_index,matching_ref_indices\n0,0\n", False, "needs the query and map image names"),
        ("query_index,matching_ref_indices\n7,0\n", True, "query index 7 has no image in the queries folder"),
        ("query_index,matching_ref_indices\n0,0 9\n", True, r"ref indices \[9\] have no image in the map"),
        ("query_index,matching_ref_indices\nzero,0\n", True, "indices must be integers"),
        ("query_index,matching_ref_indices\n0,0\n0,1\n", True, "more than once"),
    ],
)
def test_index_ground_truth_errors(tmp_path, content, names, message):
    path = tmp_path / "gt.csv"
    path.write_text(content)
    args = (["0000000.jpg"], ["0000000.jpg", "0000001.jpg"]) if names else ()
    with pytest.raises(ConfigError, match=message) as err:
        read_ground_truth_csv(path, *args)
    assert "gt.csv" in str(err.value)


def test_bundled_corridor_csv_reads_as_is(shared_data):
    corridor = _needs(shared_data, "vprbench_corridor")
    gt = read_ground_truth_csv(corridor / "ground_truth.csv", image_names(corridor / "query"),
                               image_names(corridor / "ref"))
    assert gt == bundled_ground_truth(shared_data, "corridor").ground_truth
    assert gt.num_queries == 111 and dict(zip(gt.queries, gt.positives))["0000005.jpg"] == tuple(
        f"{i:07d}.jpg" for i in range(3, 8))


# --- UTM layout -------------------------------------------------------------------------------------


def _utm(e: float, n: float, tag: str = "") -> str:
    return f"@{e:010.2f}@{n:010.2f}@10@S@{tag}@.jpg"


@pytest.mark.parametrize("nested", [True, False])
def test_utm_ground_truth(tmp_path, nested):
    base = tmp_path / "images" / "test" if nested else tmp_path
    e0, n0 = 543256.96, 4178906.38
    db = [_utm(e0, n0, "a"), _utm(e0 + 10, n0, "b"), _utm(e0 + 30, n0, "c"), _utm(e0, n0 + 24.9, "d")]
    for i, name in enumerate(db):
        _image(base / "database" / name, seed=i)
    _image(base / "queries" / _utm(e0 + 1, n0, "q1"))
    _image(base / "queries" / _utm(e0 + 500, n0 + 500, "q2"))
    assert parse_utm(db[0]) == pytest.approx((e0, n0))
    db_dir, q_dir, gt = utm_ground_truth(tmp_path, radius=25.0)
    assert db_dir == base / "database" and q_dir == base / "queries"
    by_query = dict(zip(gt.queries, gt.positives))
    # sorted by distance: a (1 m), b (9 m), d (~24.9 m); c is 29 m away
    assert by_query[_utm(e0 + 1, n0, "q1")] == (db[0], db[1], db[3])
    assert by_query[_utm(e0 + 500, n0 + 500, "q2")] == ()
    assert gt.num_without_positives == 1
    assert len(utm_ground_truth(tmp_path, radius=30.0).ground_truth.positives[0]) == 4


def test_utm_errors(tmp_path):
    with pytest.raises(ConfigError, match="no UTM fields") as err:
        parse_utm("frame_0001.jpg")
    assert "frame_0001.jpg" in str(err.value)
    _image(tmp_path / "database" / "frame_0001.jpg")
    _image(tmp_path / "queries" / _utm(1, 2))
    with pytest.raises(ConfigError, match=r"frame_0001\.jpg"):
        utm_ground_truth(tmp_path)
    with pytest.raises(ConfigError, match="no 'database'"):
        find_layout(tmp_path / "queries")


def test_positives_within_chunks():
    rng = np.random.default_rng(0)
    q, db = rng.uniform(0, 100, (37, 2)), rng.uniform(0, 100, (53, 2))
    small = positives_within(q, db, 20.0, chunk_elements=60)
    big = positives_within(q, db, 20.0)
    d = np.linalg.norm(q[:, None] - db[None], axis=-1)
    for i in range(len(q)):
        assert small[i].tolist() == big[i].tolist()
        assert sorted(big[i].tolist()) == np.flatnonzero(d[i] <= 20.0).tolist()


# --- bundled datasets ----------------------------------------------------------------------------


def test_gardenspoint(shared_data):
    _needs(shared_data, "gardenspoint_sample10_vpr_tutorial")
    map_dir, q_dir, gt = bundled_ground_truth(shared_data, "gardenspoint_sample10_vpr_tutorial")
    assert map_dir.name == "ref" and q_dir.name == "query"
    assert gt.num_queries == 10 and gt.queries[0] == "0.jpg" and gt.queries[9] == "9.jpg"
    assert gt.positives[0] == ("0.jpg", "1.jpg")
    assert gt.positives[5] == ("4.jpg", "5.jpg", "6.jpg")
    strict = bundled_ground_truth(shared_data, "gardenspoint", tolerance=0).ground_truth
    assert strict.positives[5] == ("5.jpg",)


def test_corridor(shared_data):
    _needs(shared_data, "vprbench_corridor")
    map_dir, q_dir, gt = bundled_ground_truth(shared_data, "vprbench_corridor")
    assert gt.num_queries == 111 and gt.num_without_positives == 0
    pos = dict(zip(gt.queries, gt.positives))
    assert set(pos["0000000.jpg"]) == {f"{i:07d}.jpg" for i in (0, 1, 2)}
    assert set(pos["0000005.jpg"]) == {f"{i:07d}.jpg" for i in range(3, 8)}
    assert set(pos["0000110.jpg"]) == {f"{i:07d}.jpg" for i in range(108, 111)}
    # every name exists in the folders
    assert set(gt.queries) <= set(image_names(q_dir))
    assert {p for ps in gt.positives for p in ps} <= set(image_names(map_dir))


def test_nordland_subsample(shared_data):
    _needs(shared_data, "nordland_seqslam_64x32")
    map_dir, q_dir, gt = bundled_ground_truth(shared_data, "nordland", subsample=20)
    assert map_dir.name == "summer" and q_dir.name == "winter"
    n = len(list((shared_data / "nordland_seqslam_64x32" / "summer").glob("*.png")))  # 400 bundled, 3576 fetched
    assert gt.num_queries == -(-n // 20) and gt.database is not None and len(gt.database) == gt.num_queries
    assert gt.queries[1] == "images-00210.png" and gt.positives[1] == ("images-00210.png",)
    few = bundled_ground_truth(shared_data, "nordland", subsample=1, limit=5, tolerance=2).ground_truth
    assert few.queries == few.database and len(few.queries) == 5
    assert few.positives[0] == ("images-00010.png", "images-00020.png", "images-00030.png")
    assert len(few.positives[2]) == 5 and len(few.positives[4]) == 3  # clipped at the limit


def test_bundled_registry_errors(tmp_path):
    with pytest.raises(ConfigError, match="valid: gardenspoint"):
        bundled_ground_truth(tmp_path, "tokyo247")  # the name and options are checked before the data
    with pytest.raises(ConfigError, match="subsample"):
        bundled_ground_truth(tmp_path, "corridor", subsample=3)


def test_write_bundled_ground_truth(tmp_path, shared_data):
    _needs(shared_data, "vprbench_corridor")
    written = write_bundled_ground_truth(shared_data, tmp_path, names=["corridor", "gardenspoint"])
    corridor = shared_data / "vprbench_corridor"
    gt = read_ground_truth_csv(written["corridor"], image_names(corridor / "query"), image_names(corridor / "ref"))
    assert gt.num_queries == 111
    with written["gardenspoint"].open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10 and rows[1] == {"query": "1.jpg", "positives": "0.jpg 1.jpg 2.jpg"}


# --- report -------------------------------------------------------------------------------------------


def test_write_report(tmp_path):
    imgs = tmp_path / "imgs"
    q = [_image(imgs / f"q{i}.jpg", (120, 80), seed=i) for i in range(2)]
    db = [_image(imgs / f"d{i}.jpg", (100, 75), seed=10 + i) for i in range(4)]
    db_names = [p.name for p in db]
    positives = [np.array([1]), np.array([], dtype=np.int64)]
    gpred = np.array([[0, 1, 2], [3, 2, 1]])
    rpred = np.array([[1, 0, 2], [2, 3, 1]])
    scores = np.array([[12.0, 3.0, 1.0], [4.0, 2.0, 0.0]])
    rows = build_per_query_rows([p.name for p in q], db_names, positives, gpred, rpred, scores)
    assert rows[0].first_correct_global == 2 and rows[0].first_correct_rerank == 1
    assert rows[1].first_correct_rerank == -1 and rows[0].rerank_top1_score == 12.0
    result = EvaluationResult(
        dataset="toy",
        num_queries=2,
        num_database=4,
        recall_global=recall_at_n(gpred, positives, (1, 5, 10)),
        recall_rerank=recall_at_n(rpred, positives, (1, 5, 10)),
        timing_ms={"describe": TimingStats.from_ms([10, 12, 14]), "search": TimingStats.from_ms([0.1]),
                   "rerank": TimingStats.from_ms([])},
        model=ModelInfo("vits14", "random:0", synthetic=True, input_size=(322, 322)),
        peak_rss_mb=123.4,
        queries_without_positives=1,
        config={"top_k": 3, "map": Path("/x/map")},
    )
    rng = np.random.default_rng(0)
    grid = (89, 89)
    pts = rng.integers(0, 89, (20, 2))
    example = ExampleMatch(
        query_image=q[0],
        candidate_images=(db[1], db[0]),
        local_grid=grid,
        matches=((pts, (pts + 3) % 89), (pts[:5], pts[:5])),
        query_mask=rng.random((23, 23)) > 0.6,
        candidate_masks=(rng.random((23, 23)) > 0.6, None),
        correct=True,
        candidate_correct=(True, False),
        scores=(12.0, 3.0),
    )
    out = tmp_path / "report"
    summary_path = write_report(result, rows, out, examples=[example])
    summary = json.loads(summary_path.read_text())
    assert summary["recall_global"] == {"1": 0.0, "5": 50.0, "10": 50.0}
    assert summary["recall_rerank"]["1"] == 50.0
    assert set(summary["timing_ms"]) == {"describe", "search", "rerank"}
    assert summary["timing_ms"]["describe"]["median"] == 12.0
    assert summary["timing_ms"]["rerank"]["mean"] is None
    assert summary["synthetic_weights"] is True
    for name, min_kb in (("recall_at_n.png", 10), ("examples.png", 10)):
        data = (out / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > min_kb * 1024, name
    with (out / "per_query.csv").open() as fh:
        lines = list(csv.DictReader(fh))
    assert lines[0]["global_top5"] == "d0.jpg d1.jpg d2.jpg" and lines[1]["first_correct_rerank"] == "-1"
    md = (out / "report.md").read_text()
    assert "meaningless for accuracy" in md and "recall_at_n.png" in md and "examples.png" in md
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_write_report_without_rerank(tmp_path):
    positives = [np.array([0])]
    gpred = np.array([[0, 1]])
    rows = build_per_query_rows(["q.jpg"], ["a.jpg", "b.jpg"], positives, gpred)
    result = EvaluationResult(
        "toy", 1, 2, recall_at_n(gpred, positives), None, {"describe": TimingStats.from_ms([1.0])},
        ModelInfo("vitb14", "w.pth", synthetic=False), peak_rss_mb=1.0,
    )
    summary = json.loads(write_report(result, rows, tmp_path).read_text())
    assert summary["recall_rerank"] is None and summary["recall_global"]["1"] == 100.0
    assert "meaningless" not in (tmp_path / "report.md").read_text()
    assert not (tmp_path / "examples.png").exists()
    assert summary["notes"] == [] and "note" not in summary  # a list, as in evaluate-bag's summary.json


def test_write_report_notes_a_failed_example_montage(tmp_path):
    positives = [np.array([0])]
    gpred = np.array([[0, 1]])
    rows = build_per_query_rows(["q.jpg"], ["a.jpg", "b.jpg"], positives, gpred)
    result = EvaluationResult(
        "toy", 1, 2, recall_at_n(gpred, positives), None, {"describe": TimingStats.from_ms([1.0])},
        ModelInfo("vitb14", "w.pth", synthetic=False), peak_rss_mb=1.0,
    )
    broken = ExampleMatch(query_image=tmp_path / "missing.jpg", candidate_images=(tmp_path / "gone.jpg",),
                          local_grid=(4, 4))
    summary = json.loads(write_report(result, rows, tmp_path / "r", examples=[broken]).read_text())
    assert len(summary["notes"]) == 1 and summary["notes"][0].startswith("examples not drawn: ")
    assert "missing.jpg" in summary["notes"][0] and "examples.png" not in summary["files"]
    assert "## Notes" in (tmp_path / "r" / "report.md").read_text()
