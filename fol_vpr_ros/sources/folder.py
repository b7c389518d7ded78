"""Frames from an image folder: plain, VPR '@utm' file names, or with a CSV of poses/stamps."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..image_io import list_images
from ..mapping import GeoPosition, Pose, stamp_ns_from_seconds
from ..stamps import NS_PER_SEC

__all__ = ["POSE_CSV_COLUMNS", "FolderFrame", "frames_from_folder", "read_poses_csv"]

POSE_CSV_COLUMNS = ("image", "stamp", "x", "y", "z", "qx", "qy", "qz", "qw", "frame_id",
                    "easting", "northing", "zone", "latitude", "longitude")


@dataclass(frozen=True)
class FolderFrame:
    """An image file with what is known about where and when it was taken."""

    path: Path
    stamp_ns: int
    pose: Pose | None = None
    geo: GeoPosition | None = None


def _utm_from_name(name: str) -> GeoPosition | None:
    """UTM from VPR-style names '@easting@northing@zone@band@...'; None when the name has no '@' fields."""
    fields = name.split("@")
    if len(fields) < 4:
        return None
    try:
        east, north = float(fields[1]), float(fields[2])
    except ValueError:
        return None
    zone = "".join(fields[3:5]) if len(fields) > 4 and fields[3] else "unknown"
    return GeoPosition(easting=east, northing=north, zone=zone or "unknown")


def _num(row: dict[str, str], key: str, where: str) -> float | None:
    text = (row.get(key) or "").strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"{where}: column {key!r} holds {text!r}, not a number") from None


def read_poses_csv(path: str | os.PathLike) -> dict[str, tuple[int | None, Pose | None, GeoPosition | None]]:
    """image name -> (stamp_ns, pose, geo) from a CSV with header ``image`` plus any of
    ``stamp`` (s), ``x y z`` (+ ``qx qy qz qw``, ``frame_id``), ``easting northing zone``, ``latitude longitude``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: poses CSV not found")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = set(reader.fieldnames or [])
        if "image" not in cols:
            raise ConfigError(f"{path}: header must contain 'image' (known columns: {', '.join(POSE_CSV_COLUMNS)})")
        unknown = cols - set(POSE_CSV_COLUMNS)
        if unknown:
            raise ConfigError(f"{path}: unknown columns {sorted(unknown)}; known: {', '.join(POSE_CSV_COLUMNS)}")
        out: dict[str, tuple[int | None, Pose | None, GeoPosition | None]] = {}
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            name = (row.get("image") or "").strip()
            if not name:
                raise ConfigError(f"{where}: empty image name")
            if name in out:
                raise ConfigError(f"{where}: image {name!r} listed twice")
            stamp = _num(row, "stamp", where)
            xyz = [_num(row, k, where) for k in ("x", "y", "z")]
            quat = [_num(row, k, where) for k in ("qx", "qy", "qz", "qw")]
            pose = None
            if any(v is not None for v in xyz):
                if any(v is None for v in xyz[:2]):
                    raise ConfigError(f"{where}: a pose needs at least x and y")
                orient = tuple(quat) if all(v is not None for v in quat) else (0.0, 0.0, 0.0, 1.0)
                pose = Pose((xyz[0], xyz[1], xyz[2] or 0.0), orient, (row.get("frame_id") or "map").strip())
            geo = None
            east, north = _num(row, "easting", where), _num(row, "northing", where)
            lat, lon = _num(row, "latitude", where), _num(row, "longitude", where)
            if east is not None or lat is not None:
                zone = (row.get("zone") or "").strip() or ("unknown" if east is not None else None)
                geo = GeoPosition(easting=east, northing=north, zone=zone if east is not None else None,
                                  latitude=lat, longitude=lon)
            out[name] = (stamp_ns_from_seconds(stamp) if stamp is not None else None, pose, geo)
    if not out:
        raise ConfigError(f"{path}: no rows")
    return out


def frames_from_folder(images: str | os.PathLike, poses_csv: str | os.PathLike | None = None) -> list[FolderFrame]:
    """Frames of a folder in sorted order. Without a CSV: stamps are the sorted index in seconds and
    UTM comes from '@' file names when present. With a CSV: only the images it lists, with its values."""
    folder = Path(images)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: image folder not found")
    paths = list_images([folder])
    if poses_csv is None:
        return [FolderFrame(p, i * NS_PER_SEC, None, _utm_from_name(p.name)) for i, p in enumerate(paths)]
    table = read_poses_csv(poses_csv)
    by_name = {p.name: p for p in paths}
    missing = [n for n in table if n not in by_name]
    if missing:
        raise ConfigError(f"{poses_csv}: {len(missing)} listed image(s) not in {folder}: {', '.join(missing[:5])}")
    frames = []
    for i, (name, (stamp, pose, geo)) in enumerate(table.items()):
        frames.append(FolderFrame(by_name[name], stamp if stamp is not None else i * NS_PER_SEC, pose,
                                  geo or _utm_from_name(name)))
    return frames
