"""Time-sorted tracks read from a bag (poses, GNSS fixes) and their interpolation to image stamps.

Positions are interpolated linearly, rotations by slerp, latitude/longitude linearly (across the
antimeridian too). ``sample`` returns a status code per stamp, a ``PoseStatus``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..errors import ConfigError
from ..mapping import GeoPosition
from .geometry import RigidTransform, quat_normalize, quat_slerp
from .utm import UTM_MAX_LATITUDE, UTM_MIN_LATITUDE, wgs84_to_utm

__all__ = ["GeoTrack", "PoseStatus", "PoseTrack", "StampedSample", "bracket", "clean_stamps"]


class PoseStatus(IntEnum):
    """Whether a stamp got a pose from a track, and why not; the value is the code in ``sample``'s status array."""

    description: str

    def __new__(cls, code: int, description: str) -> PoseStatus:
        member = int.__new__(cls, code)
        member._value_ = code
        member.description = description
        return member

    OK = 0, "interpolated"
    OUTSIDE_SPAN = 1, "outside the time span of {source}"
    IN_GAP = 2, "in a gap{gap} of {source}"
    OUTSIDE_UTM = 3, "{source}: latitude outside the UTM range"

    @property
    def located(self) -> bool:
        """The stamp has a position (OUTSIDE_UTM: latitude/longitude only)."""
        return self in (PoseStatus.OK, PoseStatus.OUTSIDE_UTM)

    def reason(self, source: str, max_gap_s: float | None = None) -> str | None:
        """Why a frame has no (full) pose from ``source``, e.g. 'in a gap > 2 s of /odom'; None when OK."""
        if self is PoseStatus.OK:
            return None
        gap = f" > {max_gap_s:g} s" if max_gap_s is not None else ""
        return self.description.format(source=source, gap=gap)


@dataclass(frozen=True)
class StampedSample:
    """One stamped pose read from a bag, before sorting."""

    stamp_ns: int
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float]


def clean_stamps(stamps: Sequence[int], what: str, stats: Counter) -> np.ndarray:
    """Stable order by stamp; later duplicates dropped. Returns the kept indices and counts in ``stats``."""
    s = np.asarray(stamps, dtype=np.int64)
    late = int(np.sum(s[1:] < np.maximum.accumulate(s)[:-1])) if len(s) > 1 else 0
    if late:
        stats[f"{what}: stamps out of order (sorted)"] += late
    order = np.argsort(s, kind="stable")
    keep = np.ones(len(order), bool)
    keep[1:] = s[order][1:] != s[order][:-1]
    if (~keep).any():
        stats[f"{what}: duplicate stamps (later dropped)"] += int((~keep).sum())
    return order[keep]


