"""Exception types of fol_vpr_ros; the CLI prints their message without a traceback."""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "FolVprError",
    "ImageError",
    "MapError",
    "MapSaveError",
    "OutputError",
]


class FolVprError(Exception):
    """Base class: a problem the user can fix, reported as one clear message."""


class ConfigError(FolVprError, ValueError):
    """A bad parameter or configuration value."""


class ImageError(FolVprError, ValueError):
    """An image that cannot be read or has an unsupported shape, dtype or encoding."""


class CheckpointError(FolVprError):
    """A missing, corrupt, unsafe or mismatched model checkpoint."""


class MapError(FolVprError):
    """A missing, corrupt or incompatible map."""


class MapSaveError(MapError, OSError):
    """A map save that failed (full disk, permissions, ...); the previous map on disk is unchanged."""


class OutputError(FolVprError, OSError):
    """An output file or folder that cannot be created or written (bad path, full disk, permissions)."""
