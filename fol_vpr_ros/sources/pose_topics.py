"""Collectors of the pose topics of a bag (Odometry / PoseStamped / NavSatFix builders, tf) and one-topic readers.

A builder is fed messages during a bag scan and ``finish``es into a track; messages with a zero header
stamp use the bag time, invalid ones are dropped, and both are counted in the builder's ``stats``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .bag import REASON_UNREADABLE, BagError, BagMessage, header_stamp_ns, open_bag, read_topics
from .geometry import finite_pose, xyz_of, xyzw_of
from .pose_choice import ODOMETRY_TYPES, POSE_TYPES, PoseChoice, topic_list
from .tf_tree import TfTree, TfTreeBuilder, strip_frame
from .tracks import GeoTrack, PoseTrack, StampedSample, clean_stamps

__all__ = [
    "GeoTrackBuilder",
    "PoseCollectors",
    "PoseTrackBuilder",
    "pose_collectors",
    "read_geo_track",
    "read_pose_track",
    "read_tf_tree",
]


class PoseTrackBuilder:
    """Collects Odometry / PoseStamped / PoseWithCovarianceStamped messages of one topic."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.samples: list[StampedSample] = []
        self.frames: Counter[tuple[str, str]] = Counter()
        self.stats: Counter[str] = Counter()

    def add(self, msgtype: str, msg: Any, bag_ns: int) -> None:
        stamp = header_stamp_ns(msg)
        if stamp == 0:
            stamp = bag_ns
            self.stats[f"{self.topic}: zero header stamps (bag time used)"] += 1
        if msgtype in ODOMETRY_TYPES:
            pose, child = msg.pose.pose, strip_frame(msg.child_frame_id)
        elif msgtype == "geometry_msgs/msg/PoseWithCovarianceStamped":
            pose, child = msg.pose.pose, ""
        elif msgtype == "geometry_msgs/msg/PoseStamped":
            pose, child = msg.pose, ""
        else:
            raise ConfigError(f"{self.topic}: {msgtype} is not a pose type ({', '.join(ODOMETRY_TYPES + POSE_TYPES)})")
        q = xyzw_of(pose.orientation)
        p = xyz_of(pose.position)
        if not finite_pose(p, q):
            self.stats[f"{self.topic}: invalid poses (NaN or zero quaternion) dropped"] += 1
            return
        self.frames[(strip_frame(msg.header.frame_id), child)] += 1
        self.samples.append(StampedSample(stamp, p, q))

    def finish(self) -> PoseTrack:
        if not self.samples:
            raise BagError(f"{self.topic}: no usable pose messages")
        if len(self.frames) > 1:
            raise BagError(f"{self.topic}: poses in several frames {sorted(self.frames)}; "
                           "cannot interpolate between them")
        frame, child = next(iter(self.frames))
        keep = clean_stamps([s.stamp_ns for s in self.samples], self.topic, self.stats)
        ss = [self.samples[i] for i in keep]
        return PoseTrack(frame or "map", child, [s.stamp_ns for s in ss], [s.position for s in ss],
                         [s.orientation for s in ss], source=self.topic)


