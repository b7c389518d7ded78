"""Message definitions (msg/) and the rosbags typestore: parsing, construction, CDR round trips (no ROS needed).

Byte equality with what rclpy puts on the wire is checked in test_rclpy_wire.py (needs ROS).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rosbags.typesys import get_types_from_msg

from fol_vpr_ros.ros import interfaces as ifc

ROOT = Path(__file__).resolve().parents[1]
RNG_SEED = 7


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def assert_msg_equal(a: Any, b: Any, path: str = "msg") -> None:
    """Deep equality of rosbags messages (numpy arrays compared by dtype and values)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray), f"{path}: {type(a)} vs {type(b)}"
        assert a.dtype == b.dtype, f"{path}: dtype {a.dtype} vs {b.dtype}"
        assert np.array_equal(a, b), f"{path}: arrays differ"
    elif dataclasses.is_dataclass(a):
        assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
        for field in dataclasses.fields(a):
            assert_msg_equal(getattr(a, field.name), getattr(b, field.name), f"{path}.{field.name}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_msg_equal(x, y, f"{path}[{i}]")
    else:
        assert type(a) is type(b) and a == b, f"{path}: {a!r} ({type(a).__name__}) vs {b!r} ({type(b).__name__})"


M = ifc.make_message


def _pose(x: float) -> Any:
    return M(
        "geometry_msgs/msg/Pose",
        position=M("geometry_msgs/msg/Point", x=x, y=-2.5, z=0.125),
        orientation=M("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=0.5, w=0.75),
    )


def _image(height: int, width: int, seed: int = RNG_SEED) -> Any:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return M(
        "sensor_msgs/msg/Image",
        header=ifc.make_header(1_700_000_000_123_456_789, "camera_optical"),
        height=height,
        width=width,
        encoding="rgb8",
        is_bigendian=0,
        step=width * 3,
        data=pixels.reshape(-1),
    )


def _candidate(rank: int) -> Any:
    return M(
        "fol_vpr_ros/msg/PlaceCandidate",
        keyframe_id=1000 + rank,
        stamp=ifc.make_time(1_600_000_000_000_000_000 + rank),
        session_id=f"session-{rank}",
        rank=rank,
        global_similarity=0.75 - rank / 8,
        rerank_score=-1 if rank == 2 else 40 - rank,
        has_pose=rank != 1,
        pose=_pose(float(rank)),
        pose_frame_id="map" if rank != 1 else "",
    )


def _marker(marker_id: int) -> Any:
    return M(
        "visualization_msgs/msg/Marker",
        header=ifc.make_header(5_000_000_001, "map"),
        ns="fol_vpr/keyframes",
        id=marker_id,
        type=8,
        action=0,
        pose=_pose(1.5),
        scale=M("geometry_msgs/msg/Vector3", x=0.25, y=0.25, z=0.25),
        color=M("std_msgs/msg/ColorRGBA", r=1.0, g=0.5, b=0.0, a=1.0),
        lifetime=M("builtin_interfaces/msg/Duration", sec=2, nanosec=500_000_000),
        frame_locked=True,
        points=[M("geometry_msgs/msg/Point", x=float(i), y=-float(i), z=0.5) for i in range(4)],
        colors=[M("std_msgs/msg/ColorRGBA", r=0.25 * i, g=0.5, b=0.75, a=1.0) for i in range(4)],
        texture_resource="embedded://texture",
        texture=M("sensor_msgs/msg/CompressedImage", format="png", data=np.arange(7, dtype=np.uint8)),
        uv_coordinates=[M("visualization_msgs/msg/UVCoordinate", u=0.5, v=0.25)],
        text=f"kf {marker_id} – Ünïcode",
        mesh_file=M("visualization_msgs/msg/MeshFile", filename="mesh.stl", data=np.arange(5, dtype=np.uint8)),
    )


def sample_message(typename: str) -> Any:
    """A populated message of every type the node uses (values exact in float32 where the field is float32)."""
    if typename == "sensor_msgs/msg/Image":
        return _image(24, 32)
    if typename == "sensor_msgs/msg/CompressedImage":
        data = np.random.default_rng(RNG_SEED).integers(0, 256, 1001, dtype=np.uint8)
        return M("sensor_msgs/msg/CompressedImage", header=ifc.make_header(42, "cam"), format="jpeg", data=data)
    covariance = np.arange(36, dtype=np.float64) / 7
    if typename == "nav_msgs/msg/Odometry":
        return M(
            "nav_msgs/msg/Odometry",
            header=ifc.make_header(1_000_000_007, "odom"),
            child_frame_id="base_link",
            pose=M("geometry_msgs/msg/PoseWithCovariance", pose=_pose(3.0), covariance=covariance),
            twist=M(
                "geometry_msgs/msg/TwistWithCovariance",
                twist=M(
                    "geometry_msgs/msg/Twist",
                    linear=M("geometry_msgs/msg/Vector3", x=1.0, y=0.0, z=-0.5),
                    angular=M("geometry_msgs/msg/Vector3", x=0.0, y=0.1, z=0.2),
                ),
                covariance=-covariance,
            ),
        )
    if typename == "geometry_msgs/msg/PoseWithCovarianceStamped":
        return M(
            typename,
            header=ifc.make_header(-1, "map"),
            pose=M("geometry_msgs/msg/PoseWithCovariance", pose=_pose(-4.0), covariance=covariance),
        )
    if typename == "visualization_msgs/msg/MarkerArray":
        return M(typename, markers=[_marker(0), _marker(1)])
    if typename == "diagnostic_msgs/msg/DiagnosticArray":
        statuses = [
            M(
                "diagnostic_msgs/msg/DiagnosticStatus",
                level=level,
                name=f"fol_vpr: {name}",
                message=message,
                hardware_id="gpu0",
                values=[M("diagnostic_msgs/msg/KeyValue", key=f"k{i}", value=str(i * 1.5)) for i in range(3)],
            )
            for level, name, message in ((0, "describe", "ok"), (2, "map", "no map loaded"), (3, "stale", ""))
        ]
        return M(typename, header=ifc.make_header(9, ""), status=statuses)
    if typename == "std_msgs/msg/Float64MultiArray":
        layout = M(
            "std_msgs/msg/MultiArrayLayout",
            dim=[
                M("std_msgs/msg/MultiArrayDimension", label="rows", size=2, stride=6),
                M("std_msgs/msg/MultiArrayDimension", label="cols", size=3, stride=3),
            ],
            data_offset=0,
        )
        return M(typename, layout=layout, data=np.linspace(-1.0, 1.0, 6))
    if typename == "fol_vpr_ros/msg/PlaceCandidate":
        return _candidate(0)
    if typename == "fol_vpr_ros/msg/PlaceRecognitionResult":
        return M(
            typename,
            header=ifc.make_header(1_700_000_000_123_456_789, "map"),
            query_id=17,
            camera_frame_id="camera_optical",
            candidates=[_candidate(rank) for rank in range(3)],
            accepted=True,
            accepted_index=0,
            decode_ms=1.5,
            describe_ms=12.25,
            search_ms=0.5,
            rerank_ms=4.75,
            total_ms=19.0,
            status="ok",
        )
    if typename == "fol_vpr_ros/msg/LoopClosure":
        msg_type = ifc.msg_class(typename)
        return M(
            typename,
            header=ifc.make_header(2_000_000_000, "map"),
            query_keyframe_id=512,
            query_stamp=ifc.make_time(2_000_000_000),
            match_keyframe_id=12,
            match_stamp=ifc.make_time(100_000_000),
            global_similarity=0.625,
            rerank_score=57,
            consistent_hits=3,
            status=msg_type.REJECTED,
        )
    raise KeyError(typename)


# --------------------------------------------------------------------------------------------------
# msg/ and the typestore
# --------------------------------------------------------------------------------------------------
def test_msg_files_parse_and_are_registered():
    files = sorted((ROOT / "msg").glob("*.msg"))
    assert set(ifc.OWN_TYPES) <= {f"fol_vpr_ros/msg/{path.stem}" for path in files}
    store = ifc.typestore()
    for path in files:
        name = f"fol_vpr_ros/msg/{path.stem}"
        parsed = get_types_from_msg(path.read_text(encoding="utf-8"), name)
        assert parsed[name][1] == store.fielddefs[name][1]
    assert ifc.typestore() is store  # cached
    for name in ifc.NODE_TYPES:
        assert name in store.types
    result = ifc.msg_class("fol_vpr_ros/PlaceRecognitionResult")  # short form accepted
    assert result.__msgtype__ == "fol_vpr_ros/msg/PlaceRecognitionResult"
    assert [field for field, _ in store.fielddefs["fol_vpr_ros/msg/PlaceRecognitionResult"][1]] == [
        "header", "query_id", "camera_frame_id", "candidates", "accepted", "accepted_index",
        "decode_ms", "describe_ms", "search_ms", "rerank_ms", "verify_ms", "total_ms", "status",
    ]  # fmt: skip


def test_ros_package_import_is_light():
    code = (
        "import sys, fol_vpr_ros.ros, fol_vpr_ros.ros.interfaces as i; i.typestore(); "
        "print(sorted(m for m in ('rclpy', 'torch') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", f"imported at import time: {result.stdout}"


def test_msg_constants():
    loop = ifc.msg_class("fol_vpr_ros/msg/LoopClosure")
    assert (loop.ACCEPTED, loop.REJECTED) == (0, 1)
    assert ifc.msg_class("fol_vpr_ros/msg/PlaceCandidate").NOT_RERANKED == -1
    fields = dict(ifc.typestore().fielddefs["fol_vpr_ros/msg/LoopClosure"][1])
    assert "ACCEPTED" not in fields and fields["status"][1] == ("uint8", 0)


def test_unknown_type_and_bad_names():
    with pytest.raises(KeyError, match="unknown message type"):
        ifc.msg_class("fol_vpr_ros/msg/Nope")
    with pytest.raises(ValueError, match="not a message type name"):
        ifc.normalize_typename("Image")
    with pytest.raises(TypeError, match="no field"):
        ifc.make_message("std_msgs/msg/Header", stamp_ns=3)


def test_msg_dir_search_and_clear_error(tmp_path, monkeypatch):
    found = ifc.msg_dir()  # the source msg/, or share/fol_vpr_ros/msg of a colcon install: same files
    for path in (ROOT / "msg").glob("*.msg"):
        assert (found / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    copy = tmp_path / "msgs"
    copy.mkdir()
    for path in (ROOT / "msg").glob("*.msg"):
        (copy / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv(ifc.MSG_DIR_ENV, str(copy))
    assert ifc.msg_search_paths()[0] == copy
    assert ifc.msg_dir() == copy

    empty = tmp_path / "empty"
    monkeypatch.setattr(ifc, "msg_search_paths", lambda: [empty, tmp_path / "other"])
    with pytest.raises(ifc.MsgDefinitionsNotFound) as info:
        ifc.msg_dir()
    assert str(empty) in str(info.value) and str(tmp_path / "other") in str(info.value)
    assert "PlaceRecognitionResult.msg" in str(info.value) and ifc.MSG_DIR_ENV in str(info.value)
    assert isinstance(info.value, FileNotFoundError)


def test_time_and_header():
    stamp = ifc.make_time(1_700_000_000_123_456_789)
    assert (stamp.sec, stamp.nanosec) == (1_700_000_000, 123_456_789)
    negative = ifc.make_time(-1)
    assert (negative.sec, negative.nanosec) == (-1, 999_999_999)
    for ns in (0, -1, 5, 1_700_000_000_123_456_789, -(2**31) * 10**9):
        assert ifc.time_to_ns(ifc.make_time(ns)) == ns
    with pytest.raises(ValueError, match="int32"):
        ifc.make_time(2**31 * 10**9)
    header = ifc.make_header(7, "map")
    assert header.frame_id == "map" and ifc.time_to_ns(header.stamp) == 7
    assert header.__msgtype__ == "std_msgs/msg/Header"


def test_make_message_defaults():
    image = ifc.make_message("sensor_msgs/msg/Image")
    assert image.height == 0 and image.encoding == "" and image.data.dtype == np.uint8 and image.data.size == 0
    odom = ifc.make_message("nav_msgs/msg/Odometry")
    assert odom.pose.covariance.shape == (36,) and odom.pose.covariance.dtype == np.float64
    assert ifc.make_message("fol_vpr_ros/msg/PlaceRecognitionResult").candidates == []


@pytest.mark.parametrize("typename", ifc.NODE_TYPES)
def test_rosbags_cdr_round_trip(typename):
    msg = sample_message(typename)
    raw = ifc.serialize(msg, typename)
    assert isinstance(raw, bytes) and raw[:4] == b"\x00\x01\x00\x00"  # CDR_LE encapsulation
    assert_msg_equal(ifc.deserialize(raw, typename), msg)
    big_endian = bytes(ifc.typestore().serialize_cdr(msg, typename, little_endian=False))
    assert_msg_equal(ifc.deserialize(big_endian, typename), msg)
