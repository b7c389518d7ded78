"""evaluate_bag end to end on small real bags (Nordland frames, bagfactory) with a 1-block ViT-S at 224 x 224."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from fol_vpr_ros.cli.evaluate_bag import add_evaluate_bag_parser, cmd_evaluate_bag
from fol_vpr_ros.errors import FolVprError
from fol_vpr_ros.evaluation.bag_config import BagEvalConfig
from fol_vpr_ros.jobs.build_map_bag import build_map_from_bag
from fol_vpr_ros.jobs.evaluate_bag import EvaluateBagJob, evaluate_bag
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.ros.results_bag import LOOP_TOPIC, MARKERS_TOPIC, POSE_TOPIC, RESULT_TOPIC
from fol_vpr_ros.sources.bag import BagError
from fol_vpr_ros.sources.bag_ground_truth import GroundTruthOptions
from fol_vpr_ros.stamps import NS_PER_SEC
from fol_vpr_ros.testing.bagfactory import write_image_bag

T_MAP = 1_650_000_000 * NS_PER_SEC
T_QUERY = 1_660_000_000 * NS_PER_SEC
TOPIC = "/camera/image_raw"
IDENTITY = (0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    return str(save_checkpoint(synthetic_model(cfg, seed=4), tmp_path_factory.mktemp("w") / "tiny.pth"))


@pytest.fixture(scope="module")
def frames(nordland_frames):
    return nordland_frames


def _stamps(t0, n):
    return [t0 + k * NS_PER_SEC for k in range(n)]


def _odom(stamps, xs):
    return [(s, (float(x), 0.0, 0.0), IDENTITY) for s, x in zip(stamps, xs)]


def _eval(bag, out, ckpt, **kw):
    kw.setdefault("cfg", BagEvalConfig(every_frame=True, examples=1))
    return evaluate_bag(EvaluateBagJob(bag, TOPIC, out, ckpt, resize=(224, 224), progress=False, **kw))


@pytest.fixture(scope="module")
def mapped(tmp_path_factory, ckpt, frames):
    """A map from a bag (frames 10 m apart along x) and a query bag of the same images along the same track."""
    root = tmp_path_factory.mktemp("loc")
    xs = [10.0 * k for k in range(len(frames))]
    s_map, s_q = _stamps(T_MAP, len(frames)), _stamps(T_QUERY, len(frames))
    map_bag = write_image_bag(root / "map_bag", frames, s_map, odometry=_odom(s_map, xs), odom_frame="map")
    query_bag = write_image_bag(root / "query_bag", frames, s_q, odometry=_odom(s_q, xs), odom_frame="map")
    build_map_from_bag(map_bag, TOPIC, root / "map", ckpt, resize=(224, 224), batch_size=4, progress=False)
    return root, query_bag, s_q


def _read_bag(path):
    from rosbags.highlevel import AnyReader

    from fol_vpr_ros.ros.interfaces import typestore

    out: dict[str, list] = {}
    with AnyReader([Path(path)], default_typestore=typestore()) as reader:
        defs = {c.topic: c.msgdef for c in reader.connections}
        for conn, bag_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((bag_ns, reader.deserialize(raw, conn.msgtype)))
    return out, defs


def test_localize_identical_images_recall_and_results_bag(tmp_path, ckpt, mapped):
    root, query_bag, stamps = mapped
    res = _eval(query_bag, tmp_path / "report", ckpt, map_path=root / "map", write_results=tmp_path / "res.mcap")
    assert res.mode == "localize" and res.gt_frame == "pose" and res.runner == "offline"
    assert res.recall[5.0][1] == 100.0 and res.recall[25.0][1] == 100.0
    assert res.frames.processed == len(stamps) and res.frames.dropped == 0 and res.frames.evaluated == len(stamps)
    assert res.pr[5.0].num_positives == len(stamps) and res.pr[5.0].recall_at_full_precision == 1.0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["recall_pct"]["5"]["1"] == 100.0
    assert set(summary["recall_pct"]["5"]) == {"1", "5", "8"}  # N clipped to the map size (K = 8)
    assert summary["frames_processed"] == len(stamps) and summary["frames_dropped"] == 0
    assert summary["pr_auc"]["5"] == 1.0 and summary["recall_at_100_precision_pct"]["25"] == 100.0
    assert set(summary["latency_ms"]) == {"decode", "describe", "search", "rerank", "verify", "total"}
    assert summary["latency_ms"]["total"]["count"] == len(stamps) and summary["realtime"]["camera_rate_hz"] == 1.0
    for name in ("report.md", "per_frame.csv", "trajectory.png", "pr_curve.png", "latency.png", "examples.png"):
        assert (tmp_path / "report" / name).is_file(), name
    assert "Recall@N" in (tmp_path / "report" / "report.md").read_text()
    # every query matched its own place: the fitted covariance has true matches only, at their (zero) error floor
    from fol_vpr_ros.node.pose_covariance import load_covariance_model

    cov = load_covariance_model(tmp_path / "report" / "pose_covariance.yaml")
    assert (cov.samples_true, cov.samples_false) == (len(stamps), 0) and cov.sigma_true_m < 1.0
    assert any("pose_covariance.yaml" in n for n in res.notes)

    msgs, defs = _read_bag(tmp_path / "res.mcap")
    accepted = sum(1 for r in res.per_frame if r.accepted)
    assert {t: len(v) for t, v in msgs.items()} == {TOPIC: 8, RESULT_TOPIC: 8, MARKERS_TOPIC: 8, POSE_TOPIC: accepted}
    assert accepted == 8
    assert dict(res.results_counts) == {t: len(v) for t, v in msgs.items()}
    for topic in (TOPIC, RESULT_TOPIC, POSE_TOPIC):
        got = [(ns, m.header.stamp.sec * NS_PER_SEC + m.header.stamp.nanosec) for ns, m in msgs[topic]]
        assert got == [(s, s) for s in stamps], topic  # bag time and header stamp = the image stamps
    first = msgs[RESULT_TOPIC][0][1]
    assert first.accepted and first.candidates[first.accepted_index].keyframe_id == 0 and first.status == "ok"
    assert "MSG: fol_vpr_ros/PlaceCandidate" in defs[RESULT_TOPIC].data  # our definitions are in the bag
    assert b"ros2msg" in (tmp_path / "res.mcap").read_bytes()
    img0 = msgs[TOPIC][0][1]
    assert (img0.encoding, img0.height, img0.width) == ("rgb8", 32, 64)


def test_loop_closure_on_a_revisit(tmp_path, ckpt, frames):
    # out along x (6 frames, 10 m apart), then back at the first two places with the same images
    imgs = [*frames[:6], frames[0], frames[1]]
    xs = [0, 10, 20, 30, 40, 50, 0.5, 10.5]
    stamps = _stamps(T_MAP, len(imgs))
    bag = write_image_bag(tmp_path / "loop", imgs, stamps, odometry=_odom(stamps, xs))
    res = _eval(bag, tmp_path / "report", ckpt, loop_closure=True, write_results=tmp_path / "loop_res",
                param_overrides={"exclusion.min_time_sec": 2.0, "exclusion.min_keyframes": 2})
    assert res.mode == "loop_closure" and res.recall == {}
    acc = res.accepted[5.0]
    assert acc["correct"] >= 1 and acc["positives"] == 2
    assert res.pr[5.0].num_positives == 2 and res.pr[5.0].recall_at_full_precision > 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["mode"] == "loop_closure" and summary["pr"]["5"]["positives"] == 2
    assert summary["pr_auc"]["5"] is not None and summary["recall_at_100_precision_pct"]["5"] > 0
    assert summary["frames"]["processed"] == 8
    outcome = {r.index: r.outcome for r in res.per_frame}
    assert outcome[6] == "correct" and outcome[7] == "correct"
    msgs, _ = _read_bag(tmp_path / "loop_res")
    assert len(msgs[RESULT_TOPIC]) == 8 and POSE_TOPIC not in msgs
    loops = {m.query_keyframe_id: (m.match_keyframe_id, m.status) for _, m in msgs[LOOP_TOPIC]}
    assert sorted(loops) == [3, 4, 5, 6, 7]  # every keyframe with a candidate outside the exclusion window
    assert loops[6] == (0, 0) and loops[7] == (1, 0)  # ACCEPTED: back at frames 0 and 1


def test_counted_skips_without_reranking(tmp_path, ckpt, frames, mapped):
    root, _, _ = mapped
    s = _stamps(T_QUERY, 6)
    stamps = [s[0], s[1], s[1], s[2], s[3], s[4]]  # frame 2 repeats frame 1's stamp
    enc = ["rgb8", "rgb8", "rgb8", "yuv_strange", "rgb8", "rgb8"]
    # frames 4 and 5 are stamped s[3], s[4]: put them where their map twins are (40 m, 50 m)
    bag = write_image_bag(tmp_path / "q", frames[:6], stamps, encoding=enc,
                          odometry=_odom(s[:5], [0.0, 10.0, 30.0, 40.0, 50.0]), odom_frame="map")
    res = _eval(bag, tmp_path / "report", ckpt, map_path=root / "map", param_overrides={"rerank_k": 0})
    assert res.score_kind == "global_similarity"
    f = res.frames
    assert (f.on_topic, f.usable, f.duplicate_stamps, f.processed) == (6, 4, 1, 4)
    assert any("encoding" in reason for reason in f.skipped_by_source)
    assert res.recall[5.0][1] == 100.0  # frames 0, 1, 4, 5 sit where their map twins are
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["frames"]["duplicate_stamps"] == 1 and summary["frames_skipped"] == 2


def test_bad_inputs(tmp_path, ckpt, frames, mapped):
    root, query_bag, _ = mapped
    with pytest.raises(BagError, match="no topic '/nope'") as info:
        evaluate_bag(EvaluateBagJob(query_bag, "/nope", tmp_path / "r", ckpt, map_path=root / "map", progress=False))
    assert TOPIC in str(info.value) and "/odom" in str(info.value)  # the bag's topics are listed
    no_pose = write_image_bag(tmp_path / "no_pose", frames[:3], _stamps(T_QUERY, 3))
    with pytest.raises(BagError, match="needs ground-truth poses"):
        _eval(no_pose, tmp_path / "r", ckpt, map_path=root / "map")
    with pytest.raises(FolVprError, match="rate factor"):
        _eval(query_bag, tmp_path / "r", ckpt, map_path=root / "map", through_node=True, rate_factor=0)
    with pytest.raises(FolVprError, match="--pose-source none"):
        GroundTruthOptions(pose_source="none")
    with pytest.raises(FolVprError, match="do not pass --map"):
        _eval(query_bag, tmp_path / "r", ckpt, map_path=root / "map", loop_closure=True)
    with pytest.raises(FolVprError, match="pose topic '/pose'"):
        _eval(query_bag, tmp_path / "r", ckpt, map_path=root / "map", gt=GroundTruthOptions(pose_topic="/pose"))


def test_cli_parser(tmp_path, ckpt, mapped, capsys):
    root, query_bag, _ = mapped
    parser = argparse.ArgumentParser()
    add_evaluate_bag_parser(parser.add_subparsers(dest="command"))
    base = ["evaluate-bag", "--bag", str(query_bag), "--image-topic", TOPIC, "--weights", ckpt, "--out",
            str(tmp_path / "cli")]
    a = parser.parse_args([*base, "--map", str(root / "map"), "--thresholds", "2", "30", "--heading-limit", "20",
                           "-p", "exclusion.min_time_sec=5.0", "--top-k", "4", "--every-frame", "-q", "--examples",
                           "0"])
    assert a.func is cmd_evaluate_bag and a.thresholds == [2.0, 30.0] and a.param == [("exclusion.min_time_sec", 5.0)]
    assert cmd_evaluate_bag(a) == 0
    out = capsys.readouterr().out
    assert "mode localize" in out and "R@1" in out
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["recall_pct"]["2"] == {"1": 100.0, "4": 100.0} and summary["heading_limit_deg"] == 20.0
    assert summary["config"]["top_k"] == 4
    with pytest.raises(SystemExit):
        parser.parse_args([*base])  # neither --map nor --loop-closure
    t = parser.parse_args([*base, "--loop-closure", "--through-node"])
    assert t.through_node and t.rate_factor == 1.0


def test_cli_param_is_typed_as_the_node_parameter(tmp_path, ckpt, mapped, capsys):
    """-p min_rerank_score=30 is the float 30.0 (as `fol-vpr node --set`); a bad name or value is one line."""
    root, query_bag, _ = mapped
    parser = argparse.ArgumentParser()
    add_evaluate_bag_parser(parser.add_subparsers(dest="command"))
    base = ["evaluate-bag", "--bag", str(query_bag), "--image-topic", TOPIC, "--weights", ckpt, "--out",
            str(tmp_path / "cli"), "--map", str(root / "map"), "--every-frame", "-q", "--examples", "0"]
    a = parser.parse_args([*base, "-p", "min_rerank_score=30", "-p", "top_k=4", "-p", "loop_closure.session_id=7"])
    assert a.param == [("min_rerank_score", 30.0), ("top_k", 4), ("loop_closure.session_id", "7")]
    assert isinstance(a.param[0][1], float) and isinstance(a.param[1][1], int)
    capsys.readouterr()
    assert cmd_evaluate_bag(a) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["config"]["min_rerank_score"] == 30.0 and summary["config"]["top_k"] == 4
    for bad, words in (("top_kk=4", ["top_kk", "did you mean top_k"]), ("top_k=many", ["top_k=many", "integer"]),
                       ("min_rerank_score=yes", ["min_rerank_score", "number"]), ("top_k", ["NAME=VALUE"])):
        capsys.readouterr()
        with pytest.raises(SystemExit) as info:
            parser.parse_args([*base, "-p", bad])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("usage: ") is False and "argument --param/-p: " in err[-1], err
        assert all(w in err[-1] for w in words), (bad, err[-1])
        assert not any("Traceback" in line for line in err)


def test_read_ground_truth_tf_gps_and_gaps(tmp_path, frames):
    from fol_vpr_ros.sources.bag import BagImageSource
    from fol_vpr_ros.sources.bag_ground_truth import read_ground_truth
    from fol_vpr_ros.sources.utm import wgs84_to_utm

    stamps = _stamps(T_MAP, 5)
    tf = [(s, "map", "base_link", (2.0 * k, 0.0, 0.0), IDENTITY) for k, s in enumerate(stamps[:4])]  # no pose at 4
    fixes = [(s, 67.28 + 1e-4 * k, 14.40, 30.0, 0) for k, s in enumerate(stamps)]
    bag = write_image_bag(tmp_path / "tf", frames[:5], stamps, tf=tf, navsat=fixes,
                          tf_static=[("base_link", "camera", (0.5, 0.0, 1.0), IDENTITY)])
    scan, gt = read_ground_truth(BagImageSource(bag, TOPIC), GroundTruthOptions(max_pose_gap=2.0))
    assert (gt.kind, gt.frame_id, gt.gps_topic, gt.utm_zone) == ("tf", "map", "/gps/fix", "33W")
    np.testing.assert_allclose(gt.positions[:4], [[2.0 * k + 0.5, 0.0, 1.0] for k in range(4)], atol=1e-9)
    assert not gt.has_pose[4] and "outside the time span" in gt.reasons[4]
    assert gt.has_utm.all() and gt.utm[2, 0] == pytest.approx(wgs84_to_utm(67.2802, 14.40).easting, abs=1e-3)
    assert len(scan.records) == 5 and any("tf chain" in n for n in gt.notes)
    gps_only = write_image_bag(tmp_path / "gps", frames[:3], stamps[:3], navsat=fixes[:3])
    _, g2 = read_ground_truth(BagImageSource(gps_only, TOPIC))
    assert (g2.kind, g2.frame_id) == ("gps", "utm") and np.array_equal(g2.positions, g2.utm)


def test_truncated_bag_is_a_clear_error(tmp_path, ckpt, mapped):
    root, query_bag, _ = mapped
    data = next(Path(query_bag).glob("*.mcap")).read_bytes()
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(BagError, match=r"truncated|corrupt|cannot read"):
        _eval(cut, tmp_path / "r", ckpt, map_path=root / "map")
