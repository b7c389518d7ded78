"""Several cameras and a robot id in the node's parameters and latest-frame slots (no ROS)."""

from __future__ import annotations

import pytest

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.node.frame_slots import FrameSlots, camera_of
from fol_vpr_ros.node.params import NodeParams, param_specs
from fol_vpr_ros.sources.image_decode import ImagePayload


def frame(stamp: int, topic: str = "") -> ImagePayload:
    return ImagePayload(stamp, "cam", "rgb8", 1, 1, 3, False, b"\0\0\0", topic)


def test_each_camera_has_its_slot_and_cameras_are_served_in_turn():
    slots = FrameSlots("image")
    assert not slots.put(frame(1, "front")) and not slots.put(frame(2, "rear"))
    assert slots.put(frame(3, "front"))  # replaces front's pending frame, front keeps its turn
    assert not slots.put(frame(4))  # no topic: the default camera
    assert len(slots) == 3
    assert [slots.take().stamp_ns for _ in range(3)] == [3, 2, 4]
    with pytest.raises(IndexError):
        slots.take()
    slots.put(frame(5, "rear"))
    assert slots.clear() == 1 and len(slots) == 0
    assert camera_of(frame(1), "image") == "image" and camera_of(frame(1, "/a"), "image") == "/a"


def test_image_topics_and_robot_id_parameters():
    spec = {s.name: s for s in param_specs()}
    assert spec["image_topics"].default == [] and spec["image_topics"].allowed() == "a list of strings"
    assert spec["robot_id"].default == ""
    p = NodeParams().updated({"image_topics": ["front/image_raw", "/rear/image_raw"], "robot_id": "rover 1"})
    assert p.camera_topics == ("front/image_raw", "/rear/image_raw") and p.robot_id == "rover 1"
    assert NodeParams(image_topic="cam").camera_topics == ("cam",)
    with pytest.raises(ConfigError, match=r"parameter image_topics: .* has the wrong type; expected a list of strings"):
        NodeParams().updated({"image_topics": ["a", 3]})
    with pytest.raises(ConfigError, match="parameter image_topics: a given twice"):
        NodeParams().updated({"image_topics": ["a", "a"]})
    with pytest.raises(ConfigError, match="parameter image_topics: 'a b' is not a valid ROS topic name"):
        NodeParams().updated({"image_topics": ["a b"]})
    with pytest.raises(ConfigError, match="parameter robot_id: 'r\\\\n1' holds control characters"):
        NodeParams().updated({"robot_id": "r\n1"})
