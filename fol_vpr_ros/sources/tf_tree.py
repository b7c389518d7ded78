"""The tf tree of a bag: static and dynamic transforms from /tf and /tf_static, chained between two frames.

Dynamic edges are interpolated (PoseTrack) at the lookup stamp; a lookup composes ``T_fixed_target``
through the frames' common ancestor.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .bag import BagError, header_stamp_ns
from .geometry import RigidTransform, finite_pose, xyz_of, xyzw_of
from .tracks import PoseStatus, PoseTrack, StampedSample, clean_stamps

__all__ = ["TfTree", "TfTreeBuilder", "strip_frame"]


def strip_frame(frame: str) -> str:
    """A frame id without its leading '/' (tf2 names frames without it)."""
    return str(frame).lstrip("/")


@dataclass(frozen=True)
class TfTree:
    """Static and dynamic transforms: ``child -> (parent, transform or track)`` from /tf and /tf_static."""

    static: Mapping[str, tuple[str, RigidTransform]] = field(default_factory=dict)
    dynamic: Mapping[str, PoseTrack] = field(default_factory=dict)

    @property
    def frames(self) -> set[str]:
        out = set(self.static) | set(self.dynamic)
        out |= {p for p, _ in self.static.values()} | {t.frame_id for t in self.dynamic.values()}
        return out

    def parent(self, frame: str) -> str | None:
        if frame in self.static:
            return self.static[frame][0]
        if frame in self.dynamic:
            return self.dynamic[frame].frame_id
        return None

    def path_to_root(self, frame: str) -> list[str]:
        """[frame, parent, grandparent, ..., root]."""
        path = [frame]
        while (p := self.parent(path[-1])) is not None:
            if p in path:
                raise BagError(f"tf: the frames {' -> '.join([*path, p])} form a loop")
            path.append(p)
        return path

    def chain(self, fixed_frame: str, target_frame: str) -> tuple[list[str], list[str]]:
        """Frames from ``fixed_frame`` and ``target_frame`` up to their common ancestor (inclusive)."""
        fixed_frame, target_frame = strip_frame(fixed_frame), strip_frame(target_frame)
        known = self.frames
        for f in (fixed_frame, target_frame):
            if f not in known:
                raise BagError(f"tf: frame {f!r} is not in /tf or /tf_static; known frames: {', '.join(sorted(known))}")
        up_fixed, up_target = self.path_to_root(fixed_frame), self.path_to_root(target_frame)
        common = next((f for f in up_target if f in up_fixed), None)
        if common is None:
            raise BagError(f"tf: no transform chain between {fixed_frame!r} (root {up_fixed[-1]!r}) and "
                           f"{target_frame!r} (root {up_target[-1]!r}): they are in separate trees")
        return up_fixed[: up_fixed.index(common) + 1], up_target[: up_target.index(common) + 1]

    def describe_chain(self, fixed_frame: str, target_frame: str) -> str:
        """E.g. 'map -> odom (dynamic) -> base_link (dynamic) -> camera (static)'."""
        up_fixed, up_target = self.chain(fixed_frame, target_frame)
        parts = [up_fixed[0]]
        for f in up_fixed[1:]:
            parts.append(f"{f} (inverse)")
        for f in reversed(up_target[:-1]):
            parts.append(f"{f} ({'static' if f in self.static else 'dynamic'})")
        return " -> ".join(parts)

    def _up(self, path: list[str], stamp_ns: int, max_gap_ns: int | None
            ) -> RigidTransform | tuple[PoseStatus, str]:
        """T_ancestor_frame for path [frame, ..., ancestor], or (status, skip reason)."""
        t = RigidTransform()
        for child in path[:-1]:
            if child in self.static:
                edge = self.static[child][1]
            else:
                track = self.dynamic[child]
                pos, rot, status = track.sample([stamp_ns], max_gap_ns)
                if status[0]:
                    code = PoseStatus(int(status[0]))
                    return code, f"tf {code.reason(f'{track.frame_id} -> {child}')}"
                edge = RigidTransform(pos[0], rot[0])
            t = edge @ t
        return t

    def lookup_status(self, fixed_frame: str, target_frame: str, stamp_ns: int, max_gap_ns: int | None = None
                      ) -> tuple[RigidTransform | None, PoseStatus, str | None]:
        """(``T_fixed_target`` at the stamp or None, status, skip reason or None); dynamic edges interpolated."""
        up_fixed, up_target = self.chain(fixed_frame, target_frame)
        a = self._up(up_target, stamp_ns, max_gap_ns)
        if isinstance(a, tuple):
            return None, *a
        b = self._up(up_fixed, stamp_ns, max_gap_ns)
        if isinstance(b, tuple):
            return None, *b
        return b.inverse() @ a, PoseStatus.OK, None

    def lookup(self, fixed_frame: str, target_frame: str, stamp_ns: int,
               max_gap_ns: int | None = None) -> RigidTransform | str:
        """``T_fixed_target`` at the stamp (dynamic edges interpolated), or a skip reason."""
        t, _, reason = self.lookup_status(fixed_frame, target_frame, stamp_ns, max_gap_ns)
        return reason if t is None else t


class TfTreeBuilder:
    """Collects TFMessage transforms from /tf (dynamic) and /tf_static (static) topics."""

    def __init__(self, static_topics: Iterable[str] = ("/tf_static",)) -> None:
        self.static_topics = set(static_topics)
        self.static: dict[str, tuple[str, RigidTransform]] = {}
        self.dyn: dict[str, dict[str, list[StampedSample]]] = {}
        self.stats: Counter[str] = Counter()

    def add_topic_message(self, topic: str, msg: Any, bag_ns: int) -> None:
        is_static = topic in self.static_topics
        for tr in msg.transforms:
            parent, child = strip_frame(tr.header.frame_id), strip_frame(tr.child_frame_id)
            t, q = xyz_of(tr.transform.translation), xyzw_of(tr.transform.rotation)
            if not parent or not child or parent == child:
                self.stats[f"{topic}: transforms with empty or equal frame ids dropped"] += 1
                continue
            if not finite_pose(t, q):
                self.stats[f"{topic}: invalid transforms (NaN or zero quaternion) dropped"] += 1
                continue
            if is_static:
                old = self.static.get(child)
                if old is not None and old[0] != parent:
                    raise BagError(f"tf: frame {child!r} has two static parents, {old[0]!r} and {parent!r}")
                self.static[child] = (parent, RigidTransform(t, q))  # latest static transform wins
                continue
            stamp = header_stamp_ns(tr)
            if stamp == 0:
                stamp = bag_ns
                self.stats[f"{topic}: zero header stamps (bag time used)"] += 1
            self.dyn.setdefault(child, {}).setdefault(parent, []).append(StampedSample(stamp, t, q))

    def finish(self) -> TfTree:
        dynamic: dict[str, PoseTrack] = {}
        for child, by_parent in self.dyn.items():
            if len(by_parent) > 1:
                raise BagError(f"tf: frame {child!r} has several parents on /tf: {', '.join(sorted(by_parent))}")
            if child in self.static:
                raise BagError(f"tf: frame {child!r} is published on both /tf and /tf_static")
            parent, samples = next(iter(by_parent.items()))
            keep = clean_stamps([s.stamp_ns for s in samples], f"tf {parent} -> {child}", self.stats)
            ss = [samples[i] for i in keep]
            dynamic[child] = PoseTrack(parent, child, [s.stamp_ns for s in ss], [s.position for s in ss],
                                       [s.orientation for s in ss], source="/tf")
        if not dynamic and not self.static:
            raise BagError("tf: no transforms found")
        return TfTree(dict(self.static), dynamic)
