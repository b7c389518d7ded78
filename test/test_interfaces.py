"""Message definitions (msg/), the rosbags typestore and the Cyclone DDS types: wire compatibility with ROS 2 CDR.

Every type the node uses is serialized by cyclonedds (our run-time IdlStruct) and by rosbags (the ROS 2 CDR that
bags and rmw put on the wire): the bytes must be equal. A real DDS exchange runs on 127.0.0.1 only.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("rosbags")
cyclonedds = pytest.importorskip("cyclonedds")

from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.idl._support import Endianness  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.qos import Policy, Qos  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from rosbags.typesys import get_types_from_msg  # noqa: E402

from fol_vpr_ros.ros import dds_types as dds  # noqa: E402
from fol_vpr_ros.ros import interfaces as ifc  # noqa: E402

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


def dds_bytes(msg: Any, typename: str) -> bytes:
    """What cyclonedds puts on the wire (XCDR1, little endian, 4-byte encapsulation header included)."""
    return dds.to_dds(msg, typename).serialize(endianness=Endianness.Little)


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
        "decode_ms", "describe_ms", "search_ms", "rerank_ms", "total_ms", "status",
    ]  # fmt: skip


def test_ros_package_import_is_light():
    code = (
        "import sys, fol_vpr_ros.ros, fol_vpr_ros.ros.interfaces as i; i.typestore(); "
        "print(sorted(m for m in ('rclpy', 'cyclonedds', 'torch') if m in sys.modules))"
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
    assert ifc.msg_dir() == ROOT / "msg"
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


# --------------------------------------------------------------------------------------------------
# DDS types: names and wire compatibility
# --------------------------------------------------------------------------------------------------
def test_dds_type_names():
    assert dds.dds_typename("sensor_msgs/msg/Image") == "sensor_msgs::msg::dds_::Image_"
    assert dds.dds_typename("fol_vpr_ros/PlaceRecognitionResult") == "fol_vpr_ros::msg::dds_::PlaceRecognitionResult_"
    result = dds.dds_type("fol_vpr_ros/msg/PlaceRecognitionResult")
    assert result.__idl_typename__ == "fol_vpr_ros::msg::dds_::PlaceRecognitionResult_"
    assert result.__idl__.idl_transformed_typename == "fol_vpr_ros::msg::dds_::PlaceRecognitionResult_"
    assert dds.dds_type("fol_vpr_ros/msg/PlaceRecognitionResult") is result  # cached
    nested = dds.dds_type("fol_vpr_ros/msg/PlaceCandidate")
    assert nested.__idl_typename__ == "fol_vpr_ros::msg::dds_::PlaceCandidate_"
    assert dds.dds_type("std_msgs/msg/Header").__idl_typename__ == "std_msgs::msg::dds_::Header_"


@pytest.mark.parametrize("typename", ifc.NODE_TYPES)
def test_wire_compatible_with_ros2_cdr(typename):
    msg = sample_message(typename)
    ros_bytes = ifc.serialize(msg, typename)
    ours = dds_bytes(msg, typename)
    assert ours[:4] == b"\x00\x01\x00\x00", "cyclonedds must use XCDR1 (plain CDR) like rmw_cyclonedds"
    assert ours == ros_bytes
    # round trips: rosbags -> DDS -> rosbags, and bytes from ROS decoded by the DDS type
    assert_msg_equal(dds.from_dds(dds.to_dds(msg, typename), typename), msg)
    decoded = dds.dds_type(typename).deserialize(ros_bytes)
    assert_msg_equal(dds.from_dds(decoded, typename), msg)
    assert dds.dds_type(typename).__idl__.default_version == 1


ALL_KINDS = "fol_vpr_test/msg/AllKinds"
ALL_KINDS_MSG = """
int32 LIMIT=3
bool flag
byte raw
char letter
int8 i8
uint16 u16
int64 i64
uint64 u64
float32 f32
string<=8 short_text
bool[] flags
byte[] raw_bytes
char[3] letters
uint8[4] fixed_octets
int16[2] pair
uint64[] big
float32[<=3] bounded_floats
string[2] names
string<=8[<=4] tags
geometry_msgs/Point[2] corners
std_msgs/Header[] headers
std_msgs/Empty empty
"""


@pytest.fixture(scope="module")
def all_kinds():
    store = ifc.typestore()
    store.register(get_types_from_msg(ALL_KINDS_MSG, ALL_KINDS))
    return M(
        ALL_KINDS,
        flag=True,
        raw=-3,
        letter=200,
        i8=-128,
        u16=65535,
        i64=-(2**63),
        u64=2**64 - 1,
        f32=-0.375,
        short_text="abcdefgh",
        flags=np.array([True, False, True]),
        raw_bytes=np.array([-128, -1, 0, 127], dtype=np.int8),
        letters=np.array([65, 66, 255], dtype=np.uint8),
        fixed_octets=np.array([0, 1, 254, 255], dtype=np.uint8),
        pair=np.array([-7, 7], dtype=np.int16),
        big=np.array([1, 2**63], dtype=np.uint64),
        bounded_floats=np.array([0.5, -1.25], dtype=np.float32),
        names=["", "ß"],
        tags=["a", "bb", "ccc"],
        corners=[M("geometry_msgs/msg/Point", x=1.0), M("geometry_msgs/msg/Point", y=-1.0)],
        headers=[ifc.make_header(1, "a"), ifc.make_header(2, "b")],
    )


def test_every_field_kind_is_wire_compatible(all_kinds):
    ros_bytes = ifc.serialize(all_kinds, ALL_KINDS)
    assert dds_bytes(all_kinds, ALL_KINDS) == ros_bytes
    assert_msg_equal(dds.from_dds(dds.to_dds(all_kinds, ALL_KINDS), ALL_KINDS), all_kinds)
    assert_msg_equal(dds.from_dds(dds.dds_type(ALL_KINDS).deserialize(ros_bytes), ALL_KINDS), all_kinds)
    hints = dds.dds_type(ALL_KINDS).__annotations__
    assert {"raw_bytes", "tags", "corners"} <= set(hints)  # constants are not fields
    assert "LIMIT" not in hints


def test_image_round_trip_is_fast():
    typename = "sensor_msgs/msg/Image"
    image = _image(480, 640)
    cls = dds.dds_type(typename)
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        raw = dds.to_dds(image, typename).serialize()
        back = dds.from_dds(cls.deserialize(raw), typename)
        timings.append(time.perf_counter() - start)
    assert raw == ifc.serialize(image, typename)
    assert np.array_equal(back.data, image.data)
    assert min(timings) < 0.020, f"640x480x3 image DDS round trip took {min(timings) * 1e3:.1f} ms"


# --------------------------------------------------------------------------------------------------
# names, QoS, domain configuration
# --------------------------------------------------------------------------------------------------
def test_topic_names():
    assert dds.topic_name("/fol_vpr/result") == "rt/fol_vpr/result"
    assert dds.topic_name("result", namespace="/robot1") == "rt/robot1/result"
    assert dds.topic_name("fol_vpr/result", namespace="robot1/") == "rt/robot1/fol_vpr/result"
    assert dds.topic_name("image") == "rt/image"
    assert dds.topic_name("~/diagnostics", namespace="/r", node_name="fol_vpr") == "rt/r/fol_vpr/diagnostics"
    for bad in ("", "/", "a//b", "/a/", "1abc", "a b", "~/x"):
        with pytest.raises(ValueError):
            dds.topic_name(bad)


def test_qos_profiles():
    sensor = dds.sensor_data_qos()
    assert sensor[Policy.Reliability] == Policy.Reliability.BestEffort
    assert sensor[Policy.History] == Policy.History.KeepLast(5)
    assert sensor[Policy.Durability] == Policy.Durability.Volatile
    reliable = dds.reliable_qos()
    assert isinstance(reliable[Policy.Reliability], Policy.Reliability.Reliable)
    assert reliable[Policy.History] == Policy.History.KeepLast(10)
    assert reliable[Policy.Durability] == Policy.Durability.Volatile
    latched = dds.transient_local_qos()
    assert isinstance(latched[Policy.Reliability], Policy.Reliability.Reliable)
    assert latched[Policy.Durability] == Policy.Durability.TransientLocal
    assert isinstance(sensor, Qos)


def test_loopback_config_sets_env_without_clobbering(monkeypatch):
    monkeypatch.delenv(dds.CYCLONEDDS_URI_ENV, raising=False)
    xml = dds.loopback_config(apply=False)
    assert dds.CYCLONEDDS_URI_ENV not in os.environ
    assert 'address="127.0.0.1"' in xml and xml.startswith("<CycloneDDS>")
    assert dds.loopback_config() == xml and os.environ[dds.CYCLONEDDS_URI_ENV] == xml
    monkeypatch.setenv(dds.CYCLONEDDS_URI_ENV, "file:///user.xml")
    dds.loopback_config()
    assert os.environ[dds.CYCLONEDDS_URI_ENV] == "file:///user.xml"
    dds.loopback_config(override=True)
    assert os.environ[dds.CYCLONEDDS_URI_ENV] == xml


def test_ros_domain_id(monkeypatch):
    monkeypatch.delenv("ROS_DOMAIN_ID", raising=False)
    assert dds.ros_domain_id() == 0
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    assert dds.ros_domain_id() == 42
    monkeypatch.setenv("ROS_DOMAIN_ID", "300")
    with pytest.raises(ValueError):
        dds.ros_domain_id()


# --------------------------------------------------------------------------------------------------
# real DDS on 127.0.0.1
# --------------------------------------------------------------------------------------------------
DOMAIN_ID = 100 + os.getpid() % 100  # away from ROS' default 0 and from parallel test runs


@pytest.fixture(scope="module")
def participant():
    previous = os.environ.get(dds.CYCLONEDDS_URI_ENV)
    dds.loopback_config(override=True)  # read when the domain is created, i.e. by the first participant below
    try:
        yield DomainParticipant(DOMAIN_ID)
    finally:
        if previous is None:
            os.environ.pop(dds.CYCLONEDDS_URI_ENV, None)
        else:
            os.environ[dds.CYCLONEDDS_URI_ENV] = previous


def _take_one(reader: DataReader, sample_type: type, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for sample in reader.take(N=10):
            if isinstance(sample, sample_type):
                return sample
        time.sleep(0.02)
    raise AssertionError(f"no {sample_type.__idl_typename__} sample within {timeout} s")


def test_publish_subscribe_in_process(participant):
    tag = os.getpid()
    cases = [
        ("sensor_msgs/msg/Image", _image(480, 640), dds.sensor_data_qos()),
        ("fol_vpr_ros/msg/PlaceRecognitionResult", sample_message("fol_vpr_ros/msg/PlaceRecognitionResult"),
         dds.transient_local_qos()),
    ]  # fmt: skip
    for typename, msg, qos in cases:
        cls = dds.dds_type(typename)
        topic = Topic(participant, dds.topic_name(f"/test_fol/p{tag}/{typename.split('/')[-1].lower()}"), cls)
        reader_participant = DomainParticipant(DOMAIN_ID)
        reader = DataReader(reader_participant, Topic(reader_participant, topic.name, cls), qos=qos)
        writer = DataWriter(participant, topic, qos=qos)
        deadline = time.monotonic() + 5.0
        received = None
        while received is None and time.monotonic() < deadline:
            writer.write(dds.to_dds(msg, typename))  # best effort: repeat until discovery is complete
            time.sleep(0.05)
            received = next((s for s in reader.take(N=10) if isinstance(s, cls)), None)
        assert received is not None, f"{typename}: nothing received on {topic.name}"
        assert topic.typename == dds.dds_typename(typename)
        assert_msg_equal(dds.from_dds(received, typename), msg)


PUBLISHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from cyclonedds.domain import DomainParticipant
    from cyclonedds.pub import DataWriter
    from cyclonedds.topic import Topic
    from fol_vpr_ros.ros import dds_types as dds

    dds.loopback_config(override=True)
    domain, folder = int(sys.argv[1]), Path(sys.argv[2])
    participant = DomainParticipant(domain)
    writers = []
    for path in sorted(folder.glob("*.cdr")):
        typename, topic = path.stem.replace("__", "/").split("@")
        cls = dds.dds_type(typename)
        qos = dds.sensor_data_qos() if typename.startswith("sensor_msgs") else dds.reliable_qos()
        writers.append((DataWriter(participant, Topic(participant, topic.replace("+", "/"), cls), qos=qos),
                        cls.deserialize(path.read_bytes())))
    print("ready", flush=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for writer, sample in writers:
            writer.write(sample)
        time.sleep(0.05)
    """
)


