"""Message types of the node without ROS: a rosbags typestore with our msg/*.msg, CDR (de)serialization, helpers.

The .msg files in msg/ are the single source of truth: rosidl generates `fol_vpr_ros.msg` from them under
colcon, and this module registers the same files in a rosbags typestore, which the message builders,
the bag replay (serialized CDR over rclpy) and the results bag use. Does not import rclpy.
"""

from __future__ import annotations

import os
import site
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rosbags.interfaces import Nodetype
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from fol_vpr_ros.errors import FolVprError
from fol_vpr_ros.stamps import NS_PER_SEC

if TYPE_CHECKING:
    from rosbags.interfaces.typing import FieldDesc
    from rosbags.typesys.store import Typestore

__all__ = [
    "MSG_DIR_ENV",
    "NODE_TYPES",
    "OWN_TYPES",
    "PACKAGE",
    "MsgDefinitionsNotFound",
    "deserialize",
    "make_header",
    "make_message",
    "make_time",
    "msg_class",
    "msg_dir",
    "msg_search_paths",
    "normalize_typename",
    "serialize",
    "time_to_ns",
    "typestore",
]

PACKAGE = "fol_vpr_ros"
MSG_DIR_ENV = "FOL_VPR_MSG_DIR"
"""Environment variable: a folder with our .msg files, searched first."""

OWN_TYPES: tuple[str, ...] = (
    f"{PACKAGE}/msg/PlaceCandidate",
    f"{PACKAGE}/msg/PlaceRecognitionResult",
    f"{PACKAGE}/msg/LoopClosure",
)
"""Our message types (msg/<Name>.msg)."""

NODE_TYPES: tuple[str, ...] = (
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/CompressedImage",
    "nav_msgs/msg/Odometry",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "visualization_msgs/msg/MarkerArray",
    "diagnostic_msgs/msg/DiagnosticArray",
    "std_msgs/msg/Float64MultiArray",
    *OWN_TYPES,
)
"""Every type the node publishes or subscribes."""

# ROS_DISTRO -> rosbags store (message definitions of that distribution); default Humble.
_STORES = {
    "humble": Stores.ROS2_HUMBLE,
    "iron": Stores.ROS2_IRON,
    "jazzy": Stores.ROS2_JAZZY,
    "kilted": Stores.ROS2_KILTED,
}
_DEFAULT_STORE = Stores.ROS2_HUMBLE
_INT32 = (-(2**31), 2**31 - 1)


class MsgDefinitionsNotFound(FolVprError, FileNotFoundError):
    """Our msg/*.msg files were found in none of the searched folders."""


