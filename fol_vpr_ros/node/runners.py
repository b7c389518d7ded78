"""What a replay hands the node and gets back: ReplayFrame in, RunnerFrame out (with a RunnerStatus).

A ``FrameRunner`` turns replayed frames into node outputs; ``OfflineRunner`` calls
``NodeCore.process_now`` for each frame. The rclpy runner (``ros.replay.RclpyReplayRunner``) builds on
these types, and the scoring in ``evaluation/`` reads them, so they live here, next to the core they
describe, below both (ros/ and evaluation/ import node/, never each other).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .outcomes import FrameStatus

if TYPE_CHECKING:
    from ..mapping import VprMap
    from ..sources.camera import CameraIntrinsics
    from ..sources.image_decode import CompressedPayload, ImagePayload
    from .core import NodeCore
    from .frames import FrameOutput
    from .gating import OdomPose
    from .params import NodeParams

__all__ = ["FrameRunner", "OfflineRunner", "ReplayFrame", "RunnerFactory", "RunnerFrame", "RunnerStatus", "status_of"]


# What a runner did with one frame: the core's own statuses (the text summary.json and the reports print).
RunnerStatus = FrameStatus


def status_of(out: FrameOutput) -> FrameStatus:
    """The status of a frame the core worked on: failed, processed (a keyframe) or skipped."""
    if out.error_kind is not None:
        return FrameStatus.FAILED
    return FrameStatus.PROCESSED if out.is_keyframe else FrameStatus.SKIPPED


@dataclass(frozen=True, eq=False)
class ReplayFrame:
    """One usable frame of the bag, in stamp order, ready for the node."""

    index: int  # position among the usable frames (stamp order)
    stamp_ns: int
    bag_ns: int
    frame_id: str
    payload: ImagePayload | CompressedPayload | None  # None once used (evaluate-bag keeps no pixels)
    odom: OdomPose | None = None
    camera: CameraIntrinsics | None = None  # the camera's CameraInfo at this frame, when the bag has one


@dataclass(frozen=True, eq=False)
class RunnerFrame:
    """What a runner did with one frame, with the core's output where there is one."""

    frame: ReplayFrame
    status: RunnerStatus
    output: FrameOutput | None = None
    messages: tuple[tuple[str, Any], ...] = ()  # through the node: (role, message) as published, result last


class FrameRunner(Protocol):
    """Turns replayed frames into node outputs (offline core, or the rclpy node at bag rate)."""

    name: str

    def run(self, frames: Iterable[ReplayFrame]) -> Iterator[RunnerFrame]:
        """One RunnerFrame per input frame, in order."""
        ...


RunnerFactory = Callable[["NodeParams", Any, "VprMap | None"], FrameRunner]


class OfflineRunner:
    """Every frame through ``NodeCore.process_now`` (synchronous, nothing dropped)."""

    name = "offline"

    def __init__(self, core: NodeCore, feed_odometry: bool = True) -> None:
        self.core = core
        self.feed_odometry = feed_odometry

    def run(self, frames: Iterable[ReplayFrame]) -> Iterator[RunnerFrame]:
        """Odometry first (when fed), then the image; failed, processed (keyframe) or skipped."""
        for f in frames:
            if self.feed_odometry and f.odom is not None:
                self.core.submit_odometry(f.odom)
            if f.camera is not None:
                self.core.submit_camera_info(f.frame_id, f.camera)
            out = self.core.process_now(f.payload)
            yield RunnerFrame(f, status_of(out), out)
