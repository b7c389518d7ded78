"""ROS messages built from node-core outputs (fol_vpr_ros.ros.messages): contents, stamps, frames, wire bytes.

Outputs are built by hand (no model): every builder's message must serialize with rosbags (valid ROS 2 CDR),
carry the query image stamp and non-empty frame ids, and give the same bytes through the Cyclone DDS types.
"""

from __future__ import annotations

import array
import dataclasses
import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags")

from rosbags.interfaces import Nodetype

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.mapping import Pose
from fol_vpr_ros.node import (
    CandidateInfo,
    DiagnosticsSnapshot,
    FrameOutput,
    LatencyStats,
    LocalizeDecision,
    LoopDecision,
    MarkerData,
    MatchOutcome,
    NodeParams,
    PoseEstimate,
    StageLatency,
    decode,
)
from fol_vpr_ros.ros import interfaces as ifc
from fol_vpr_ros.ros import messages as m

S = 1_000_000_000
STAMP = 1_700_000_123 * S + 456_789_012
PARAMS = NodeParams()


# ---------------------------------------------------------------------------- hand-made core outputs
def _cand(kid: int, rank: int, score: int, sim: float, pose: bool = True) -> CandidateInfo:
    p = Pose((float(kid), -1.0, 0.5), (0.0, 0.0, 0.6, 0.8), "map") if pose else None
    return CandidateInfo(kid, rank, rank, sim, score, 10 * S + kid, "mapping" if pose else None, "camera", p)


def localize_output(accepted: bool = True, with_points: bool = True) -> FrameOutput:
    cands = (_cand(7, 0, 80, 0.9), _cand(3, 1, 80, 0.8), _cand(9, 2, 12, 0.95, pose=False), _cand(4, 3, -1, 0.7))
    match = cands[0] if accepted else None
    reason = ("accepted: candidate 7: rerank score 80" if accepted
              else "best candidate 7: rerank score 80 < min_rerank_score 100")
    decision = LocalizeDecision(accepted, 7, 80, 0.9, reason,
                                MatchOutcome.ACCEPTED if accepted else MatchOutcome.BELOW_RERANK_SCORE)
    cov = tuple(float(v) for v in np.diag([4.0, 4.0, 4.0, 0.25, 0.25, 0.25]).reshape(-1))
    pose = PoseEstimate(STAMP, "map", (7.0, -1.0, 0.5), (0.0, 0.0, 0.6, 0.8), cov, 2.0, 0.5, 7) if accepted else None
    markers = MarkerData("map", ((0.0, 0.0, 0.0), (1.0, 2.0, 3.0)) if with_points else None,
                         (7.0, -1.0, 0.5) if accepted else None, None)
    return FrameOutput(42, STAMP, "cam_front", "localize", True, None, cands, match, reason, decision, pose, None,
                       StageLatency(1.5, 20.0, 0.25, 5.0, 27.0), markers, 10)


def loop_output(accepted: bool = True) -> FrameOutput:
    qpose, mpose = Pose((9.0, 0.0, 0.0), frame_id="odom"), Pose((1.0, 0.0, 0.0), frame_id="odom")
    decision = LoopDecision(accepted, 9, STAMP, 1, 2 * S + 5, 120, 0.97, 2 if accepted else 1,
                            "accepted: ..." if accepted else "waiting for consistency: ...", qpose, mpose,
                            MatchOutcome.ACCEPTED if accepted else MatchOutcome.WAITING_FOR_CONSISTENCY)
    cands = (_cand(1, 0, 120, 0.97), _cand(2, 1, 60, 0.9))
    markers = MarkerData("odom", None, (1.0, 0.0, 0.0), ((9.0, 0.0, 0.0), (1.0, 0.0, 0.0)))
    return FrameOutput(11, STAMP, "cam", "loop_closure", True, 9, cands, cands[0] if accepted else None,
                       decision.reason, decision, None, None, StageLatency(total=3.0), markers, 10)


def snapshot(level: str = "warn") -> DiagnosticsSnapshot:
    lat = {"describe": LatencyStats(20.0, 25.0, 30.0, 5), "total": LatencyStats(30.0, 40.0, 50.0, 5)}
    return DiagnosticsSnapshot("localize", 4.5, 20, 10, 6, 2, 2, 0, {"bad_step": 1, "zero_size": 1},
                               {"empty_frame_id": 1}, lat, 10, False, STAMP, None, 0, 0, True, level, "not localized")


