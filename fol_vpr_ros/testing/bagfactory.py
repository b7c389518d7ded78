"""Write small, real ROS bags (rosbag2 mcap/sqlite3 or ROS 1 .bag) for tests and the demo.

Images are given as H x W x 3 uint8 RGB arrays and written in the requested ROS encoding (raw
``sensor_msgs/Image``) or as PNG/JPEG ``sensor_msgs/CompressedImage``; optional odometry, pose,
tf/tf_static and NavSatFix topics are written alongside, all serialised with rosbags' typestores.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..sources.bag_cameras import camera_info_topic as sibling_camera_info
from ..sources.camera import CameraIntrinsics
from ..stamps import NS_PER_SEC

__all__ = [
    "STORAGES",
    "CameraInfoSample",
    "NavSatSample",
    "PoseSample",
    "StaticTransform",
    "TransformSample",
    "encode_raw",
    "expected_rgb",
    "write_image_bag",
]

STORAGES = ("mcap", "sqlite3", "ros1")
PoseSample = tuple[int, Sequence[float], Sequence[float]]  # (stamp_ns, xyz, quaternion xyzw)
TransformSample = tuple[int, str, str, Sequence[float], Sequence[float]]  # (stamp_ns, parent, child, xyz, xyzw)
StaticTransform = tuple[str, str, Sequence[float], Sequence[float]]  # (parent, child, xyz, xyzw)
NavSatSample = tuple[int, float, float, float, int]  # (stamp_ns, latitude, longitude, altitude, status)
CameraInfoSample = tuple[int, int, int, float, float, float, float]  # (stamp_ns, width, height, fx, fy, cx, cy)
_TF_MSG = "geometry_msgs/TransformStamped[] transforms\n"


def _gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return rgb
    return np.round(rgb[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def expected_rgb(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """What a reader should decode (8-bit RGB) for ``rgb`` written with ``encoding``."""
    if encoding in ("mono8", "8UC1", "mono16", "16UC1"):
        return np.repeat(_gray(rgb)[..., None], 3, axis=2)
    return np.ascontiguousarray(rgb[..., :3])


def encode_raw(rgb: np.ndarray, encoding: str, bigendian: bool = False) -> np.ndarray:
    """Pixel array in a ROS encoding (H x W [x C], uint8 or uint16). Unknown encodings get the RGB bytes
    unchanged, so tests can label frames with encodings a reader does not support."""
    rgb = np.asarray(rgb, np.uint8)
    alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)

    def rgba() -> np.ndarray:
        return np.concatenate([rgb, alpha], 2)

    def bgra() -> np.ndarray:
        return np.concatenate([rgb[..., ::-1], alpha], 2)

    table = {
        "rgb8": lambda: rgb, "bgr8": lambda: rgb[..., ::-1], "rgba8": rgba, "bgra8": bgra,
        "mono8": lambda: _gray(rgb), "8UC1": lambda: _gray(rgb),
        "8UC3": lambda: rgb[..., ::-1], "8UC4": bgra,  # cv_bridge's channel order: BGR(A)
        "mono16": lambda: _gray(rgb).astype(np.uint16) * 257, "16UC1": lambda: _gray(rgb).astype(np.uint16) * 257,
        "rgb16": lambda: rgb.astype(np.uint16) * 257, "bgr16": lambda: rgb[..., ::-1].astype(np.uint16) * 257,
        "rgba16": lambda: rgba().astype(np.uint16) * 257, "bgra16": lambda: bgra().astype(np.uint16) * 257,
    }
    arr = np.ascontiguousarray(table.get(encoding, lambda: rgb)())
    if arr.dtype == np.uint16:
        arr = arr.astype(">u2" if bigendian else "<u2")
    return arr


class _Msgs:
    """Message construction and serialisation for one ROS version."""

    def __init__(self, ros1: bool) -> None:
        from rosbags.typesys import Stores, get_types_from_msg, get_typestore

        self.ros1 = ros1
        self.ts = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
        if "tf2_msgs/msg/TFMessage" not in self.ts.types:
            self.ts.register(get_types_from_msg(_TF_MSG, "tf2_msgs/msg/TFMessage"))
        self.seq = 0

    def T(self, name: str) -> Any:
        return self.ts.types[name]

    def time(self, ns: int) -> Any:
        return self.T("builtin_interfaces/msg/Time")(sec=int(ns) // NS_PER_SEC, nanosec=int(ns) % NS_PER_SEC)

    def header(self, ns: int, frame_id: str) -> Any:
        if self.ros1:
            self.seq += 1
            return self.T("std_msgs/msg/Header")(seq=self.seq, stamp=self.time(ns), frame_id=frame_id)
        return self.T("std_msgs/msg/Header")(stamp=self.time(ns), frame_id=frame_id)

    def pose(self, xyz: Sequence[float], q: Sequence[float]) -> Any:
        return self.T("geometry_msgs/msg/Pose")(
            position=self.T("geometry_msgs/msg/Point")(*(float(v) for v in xyz)),
            orientation=self.T("geometry_msgs/msg/Quaternion")(*(float(v) for v in q)))

    def pose_cov(self, xyz: Sequence[float], q: Sequence[float]) -> Any:
        return self.T("geometry_msgs/msg/PoseWithCovariance")(pose=self.pose(xyz, q), covariance=np.zeros(36))

    def transform(self, ns: int, parent: str, child: str, xyz: Sequence[float], q: Sequence[float]) -> Any:
        tr = self.T("geometry_msgs/msg/Transform")(
            translation=self.T("geometry_msgs/msg/Vector3")(*(float(v) for v in xyz)),
            rotation=self.T("geometry_msgs/msg/Quaternion")(*(float(v) for v in q)))
        return self.T("geometry_msgs/msg/TransformStamped")(header=self.header(ns, parent), child_frame_id=child,
                                                            transform=tr)

    def serialize(self, msg: Any) -> bytes:
        if self.ros1:
            return bytes(self.ts.serialize_ros1(msg, msg.__msgtype__))
        return bytes(self.ts.serialize_cdr(msg, msg.__msgtype__))


def _image_msg(m: _Msgs, rgb: np.ndarray, ns: int, frame_id: str, encoding: str, compressed: bool,
               compressed_format: str, row_padding: int, bigendian: bool) -> Any:
    arr = encode_raw(rgb, encoding, bigendian)
    if compressed:
        from PIL import Image

        fmt = compressed_format.lower()
        if fmt not in ("png", "jpeg"):
            raise ConfigError(f"compressed_format must be png or jpeg, got {compressed_format!r}")
        if arr.ndim == 2:
            pil = Image.fromarray(np.ascontiguousarray(arr.astype("<u2" if arr.dtype != np.uint8 else np.uint8)))
        else:
            pil = Image.fromarray(np.ascontiguousarray(expected_rgb(rgb, "rgb8")))
        buf = io.BytesIO()
        pil.save(buf, format=fmt.upper(), **({"quality": 95} if fmt == "jpeg" else {}))
        target = encoding if arr.ndim == 2 else "bgr8"
        return m.T("sensor_msgs/msg/CompressedImage")(header=m.header(ns, frame_id),
                                                      format=f"{encoding}; {fmt} compressed {target}",
                                                      data=np.frombuffer(buf.getvalue(), np.uint8))
    h, w = arr.shape[:2]
    row = arr.reshape(h, -1).view(np.uint8)
    if row_padding:
        row = np.concatenate([row, np.zeros((h, row_padding), np.uint8)], axis=1)
    return m.T("sensor_msgs/msg/Image")(header=m.header(ns, frame_id), height=h, width=w, encoding=encoding,
                                        is_bigendian=int(bigendian), step=row.shape[1],
                                        data=np.ascontiguousarray(row).reshape(-1))


class _Pending:
    """Serialised messages per (topic, type), written to the bag in stamp order by ``_write``."""

    def __init__(self, m: _Msgs) -> None:
        self.m = m
        self.rows: dict[tuple[str, str], list[tuple[int, bytes]]] = {}

    def put(self, topic: str, msg: Any, ns: int) -> None:
        self.rows.setdefault((topic, msg.__msgtype__), []).append((int(ns), self.m.serialize(msg)))

    def camera_info_per_image(self, cam: CameraIntrinsics, topic: str, frame: str, stamps: Sequence[int],
                    bag_times: Sequence[int]) -> None:
        """One sensor_msgs/CameraInfo per image (same header stamp and frame), as camera drivers publish it."""
        k = np.array([cam.fx, 0.0, cam.cx, 0.0, cam.fy, cam.cy, 0.0, 0.0, 1.0])
        r = np.eye(3).reshape(9)
        p = np.array([cam.fx, 0.0, cam.cx, 0.0, 0.0, cam.fy, cam.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
        d = np.asarray(cam.distortion, dtype=np.float64)
        names = ("D", "K", "R", "P") if self.m.ros1 else ("d", "k", "r", "p")
        roi = self.m.T("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        for ns, bag_ns in zip(stamps, bag_times, strict=True):
            msg = self.m.T("sensor_msgs/msg/CameraInfo")(
                header=self.m.header(int(ns), frame), height=cam.height, width=cam.width,
                distortion_model=cam.distortion_model, **dict(zip(names, (d, k, r, p), strict=True)),
                binning_x=0, binning_y=0, roi=roi)
            self.put(topic, msg, bag_ns)

    def odometry(self, samples: Sequence[PoseSample], topic: str, frame: str, child: str) -> None:
        zero = self.m.T("geometry_msgs/msg/Vector3")(0.0, 0.0, 0.0)
        twist = self.m.T("geometry_msgs/msg/TwistWithCovariance")(
            twist=self.m.T("geometry_msgs/msg/Twist")(linear=zero, angular=zero), covariance=np.zeros(36))
        for ns, xyz, q in samples:
            self.put(topic, self.m.T("nav_msgs/msg/Odometry")(header=self.m.header(ns, frame), child_frame_id=child,
                                                              pose=self.m.pose_cov(xyz, q), twist=twist), ns)

    def poses(self, samples: Sequence[PoseSample], topic: str, frame: str, with_covariance: bool) -> None:
        for ns, xyz, q in samples:
            if with_covariance:
                msg = self.m.T("geometry_msgs/msg/PoseWithCovarianceStamped")(header=self.m.header(ns, frame),
                                                                              pose=self.m.pose_cov(xyz, q))
            else:
                msg = self.m.T("geometry_msgs/msg/PoseStamped")(header=self.m.header(ns, frame),
                                                                pose=self.m.pose(xyz, q))
            self.put(topic, msg, ns)

    def tf(self, dynamic: Sequence[TransformSample], static: Sequence[StaticTransform], bag_times: list[int]) -> None:
        """/tf: one TFMessage per stamp; /tf_static: one TFMessage at the bag's first stamp."""
        by_stamp: dict[int, list[Any]] = {}
        for ns, parent, child, xyz, q in dynamic:
            by_stamp.setdefault(int(ns), []).append(self.m.transform(ns, parent, child, xyz, q))
        for ns, trs in sorted(by_stamp.items()):
            self.put("/tf", self.m.T("tf2_msgs/msg/TFMessage")(transforms=trs), ns)
        if static:
            t0 = min([*bag_times, *by_stamp]) if bag_times or by_stamp else 0
            trs = [self.m.transform(t0, parent, child, xyz, q) for parent, child, xyz, q in static]
            self.put("/tf_static", self.m.T("tf2_msgs/msg/TFMessage")(transforms=trs), t0)

    def navsat(self, fixes: Sequence[NavSatSample], topic: str, frame: str) -> None:
        for ns, lat, lon, alt, status in fixes:
            st = self.m.T("sensor_msgs/msg/NavSatStatus")(status=int(status), service=1)
            self.put(topic, self.m.T("sensor_msgs/msg/NavSatFix")(
                header=self.m.header(ns, frame), status=st, latitude=float(lat), longitude=float(lon),
                altitude=float(alt), position_covariance=np.zeros(9), position_covariance_type=0), ns)


    def camera_info(self, samples: Sequence[CameraInfoSample], topic: str, frame: str) -> None:
        """sensor_msgs/CameraInfo, plumb_bob with zero distortion (fx = 0 writes the all-zero K of 'uncalibrated')."""
        roi = self.m.T("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
        for ns, width, height, fx, fy, cx, cy in samples:
            k = np.array([fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0 if fx else 0.0])
            p = np.array([fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0 if fx else 0.0, 0.0])
            arrays = dict(zip(("D", "K", "R", "P") if self.m.ros1 else ("d", "k", "r", "p"),
                              (np.zeros(5), k, np.eye(3).reshape(-1), p)))
            self.put(topic, self.m.T("sensor_msgs/msg/CameraInfo")(
                header=self.m.header(ns, frame), height=int(height), width=int(width), distortion_model="plumb_bob",
                binning_x=0, binning_y=0, roi=roi, **arrays), ns)


def _per_frame(images: Sequence[np.ndarray], stamps_ns: Sequence[int], bag_stamps_ns: Sequence[int] | None,
               encoding: str | Sequence[str]) -> tuple[list[int], list[str]]:
    """(bag times, encodings), one per image; ConfigError when the lengths disagree."""
    if len(images) != len(stamps_ns):
        raise ConfigError(f"{len(images)} images but {len(stamps_ns)} stamps")
    bag_times = list(bag_stamps_ns) if bag_stamps_ns is not None else list(stamps_ns)
    if len(bag_times) != len(images):
        raise ConfigError(f"{len(images)} images but {len(bag_times)} bag stamps")
    encodings = [encoding] * len(images) if isinstance(encoding, str) else list(encoding)
    if len(encodings) != len(images):
        raise ConfigError(f"{len(images)} images but {len(encodings)} encodings")
    return bag_times, encodings


def write_image_bag(
    path: str | Path,
    images: Sequence[np.ndarray],
    stamps_ns: Sequence[int],
    *,
    topic: str = "/camera/image_raw",
    frame_id: str = "camera",
    compressed: bool = False,
    compressed_format: str = "png",
    storage: str = "mcap",
    encoding: str | Sequence[str] = "rgb8",
    corrupt_frames: Sequence[int] = (),
    bag_stamps_ns: Sequence[int] | None = None,
    row_padding: int = 0,
    bigendian: bool = False,
    odometry: Sequence[PoseSample] | None = None,
    odom_topic: str = "/odom",
    odom_frame: str = "odom",
    base_frame: str = "base_link",
    poses: Sequence[PoseSample] | None = None,
    pose_topic: str = "/pose",
    pose_frame: str = "map",
    pose_with_covariance: bool = False,
    tf: Sequence[TransformSample] | None = None,
    tf_static: Sequence[StaticTransform] | None = None,
    navsat: Sequence[NavSatSample] | None = None,
    navsat_topic: str = "/gps/fix",
    navsat_frame: str = "gps",
    camera_info: CameraIntrinsics | Sequence[CameraInfoSample] | None = None,
    camera_info_topic: str | None = None,
) -> Path:
    """Write a bag and return its path (rosbag2: a new directory; ros1: a new .bag file).

    ``stamps_ns`` are the header stamps (0 allowed); ``bag_stamps_ns`` the receive times written to
    the bag (default: the header stamps). ``encoding`` may be one per frame; frames listed in
    ``corrupt_frames`` get undecodable data (compressed) or a wrong size (raw). Other topics are
    written at their own stamps. ``camera_info`` goes to ``camera_info_topic`` (default: the image
    topic's sibling ``camera_info``, as image_transport names it): a CameraIntrinsics gives one
    CameraInfo per image (same stamp and frame), a sequence of CameraInfoSample one per sample.
    """
    if storage not in STORAGES:
        raise ConfigError(f"storage must be one of {', '.join(STORAGES)}, got {storage!r}")
    bag_times, encodings = _per_frame(images, stamps_ns, bag_stamps_ns, encoding)
    m = _Msgs(storage == "ros1")
    out = _Pending(m)
    out.rows[(topic, "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image")] = []
    for k, (rgb, ns, bag_ns, enc) in enumerate(zip(images, stamps_ns, bag_times, encodings, strict=True)):
        msg = _image_msg(m, np.asarray(rgb), int(ns), frame_id, enc, compressed, compressed_format, row_padding,
                         bigendian)
        if k in corrupt_frames:
            msg.data = np.frombuffer(b"this is not an image", np.uint8) if compressed else msg.data[:-1]
        out.put(topic, msg, bag_ns)
    out.odometry(odometry or (), odom_topic, odom_frame, base_frame)
    out.poses(poses or (), pose_topic, pose_frame, pose_with_covariance)
    out.tf(tf or (), tf_static or (), bag_times)
    out.navsat(navsat or (), navsat_topic, navsat_frame)
    info_topic = camera_info_topic or sibling_camera_info(topic)
    if isinstance(camera_info, CameraIntrinsics):
        out.camera_info_per_image(camera_info, info_topic, frame_id, stamps_ns, bag_times)
    else:
        out.camera_info(camera_info or (), info_topic, frame_id)
    path = Path(path)
    _write(path, storage, m, out.rows)
    return path


def _write(path: Path, storage: str, m: _Msgs, pending: dict[tuple[str, str], list[tuple[int, bytes]]]) -> None:
    if storage == "ros1":
        from rosbags.rosbag1 import Writer as Writer1

        if path.suffix != ".bag":
            raise ConfigError(f"{path}: a ROS 1 bag needs the .bag suffix")
        writer: Any = Writer1(path)
    else:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        writer = Writer(path, version=9, storage_plugin=plugin)
    with writer:
        rows = []
        for (topic, msgtype), msgs in pending.items():
            kw = {"latching": 1} if storage == "ros1" and topic == "/tf_static" else {}
            conn = writer.add_connection(topic, msgtype, typestore=m.ts, **kw)
            rows.extend((ns, k, conn, data) for k, (ns, data) in enumerate(msgs))
        for ns, _k, conn, data in sorted(rows, key=lambda r: (r[0], r[2].id, r[1])):
            writer.write(conn, ns, data)