def bracket(stamps: np.ndarray, query: np.ndarray,
             max_gap_ns: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, fraction, PoseStatus code) per query: OK, OUTSIDE_SPAN or IN_GAP."""
    q = np.asarray(query, np.int64)
    n = len(stamps)
    i0 = np.clip(np.searchsorted(stamps, q, side="right") - 1, 0, max(n - 2, 0))
    status = np.zeros(len(q), np.int8)
    if n == 0:
        return i0, np.zeros(len(q)), np.full(len(q), PoseStatus.OUTSIDE_SPAN, np.int8)
    status[(q < stamps[0]) | (q > stamps[-1])] = PoseStatus.OUTSIDE_SPAN
    if n == 1:
        return np.zeros(len(q), np.int64), np.zeros(len(q)), status
    i1 = i0 + 1
    span = stamps[i1] - stamps[i0]
    frac = np.clip((q - stamps[i0]).astype(np.float64) / span, 0.0, 1.0)
    if max_gap_ns is not None:
        exact = (q == stamps[i0]) | (q == stamps[i1])
        status[(status == PoseStatus.OK) & (span > max_gap_ns) & ~exact] = PoseStatus.IN_GAP
    return i0, frac, status


@dataclass(frozen=True)
class PoseTrack:
    """Time-sorted poses of ``child_frame_id`` in ``frame_id`` (stamps unique, int64 ns)."""

    frame_id: str
    child_frame_id: str
    stamps_ns: np.ndarray
    positions: np.ndarray
    orientations: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        s = np.asarray(self.stamps_ns, np.int64)
        if len(s) and np.any(np.diff(s) <= 0):
            raise ConfigError("PoseTrack stamps must be strictly increasing")
        object.__setattr__(self, "stamps_ns", s)
        object.__setattr__(self, "positions", np.asarray(self.positions, np.float64).reshape(len(s), 3))
        q = np.asarray(self.orientations, np.float64).reshape(len(s), 4)
        object.__setattr__(self, "orientations", quat_normalize(q) if len(q) else q)

    def __len__(self) -> int:
        return len(self.stamps_ns)

    @property
    def span_ns(self) -> tuple[int, int] | None:
        return (int(self.stamps_ns[0]), int(self.stamps_ns[-1])) if len(self) else None

    def sample(self, stamps_ns: Sequence[int], max_gap_ns: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(positions [M, 3], orientations [M, 4], status [M]) at the stamps; status a PoseStatus code:
        OK, OUTSIDE_SPAN of the track or IN_GAP between two poses further apart than ``max_gap_ns``."""
        q = np.asarray(stamps_ns, np.int64)
        i0, frac, status = bracket(self.stamps_ns, q, max_gap_ns)
        if len(self) == 0:
            return np.full((len(q), 3), np.nan), np.full((len(q), 4), np.nan), status
        i1 = np.minimum(i0 + 1, len(self) - 1)
        pos = self.positions[i0] + frac[:, None] * (self.positions[i1] - self.positions[i0])
        rot = quat_slerp(self.orientations[i0], self.orientations[i1], frac)
        return pos, rot, status

    def at(self, stamp_ns: int, max_gap_ns: int | None = None) -> RigidTransform | None:
        """Interpolated ``T_frame_child`` at one stamp, or None outside the span / across a gap."""
        pos, rot, status = self.sample([stamp_ns], max_gap_ns)
        return None if status[0] else RigidTransform(pos[0], rot[0])


@dataclass(frozen=True)
class GeoTrack:
    """Time-sorted GNSS fixes (degrees; altitude NaN where unknown)."""

    stamps_ns: np.ndarray
    latitudes: np.ndarray
    longitudes: np.ndarray
    altitudes: np.ndarray
    source: str = ""

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def sample(self, stamps_ns: Sequence[int], max_gap_ns: int | None = None
               ) -> tuple[list[GeoPosition | None], np.ndarray]:
        """(GeoPosition with UTM and lat/lon, or None; status) per stamp; status as PoseTrack.sample, and
        OUTSIDE_UTM for a latitude outside the UTM range (the position then has lat/lon only)."""
        q = np.asarray(stamps_ns, np.int64)
        i0, frac, status = bracket(self.stamps_ns, q, max_gap_ns)
        out: list[GeoPosition | None] = []
        if len(self) == 0:
            return [None] * len(q), status
        i1 = np.minimum(i0 + 1, len(self) - 1)
        dlon = (self.longitudes[i1] - self.longitudes[i0] + 180.0) % 360.0 - 180.0  # across the antimeridian
        lat = self.latitudes[i0] + frac * (self.latitudes[i1] - self.latitudes[i0])
        lon = (self.longitudes[i0] + frac * dlon + 180.0) % 360.0 - 180.0
        alt = self.altitudes[i0] + frac * (self.altitudes[i1] - self.altitudes[i0])
        for k in range(len(q)):
            if status[k]:
                out.append(None)
                continue
            a = float(alt[k]) if math.isfinite(alt[k]) else None
            if not UTM_MIN_LATITUDE <= lat[k] <= UTM_MAX_LATITUDE:
                status[k] = PoseStatus.OUTSIDE_UTM
                out.append(GeoPosition(latitude=float(lat[k]), longitude=float(lon[k]), altitude=a))
                continue
            u = wgs84_to_utm(float(lat[k]), float(lon[k]))
            out.append(GeoPosition(u.easting, u.northing, u.zone, float(lat[k]), float(lon[k]), a))
        return out, status