def built_messages() -> list[tuple[str, Any]]:
    """(type, message) for every builder."""
    out = localize_output()
    return [
        (m.RESULT_TYPE, m.result_msg(out, PARAMS)),
        (m.RESULT_TYPE, m.result_msg(loop_output(False), PARAMS)),
        (m.LOOP_TYPE, m.loop_closure_msg(loop_output(), "map")),
        (m.POSE_TYPE, m.pose_msg(out)),
        (m.MARKERS_TYPE, m.markers_msg(out)),
        (m.MARKERS_TYPE, m.markers_msg(loop_output())),
        (m.DIAGNOSTICS_TYPE, m.diagnostics_msg(snapshot(), STAMP, "/fol_vpr")),
        (m.LIO_SAM_TYPE, m.lio_sam_msg(loop_output().loop_closure)),
    ]


# ---------------------------------------------------------------------------- builders
def test_result_msg_contents():
    msg = m.result_msg(localize_output(), PARAMS)
    assert ifc.time_to_ns(msg.header.stamp) == STAMP and msg.header.frame_id == "map"
    assert msg.query_id == 42 and msg.camera_frame_id == "cam_front"
    assert [c.keyframe_id for c in msg.candidates] == [7, 3, 9, 4] and [c.rank for c in msg.candidates] == [0, 1, 2, 3]
    scores = [c.rerank_score for c in msg.candidates]
    assert scores == [80, 80, 12, -1]  # best first: ties (80, 80) by global similarity
    assert msg.candidates[0].global_similarity >= msg.candidates[1].global_similarity
    first, no_pose = msg.candidates[0], msg.candidates[2]
    assert first.has_pose and first.pose_frame_id == "map" and first.pose.position.x == 7.0
    assert first.pose.orientation.z == pytest.approx(0.6) and first.session_id == "mapping"
    assert ifc.time_to_ns(first.stamp) == 10 * S + 7
    assert not no_pose.has_pose and no_pose.pose_frame_id == "" and no_pose.session_id == ""
    assert msg.accepted and msg.accepted_index == 0 and msg.status == "ok"
    assert (msg.decode_ms, msg.describe_ms, msg.search_ms, msg.rerank_ms, msg.total_ms) == (1.5, 20.0, 0.25, 5.0, 27.0)
    assert msg.candidates[3].rerank_score == ifc.msg_class(m.CANDIDATE_TYPE).NOT_RERANKED

    rejected = m.result_msg(localize_output(accepted=False), PARAMS.updated({"frames.map": "world"}))
    assert not rejected.accepted and rejected.accepted_index == -1 and rejected.header.frame_id == "world"
    assert rejected.status.startswith("below_threshold: ") and "min_rerank_score" in rejected.status
    loop = m.result_msg(loop_output(), PARAMS)
    assert loop.query_id == 9  # the keyframe id in loop-closure mode


@pytest.mark.parametrize("outcome, reason, map_size, code", [
    (MatchOutcome.EMPTY_MAP, "no candidates", 0, "empty_map"),
    (MatchOutcome.NO_CANDIDATES, "no candidates", 5, "no_candidates"),
    (MatchOutcome.EXCLUDED_RECENT, "no eligible candidates (exclusion window)", 5, "excluded_recent"),
    (MatchOutcome.BELOW_GLOBAL_SIMILARITY, "best candidate 3: global similarity 0.1 < min_global_similarity 0.5",
     5, "below_threshold"),
    (MatchOutcome.BELOW_RERANK_SCORE, "best candidate 3: rerank score 9 < min_rerank_score 30", 5,
     "below_threshold"),
    (MatchOutcome.WAITING_FOR_CONSISTENCY, "waiting for consistency: candidate 3; 1/2 consistent hit(s)", 5,
     "waiting_for_consistency"),
    (MatchOutcome.REJECTED, "something else", 5, "rejected"),
    (None, "something else", 5, "rejected"),  # a decision built without an outcome
])
def test_result_status_codes(outcome, reason, map_size, code):
    """The status code comes from the decision's MatchOutcome, never from the words of its reason."""
    base = localize_output(accepted=False)
    decision = dataclasses.replace(base.decision, reason=reason, outcome=outcome)
    out = dataclasses.replace(base, reason=reason, map_size=map_size, decision=decision)
    assert m.result_status(out) == f"{code}: {reason}"
    misleading = dataclasses.replace(out, reason="no eligible candidates < min_ waiting for consistency")
    assert m.result_status(misleading).partition(":")[0] == code