# --------------------------------------------------------------------------------------------------
# locating msg/
# --------------------------------------------------------------------------------------------------
def _ament_share_msg() -> Path | None:
    """share/fol_vpr_ros/msg of a colcon install (rosidl installs the .msg there), if ament_index is there."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    except ImportError:
        return None
    try:
        return Path(get_package_share_directory(PACKAGE)) / "msg"
    except (PackageNotFoundError, ValueError, LookupError):
        return None


def msg_search_paths() -> list[Path]:
    """Folders searched for our .msg files, in order (duplicates removed)."""
    candidates: list[Path | None] = []
    if os.environ.get(MSG_DIR_ENV):
        candidates.append(Path(os.environ[MSG_DIR_ENV]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")  # source checkout / symlink install
    candidates.append(_ament_share_msg())
    for prefix in (sys.prefix, sys.base_prefix, site.getuserbase()):  # pip data_files (also --user)
        candidates.append(Path(prefix) / "share" / PACKAGE / "msg")
    seen: list[Path] = []
    for path in candidates:
        if path is not None and path not in seen:
            seen.append(path)
    return seen


def _has_own_msgs(path: Path) -> bool:
    return all((path / f"{name.rsplit('/', 1)[1]}.msg").is_file() for name in OWN_TYPES)


def msg_dir() -> Path:
    """The first searched folder that holds all of our .msg files."""
    searched = msg_search_paths()
    for path in searched:
        if _has_own_msgs(path):
            return path
    looked = "\n  ".join(str(path) for path in searched)
    names = ", ".join(f"{name.rsplit('/', 1)[1]}.msg" for name in OWN_TYPES)
    raise MsgDefinitionsNotFound(
        f"{PACKAGE} message definitions ({names}) not found; looked in:\n  {looked}\n"
        f"Set {MSG_DIR_ENV} to the msg/ folder of the source checkout, or reinstall the package."
    )


# --------------------------------------------------------------------------------------------------
# typestore
# --------------------------------------------------------------------------------------------------
_lock = threading.Lock()
_stores: dict[Stores, Typestore] = {}


def _store_for_distro(distro: str | None) -> Stores:
    return _STORES.get((distro or "").strip().lower(), _DEFAULT_STORE)


def typestore() -> Typestore:
    """rosbags typestore of ROS 2 ($ROS_DISTRO, default Humble) plus our messages; built once per store."""
    store = _store_for_distro(os.environ.get("ROS_DISTRO"))
    with _lock:
        if store not in _stores:
            types = get_typestore(store)  # a new Typestore per call: registering does not touch others
            definitions: dict[str, Any] = {}
            for path in sorted(msg_dir().glob("*.msg")):
                definitions.update(get_types_from_msg(path.read_text(encoding="utf-8"), f"{PACKAGE}/msg/{path.stem}"))
            types.register(definitions)
            _stores[store] = types
        return _stores[store]


def normalize_typename(typename: str) -> str:
    """`pkg/Name` or `pkg/msg/Name` -> `pkg/msg/Name`."""
    parts = typename.strip("/").split("/")
    if len(parts) == 2:
        parts.insert(1, "msg")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a message type name: {typename!r} (expected pkg/msg/Name)")
    return "/".join(parts)


def msg_class(typename: str) -> type:
    """The rosbags dataclass of a message type, e.g. `msg_class('sensor_msgs/msg/Image')`."""
    name = normalize_typename(typename)
    try:
        return typestore().types[name]
    except KeyError:
        raise KeyError(f"unknown message type {name!r}") from None


# --------------------------------------------------------------------------------------------------
# construction helpers
# --------------------------------------------------------------------------------------------------
def make_time(stamp_ns: int) -> Any:
    """builtin_interfaces/msg/Time from integer nanoseconds (nanosec always in [0, 1e9))."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_SEC)
    if not _INT32[0] <= sec <= _INT32[1]:
        raise ValueError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time (int32 seconds)")
    return msg_class("builtin_interfaces/msg/Time")(sec=sec, nanosec=nanosec)


def time_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces/msg/Time (or Duration)."""
    return int(stamp.sec) * NS_PER_SEC + int(stamp.nanosec)


def make_header(stamp_ns: int, frame_id: str) -> Any:
    """std_msgs/msg/Header."""
    return msg_class("std_msgs/msg/Header")(stamp=make_time(stamp_ns), frame_id=frame_id)


def _dtype(base: str) -> np.dtype:
    return np.dtype({"bool": np.bool_, "char": np.uint8, "byte": np.int8}.get(base, base))


def _default_value(desc: FieldDesc) -> Any:
    kind, detail = desc
    if kind == Nodetype.BASE:
        base = detail[0]
        return "" if base in ("string", "wstring") else False if base == "bool" else 0.0 if "float" in base else 0
    if kind == Nodetype.NAME:
        return make_message(detail)
    (inner_kind, inner), length = detail
    if kind == Nodetype.SEQUENCE:
        return np.zeros(0, _dtype(inner[0])) if inner_kind == Nodetype.BASE and inner[0] != "string" else []
    if inner_kind == Nodetype.BASE and inner[0] != "string":
        return np.zeros(length, _dtype(inner[0]))
    return [_default_value((inner_kind, inner)) for _ in range(length)]


def make_message(typename: str, **fields: Any) -> Any:
    """A message with default values (0, "", empty sequences, zero arrays) and the given fields set."""
    name = normalize_typename(typename)
    cls = msg_class(name)
    _, fielddefs = typestore().fielddefs[name]
    values = {field: _default_value(desc) for field, desc in fielddefs if field not in fields}
    unknown = set(fields) - {field for field, _ in fielddefs}
    if unknown:
        raise TypeError(f"{name} has no field(s) {sorted(unknown)}")
    return cls(**values, **fields)


# --------------------------------------------------------------------------------------------------
# CDR
# --------------------------------------------------------------------------------------------------
def serialize(msg: Any, typename: str) -> bytes:
    """CDR little endian with the 4-byte encapsulation header (00 01 00 00), as ROS 2 sends it and bags store it."""
    return bytes(typestore().serialize_cdr(msg, normalize_typename(typename), little_endian=True))


def deserialize(data: bytes | memoryview, typename: str) -> Any:
    """Inverse of `serialize` (either endianness, with the encapsulation header)."""
    return typestore().deserialize_cdr(data, normalize_typename(typename))
