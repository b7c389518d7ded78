"""ROS 2 message types for Cyclone DDS, built at run time from the rosbags typestore (see `interfaces`).

What rmw_cyclonedds puts on the wire: topic `rt/<fully qualified name>`, type `pkg::msg::dds_::Name_`,
XCDR1 (plain CDR) with the 4-byte encapsulation header. A ROS 2 node using rmw_cyclonedds reads our topics.
Only the DDS adapter imports this module (it needs the `cyclonedds` package).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from cyclonedds.idl import IdlStruct, make_idl_struct
from cyclonedds.idl import types as idl
from cyclonedds.idl._machinery import BytesMachine, PlainCdrV2SequenceOfPrimitiveMachine, StructMachine
from cyclonedds.qos import Policy, Qos
from cyclonedds.util import duration
from rosbags.interfaces import Nodetype

from fol_vpr_ros.ros.interfaces import msg_class, normalize_typename, typestore

__all__ = [
    "CYCLONEDDS_URI_ENV",
    "dds_type",
    "dds_typename",
    "from_dds",
    "loopback_config",
    "reliable_qos",
    "ros_domain_id",
    "sensor_data_qos",
    "to_dds",
    "topic_name",
    "transient_local_qos",
]

CYCLONEDDS_URI_ENV = "CYCLONEDDS_URI"

# ROS base type -> Cyclone DDS Python type. ROS `byte` is IDL octet (rosbags reads it as int8, converted below),
# ROS `char` is uint8.
_PRIMITIVES: dict[str, Any] = {
    "bool": bool,
    "byte": idl.byte,
    "char": idl.uint8,
    "int8": idl.int8,
    "uint8": idl.uint8,
    "int16": idl.int16,
    "uint16": idl.uint16,
    "int32": idl.int32,
    "uint32": idl.uint32,
    "int64": idl.int64,
    "uint64": idl.uint64,
    "float32": idl.float32,
    "float64": idl.float64,
}
# 1-byte element types: their arrays and sequences travel as `bytes` (see _fast_octet_sequences).
_OCTETS = {"byte": np.int8, "char": np.uint8, "uint8": np.uint8}
_NUMPY = {"bool": np.bool_, "float32": np.float32, "float64": np.float64} | {
    name: getattr(np, name) for name in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
}

Converter = Callable[[Any], Any]

_lock = threading.RLock()
_classes: dict[tuple[int, str], type[IdlStruct]] = {}
_converters: dict[tuple[int, str], tuple[list[tuple[str, Converter]], list[tuple[str, Converter]]]] = {}


# --------------------------------------------------------------------------------------------------
# names
# --------------------------------------------------------------------------------------------------
def dds_typename(typename: str) -> str:
    """`sensor_msgs/msg/Image` -> `sensor_msgs::msg::dds_::Image_` (the type name rmw_cyclonedds registers)."""
    package, kind, name = normalize_typename(typename).split("/")
    return f"{package}::{kind}::dds_::{name}_"


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _join(namespace: str, name: str) -> str:
    return namespace.rstrip("/") + "/" + name


def topic_name(name: str, namespace: str = "/", node_name: str | None = None) -> str:
    """ROS topic name -> DDS topic name: `/fol_vpr/result` -> `rt/fol_vpr/result`.

    Relative names are resolved against `namespace`, `~/x` against `namespace/node_name`.
    """
    namespace = "/" + namespace.strip("/") if namespace.strip("/") else "/"
    if name.startswith("~"):
        if not node_name:
            raise ValueError(f"private topic name {name!r} needs node_name")
        name = _join(_join(namespace, node_name), name[1:].lstrip("/"))
    elif not name.startswith("/"):
        name = _join(namespace, name)
    tokens = name[1:].split("/")
    if not name[1:] or not all(_TOKEN.fullmatch(token) for token in tokens):
        raise ValueError(f"invalid ROS topic name {name!r}")
    return "rt" + name


# --------------------------------------------------------------------------------------------------
# types
# --------------------------------------------------------------------------------------------------
def _base_type(base: str, bound: int) -> Any:
    if base == "string":
        return idl.bounded_str[bound] if bound else str
    if base not in _PRIMITIVES:
        raise NotImplementedError(f"ROS type {base!r} is not supported by the DDS adapter")
    return _PRIMITIVES[base]


def _field_type(desc: Any) -> Any:
    kind, detail = desc
    if kind == Nodetype.BASE:
        return _base_type(*detail)
    if kind == Nodetype.NAME:
        return dds_type(detail)
    (inner_kind, inner), length = detail
    element = _base_type(*inner) if inner_kind == Nodetype.BASE else dds_type(inner)
    if kind == Nodetype.ARRAY:
        return idl.array[element, length]  # uint8/octet arrays map to Python bytes in cyclonedds
    return idl.sequence[element, length] if length else idl.sequence[element]


def dds_type(typename: str) -> type[IdlStruct]:
    """Cyclone DDS IdlStruct class of a ROS message type (built once, nested types included)."""
    name = normalize_typename(typename)
    store = typestore()
    key = (id(store), name)
    with _lock:
        if key not in _classes:
            _, fielddefs = store.fielddefs[name]
            # empty msgs need no care: rosbags already gives them rosidl's dummy uint8 member
            fields = {field: _field_type(desc) for field, desc in fielddefs}
            cls = make_idl_struct(name.replace("/", "__"), dds_typename(name), fields)
            _fast_octet_sequences(cls)
            _classes[key] = cls
        return _classes[key]


def _fast_octet_sequences(cls: type[IdlStruct]) -> None:
    """Serialize 1-byte sequences (image data) from/to `bytes` in one copy instead of element by element.

    cyclonedds' Python serializer packs `sequence[uint8]` as a list of ints (~45 ms round trip for 640x480x3). Its
    `bytes` machine writes the same wire format (align 4, uint32 length, raw bytes) but has no XTypes type
    object, so the declared type stays `sequence[uint8]` and only the member's serializer is swapped. If the
    internals differ (another cyclonedds version) the slow, still correct, path stays.
    """
    idl_data = cls.__idl__
    idl_data.populate()
    for machine in (idl_data.v1_machine, idl_data.v2_machine):
        members = getattr(machine, "members_machines", None)
        if not isinstance(machine, StructMachine) or not isinstance(members, dict):
            continue
        for member, sub in members.items():
            if isinstance(sub, PlainCdrV2SequenceOfPrimitiveMachine) and getattr(sub, "code", None) == "B":  # octets
                members[member] = BytesMachine(bound=sub.max_length)


# --------------------------------------------------------------------------------------------------
# conversion rosbags <-> cyclonedds
# --------------------------------------------------------------------------------------------------
def _signed_byte(value: int) -> int:
    return value - 256 if value > 127 else value


def _scalar_converters(base: str) -> tuple[Converter, Converter]:
    if base == "byte":
        return (lambda v: int(v) & 0xFF), _signed_byte
    if base == "string":
        return str, str
    if base == "bool":
        return bool, bool
    if base.startswith("float"):
        return float, float
    return int, int


def _field_converters(desc: Any) -> tuple[Converter, Converter]:
    """(rosbags value -> DDS value, DDS value -> rosbags value) of one field."""
    kind, detail = desc
    if kind == Nodetype.BASE:
        return _scalar_converters(detail[0])
    if kind == Nodetype.NAME:
        return (lambda v, n=detail: to_dds(v, n)), (lambda v, n=detail: from_dds(v, n))
    (inner_kind, inner), _ = detail
    if inner_kind == Nodetype.NAME:
        return (lambda v, n=inner: [to_dds(x, n) for x in v]), (lambda v, n=inner: [from_dds(x, n) for x in v])
    base = inner[0]
    if base == "string":
        return list, list
    if base in _OCTETS:
        dtype = _OCTETS[base]
        return (
            lambda v: v if isinstance(v, bytes) else np.ascontiguousarray(v, dtype=dtype).tobytes(),
            lambda v: np.frombuffer(v if isinstance(v, bytes | bytearray) else bytes(v), dtype=dtype),
        )
    dtype = _NUMPY[base]
    return (lambda v: np.asarray(v, dtype=dtype).tolist()), (lambda v: np.array(v, dtype=dtype))


def _converters_for(name: str) -> tuple[list[tuple[str, Converter]], list[tuple[str, Converter]]]:
    store = typestore()
    key = (id(store), name)
    with _lock:
        if key not in _converters:
            pairs = [(field, _field_converters(desc)) for field, desc in store.fielddefs[name][1]]
            _converters[key] = ([(f, c[0]) for f, c in pairs], [(f, c[1]) for f, c in pairs])
        return _converters[key]


def to_dds(msg: Any, typename: str) -> IdlStruct:
    """rosbags message -> instance of `dds_type(typename)`."""
    name = normalize_typename(typename)
    cls = dds_type(name)
    forward, _ = _converters_for(name)
    return cls(**{field: convert(getattr(msg, field)) for field, convert in forward})


def from_dds(sample: Any, typename: str) -> Any:
    """Instance of `dds_type(typename)` -> rosbags message (numpy arrays for primitive arrays, like rosbags)."""
    name = normalize_typename(typename)
    _, backward = _converters_for(name)
    return msg_class(name)(**{field: convert(getattr(sample, field)) for field, convert in backward})


# --------------------------------------------------------------------------------------------------
# QoS (the ROS 2 profiles)
# --------------------------------------------------------------------------------------------------
def sensor_data_qos(depth: int = 5) -> Qos:
    """rclpy qos_profile_sensor_data: best effort, keep last `depth`, volatile."""
    return Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(depth), Policy.Durability.Volatile)


def reliable_qos(depth: int = 10) -> Qos:
    """ROS 2 default profile: reliable, keep last `depth`, volatile."""
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
        Policy.History.KeepLast(depth),
        Policy.Durability.Volatile,
    )


def transient_local_qos(depth: int = 1) -> Qos:
    """Latched topic: reliable, keep last `depth`, transient local (late joiners get the last samples)."""
    return Qos(
        Policy.Reliability.Reliable(max_blocking_time=duration(milliseconds=100)),
        Policy.History.KeepLast(depth),
        Policy.Durability.TransientLocal,
    )


# --------------------------------------------------------------------------------------------------
# domain configuration
# --------------------------------------------------------------------------------------------------
LOOPBACK_XML = (
    '<CycloneDDS><Domain Id="any"><General><Interfaces>'
    '<NetworkInterface address="127.0.0.1" multicast="true"/>'
    "</Interfaces></General></Domain></CycloneDDS>"
)
"""Cyclone DDS config that keeps all traffic on 127.0.0.1 (what ROS_LOCALHOST_ONLY=1 does in rmw_cyclonedds);
multicast is forced on: Linux delivers it on lo even where the interface lacks the MULTICAST flag."""


def loopback_config(*, apply: bool = True, override: bool = False) -> str:
    """Return the loopback-only config; with `apply`, export it as CYCLONEDDS_URI.

    An existing CYCLONEDDS_URI is kept unless `override`. Must run before the first DomainParticipant of the
    process is created (Cyclone reads the variable when it creates the domain).
    """
    if apply and (override or not os.environ.get(CYCLONEDDS_URI_ENV)):
        os.environ[CYCLONEDDS_URI_ENV] = LOOPBACK_XML
    return LOOPBACK_XML


def ros_domain_id(default: int = 0) -> int:
    """$ROS_DOMAIN_ID (0-232 for the default port mapping) or `default`."""
    value = os.environ.get("ROS_DOMAIN_ID", "").strip()
    if not value:
        return default
    domain = int(value)
    if not 0 <= domain <= 232:
        raise ValueError(f"ROS_DOMAIN_ID={value} is outside 0..232")
    return domain
