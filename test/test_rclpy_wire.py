"""rosbags CDR (the bag writer, the replay) equals what rclpy serializes, for every type the node uses (needs ROS).

Each sample message is copied into its rosidl class with ``messages.to_rosidl`` and serialized by
rclpy (rmw_fastrtps); the bytes must have rosbags' layout (same length; Fast CDR leaves alignment
padding uninitialised, so padding bytes may differ) and decode to the same message both ways.
"""

from __future__ import annotations

import pytest
from conftest import ros_import
from test_interfaces import assert_msg_equal, sample_message

pytestmark = pytest.mark.ros
serialization = ros_import("rclpy.serialization")
ros_import("fol_vpr_ros.msg")

from fol_vpr_ros.ros import interfaces as ifc  # noqa: E402
from fol_vpr_ros.ros.messages import to_rosidl  # noqa: E402


@pytest.mark.parametrize("typename", ifc.NODE_TYPES)
def test_rclpy_bytes_equal_rosbags_cdr(typename):
    msg = sample_message(typename)
    ours = ifc.serialize(msg, typename)
    rosidl = to_rosidl(msg)
    theirs = serialization.serialize_message(rosidl)
    assert len(theirs) == len(ours) and theirs[:4] == ours[:4] == b"\x00\x01\x00\x00"
    assert_msg_equal(ifc.deserialize(theirs, typename), msg)
    back = serialization.deserialize_message(ours, type(rosidl))
    assert_msg_equal(ifc.deserialize(serialization.serialize_message(back), typename), msg)


def test_built_messages_survive_rclpy():
    """What the node publishes (messages.* builders) goes through rclpy's serializer unchanged."""
    from test_messages import built_messages

    for typename, msg in built_messages():
        ours = ifc.deserialize(ifc.serialize(msg, typename), typename)  # float32 fields rounded as on the wire
        assert_msg_equal(ifc.deserialize(serialization.serialize_message(to_rosidl(msg)), typename), ours)
