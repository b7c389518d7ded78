"""The ROS-free node core: parameters, keyframe gating, loop-closure policy and NodeCore end to end.

Uses a 1-block ViT-S at 224 x 224 with synthetic weights, bundled images and maps built in tmp_path.
Descriptions are memoised per image content (the model is deterministic), so repeated images cost nothing.
"""

from __future__ import annotations

import array
import hashlib
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

import fol_vpr_ros
from fol_vpr_ros.errors import ConfigError, MapError
from fol_vpr_ros.image_io import read_image
from fol_vpr_ros.mapping import Keyframe, Pose, VprMap
from fol_vpr_ros.model import DEFAULT_INPUT_SIZE, FoLConfig, LoadedModel, arch_config, synthetic_model
from fol_vpr_ros.node import (
    CompressedPayload,
    DropReason,
    FrameStatus,
    ImagePayload,
    KeyframeGate,
    KeyframeRef,
    LoopClosurePolicy,
    MatchOutcome,
    NodeCore,
    NodeParams,
    OdomBuffer,
    OdomPose,
    SkipReason,
    decide_localize,
    load_params,
    param_specs,
    pose_sigmas,
)
from fol_vpr_ros.node.gating import quaternion_angle
from fol_vpr_ros.pipeline.describe import Describer
from fol_vpr_ros.pipeline.localizer import Candidate, QueryResult
from fol_vpr_ros.pipeline.rerank import DEFAULT_THRESHOLD

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "config" / "localize.yaml"
S = 1_000_000_000


