"""The map a robot carries: keyframe records, global/local descriptors and a FAISS retrieval index."""

from .index import INDEX_KINDS, GlobalIndex, IndexConfig, make_faiss_index
from .manifest import FORMAT_NAME, FORMAT_VERSION, FileEntry, MapCompat, MapManifest
from .records import GeoPosition, Keyframe, Pose, stamp_ns_from_ros, stamp_ns_from_seconds
from .store import VprMap

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "INDEX_KINDS",
    "FileEntry",
    "GeoPosition",
    "GlobalIndex",
    "IndexConfig",
    "Keyframe",
    "MapCompat",
    "MapManifest",
    "Pose",
    "VprMap",
    "make_faiss_index",
    "stamp_ns_from_ros",
    "stamp_ns_from_seconds",
]