def test_every_rejection_has_a_status_code():
    rejected = [o for o in MatchOutcome if o is not MatchOutcome.ACCEPTED]
    codes = {o: m.result_status(dataclasses.replace(
        localize_output(accepted=False), decision=dataclasses.replace(localize_output(False).decision, outcome=o),
        reason="")) for o in rejected}
    assert set(codes.values()) <= {"empty_map", "no_candidates", "excluded_recent", "below_threshold",
                                   "waiting_for_consistency", "failed_verification", "rejected"}
    assert [o for o, c in codes.items() if c == "rejected"] == [MatchOutcome.REJECTED]
    with pytest.raises(ValueError, match="contradicts"):
        LocalizeDecision(True, 7, 80, 0.9, "accepted", MatchOutcome.BELOW_RERANK_SCORE)


def test_loop_closure_msg():
    cls = ifc.msg_class(m.LOOP_TYPE)
    msg = m.loop_closure_msg(loop_output(), "map")
    assert ifc.time_to_ns(msg.header.stamp) == STAMP and msg.header.frame_id == "map"
    assert (msg.query_keyframe_id, msg.match_keyframe_id, msg.rerank_score, msg.consistent_hits) == (9, 1, 120, 2)
    assert ifc.time_to_ns(msg.query_stamp) == STAMP and ifc.time_to_ns(msg.match_stamp) == 2 * S + 5
    assert msg.status == cls.ACCEPTED and msg.global_similarity == pytest.approx(0.97)
    assert m.loop_closure_msg(loop_output(False), "map").status == cls.REJECTED
    assert m.loop_closure_msg(localize_output()) is None
    lio = m.lio_sam_msg(loop_output().loop_closure)
    assert lio.data.dtype == np.float64 and lio.data.tolist() == [STAMP / S, (2 * S + 5) / S]
    with pytest.raises(ConfigError):
        m.lio_sam_msg(dataclasses.replace(loop_output().decision, match_stamp_ns=None))


def test_pose_msg():
    msg = m.pose_msg(localize_output())
    assert ifc.time_to_ns(msg.header.stamp) == STAMP and msg.header.frame_id == "map"
    p = msg.pose.pose
    assert (p.position.x, p.position.y, p.position.z) == (7.0, -1.0, 0.5) and p.orientation.w == pytest.approx(0.8)
    cov = msg.pose.covariance.reshape(6, 6)
    assert cov.dtype == np.float64 and np.allclose(np.diag(cov), [4, 4, 4, 0.25, 0.25, 0.25])
    assert m.pose_msg(localize_output(accepted=False)) is None


def test_markers_msg():
    cls = ifc.msg_class("visualization_msgs/msg/Marker")
    msg = m.markers_msg(localize_output())
    by_id = {mk.id: mk for mk in msg.markers}
    for mk in msg.markers:
        assert mk.ns == m.MARKER_NAMESPACE and mk.header.frame_id == "map"
        assert ifc.time_to_ns(mk.header.stamp) == STAMP
        assert mk.pose.orientation.w == 1.0 or mk.id == m.MATCH_MARKER
    points = by_id[m.MAP_MARKER]
    assert points.type == cls.POINTS and points.action == cls.ADD and len(points.points) == 2
    assert points.scale.x > 0 and points.color.a > 0
    match = by_id[m.MATCH_MARKER]
    assert match.type == cls.SPHERE and match.action == cls.ADD and match.pose.position.x == 7.0
    assert by_id[m.LINE_MARKER].action == cls.DELETE and by_id[m.QUERY_MARKER].action == cls.DELETE

    later = m.markers_msg(localize_output(accepted=False, with_points=False))
    assert {mk.id: mk.action for mk in later.markers} == {m.MATCH_MARKER: cls.DELETE, m.LINE_MARKER: cls.DELETE,
                                                          m.QUERY_MARKER: cls.DELETE}
    loop = {mk.id: mk for mk in m.markers_msg(loop_output()).markers}
    line = loop[m.LINE_MARKER]
    assert line.type == cls.LINE_LIST and [(p.x, p.y) for p in line.points] == [(9.0, 0.0), (1.0, 0.0)]
    assert line.header.frame_id == "odom" and loop[m.QUERY_MARKER].pose.position.x == 9.0
    empty_frame = dataclasses.replace(localize_output(), markers=MarkerData("", None, None, None))
    assert all(mk.header.frame_id == "map" for mk in m.markers_msg(empty_frame).markers)
    assert m.markers_msg(dataclasses.replace(localize_output(), markers=None)) is None