# ---------------------------------------------------------------------------- fixtures and helpers
class MemoDescriber(Describer):
    """A Describer that reuses the description of identical image content."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__(loaded, batch_size=1)
        self.cache: dict[bytes, object] = {}
        self.calls = 0

    def describe_arrays(self, images, order="rgb", names=None):
        self.calls += 1
        out = []
        for im in images:
            key = hashlib.sha1(np.ascontiguousarray(im).tobytes() + str(im.shape).encode()).digest()
            if key not in self.cache:
                self.cache[key] = super().describe_arrays([im], order)[0]
            out.append(self.cache[key])
        return out


@pytest.fixture(scope="module")
def describer() -> MemoDescriber:
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    model = synthetic_model(cfg, seed=3).eval()
    return MemoDescriber(LoadedModel(model, "random:3", "synthetic:3:vits14:1", True))


@pytest.fixture(scope="module")
def corridor(shared_data) -> Callable[[int], np.ndarray]:
    """Reference image i of the bundled VPR-Bench corridor."""
    return lambda i: read_image(shared_data / "vprbench_corridor" / "ref" / f"{i:07d}.jpg")


@pytest.fixture(scope="module")
def garden(shared_data) -> Callable[[str, int], np.ndarray]:
    """Image i ('ref' or 'query') of the bundled Gardens Point sample."""
    return lambda kind, i: read_image(shared_data / "gardenspoint_sample10_vpr_tutorial" / kind / f"{i}.jpg")


def rgb8(image: np.ndarray, stamp_ns: int, frame_id: str = "cam") -> ImagePayload:
    h, w = image.shape[:2]
    return ImagePayload(stamp_ns, frame_id, "rgb8", h, w, w * 3, False, image.tobytes())


def params(**overrides) -> NodeParams:
    # no latency budget: these tests count re-ranked candidates exactly, whatever the machine's load
    base = {"input_size": [224, 224], "top_k": 3, "rerank_k": 2, "min_rerank_score": 30.0, "latency_budget_ms": 0.0}
    return load_params(CONFIG, overrides={**base, **{k.replace("__", "."): v for k, v in overrides.items()}})


@pytest.fixture(scope="module")
def garden_map(describer, garden, tmp_path_factory) -> Path:
    """The 10 Gardens Point reference images, keyframe i at x = 2 i m, saved as a map."""
    from fol_vpr_ros.pipeline.describe import map_for_describer

    vmap = map_for_describer(describer, None)
    for i in range(10):
        d = describer.describe_arrays([garden("ref", i)])[0]
        vmap.add_one(Keyframe(stamp_ns=i * S, frame_id="camera", source=f"ref/{i}.jpg",
                              pose=Pose((2.0 * i, 0.0, 0.0)), session_id="mapping"),
                     d.global_desc, d.local, d.local_rc)
    return vmap.save(tmp_path_factory.mktemp("maps") / "garden")


# ---------------------------------------------------------------------------- parameters
def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def test_params_from_the_real_config_file():
    p = load_params(CONFIG)
    flat = p.to_flat_dict()
    in_file = _flatten(yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"])
    assert in_file and all(flat[k] == v for k, v in in_file.items())
    assert p.keyframe.min_interval_sec == 0.5 and p.exclusion.min_keyframes == 50
    assert p.input_size == (322, 322) and p.qos.image.reliability == "best_effort" and p.mode == "localize"
    assert p.node_name == "fol_vpr" and p.fully_qualified_name == "/fol_vpr"
    descriptions = NodeParams.descriptions()
    assert set(descriptions) == set(flat) and all(descriptions.values())
    assert [s.name for s in param_specs()] == list(flat)
    assert load_params(None, overrides=flat) == p  # the flat dict round-trips
    assert load_params(None, overrides={"input_size": array.array("q", [224, 238])}).input_size == (224, 238)


def test_params_defaults_are_the_shared_constants():
    p = NodeParams()
    assert p.input_size == DEFAULT_INPUT_SIZE and p.rerank_threshold == DEFAULT_THRESHOLD
    specs = {s.name: s for s in param_specs()}
    assert specs["input_size"].default == list(DEFAULT_INPUT_SIZE)
    assert specs["rerank_threshold"].default == DEFAULT_THRESHOLD


def test_importing_params_loads_neither_torch_nor_faiss():
    """fol_vpr_ros.node is lazy: the parameters (and the outcome enums) import without the model stack."""
    code = ("import sys, fol_vpr_ros.node.params, fol_vpr_ros.node.outcomes; "
            "heavy = sorted(m for m in ('torch', 'faiss') if m in sys.modules); "
            "assert not heavy, heavy; print('light')")
    root = str(Path(fol_vpr_ros.__file__).resolve().parents[1])  # the copy of the package under test
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "light", done.stderr


def test_params_sections_precedence_and_namespaces(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump({
        "fol_vpr": {"ros__parameters": {"top_k": 7}},  # node-specific wins even before /**
        "/**": {"ros__parameters": {"top_k": 5, "rerank_k": 4, "use_sim_time": True,
                                    "keyframe": {"min_interval_sec": 2.0}}},
        "/other": {"ros__parameters": {"top_k": 99}},
        "robot1": {"fol_vpr": {"ros__parameters": {"mode": "loop_closure", "keyframe.min_angle_deg": 5.0}}},
    }))
    p = load_params(f)
    assert (p.top_k, p.rerank_k, p.keyframe.min_interval_sec, p.mode) == (7, 4, 2.0, "localize")
    q = load_params(f, namespace="/robot1", overrides={"rerank_k": 1})
    assert (q.top_k, q.rerank_k, q.mode, q.keyframe.min_angle_deg) == (5, 1, "loop_closure", 5.0)
    assert q.fully_qualified_name == "/robot1/fol_vpr"
    assert load_params(f, node_name="other").top_k == 99


@pytest.mark.parametrize("override, needles", [
    ({"top_k": 0}, ["top_k", "0", "1 .. 100000"]),
    ({"min_rerank_score": 30}, ["min_rerank_score", "write 30.0"]),
    ({"mode": "loopclosure"}, ["mode", "'loopclosure'", "did you mean 'loop_closure'", "localize, loop_closure"]),
    ({"qos.image.reliability": "besteffort"}, ["qos.image.reliability", "best_effort, reliable"]),
    ({"keyframe": {"min_angle_deg": 200.0}}, ["keyframe.min_angle_deg", "200.0", "0.0 .. 180.0"]),
    ({"input_size": [300, 300]}, ["input_size", "[300, 300]", "multiple of the patch size 14"]),
    ({"rerank_k": 200}, ["rerank_k", "200", "top_k"]),
    ({"publish_tf": 1}, ["publish_tf", "bool"]),
    ({"map_path": 2024}, ["map_path", "quote it"]),
    ({"device": "gpu"}, ["device", "'gpu'", "cuda:N"]),
    ({"keyframe.min_interval": 1.0}, ["unknown parameter", "did you mean 'keyframe.min_interval_sec'"]),
    ({"top_kk": 3, "foo_bar_baz": 1}, ["unknown parameters", "'top_kk' (did you mean 'top_k'", "no similar"]),
])
def test_params_bad_values_are_explained(override, needles):
    with pytest.raises(ConfigError) as info:
        load_params(CONFIG, overrides=override)
    for needle in needles:
        assert needle in str(info.value), (needle, str(info.value))


def test_params_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("/**: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("/**:\n  parameters:\n    top_k: 3\n")
    with pytest.raises(ConfigError, match="ros__parameters"):
        load_params(bad)
    bad.write_text("/**:\n  ros__parameters:\n    top_k: 3.0\n")
    with pytest.raises(ConfigError, match=rf"{bad}.*top_k: 3.0"):
        load_params(bad)
    with pytest.raises(ConfigError, match="node name"):
        load_params(CONFIG, node_name="bad name")


# ---------------------------------------------------------------------------- gating and odometry
def test_gate_time_only():
    gate = KeyframeGate(0.5, 1.0, 15.0)
    stamps = [0.0, 0.2, 0.5, 0.7, 1.0, 1.49, 1.5]
    assert [gate.accept(round(t * S)) for t in stamps] == [True, False, True, False, True, False, True]
    assert gate.skip_reason(round(1.6 * S)) is SkipReason.MIN_INTERVAL
    assert gate.accept(round(0.1 * S))  # stamp went backwards: reset, accepted
    assert not gate.accept(round(0.3 * S))


def _yaw(deg: float) -> tuple[float, float, float, float]:
    h = math.radians(deg) / 2
    return (0.0, 0.0, math.sin(h), math.cos(h))


def test_gate_with_odometry_needs_interval_and_motion():
    gate = KeyframeGate(0.5, 1.0, 15.0)
    seq = [  # (t, x, yaw, expected)
        (0.0, 0.0, 0.0, True),    # first frame
        (1.0, 0.5, 0.0, False),   # neither moved 1 m nor turned 15 deg
        (1.2, 1.0, 0.0, True),    # moved 1 m
        (1.4, 3.0, 0.0, False),   # moved, but only 0.2 s later
        (2.0, 3.0, 0.0, True),    # moved 2 m since the last keyframe
        (3.0, 3.0, 10.0, False),  # turned 10 deg
        (4.0, 3.0, 20.0, True),   # turned 20 deg
        (5.0, 3.0, 20.0, False),  # stationary
    ]
    got = [gate.accept(round(t * S), OdomPose(round(t * S), (x, 0, 0), _yaw(a))) for t, x, a, _ in seq]
    assert got == [e for *_, e in seq]
    assert gate.skip_reason(6 * S, OdomPose(6 * S, (3.0, 0, 0), _yaw(20))) is SkipReason.MIN_MOTION
    assert gate.skip_reason(round(4.2 * S), OdomPose(round(4.2 * S), (9.0, 0, 0))) is SkipReason.MIN_INTERVAL
    assert gate.accept(6 * S, None)  # no pose: time only


def test_odom_buffer_interpolates_and_refuses_far_stamps():
    buf = OdomBuffer(tolerance_sec=0.1, max_gap_sec=0.5, buffer_sec=10.0)
    assert buf.pose_at(0) is None
    buf.add(OdomPose(round(0.4 * S), (2.0, 0, 0), _yaw(90)))
    buf.add(OdomPose(0, (0.0, 0, 0), _yaw(0)))  # out of order
    mid = buf.pose_at(round(0.2 * S))
    assert mid.position == pytest.approx((1.0, 0, 0))
    assert math.degrees(quaternion_angle(mid.orientation, _yaw(0))) == pytest.approx(45.0)
    assert buf.pose_at(0).position == (0.0, 0.0, 0.0)
    assert buf.pose_at(round(0.45 * S)).position == (2.0, 0.0, 0.0)  # nearest, within tolerance
    assert buf.pose_at(round(0.6 * S)) is None
    buf.add(OdomPose(round(2.0 * S), (9.0, 0, 0)))  # 1.6 s gap: too long to interpolate
    assert buf.pose_at(round(1.2 * S)) is None
    assert buf.pose_at(round(1.95 * S)).position == (9.0, 0.0, 0.0)
    buf.add(OdomPose(round(11.0 * S), (10.0, 0, 0)))  # older than buffer_sec are dropped
    assert len(buf) == 2 and buf.pose_at(0) is None


# ---------------------------------------------------------------------------- loop-closure policy
def _result(*cands: tuple[int, int, float]) -> QueryResult:
    cs = [Candidate(i, r, r, sim, score) for r, (i, score, sim) in enumerate(cands)]
    return QueryResult(cs, np.array([c[0] for c in cands]), np.array([c[2] for c in cands], np.float32))


def test_loop_restriction_excludes_recent_time_and_keyframes():
    policy = LoopClosurePolicy(3.0, 4, 30.0, 1)
    kfs = [Keyframe(stamp_ns=i * S, id=i, session_id="run") for i in range(10)]
    r = policy.restriction(kfs, 10 * S, "run")
    assert (r.max_id, r.exclude_ids, r.eligible) == (5, (), 6)  # last 4 (6..9) and younger than 3 s (8, 9)
    r = policy.restriction(kfs, 20 * S, "run")
    assert (r.max_id, r.eligible) == (5, 6)  # old enough, but still among the last 4
    assert not policy.restriction(kfs[:4], 100 * S, "run").searchable
    old = [Keyframe(stamp_ns=10**6 * S, id=i, session_id="old") for i in range(3)]  # another session: eligible
    mine = [Keyframe(stamp_ns=(i - 3) * S, id=i, session_id="run") for i in range(3, 13)]
    r = policy.restriction(old + mine, 10 * S, "run")
    assert r.max_id == 8 and r.eligible == 9
    jumbled = [Keyframe(stamp_ns=s * S, id=i, session_id="run") for i, s in enumerate([0, 50, 1, 2, 3, 4, 5, 6])]
    r = policy.restriction(jumbled, 20 * S, "run")  # id 1 is too young (stamp 50 s), 4..7 are the last 4
    assert r.max_id is None and r.exclude_ids == (1, 4, 5, 6, 7) and r.eligible == 3


def test_loop_decisions_need_score_and_consistent_hits():
    policy = LoopClosurePolicy(0.0, 0, 30.0, consistent_hits=2, max_match_gap=2)
    q = iter(range(100, 200))

    def step(result):
        i = next(q)
        return policy.decide(KeyframeRef(i, i * S), result, lambda k: k * S)

    d = step(_result((10, 50, 0.9), (3, 20, 0.8)))
    assert not d.accepted and d.consistent_count == 1 and d.match_id == 10 and "1/2" in d.reason
    assert d.outcome is MatchOutcome.WAITING_FOR_CONSISTENCY
    d = step(_result((11, 40, 0.9)))
    assert d.accepted and d.consistent_count == 2 and d.match_stamp_ns == 11 * S and d.query_id == 101
    assert d.outcome is MatchOutcome.ACCEPTED
    assert d.lio_sam_data() == (101.0, 11.0)
    assert step(_result((13, 40, 0.9))).accepted  # within max_match_gap of 11
    d = step(_result((40, 60, 0.9)))  # jumped elsewhere: run restarts
    assert not d.accepted and d.consistent_count == 1
    d = step(_result((41, 29, 0.9)))  # score too low: run ends
    assert not d.accepted and d.consistent_count == 0 and "min_rerank_score 30" in d.reason
    assert d.outcome is MatchOutcome.BELOW_RERANK_SCORE
    assert not step(_result((42, 31, 0.9))).accepted
    assert step(_result((43, 31, 0.9))).accepted
    d = step(None)
    assert not d.accepted and "no eligible" in d.reason and d.match_id is None
    assert d.outcome is MatchOutcome.EXCLUDED_RECENT
    assert step(_result()).outcome is MatchOutcome.NO_CANDIDATES
    assert not step(_result((44, 31, 0.9))).accepted  # the run was ended by the keyframe without candidates


def test_localize_decision_and_global_only_scores():
    assert decide_localize(_result((4, 31, 0.5)), 30.0).accepted
    d = decide_localize(_result((4, 29, 0.5)), 30.0)
    assert not d.accepted and d.match_id == 4 and "29 < min_rerank_score 30" in d.reason
    assert not decide_localize(_result(), 30.0).accepted
    assert d.outcome is MatchOutcome.BELOW_RERANK_SCORE
    assert decide_localize(_result((4, 31, 0.5)), 30.0).outcome is MatchOutcome.ACCEPTED
    assert decide_localize(_result(), 30.0).outcome is MatchOutcome.NO_CANDIDATES
    assert decide_localize(None, 30.0).outcome is MatchOutcome.EMPTY_MAP
    assert decide_localize(_result((4, -1, 0.3)), 30.0, 0.4).outcome is MatchOutcome.BELOW_GLOBAL_SIMILARITY
    assert decide_localize(_result((4, -1, 0.5)), 30.0, min_global_similarity=0.4).accepted  # not re-ranked
    assert not decide_localize(_result((4, -1, 0.3)), 30.0, min_global_similarity=0.4).accepted


def test_pose_sigmas_from_the_covariance_model(tmp_path):
    from fol_vpr_ros.node.pose_covariance import DEFAULT_COVARIANCE, PoseCovarianceModel, save_covariance_model

    p = params()
    assert pose_sigmas(400, p) == pytest.approx(DEFAULT_COVARIANCE.sigmas(400))
    weak, strong = pose_sigmas(10, p)[0], pose_sigmas(400, p)[0]
    assert weak > 500.0 and strong < weak / 5  # a weak match is not published at metre level any more
    assert pose_sigmas(-1, p)[0] == pytest.approx(DEFAULT_COVARIANCE.sigma_false_m)  # not re-ranked
    sharp = PoseCovarianceModel(a=-50, b=20, sigma_true_m=0.1, sigma_false_m=900, orientation_sigma_true_rad=0.01,
                                true_radius_m=25)
    assert pose_sigmas(10**6, p, sharp)[0] == pytest.approx(0.5)  # floored at pose.sigma_min_m
    path = save_covariance_model(sharp, tmp_path / "cov.yaml")
    from fol_vpr_ros.node.pose import covariance_model

    assert covariance_model(params(**{"pose.covariance_file": str(path)})) == sharp
    with pytest.raises(ConfigError, match=r"pose.covariance_file .*nope.yaml: cannot be read"):
        covariance_model(params(**{"pose.covariance_file": str(tmp_path / "nope.yaml")}))


# ---------------------------------------------------------------------------- NodeCore: localize
def test_localize_mode_outputs(describer, garden_map, garden):
    core = NodeCore(params(map_path=str(garden_map)), describer)
    outs = [core.process_now(rgb8(garden("query", i), (100 + i) * S, frame_id="cam" if i else ""))
            for i in range(3)]
    vmap = VprMap.open(garden_map)
    for i, out in enumerate(outs):
        assert out.stamp_ns == (100 + i) * S and out.is_keyframe and out.error_kind is None
        assert out.frame_id == ("cam" if i else "camera")
        assert [c.rank for c in out.candidates] == [0, 1, 2]
        scores = [c.rerank_score for c in out.candidates]
        assert scores[0] >= scores[1] >= 0 and scores[2] == -1  # rerank_k = 2 of top_k = 3
        for c in out.candidates:
            kf = vmap.keyframe(c.keyframe_id)
            assert (c.stamp_ns, c.pose, c.session_id) == (kf.stamp_ns, kf.pose, "mapping")
        lat = out.latency
        assert lat.describe > 0 and lat.search > 0 and lat.rerank > 0 and lat.total >= lat.describe
    assert outs[0].markers.map_points is not None and len(outs[0].markers.map_points) == 10
    assert outs[1].markers.map_points is None  # sent again only after markers.map_period_sec

    exact = core.process_now(rgb8(garden("ref", 4), 110 * S))  # a mapped image: its own keyframe wins
    best = exact.candidates[0]
    assert exact.match == best and best.pose.position == (8.0, 0.0, 0.0)
    assert exact.decision.accepted and "accepted" in exact.reason
    pose = exact.pose
    sp, sr = pose_sigmas(best.rerank_score, core.params, core.covariance)
    assert pose.stamp_ns == 110 * S and pose.frame_id == best.pose.frame_id == "map"  # the keyframe pose's frame
    assert pose.position == (8.0, 0.0, 0.0)
    assert pose.covariance[0] == pytest.approx(sp**2) and pose.covariance[35] == pytest.approx(sr**2)
    assert exact.markers.match_point == (8.0, 0.0, 0.0)

    skipped = core.process_now(rgb8(garden("ref", 4), 110 * S + S // 10))  # 0.1 s later: gated out
    assert not skipped.is_keyframe and not skipped.candidates and "gate" in skipped.reason
    assert skipped.status is FrameStatus.SKIPPED and skipped.skip_reason is SkipReason.MIN_INTERVAL
    assert exact.status is FrameStatus.PROCESSED and exact.outcome is MatchOutcome.ACCEPTED
    diag = core.diagnostics()
    assert (diag.frames_received, diag.frames_processed, diag.frames_skipped, diag.frames_failed) == (5, 4, 1, 0)
    assert diag.warnings == {"empty_frame_id": 1} and diag.map_size == 10 and diag.mode == "localize"
    assert diag.localized and diag.last_accepted_stamp_ns == 110 * S and diag.accepted >= 1
    assert diag.latency_ms["describe"].count == 4 and diag.latency_ms["total"].p95 >= diag.latency_ms["total"].mean
    assert diag.rate_hz > 0 and dict(diag.key_values())["frames_processed"] == "4"
    assert sum(diag.outcomes.values()) == 4 and diag.outcomes[MatchOutcome.ACCEPTED] == diag.accepted
    assert diag.skipped_by == {SkipReason.MIN_INTERVAL: 1} and diag.dropped_by == {}
    with pytest.raises(ConfigError, match="loop_closure"):
        core.save_map(REPO / "never")


def test_core_construction_errors(describer, garden_map):
    with pytest.raises(ConfigError, match="weights"):
        NodeCore(params(map_path=str(garden_map)))
    with pytest.raises(ConfigError, match="map_path"):
        NodeCore(params(), describer)
    other = Describer(LoadedModel(describer.model, "random:4", "synthetic:4:vits14:1", True))
    with pytest.raises(MapError, match="incompatible"):
        NodeCore(params(map_path=str(garden_map)), other)


def test_faults_are_counted_per_kind_and_logged_once(describer, garden_map, garden, shared_data, caplog):
    caplog.set_level(logging.WARNING, logger="fol_vpr_ros.node")
    good = garden("query", 0)
    h, w = good.shape[:2]
    jpeg = (shared_data / "gardenspoint_sample10_vpr_tutorial" / "query" / "1.jpg").read_bytes()
    faults = [
        CompressedPayload(1 * S, "cam", "jpeg", jpeg[: len(jpeg) // 3]),  # truncated JPEG
        ImagePayload(2 * S, "cam", "rgb8", h, w, w * 3 - 1, False, good.tobytes()),  # wrong step
        ImagePayload(3 * S, "cam", "no_such_encoding", h, w, w * 2, False, b"\0" * (h * w * 2)),
        ImagePayload(4 * S, "cam", "rgb8", 0, w, w * 3, False, b""),
        CompressedPayload(5 * S, "cam", "jpeg", b"\xff\xd8\xff\xe0 not really a jpeg"),
    ]
    outputs = []
    core = NodeCore(params(map_path=str(garden_map)), describer, on_output=outputs.append)
    core.start()
    try:
        for payload in faults:
            core.submit_image(payload)
            assert core.wait_idle(30)
        assert outputs == []
        core.submit_image(rgb8(good, 6 * S))
        assert core.wait_idle(60)
        core.submit_image(CompressedPayload(7 * S, "cam", "jpeg", jpeg))  # a good compressed frame too
        assert core.wait_idle(60)
    finally:
        assert core.stop(30)
    assert [o.stamp_ns for o in outputs] == [6 * S, 7 * S] and all(o.candidates for o in outputs)
    diag = core.diagnostics()
    assert diag.errors == {"corrupt_compressed": 2, "bad_step": 1, "unknown_encoding": 1, "zero_size": 1}
    assert (diag.frames_failed, diag.frames_processed, diag.frames_received) == (5, 2, 7)
    assert diag.level == "warn" and "5 of 7 frames" in diag.message and "bad_step 1" in diag.message
    logged = [r.getMessage() for r in caplog.records if r.name == "fol_vpr_ros.node"]
    for kind in ("corrupt_compressed", "bad_step", "unknown_encoding", "zero_size"):
        assert sum(m.startswith(kind) for m in logged) == 1, (kind, logged)
    direct = core.process_now(faults[1])  # process_now reports the error instead of raising
    assert direct.error_kind == "bad_step" and not direct.is_keyframe and direct.stamp_ns == 2 * S
    assert direct.status is FrameStatus.FAILED and direct.outcome is None
    only_bad = NodeCore(params(map_path=str(garden_map)), describer)
    for payload in faults[:2]:
        only_bad.process_now(payload)
    bad = only_bad.diagnostics()
    assert bad.level == "error" and "every frame" in bad.message



def test_latest_frame_slot_drops_old_frames(describer, garden_map, garden, monkeypatch):
    image = garden("query", 2)
    describer.describe_arrays([image])  # warm the memo
    started, release = threading.Event(), threading.Event()
    real = describer.describe_arrays

    def slow(images, order="rgb", names=None):  # the first frame is held until the burst is over
        if not started.is_set():
            started.set()
            release.wait(30)
        time.sleep(0.05)
        return real(images, order, names)

    outputs = []
    core = NodeCore(params(map_path=str(garden_map), rerank_k=0, top_k=1), describer, on_output=outputs.append)
    core.start()  # warms up with the real describer; the frames below meet the slow one
    monkeypatch.setattr(describer, "describe_arrays", slow)
    try:
        core.submit_image(rgb8(image, 0))
        assert started.wait(30)
        for i in range(1, 21):
            core.submit_image(rgb8(image, i * S))
            assert core.pending <= 1
        assert outputs == [] and not release.is_set()  # the worker is still held: submitting never waited for it
        assert core.pending == 1 and core.diagnostics().frames_dropped == 19
        release.set()
        assert core.wait_idle(30)
    finally:
        assert core.stop(30)
    assert [o.stamp_ns for o in outputs] == [0, 20 * S]  # the newest frame of the burst was processed
    assert [o.query_id for o in outputs] == [0, 1]
    diag = core.diagnostics()
    assert (diag.frames_received, diag.frames_dropped, diag.frames_processed, diag.pending) == (21, 19, 2, 0)
    core.submit_image(rgb8(image, 30 * S))  # pending when stopped: counted as dropped
    assert core.stop(1) and core.diagnostics().frames_dropped == 20
    assert core.diagnostics().dropped_by == {DropReason.REPLACED: 19, DropReason.STOPPED: 1}


# ---------------------------------------------------------------------------- NodeCore: loop closure
def test_loop_closure_on_revisit_and_map_round_trip(describer, corridor, tmp_path):
    first = list(range(8))
    revisit = [0, 1, 2]
    counts = [describer.describe_arrays([corridor(i)])[0].local_count for i in first]
    threshold = float(int(0.8 * min(counts)))  # identical images score ~local_count; other places far less
    p = params(mode="loop_closure", min_rerank_score=threshold, exclusion__min_time_sec=4.0,
               exclusion__min_keyframes=3, loop_closure__consistent_hits=2, loop_closure__session_id="run1",
               loop_closure__output_map_path=str(tmp_path / "online"))
    core = NodeCore(p, describer)
    base = 1000 * S
    outs = []
    for t, i in enumerate(first + revisit):
        stamp = base + t * S
        core.submit_odometry(OdomPose(stamp, (float(t), 0.0, 0.0)))
        outs.append(core.process_now(rgb8(corridor(i), stamp)))
    assert all(o.is_keyframe and o.error_kind is None for o in outs)
    assert [o.keyframe_id for o in outs] == list(range(11))
    assert all(o.loop_closure is None for o in outs[:9])
    assert not outs[8].decision.accepted and outs[8].decision.match_id == 0 and outs[8].decision.consistent_count == 1
    for o in outs[4:]:  # candidates respect the exclusion window (4 s of stamps, last 3 keyframes)
        assert all(c.stamp_ns <= o.stamp_ns - 4 * S and c.keyframe_id < o.keyframe_id - 3 for c in o.candidates)
    assert not outs[0].candidates and "no eligible" in outs[0].reason
    assert outs[0].outcome is MatchOutcome.EXCLUDED_RECENT
    assert outs[8].outcome is MatchOutcome.WAITING_FOR_CONSISTENCY
    assert outs[9].outcome is outs[10].outcome is MatchOutcome.ACCEPTED
    for o, match in ((outs[9], 1), (outs[10], 2)):
        lc = o.loop_closure
        assert lc is not None and lc.match_id == match and lc.query_id == o.keyframe_id
        assert lc.query_stamp_ns == o.stamp_ns and lc.match_stamp_ns == base + match * S
        assert lc.lio_sam_data() == (o.stamp_ns / S, (base + match * S) / S)
        assert lc.query_pose.position == (float(o.keyframe_id), 0.0, 0.0)
        assert lc.match_pose.position == (float(match), 0.0, 0.0) and lc.consistent_count >= 2
        assert o.markers.match_line == (lc.query_pose.position, lc.match_pose.position)
        assert o.markers.frame_id == "odom" and o.pose is None
    diag = core.diagnostics()
    assert (diag.loop_closures, diag.map_size, diag.mode) == (2, 11, "loop_closure")

    saved = core.save_map()
    assert saved == tmp_path / "online"
    vmap = VprMap.open(saved)
    assert len(vmap) == 11 and [k.stamp_ns for k in vmap.keyframes()] == [base + t * S for t in range(11)]
    assert {k.session_id for k in vmap.keyframes()} == {"run1"} and vmap.keyframe(9).pose.position == (9.0, 0, 0)

    # a second run extends the saved map and saves it again on shutdown
    p2 = p.updated({"map_path": str(saved), "loop_closure.session_id": "run2",
                    "loop_closure.output_map_path": str(tmp_path / "online2")})
    with NodeCore(p2, describer) as core2:
        assert len(core2.map) == 11
        out = core2.process_now(rgb8(corridor(5), 5 * S))  # stamps restart: other sessions stay eligible
        assert out.keyframe_id == 11 and out.candidates and out.decision.match_id == 5
    reopened = VprMap.open(tmp_path / "online2")
    assert len(reopened) == 12 and reopened.keyframe(11).session_id == "run2"


# ---------------------------------------------------------------------------- NodeCore: latency budget
def test_latency_budget_adapts_rerank_k_and_reports_misses(describer, garden_map, garden):
    # a budget no frame can meet: after the first frame only min_rerank_k candidates are re-ranked
    tight = NodeCore(params(map_path=str(garden_map), top_k=5, rerank_k=4, min_rerank_k=2,
                            latency_budget_ms=1e-3), describer)
    assert tight.rerank_k == 4 and tight.budget is not None
    outs = [tight.process_now(rgb8(garden("query", i), (100 + i) * S)) for i in range(3)]
    reranked = [sum(c.rerank_score >= 0 for c in o.candidates) for o in outs]
    assert reranked == [4, 2, 2] and tight.rerank_k == 2
    diag = tight.diagnostics()
    assert (diag.rerank_k, diag.budget_misses, diag.latency_budget_ms) == (2, 3, 1e-3)
    kv = dict(diag.key_values())
    assert (kv["rerank_k"], kv["budget_misses"], kv["latency_budget_ms"]) == ("2", "3", "0.001")
    st = tight.budget_state()
    assert st.frames == 3 and st.fixed_ms > 0 and st.per_candidate_ms > 0
    # the controller saw the node's own stage timings: fixed = total - rerank of the last frames
    last = outs[-1].latency
    assert last.total - last.rerank > 0 and last.rerank > 0

    # a budget every frame meets: rerank_k stays as configured, no misses
    loose = NodeCore(params(map_path=str(garden_map), top_k=5, rerank_k=4, latency_budget_ms=1e7), describer)
    outs = [loose.process_now(rgb8(garden("query", i), (100 + i) * S)) for i in range(3)]
    assert [sum(c.rerank_score >= 0 for c in o.candidates) for o in outs] == [4, 4, 4]
    diag = loose.diagnostics()
    assert (diag.rerank_k, diag.budget_misses) == (4, 0)

    # no budget: no controller, the diagnostics show the configured rerank_k and no budget keys
    off = NodeCore(params(map_path=str(garden_map), top_k=5, rerank_k=4, latency_budget_ms=0.0), describer)
    kv = dict(off.diagnostics().key_values())
    assert off.budget is None and kv["rerank_k"] == "4" and "budget_misses" not in kv


@pytest.mark.parametrize("mode", ["localize", "loop_closure"])
def test_start_warms_the_pipeline_up_without_counting_or_mapping(describer, garden_map, mode, caplog):
    caplog.set_level(logging.INFO, logger="fol_vpr_ros.node")
    extra = {"map_path": str(garden_map)} if mode == "localize" else {"mode": "loop_closure"}
    core = NodeCore(params(**extra), describer)
    before = len(core.map)
    core.start()
    assert core.stop(30)
    core.start()  # once per core: a restart does not warm up again
    assert core.stop(30)
    d = core.diagnostics()
    assert (d.frames_received, d.frames_processed, d.frames_failed, len(core.map)) == (0, 0, 0, before)
    assert sum(r.getMessage().startswith("pipeline warmed up in ") for r in caplog.records) == 1
