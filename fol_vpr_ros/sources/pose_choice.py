"""Which pose source a bag offers: the message types of each kind, ``choose_pose_source`` and the GPS topic."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import ConfigError
from .bag import BagTopic

__all__ = [
    "GPS_TYPES",
    "ODOMETRY_TYPES",
    "POSE_KINDS",
    "POSE_TYPES",
    "TF_TYPES",
    "PoseChoice",
    "choose_gps_topic",
    "choose_pose_source",
    "topic_list",
]

ODOMETRY_TYPES = ("nav_msgs/msg/Odometry",)
POSE_TYPES = ("geometry_msgs/msg/PoseStamped", "geometry_msgs/msg/PoseWithCovarianceStamped")
TF_TYPES = ("tf2_msgs/msg/TFMessage", "tf/msg/tfMessage")
GPS_TYPES = ("sensor_msgs/msg/NavSatFix",)
POSE_KINDS = ("auto", "odometry", "pose", "tf", "gps", "none")
_KIND_TYPES = {"odometry": ODOMETRY_TYPES, "pose": POSE_TYPES, "tf": TF_TYPES, "gps": GPS_TYPES}
_KIND_NAMES = {"odometry": "nav_msgs/Odometry", "pose": "geometry_msgs/PoseStamped or PoseWithCovarianceStamped",
               "tf": "tf2_msgs/TFMessage", "gps": "sensor_msgs/NavSatFix"}


@dataclass(frozen=True)
class PoseChoice:
    """Which pose source to use: kind (odometry/pose/tf/gps/none), its topic(s) and why."""

    kind: str
    topic: str | None = None
    static_topic: str | None = None
    reason: str = ""


def _of_kind(topics: Sequence[BagTopic], kind: str) -> list[BagTopic]:
    return [t for t in topics if t.msgtype in _KIND_TYPES[kind]]


def topic_list(topics: Sequence[BagTopic]) -> str:
    """One indented line per topic: name, [type], count."""
    return "\n".join(f"  {t.name}  [{t.msgtype}]  ({t.count} msgs)" for t in topics) or "  (no topics)"


def _tf_choice(topics: Sequence[BagTopic], pose_topic: str | None, reason: str) -> PoseChoice:
    names = {t.name: t for t in topics}
    dyn = pose_topic or ("/tf" if "/tf" in names else None)
    static = "/tf_static" if "/tf_static" in names else None
    if dyn is not None and dyn not in names:
        raise ConfigError(f"tf topic {dyn!r} is not in the bag; topics:\n{topic_list(topics)}")
    return PoseChoice("tf", dyn, static, reason)


def choose_pose_source(topics: Sequence[BagTopic], pose_source: str = "auto",
                       pose_topic: str | None = None) -> PoseChoice:
    """Resolve ``pose_source``/``pose_topic`` against the bag's topics.

    ``auto`` with a topic takes its kind from the topic's type; ``auto`` without one prefers a single
    Odometry topic, then a single PoseStamped/PoseWithCovarianceStamped, then /tf(+/tf_static), then a
    single NavSatFix, else ``none``. Several candidates of the chosen kind raise ConfigError (pass a topic).
    """
    if pose_source not in POSE_KINDS:
        raise ConfigError(f"unknown pose source {pose_source!r}; valid: {', '.join(POSE_KINDS)}")
    names = {t.name: t for t in topics}
    if pose_source == "none":
        return PoseChoice("none", reason="--pose-source none")
    if pose_topic is not None:
        if pose_topic not in names:
            raise ConfigError(f"pose topic {pose_topic!r} is not in the bag; topics:\n{topic_list(topics)}")
        msgtype = names[pose_topic].msgtype
        kind = next((k for k, types in _KIND_TYPES.items() if msgtype in types), None)
        if kind is None:
            raise ConfigError(f"pose topic {pose_topic!r} has type {msgtype}; supported: "
                              + ", ".join(t for ts in _KIND_TYPES.values() for t in ts))
        if pose_source not in ("auto", kind):
            raise ConfigError(f"pose topic {pose_topic!r} is a {msgtype}, not {_KIND_NAMES[pose_source]} "
                              f"(--pose-source {pose_source})")
        if kind == "tf":
            return _tf_choice(topics, pose_topic, f"{pose_topic} ({msgtype})")
        return PoseChoice(kind, pose_topic, reason=f"{pose_topic} ({msgtype})")
    kinds = ("odometry", "pose", "tf", "gps") if pose_source == "auto" else (pose_source,)
    for kind in kinds:
        found = _of_kind(topics, kind)
        if kind == "tf":
            if any(t.name in ("/tf", "/tf_static") for t in found):
                return _tf_choice(topics, None, "/tf and /tf_static" if len(found) > 1 else found[0].name)
            found = []
        if len(found) > 1:
            raise ConfigError(f"several {_KIND_NAMES[kind]} topics: {', '.join(t.name for t in found)}; "
                              "pass --pose-topic to pick one")
        if found:
            return PoseChoice(kind, found[0].name, reason=f"{found[0].name} ({found[0].msgtype})")
    if pose_source != "auto":
        raise ConfigError(f"--pose-source {pose_source}: the bag has no {_KIND_NAMES[pose_source]} topic; "
                          f"topics:\n{topic_list(topics)}")
    return PoseChoice("none", reason="no pose topic in the bag")


def choose_gps_topic(topics: Sequence[BagTopic], choice: PoseChoice, gps_topic: str | None,
                     notes: list[str]) -> str | None:
    """The NavSatFix topic whose UTM positions are attached to the frames (None: none).

    ``gps_topic`` 'auto' takes the bag's only NavSatFix topic (several: none, with a note); None never
    attaches GPS; a GPS pose source needs no extra GPS topic."""
    if choice.kind == "gps" or gps_topic is None:
        return None
    found = [t.name for t in topics if t.msgtype in GPS_TYPES]
    if gps_topic != "auto":
        if gps_topic not in found:
            raise ConfigError(f"GPS topic {gps_topic!r} is not a NavSatFix topic of the bag (NavSatFix topics: "
                              f"{', '.join(found) or 'none'})")
        return gps_topic
    if len(found) > 1:
        notes.append(f"several NavSatFix topics ({', '.join(found)}): no GPS attached; pass a GPS topic")
        return None
    return found[0] if found else None
