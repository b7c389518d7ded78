"""Camera intrinsics from a bag's sensor_msgs/CameraInfo topic: the camera valid at each image stamp.

The default topic is the image topic's sibling ``camera_info``, as image_transport names it
(``/cam/image_raw`` and ``/cam/image_raw/compressed`` -> ``/cam/camera_info``). A CameraInfo with an
all-zero K is an uncalibrated camera (None), as the CameraInfo documentation defines it.
"""

from __future__ import annotations

import bisect
from collections import Counter
from typing import Any

from ..errors import ConfigError
from .bag import BagError, BagImageSource, BagMessage, format_topics, header_stamp_ns
from .camera import CameraIntrinsics, intrinsics_or_none

__all__ = ["CAMERA_INFO_TYPE", "CameraTrack", "camera_info_topic", "intrinsics_from_message"]

CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd")  # image_transport plugin sub-topics
REASON_UNCALIBRATED = "all-zero K (uncalibrated camera)"


def camera_info_topic(image_topic: str) -> str:
    """The CameraInfo topic image_transport pairs with ``image_topic`` (its sibling ``camera_info``)."""
    parts = image_topic.rstrip("/").split("/")
    if len(parts) > 2 and parts[-1] in TRANSPORT_SUFFIXES:
        parts = parts[:-1]
    return "/".join([*parts[:-1], "camera_info"]) if len(parts) > 1 else "camera_info"


def _field(msg: Any, name: str) -> Any:
    """A CameraInfo array by its ROS 2 name (``k``) or its ROS 1 name (``K``)."""
    return getattr(msg, name) if hasattr(msg, name) else getattr(msg, name.upper())


def intrinsics_from_message(msg: Any) -> CameraIntrinsics | None:
    """The intrinsics of a CameraInfo message read from a bag; None for an all-zero K (uncalibrated).

    Raises ConfigError for a K that is neither zero nor a valid pinhole matrix."""
    k = [float(v) for v in _field(msg, "k")]
    if len(k) != 9:
        raise ConfigError(f"CameraInfo K must have 9 values, got {len(k)}")
    return intrinsics_or_none(k, [float(v) for v in _field(msg, "d")], str(msg.distortion_model), int(msg.width),
                              int(msg.height))


class CameraTrack:
    """CameraInfo messages of one topic, by header stamp; ``at(stamp)`` is the latest at or before it."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._stamps: list[int] = []
        self._cameras: list[CameraIntrinsics | None] = []
        self.messages = 0
        self.skipped: Counter[str] = Counter()

    def add(self, m: BagMessage) -> None:
        """Take one bag message of the topic (unreadable or invalid ones are counted in ``skipped``)."""
        self.messages += 1
        if m.msg is None:
            self.skipped["message could not be deserialised"] += 1
            return
        try:
            camera = intrinsics_from_message(m.msg)
        except (ConfigError, TypeError, ValueError) as exc:
            self.skipped[f"invalid camera: {exc}"] += 1
            return
        if camera is None:
            self.skipped[REASON_UNCALIBRATED] += 1
        stamp = header_stamp_ns(m.msg) or m.bag_ns
        j = bisect.bisect_right(self._stamps, stamp)
        self._stamps.insert(j, stamp)
        self._cameras.insert(j, camera)

    @property
    def notes(self) -> list[str]:
        """One line per kind of CameraInfo that gave no camera (uncalibrated, invalid, unreadable), with counts."""
        return [f"{self.topic}: {n} message(s) with {reason}: keyframes after them have no camera"
                for reason, n in self.skipped.items()]

    def at(self, stamp_ns: int) -> CameraIntrinsics | None:
        """The camera of the latest CameraInfo at or before ``stamp_ns`` (None before the first, or uncalibrated)."""
        j = bisect.bisect_right(self._stamps, stamp_ns)
        return self._cameras[j - 1] if j else None


def camera_track(source: BagImageSource, wanted: str | None = "auto") -> CameraTrack | None:
    """The CameraInfo track to read: ``wanted`` ('auto': the image topic's sibling if the bag has it; None: none)."""
    if wanted is None:
        return None
    topic = camera_info_topic(source.topic) if wanted == "auto" else wanted
    found = {t.name: t for t in source.topics}.get(topic)
    if found is None:
        if wanted == "auto":
            return None
        raise BagError(f"{source.path}: no camera info topic {topic!r}; the bag has:\n{format_topics(source.topics)}")
    if found.msgtype != CAMERA_INFO_TYPE:
        raise BagError(f"{source.path}: camera info topic {topic!r} is a {found.msgtype}, not a {CAMERA_INFO_TYPE}")
    return CameraTrack(topic)