def test_diagnostics_msg():
    cls = ifc.msg_class("diagnostic_msgs/msg/DiagnosticStatus")
    msg = m.diagnostics_msg(snapshot(), STAMP, "/robot/fol_vpr", {"adapter_error.x": "3"})
    assert ifc.time_to_ns(msg.header.stamp) == STAMP
    (status,) = msg.status
    assert status.name == m.DIAGNOSTIC_NAME and status.hardware_id == "/robot/fol_vpr"
    assert status.level == cls.WARN and status.message == "not localized"
    kv = {v.key: v.value for v in status.values}
    assert kv["rate_hz"] == "4.50" and kv["frames_dropped"] == "6" and kv["map_size"] == "10"
    assert kv["localized"] == "no" and kv["errors"] == "2" and kv["error.bad_step"] == "1"
    assert kv["error.zero_size"] == "1" and kv["warning.empty_frame_id"] == "1"
    assert kv["latency_ms.describe.mean"] == "20.00" and kv["latency_ms.total.p95"] == "40.00"
    assert kv["adapter_error.x"] == "3" and kv["last_stamp_sec"].startswith("1700000123.456")
    levels = {lv: m.diagnostics_msg(snapshot(lv), 0, "n").status[0].level for lv in ("ok", "warn", "error")}
    assert levels == {"ok": cls.OK, "warn": cls.WARN, "error": cls.ERROR}


# ---------------------------------------------------------------------------- validity and wire bytes
@pytest.mark.parametrize("index", range(len(built_messages())))
def test_built_messages_are_valid_ros2_cdr(index):
    typename, msg = built_messages()[index]
    raw = ifc.serialize(msg, typename)
    assert raw[:4] == b"\x00\x01\x00\x00"
    back = ifc.deserialize(raw, typename)
    assert ifc.serialize(back, typename) == raw
    headers = [msg.header] if hasattr(msg, "header") else []
    headers += [mk.header for mk in getattr(msg, "markers", [])]
    for header in headers:  # stamps are the query stamp; frame ids never empty (diagnostics have none)
        assert ifc.time_to_ns(header.stamp) == STAMP
        assert header.frame_id or typename == m.DIAGNOSTICS_TYPE


# ---------------------------------------------------------------------------- inputs
def test_image_payloads_from_rosbags_and_rclpy_like_messages():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    padded = np.zeros((6, 20), np.uint8)
    padded[:, :15] = rgb[:, :, ::-1].reshape(6, 15)  # bgr8 with 5 bytes of row padding
    msg = ifc.make_message("sensor_msgs/msg/Image", header=ifc.make_header(STAMP, "cam"), height=6, width=5,
                           encoding="bgr8", step=20, data=padded.reshape(-1))
    payload = m.image_payload(msg)
    assert (payload.stamp_ns, payload.frame_id, payload.encoding, payload.step) == (STAMP, "cam", "bgr8", 20)
    assert np.array_equal(decode(payload), rgb)
    like_rclpy = SimpleNamespace(  # rclpy: data is array.array('B'), is_bigendian an int
        header=SimpleNamespace(stamp=SimpleNamespace(sec=3, nanosec=7), frame_id="c"), height=6, width=5,
        encoding="rgb8", step=15, is_bigendian=0, data=array.array("B", rgb.tobytes()))
    p2 = m.image_payload(like_rclpy)
    assert p2.stamp_ns == 3 * S + 7 and not p2.is_bigendian and np.array_equal(decode(p2), rgb)

    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    cmsg = ifc.make_message("sensor_msgs/msg/CompressedImage", header=ifc.make_header(5, "cam"), format="png",
                            data=np.frombuffer(buf.getvalue(), np.uint8))
    cp = m.compressed_payload(cmsg)
    assert (cp.stamp_ns, cp.frame_id, cp.format) == (5, "cam", "png") and np.array_equal(decode(cp), rgb)