def test_publish_subscribe_across_processes_on_loopback(participant, tmp_path):
    """A second process publishes ROS 2 CDR bytes (from rosbags) through our DDS types; we read them here."""
    tag = os.getpid()
    messages = {
        "sensor_msgs/msg/Image": _image(120, 160, seed=11),
        "fol_vpr_ros/msg/PlaceRecognitionResult": sample_message("fol_vpr_ros/msg/PlaceRecognitionResult"),
    }
    readers = {}
    for typename, msg in messages.items():
        topic = dds.topic_name(f"/test_fol/x{tag}/{typename.split('/')[-1].lower()}")
        (tmp_path / f"{typename.replace('/', '__')}@{topic.replace('/', '+')}.cdr").write_bytes(
            ifc.serialize(msg, typename)
        )
        qos = dds.sensor_data_qos() if typename.startswith("sensor_msgs") else dds.reliable_qos()
        cls = dds.dds_type(typename)
        readers[typename] = DataReader(participant, Topic(participant, topic, cls), qos=qos)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    publisher = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, str(DOMAIN_ID), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for typename, msg in messages.items():
            received = _take_one(readers[typename], dds.dds_type(typename), timeout=12.0)
            assert_msg_equal(dds.from_dds(received, typename), msg)
    except AssertionError:
        publisher.kill()
        out, err = publisher.communicate(timeout=5)
        raise AssertionError(f"publisher stdout: {out!r}\nstderr: {err[-2000:]!r}") from None
    finally:
        if publisher.poll() is None:
            publisher.kill()
            publisher.communicate(timeout=5)
