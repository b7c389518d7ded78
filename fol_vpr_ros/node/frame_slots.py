"""Latest-frame slots of the node, one per camera topic, served in turn so no camera starves another."""

from __future__ import annotations

from typing import Any

__all__ = ["FrameSlots", "camera_of"]


def camera_of(payload: Any, default: str) -> str:
    """The camera topic a frame came from (its payload's ``topic``), ``default`` when it has none."""
    topic = getattr(payload, "topic", "")
    return topic if isinstance(topic, str) and topic else default


class FrameSlots:
    """One pending frame per camera; ``take`` hands out the camera that has waited longest (not thread-safe:
    the core holds its lock)."""

    def __init__(self, default_camera: str) -> None:
        self.default_camera = default_camera
        self._slots: dict[str, Any] = {}  # insertion order = the order cameras started waiting

    def put(self, payload: Any) -> bool:
        """Offer a frame; True when it replaced its camera's pending frame (the camera keeps its turn)."""
        key = camera_of(payload, self.default_camera)
        replaced = key in self._slots
        self._slots[key] = payload  # an existing key keeps its place in the order
        return replaced

    def take(self) -> Any:
        """The pending frame of the camera that has waited longest (IndexError when none is pending)."""
        if not self._slots:
            raise IndexError("no frame pending")
        key = next(iter(self._slots))
        return self._slots.pop(key)

    def clear(self) -> int:
        """Drop every pending frame; returns how many there were."""
        n = len(self._slots)
        self._slots.clear()
        return n

    def __len__(self) -> int:
        return len(self._slots)
