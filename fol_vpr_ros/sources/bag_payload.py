"""Image payloads from sensor_msgs messages (rosbags or rclpy, duck-typed): the one place that builds them.

``message_payload`` turns a ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` into the
``ImagePayload`` / ``CompressedPayload`` that ``image_decode`` decodes; the data buffer is not copied.
The stamp is the header stamp unless the caller gives one (a bag replay uses bag time where the header
stamp is zero).
"""

from __future__ import annotations

from typing import Any

from ..stamps import NS_PER_SEC
from .image_decode import CompressedPayload, ImagePayload

__all__ = ["COMPRESSED_TYPE", "IMAGE_TYPE", "compressed_payload", "header_stamp_ns", "image_payload", "message_payload"]

IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


def header_stamp_ns(msg: Any) -> int:
    """The message's header stamp in integer nanoseconds."""
    stamp = msg.header.stamp
    return int(stamp.sec) * NS_PER_SEC + int(stamp.nanosec)


def image_payload(msg: Any, stamp_ns: int | None = None) -> ImagePayload:
    """ImagePayload of a sensor_msgs/Image (``stamp_ns``: the header stamp unless given)."""
    stamp = header_stamp_ns(msg) if stamp_ns is None else int(stamp_ns)
    return ImagePayload(stamp, str(msg.header.frame_id), str(msg.encoding), int(msg.height), int(msg.width),
                        int(msg.step), bool(msg.is_bigendian), msg.data)


def compressed_payload(msg: Any, stamp_ns: int | None = None) -> CompressedPayload:
    """CompressedPayload of a sensor_msgs/CompressedImage (``stamp_ns``: the header stamp unless given)."""
    stamp = header_stamp_ns(msg) if stamp_ns is None else int(stamp_ns)
    return CompressedPayload(stamp, str(msg.header.frame_id), str(msg.format), msg.data)


def message_payload(msgtype: str, msg: Any, stamp_ns: int | None = None) -> ImagePayload | CompressedPayload:
    """The payload of an Image or CompressedImage message, by its type name."""
    if msgtype == COMPRESSED_TYPE:
        return compressed_payload(msg, stamp_ns)
    return image_payload(msg, stamp_ns)
