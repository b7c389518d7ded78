"""Keyframe records: id, time stamp, source, optional pose, GPS/UTM position, camera and session/robot ids.

``camera`` (the keyframe's ``CameraIntrinsics``, from CameraInfo) and the ids are optional keys of
``keyframes.jsonl``: a record without them reads as None, so maps written before they existed load
unchanged and the format version stays 1 (an older reader ignores keys it does not know).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, MapError
from ..stamps import NS_PER_SEC

if TYPE_CHECKING:
    from ..sources.camera import CameraIntrinsics

__all__ = [
    "GeoPosition",
    "Keyframe",
    "Pose",
    "check_id",
    "records_jsonl",
    "stamp_ns_from_ros",
    "stamp_ns_from_seconds",
]

_INT64_MAX = 2**63 - 1


def stamp_ns_from_seconds(seconds: float) -> int:
    """Seconds (float) to integer nanoseconds, rounded to the nearest nanosecond."""
    if not math.isfinite(seconds):
        raise ConfigError(f"time stamp must be finite seconds, got {seconds!r}")
    return round(seconds * NS_PER_SEC)


def stamp_ns_from_ros(sec: int, nanosec: int) -> int:
    """A ROS ``builtin_interfaces/Time`` (sec, nanosec) to integer nanoseconds."""
    return int(sec) * NS_PER_SEC + int(nanosec)


def _floats(values: Any, n: int, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be {n} numbers, got {values!r}") from None
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ConfigError(f"{what} must be {n} finite numbers, got {values!r}")
    return out


@dataclass(frozen=True)
class Pose:
    """Camera pose in ``frame_id``: position xyz (m) and orientation quaternion xyzw."""

    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)
    frame_id: str = "map"

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", _floats(self.position, 3, "pose position"))
        q = _floats(self.orientation, 4, "pose orientation (x, y, z, w)")
        if math.sqrt(sum(v * v for v in q)) < 1e-6:
            raise ConfigError(f"pose orientation quaternion {q} has zero norm")
        object.__setattr__(self, "orientation", q)
        object.__setattr__(self, "frame_id", str(self.frame_id))

    def to_json(self) -> dict[str, Any]:
        return {"position": list(self.position), "orientation": list(self.orientation),
                "frame_id": self.frame_id}

    @classmethod
    def from_json(cls, obj: Any) -> Pose:
        if not isinstance(obj, dict):
            raise ConfigError(f"pose must be an object, got {obj!r}")
        return cls(obj.get("position"), obj.get("orientation", (0.0, 0.0, 0.0, 1.0)),
                   obj.get("frame_id", "map"))


@dataclass(frozen=True)
class GeoPosition:
    """A GNSS fix as UTM (easting, northing, zone such as '32U') and/or WGS84 latitude/longitude."""

    easting: float | None = None
    northing: float | None = None
    zone: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None

    def __post_init__(self) -> None:
        for name in ("easting", "northing", "latitude", "longitude", "altitude"):
            v = getattr(self, name)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ConfigError(f"GPS {name} must be a number, got {v!r}") from None
                if not math.isfinite(v):
                    raise ConfigError(f"GPS {name} must be finite, got {v!r}")
                object.__setattr__(self, name, v)
        utm = (self.easting, self.northing, self.zone)
        if any(v is not None for v in utm) and any(v is None for v in utm):
            raise ConfigError("UTM position needs easting, northing and zone together")
        if (self.latitude is None) != (self.longitude is None):
            raise ConfigError("GPS position needs latitude and longitude together")
        if self.easting is None and self.latitude is None:
            raise ConfigError("GPS position needs UTM (easting, northing, zone) or latitude/longitude")
        if self.latitude is not None and not (-90.0 <= self.latitude <= 90.0):
            raise ConfigError(f"latitude {self.latitude} outside [-90, 90]")
        if self.longitude is not None and not (-180.0 <= self.longitude <= 180.0):
            raise ConfigError(f"longitude {self.longitude} outside [-180, 180]")
        if self.zone is not None:
            object.__setattr__(self, "zone", str(self.zone))

    def to_json(self) -> dict[str, Any]:
        names = ("easting", "northing", "zone", "latitude", "longitude", "altitude")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    @classmethod
    def from_json(cls, obj: Any) -> GeoPosition:
        if not isinstance(obj, dict):
            raise ConfigError(f"GPS position must be an object, got {obj!r}")
        known = {"easting", "northing", "zone", "latitude", "longitude", "altitude"}
        return cls(**{k: v for k, v in obj.items() if k in known})


@dataclass(frozen=True)
class Keyframe:
    """One mapped image. ``id`` None means 'assign the next id' when added to a map."""

    stamp_ns: int
    frame_id: str = ""
    source: str = ""
    id: int | None = None
    pose: Pose | None = None
    geo: GeoPosition | None = None
    session_id: str | None = None
    robot_id: str | None = None
    camera: CameraIntrinsics | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stamp_ns, bool) or not isinstance(self.stamp_ns, int):
            raise ConfigError(
                f"keyframe stamp_ns must be integer nanoseconds, got {self.stamp_ns!r} "
                "(use stamp_ns_from_seconds or stamp_ns_from_ros)")
        if not -_INT64_MAX <= self.stamp_ns <= _INT64_MAX:
            raise ConfigError(f"keyframe stamp_ns {self.stamp_ns} does not fit in int64")
        if self.id is not None and (isinstance(self.id, bool) or not isinstance(self.id, int)
                                    or not 0 <= self.id <= _INT64_MAX):
            raise ConfigError(f"keyframe id must be a non-negative integer, got {self.id!r}")
        if self.pose is not None and not isinstance(self.pose, Pose):
            raise ConfigError(f"keyframe pose must be a Pose, got {type(self.pose).__name__}")
        if self.geo is not None and not isinstance(self.geo, GeoPosition):
            raise ConfigError(f"keyframe geo must be a GeoPosition, got {type(self.geo).__name__}")
        if self.camera is not None and not isinstance(self.camera, _camera_type()):
            raise ConfigError(f"keyframe camera must be a CameraIntrinsics, got {type(self.camera).__name__}")
        for name in ("session_id", "robot_id"):
            check_id(name, getattr(self, name))

    @property
    def stamp(self) -> float:
        """Time stamp in seconds (float; use ``stamp_ns`` for exact values)."""
        return self.stamp_ns * 1e-9

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "stamp_ns": self.stamp_ns, "frame_id": self.frame_id,
                               "source": self.source}
        if self.pose is not None:
            out["pose"] = self.pose.to_json()
        if self.geo is not None:
            out["geo"] = self.geo.to_json()
        if self.session_id is not None:
            out["session_id"] = self.session_id
        if self.robot_id is not None:
            out["robot_id"] = self.robot_id
        if self.camera is not None:
            out["camera"] = self.camera.to_json()
        return out

    @classmethod
    def from_json(cls, obj: Any, where: str = "keyframe record") -> Keyframe:
        """Parse a record written by ``to_json``; raises MapError naming ``where`` when invalid."""
        if not isinstance(obj, dict):
            raise MapError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        try:
            if not isinstance(obj.get("id"), int):
                raise ConfigError(f"missing or non-integer id {obj.get('id')!r}")
            pose = Pose.from_json(obj["pose"]) if obj.get("pose") is not None else None
            geo = GeoPosition.from_json(obj["geo"]) if obj.get("geo") is not None else None
            camera = _camera_type().from_json(obj["camera"]) if obj.get("camera") is not None else None
            return cls(stamp_ns=obj.get("stamp_ns"), frame_id=str(obj.get("frame_id", "")),
                       source=str(obj.get("source", "")), id=obj["id"], pose=pose, geo=geo,
                       session_id=obj.get("session_id"), robot_id=obj.get("robot_id"), camera=camera)
        except ConfigError as exc:
            raise MapError(f"{where}: invalid keyframe record: {exc}") from None


def _camera_type() -> type[CameraIntrinsics]:
    """``sources.camera.CameraIntrinsics``, imported on first use: ``sources`` imports ``mapping`` on load."""
    from ..sources.camera import CameraIntrinsics

    return CameraIntrinsics


def check_id(name: str, value: Any) -> None:
    """A robot or session id is None or a string without control characters (ConfigError naming it)."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"keyframe {name} must be a string, got {value!r}")
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ConfigError(f"keyframe {name} {value!r} holds control characters")


def records_jsonl(records: Iterable[Keyframe], lines_per_chunk: int = 4096) -> Iterator[str]:
    """``keyframes.jsonl`` text in chunks of ``lines_per_chunk`` records, one compact JSON object per line."""
    batch = []
    for rec in records:
        batch.append(json.dumps(rec.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
        if len(batch) >= lines_per_chunk:
            yield "".join(batch)
            batch = []
    yield "".join(batch)