class GeoTrackBuilder:
    """Collects NavSatFix messages; fixes with status < 0 (no fix) or invalid values are dropped and counted."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.rows: list[tuple[int, float, float, float]] = []
        self.stats: Counter[str] = Counter()

    def add(self, msgtype: str, msg: Any, bag_ns: int) -> None:
        if msg.status.status < 0:
            self.stats[f"{self.topic}: fixes with status < 0 (no fix) dropped"] += 1
            return
        lat, lon, alt = float(msg.latitude), float(msg.longitude), float(msg.altitude)
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            self.stats[f"{self.topic}: fixes with invalid latitude/longitude dropped"] += 1
            return
        stamp = header_stamp_ns(msg)
        if stamp == 0:
            stamp = bag_ns
            self.stats[f"{self.topic}: zero header stamps (bag time used)"] += 1
        self.rows.append((stamp, lat, lon, alt if math.isfinite(alt) else math.nan))

    def finish(self) -> GeoTrack:
        if not self.rows:
            raise BagError(f"{self.topic}: no usable NavSatFix messages (all without a fix or invalid)")
        keep = clean_stamps([r[0] for r in self.rows], self.topic, self.stats)
        a = np.array([self.rows[i] for i in keep], dtype=np.float64)
        return GeoTrack(np.array([self.rows[i][0] for i in keep], np.int64), a[:, 1], a[:, 2], a[:, 3],
                        source=self.topic)


def _read(path: Any, topics: Mapping[str, Callable[[str, str, Any, int], None]], stats: Counter) -> None:
    with open_bag(path) as (reader, resolved, bag_topics):
        names = {t.name for t in bag_topics}
        missing = [t for t in topics if t not in names]
        if missing:
            raise BagError(f"{resolved}: topic(s) {', '.join(missing)} not in the bag; "
                           f"topics:\n{topic_list(bag_topics)}")
        for m in read_topics(reader, resolved, list(topics)):
            if m.msg is None:
                stats[f"{m.topic}: messages that could not be deserialised"] += 1
            else:
                topics[m.topic](m.topic, m.msgtype, m.msg, m.bag_ns)


def read_pose_track(path: Any, topic: str) -> PoseTrack:
    """The interpolatable track of one Odometry / PoseStamped / PoseWithCovarianceStamped topic."""
    b = PoseTrackBuilder(topic)
    _read(path, {topic: lambda _t, mt, m, ns: b.add(mt, m, ns)}, b.stats)
    return b.finish()


def read_tf_tree(path: Any, tf_topic: str = "/tf", static_topic: str | None = "/tf_static") -> TfTree:
    """All transforms of the bag's /tf and /tf_static topics."""
    b = TfTreeBuilder([static_topic] if static_topic else [])
    with open_bag(path) as (_r, _p, bag_topics):
        present = {t.name for t in bag_topics}
    wanted = [t for t in (tf_topic, static_topic) if t and t in present]
    if not wanted:
        raise BagError(f"{path}: no {tf_topic} or {static_topic} topic")
    _read(path, {t: lambda tp, _mt, m, ns: b.add_topic_message(tp, m, ns) for t in wanted}, b.stats)
    return b.finish()


def read_geo_track(path: Any, topic: str) -> GeoTrack:
    """GNSS fixes of one NavSatFix topic (no-fix messages dropped)."""
    b = GeoTrackBuilder(topic)
    _read(path, {topic: lambda _t, mt, m, ns: b.add(mt, m, ns)}, b.stats)
    return b.finish()


@dataclass
class PoseCollectors:
    """Builders fed during one bag scan: the chosen pose source and an optional extra GPS topic.

    ``routes`` maps topic -> callback for ``BagImageSource.scan``; unreadable messages are counted in
    ``stats`` instead of reaching a builder.
    """

    pose: PoseTrackBuilder | None = None
    tf: TfTreeBuilder | None = None
    geo: GeoTrackBuilder | None = None
    gps: GeoTrackBuilder | None = None
    routes: dict[str, Callable[[BagMessage], None]] = field(default_factory=dict)
    stats: Counter[str] = field(default_factory=Counter)


def pose_collectors(choice: PoseChoice, gps_topic: str | None) -> PoseCollectors:
    """Collectors (and scan routes) for a pose choice plus an optional NavSatFix topic for UTM."""
    out = PoseCollectors()

    def route(fn: Callable[[BagMessage], None]) -> Callable[[BagMessage], None]:
        def handle(m: BagMessage) -> None:
            if m.msg is None:
                out.stats[f"{m.topic}: {REASON_UNREADABLE}"] += 1
            else:
                fn(m)
        return handle

    if choice.kind in ("odometry", "pose"):
        pose_b = out.pose = PoseTrackBuilder(choice.topic)
        out.routes[choice.topic] = route(lambda m: pose_b.add(m.msgtype, m.msg, m.bag_ns))
    elif choice.kind == "tf":
        tf_b = out.tf = TfTreeBuilder([choice.static_topic] if choice.static_topic else [])
        for t in (choice.topic, choice.static_topic):
            if t:
                out.routes[t] = route(lambda m: tf_b.add_topic_message(m.topic, m.msg, m.bag_ns))
    elif choice.kind == "gps":
        geo_b = out.geo = GeoTrackBuilder(choice.topic)
        out.routes[choice.topic] = route(lambda m: geo_b.add(m.msgtype, m.msg, m.bag_ns))
    if gps_topic is not None:
        gps_b = out.gps = GeoTrackBuilder(gps_topic)
        out.routes[gps_topic] = route(lambda m: gps_b.add(m.msgtype, m.msg, m.bag_ns))
    return out