def test_odom_pose():
    msg = ifc.make_message("nav_msgs/msg/Odometry", header=ifc.make_header(STAMP, "odom"), child_frame_id="base")
    msg.pose.pose.position.x, msg.pose.pose.orientation.z, msg.pose.pose.orientation.w = 2.0, 1.0, 1.0
    pose = m.odom_pose(msg)
    assert pose.stamp_ns == STAMP and pose.frame_id == "odom" and pose.position == (2.0, 0.0, 0.0)
    assert pose.orientation == pytest.approx((0.0, 0.0, math.sqrt(0.5), math.sqrt(0.5)))
    msg.header.frame_id = ""
    assert m.odom_pose(msg).frame_id == "odom"
    msg.pose.pose.orientation.z = msg.pose.pose.orientation.w = 0.0
    with pytest.raises(ConfigError, match="zero norm"):
        m.odom_pose(msg)


def test_image_topic_name():
    assert m.image_topic_name(PARAMS) == "image"
    assert m.image_topic_name(PARAMS.updated({"image_transport": "compressed"})) == "image/compressed"
    cam = PARAMS.updated({"image_transport": "compressed", "image_topic": "/cam/image_raw/compressed"})
    assert m.image_topic_name(cam) == "/cam/image_raw/compressed"


# ---------------------------------------------------------------------------- rosbags -> rosidl converter
_TYPECODES = {"float64": "d", "float32": "f", "int8": "b", "uint8": "B", "char": "B", "int16": "h", "uint16": "H",
              "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q"}
_FAKES: dict[str, type] = {}


def fake_rosidl(typename: str) -> type:
    """A stand-in for a rosidl-generated Python class, with the setter checks rclpy makes."""
    if typename in _FAKES:
        return _FAKES[typename]
    fields = ifc.typestore().fielddefs[typename][1]

    def default(desc):
        kind, detail = desc
        if kind == Nodetype.BASE:
            base = detail[0]
            return {"string": "", "bool": False, "byte": b"\x00"}.get(base, 0.0 if "float" in base else 0)
        if kind == Nodetype.NAME:
            return fake_rosidl(detail)()
        (inner_kind, inner), length = detail
        if inner_kind != Nodetype.BASE or inner[0] in ("string", "bool", "byte"):
            return []
        if kind == Nodetype.ARRAY:
            return np.zeros(length, dtype=inner[0].replace("char", "uint8"))
        return array.array(_TYPECODES[inner[0]])

    def __init__(self):
        for name, desc in fields:
            object.__setattr__(self, name, default(desc))

    def __setattr__(self, name, value):
        old = getattr(self, name)
        if isinstance(old, np.ndarray):
            assert isinstance(value, np.ndarray) and value.dtype == old.dtype and value.shape == old.shape, name
        elif isinstance(old, array.array):
            assert isinstance(value, array.array) and value.typecode == old.typecode, name
        elif isinstance(old, bytes):
            assert isinstance(value, bytes) and len(value) == 1, name
        elif hasattr(old, "get_fields_and_field_types"):
            assert type(value) is type(old), name
        elif isinstance(old, list):
            assert isinstance(value, list), name
        else:
            assert type(value) is type(old), (name, value, old)
        object.__setattr__(self, name, value)

    cls = type(typename.rsplit("/", 1)[1], (), {
        "__init__": __init__, "__setattr__": __setattr__, "__msgtype__": typename,
        "get_fields_and_field_types": classmethod(lambda c: {n: "?" for n, _ in fields})})
    _FAKES[typename] = cls
    return cls


def _as_plain(msg: Any) -> Any:
    if hasattr(msg, "__dataclass_fields__") or hasattr(msg, "get_fields_and_field_types"):
        names = [n for n, _ in ifc.typestore().fielddefs[msg.__msgtype__][1]]
        return {n: _as_plain(getattr(msg, n)) for n in names}
    if isinstance(msg, (list, tuple)):
        return [_as_plain(v) for v in msg]
    if isinstance(msg, (np.ndarray, array.array)):
        return [float(v) for v in msg]
    if isinstance(msg, bytes):
        return msg[0]
    return msg


@pytest.mark.parametrize("index", range(len(built_messages())))
def test_to_rosidl_copies_every_field(index):
    typename, msg = built_messages()[index]
    converted = m.to_rosidl(msg, resolve=fake_rosidl)
    assert type(converted) is fake_rosidl(typename)
    assert _as_plain(converted) == _as_plain(msg)
