"""Visualisation marker data of each processed frame: map keyframe positions (when due), match, match line."""

from __future__ import annotations

import threading

from ..mapping import Pose, VprMap
from ..stamps import NS_PER_SEC
from .frames import CandidateInfo, MarkerData
from .pose import Point

__all__ = ["MarkerBuilder"]


class MarkerBuilder:
    """Builds ``MarkerData``; map positions are cached until the map changes and sent every ``period_sec``."""

    def __init__(self, vpr_map: VprMap, map_lock: threading.RLock, period_sec: float) -> None:
        self.map = vpr_map
        self._map_lock = map_lock
        self.period_ns = round(period_sec * NS_PER_SEC)
        self._points_stamp: int | None = None
        self._points_cache: tuple[int, tuple[Point, ...]] | None = None

    def forget(self) -> None:
        """Drop the cached map positions (the map was saved or replaced)."""
        self._points_cache = None

    def map_points(self) -> tuple[Point, ...]:
        """Positions of the map keyframes that have poses (cached until the map grows)."""
        with self._map_lock:
            n = len(self.map)
            if self._points_cache is None or self._points_cache[0] != n:
                pts = tuple(k.pose.position for k in self.map.keyframes() if k.pose is not None)
                self._points_cache = (n, pts)
            return self._points_cache[1]

    def build(self, frame_id: str, stamp: int, match: CandidateInfo | None, query_pose: Pose | None) -> MarkerData:
        """Marker data in ``frame_id`` for a frame at ``stamp`` (image time) with its match, if any."""
        last = self._points_stamp
        due = last is None or stamp < last or (self.period_ns > 0 and stamp - last >= self.period_ns)
        points = None
        if due:
            points = self.map_points()
            self._points_stamp = stamp
        match_point = match.pose.position if match is not None and match.pose is not None else None
        line = None
        if (match_point is not None and query_pose is not None and match is not None and match.pose is not None
                and query_pose.frame_id == match.pose.frame_id):
            line = (query_pose.position, match_point)
        return MarkerData(frame_id, points, match_point, line)
