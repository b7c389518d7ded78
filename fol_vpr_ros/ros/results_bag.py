"""A rosbag2 (mcap) of a replay: the input images plus the node's outputs, playable in RViz / Foxglove.

Topics (all messages at the query image's stamp, as bag time and header stamp):

* the image topic of the input bag (``sensor_msgs/Image`` or ``CompressedImage``, same pixels/bytes,
  header stamp = the stamp the replay used: header stamp, or bag time where it was zero);
* ``/fol_vpr/result`` (``fol_vpr_ros/PlaceRecognitionResult``, one per processed keyframe);
* ``/fol_vpr/loop_closure`` (``fol_vpr_ros/LoopClosure``, loop-closure mode: every keyframe with a best
  candidate, status ACCEPTED or REJECTED);
* ``/fol_vpr/pose`` (``PoseWithCovarianceStamped``, localize mode: accepted matches with a pose);
* ``/fol_vpr/markers`` (``visualization_msgs/MarkerArray``).

The messages come from ``fol_vpr_ros.ros.messages`` and are published in the same order and under
the same conditions as the rclpy node's ``publish_output``. rosbags writes each connection's full
message definition (ros2msg, with our ``fol_vpr_ros/msg/*`` types and their dependencies) into the
mcap schema records, so Foxglove decodes the custom messages without the package installed.
A target ending in ``.mcap`` becomes a single mcap file; any other target a rosbag2 directory.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..node.frames import FrameOutput
from ..node.params import NodeParams
from ..node.runners import RunnerFrame, RunnerStatus
from ..sources.image_decode import CompressedPayload, ImagePayload

__all__ = [
    "LOOP_TOPIC",
    "MARKERS_TOPIC",
    "POSE_TOPIC",
    "RESULT_TOPIC",
    "ResultsBagWriter",
]

RESULT_TOPIC = "/fol_vpr/result"
LOOP_TOPIC = "/fol_vpr/loop_closure"
POSE_TOPIC = "/fol_vpr/pose"
MARKERS_TOPIC = "/fol_vpr/markers"
_RECEIVED_TOPICS = {"result": RESULT_TOPIC, "loop_closure": LOOP_TOPIC, "pose": POSE_TOPIC, "markers": MARKERS_TOPIC}


def _image_msg(payload: ImagePayload | CompressedPayload, stamp_ns: int, frame_id: str) -> Any:
    from .interfaces import make_header, make_message

    raw = payload.data
    data = (np.ascontiguousarray(raw).reshape(-1).view(np.uint8) if isinstance(raw, np.ndarray)
            else np.frombuffer(bytes(raw), np.uint8))
    if isinstance(payload, CompressedPayload):
        return make_message("sensor_msgs/msg/CompressedImage", header=make_header(stamp_ns, frame_id),
                            format=str(payload.format), data=data)
    return make_message("sensor_msgs/msg/Image", header=make_header(stamp_ns, frame_id), height=int(payload.height),
                        width=int(payload.width), encoding=str(payload.encoding),
                        is_bigendian=int(bool(payload.is_bigendian)), step=int(payload.step), data=data)


class ResultsBagWriter:
    """Context manager writing images and node outputs of a replay into a new rosbag2 (mcap).

    ``target``: ``OUT.mcap`` (one file) or a directory; an existing target is an error unless
    ``overwrite`` (a directory is only replaced when it holds a rosbag2 ``metadata.yaml``).
    """

    def __init__(self, target: str | os.PathLike, params: NodeParams, image_topic: str, image_msgtype: str, *,
                 overwrite: bool = False) -> None:
        self.target = Path(target)
        self.params = params
        self.image_topic = image_topic
        self.image_msgtype = image_msgtype
        self.overwrite = overwrite
        self.counts: Counter[str] = Counter()
        self._as_file = self.target.suffix == ".mcap"
        self._bag_dir = (self.target.with_name(f".{self.target.stem}.tmp-{os.getpid()}") if self._as_file
                         else self.target)
        self._writer: Any = None
        self._conns: dict[str, Any] = {}

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> message type written by this replay."""
        from . import messages as m

        out = {self.image_topic: self.image_msgtype, RESULT_TOPIC: m.RESULT_TYPE, MARKERS_TOPIC: m.MARKERS_TYPE}
        if self.params.mode == "loop_closure":
            out[LOOP_TOPIC] = m.LOOP_TYPE
        else:
            out[POSE_TOPIC] = m.POSE_TYPE
        return out

    def _clear_target(self) -> None:
        t = self.target
        if not (t.exists() or t.is_symlink()):
            return
        if not self.overwrite:
            raise ConfigError(f"{t} exists; pass --overwrite or choose another --write-results path")
        if t.is_dir():
            if not (t / "metadata.yaml").is_file():
                raise ConfigError(f"{t} is a directory but not a rosbag2 (no metadata.yaml); not replacing it")
            shutil.rmtree(t)
        else:
            t.unlink()

    def __enter__(self) -> ResultsBagWriter:
        from rosbags.rosbag2 import StoragePlugin, Writer

        from .interfaces import typestore

        self._clear_target()
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if self._as_file and self._bag_dir.exists():
            shutil.rmtree(self._bag_dir)
        self._writer = Writer(self._bag_dir, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        ts = typestore()
        for topic, msgtype in self.topics.items():
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=ts)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        if exc_type is not None:
            if self._bag_dir.exists():
                shutil.rmtree(self._bag_dir, ignore_errors=True)
            return
        if self._as_file:
            files = sorted(self._bag_dir.glob("*.mcap"))
            if len(files) != 1:
                raise ConfigError(f"{self._bag_dir}: expected one .mcap file, found {len(files)}")
            os.replace(files[0], self.target)
            shutil.rmtree(self._bag_dir, ignore_errors=True)

    def _write(self, topic: str, msg: Any, stamp_ns: int) -> None:
        from .interfaces import serialize

        if msg is None:
            return
        self._writer.write(self._conns[topic], int(stamp_ns), serialize(msg, msg.__msgtype__))
        self.counts[topic] += 1

    def add_frame(self, stamp_ns: int, frame_id: str, payload: ImagePayload | CompressedPayload,
                  out: FrameOutput | None) -> None:
        """The image, then (for a processed keyframe without error) what the node publishes for it."""
        from . import messages as m

        if self._writer is None:
            raise ConfigError("ResultsBagWriter: use it as a context manager")
        self._write(self.image_topic, _image_msg(payload, stamp_ns, frame_id), stamp_ns)
        if out is None or not out.is_keyframe or out.error_kind is not None:
            return
        p = self.params
        if out.mode == "loop_closure":
            self._write(LOOP_TOPIC, m.loop_closure_msg(out, p.frames.map), out.stamp_ns)
        else:
            self._write(POSE_TOPIC, m.pose_msg(out), out.stamp_ns)
        self._write(MARKERS_TOPIC, m.markers_msg(out), out.stamp_ns)
        self._write(RESULT_TOPIC, m.result_msg(out, p), out.stamp_ns)

    def add_run(self, r: RunnerFrame) -> None:
        """A replayed frame: its image and outputs (the messages the node published, as received, when there
        are any); dropped frames are left out."""
        if r.status == RunnerStatus.DROPPED:
            return
        f = r.frame
        if not r.messages:
            self.add_frame(f.stamp_ns, f.frame_id, f.payload, r.output)
            return
        self.add_frame(f.stamp_ns, f.frame_id, f.payload, None)  # the image only
        for role, msg in r.messages:
            topic = _RECEIVED_TOPICS.get(role)
            if topic in self._conns and msg is not None:
                self._write(topic, msg, f.stamp_ns)
