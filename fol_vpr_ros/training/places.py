"""Where training places come from: GSV-Cities CSVs, or a robot's own map with its keyframes clustered
into places; subsets and held-out splits of either.

A *place* is a group of images showing the same spot; a ``PlaceSource`` gives the places, their sizes
and each image (``training.data`` turns them into batches).
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, MapError
from ..image_io import read_image

__all__ = [
    "GSV_COLUMNS",
    "HEADING_AXES",
    "PLACE_POSITIONS",
    "GsvCitiesSource",
    "MapPlaceSource",
    "MapPlacesConfig",
    "PlaceSource",
    "SubsetSource",
    "cluster_places",
    "gsv_image_name",
    "split_places",
]

log = logging.getLogger(__name__)

GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
HEADING_AXES = ("x", "z")  # the camera axis pointing forward: x in ROS body frames, z in optical frames
PLACE_POSITIONS = ("auto", "utm", "latlon", "pose")  # where a map place's position comes from
_SHOW = 3


def _few(items: Sequence[object]) -> str:
    shown = ", ".join(str(x) for x in list(items)[:_SHOW])
    return shown + (f" ... ({len(items)} in all)" if len(items) > _SHOW else "")


@runtime_checkable
class PlaceSource(Protocol):
    """Places, each a list of images. A ROS-bag source only has to implement these four members."""

    name: str

    def __len__(self) -> int:
        """Number of places."""

    def place_size(self, place: int) -> int:
        """Number of images of a place."""

    def load(self, place: int, index: int) -> np.ndarray:
        """Image ``index`` of ``place`` as H x W x 3 uint8 RGB."""

    def place_key(self, place: int) -> str:
        """A stable, human-readable name of the place (for logs and validation splits)."""


class _FileSource:
    """Shared part of sources whose images are files."""

    name = "files"

    def __init__(self, places: list[list[Path]], keys: list[str]) -> None:
        self._places = places
        self._keys = keys

    def __len__(self) -> int:
        return len(self._places)

    def place_size(self, place: int) -> int:
        return len(self._places[place])

    def load(self, place: int, index: int) -> np.ndarray:
        return read_image(self._places[place][index])

    def place_key(self, place: int) -> str:
        return self._keys[place]

    def image_path(self, place: int, index: int) -> Path:
        return self._places[place][index]

    @property
    def num_images(self) -> int:
        return sum(len(p) for p in self._places)


def gsv_image_name(row: dict[str, str]) -> str:
    """GSV-Cities file name of a CSV row, as the dataset's own loader builds it.

    ``{city_id}_{place_id:07d}_{year:04d}_{month:02d}_{northdeg:03d}_{lat}_{lon}_{panoid}.jpg`` with
    lat/lon printed as Python/pandas print a float64 (``str(float(text))``).
    """
    try:
        pid, year, month, north = (int(float(row[k])) for k in ("place_id", "year", "month", "northdeg"))
        lat, lon = str(float(row["lat"])), str(float(row["lon"]))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad GSV-Cities row {row}: {exc}") from None
    return f"{row['city_id']}_{pid:07d}_{year:04d}_{month:02d}_{north:03d}_{lat}_{lon}_{row['panoid']}.jpg"


class GsvCitiesSource(_FileSource):
    """GSV-Cities: ``Dataframes/<City>.csv`` + ``Images/<city_id>/<name>.jpg``; places with >= ``min_images``.

    ``cities`` None takes every CSV in ``Dataframes``. Missing images raise ConfigError (naming them)
    unless ``skip_missing`` is set, which drops them (and places left with too few images).
    """

    name = "gsv-cities"

    def __init__(self, root: str | os.PathLike, cities: Sequence[str] | None = None, min_images: int = 4,
                 skip_missing: bool = False) -> None:
        root = Path(root)
        frames, images = root / "Dataframes", root / "Images"
        if not root.is_dir():
            raise ConfigError(f"GSV-Cities folder {root} not found")
        for sub in (frames, images):
            if not sub.is_dir():
                raise ConfigError(f"{root}: not a GSV-Cities folder: {sub.name}/ is missing "
                                  "(expected Dataframes/<City>.csv and Images/<City>/...)")
        available = sorted(p.stem for p in frames.glob("*.csv"))
        if cities is None or len(cities) == 0:
            cities = available
            if not cities:
                raise ConfigError(f"{frames}: no city CSV files found")
        missing_csv = [c for c in cities if not (frames / f"{c}.csv").is_file()]
        if missing_csv:
            raise ConfigError(f"{frames}: no CSV for cities {_few(missing_csv)}; available: {_few(available)}")
        if min_images < 2:
            raise ConfigError(f"min_images must be >= 2 (a place needs positives), got {min_images}")
        places: list[list[Path]] = []
        keys: list[str] = []
        missing: list[Path] = []
        for city in cities:
            groups = self._read_city(frames / f"{city}.csv")
            listing: dict[str, set[str]] = {}
            for pid, rows in groups.items():
                paths = []
                for row in rows:
                    folder = images / row["city_id"]
                    if row["city_id"] not in listing:
                        listing[row["city_id"]] = ({e.name for e in os.scandir(folder) if e.is_file()}
                                                   if folder.is_dir() else set())
                    name = gsv_image_name(row)
                    if name in listing[row["city_id"]]:
                        paths.append(folder / name)
                    else:
                        missing.append(folder / name)
                if len(paths) >= min_images and (skip_missing or len(paths) == len(rows)):
                    places.append(sorted(paths))
                    keys.append(f"{city}/{pid}")
        if missing and not skip_missing:
            raise ConfigError(f"{root}: {len(missing)} image(s) listed in the city CSVs are missing: "
                              f"{_few([str(m) for m in missing])} (use --skip-missing to drop them)")
        if missing:
            log.warning("GSV-Cities: %d missing image(s) skipped", len(missing))
        if not places:
            raise ConfigError(f"{root}: no place of {', '.join(cities)} has >= {min_images} images")
        super().__init__(places, keys)
        self.cities = tuple(cities)
        self.root = root

    @staticmethod
    def _read_city(path: Path) -> dict[int, list[dict[str, str]]]:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            cols = [c.strip() for c in (reader.fieldnames or [])]
            lacking = [c for c in GSV_COLUMNS if c not in cols]
            if lacking:
                raise ConfigError(f"{path}: missing column(s) {', '.join(lacking)} "
                                  f"(expected {', '.join(GSV_COLUMNS)})")
            groups: dict[int, list[dict[str, str]]] = {}
            for lineno, row in enumerate(reader, start=2):
                row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
                try:
                    pid = int(float(row["place_id"]))
                except ValueError:
                    raise ConfigError(f"{path}:{lineno}: place_id {row['place_id']!r} is not an integer") from None
                groups.setdefault(pid, []).append(row)
        return groups


@dataclass(frozen=True)
class MapPlacesConfig:
    """How a map's keyframes become places.

    Greedy radius clustering in time order: a keyframe farther than ``spacing_m`` from every
    existing centre (or, with ``heading_tolerance_deg``, facing another way) starts a new place;
    every keyframe then joins its nearest centre within ``radius_m`` (and heading tolerance), the
    others are unused. Two images of different places are thus >= spacing - 2 * radius apart.
    ``position``: auto (UTM, else lat/lon, else pose), utm, latlon, pose. ``heading_axis``: the
    camera body axis that points forward (x for ROS body frames, z for optical frames).
    """

    radius_m: float = 5.0
    spacing_m: float = 25.0
    heading_tolerance_deg: float | None = None
    heading_axis: str = "x"
    position: str = "auto"
    min_images: int = 4
    image_root: str | None = None
    skip_missing: bool = False

    def __post_init__(self) -> None:
        if not self.radius_m > 0:
            raise ConfigError(f"place radius must be > 0 m, got {self.radius_m}")
        if not self.spacing_m > 2 * self.radius_m:
            raise ConfigError(f"place spacing ({self.spacing_m} m) must exceed twice the radius "
                              f"({2 * self.radius_m} m), or images of different places could overlap")
        if self.heading_tolerance_deg is not None and not 0 < self.heading_tolerance_deg <= 180:
            raise ConfigError(f"heading tolerance must be in (0, 180] degrees, got {self.heading_tolerance_deg}")
        if self.heading_axis not in HEADING_AXES:
            raise ConfigError(f"heading_axis must be 'x' or 'z', got {self.heading_axis!r}")
        if self.position not in PLACE_POSITIONS:
            raise ConfigError(f"position must be auto, utm, latlon or pose, got {self.position!r}")
        if self.min_images < 2:
            raise ConfigError(f"min_images must be >= 2, got {self.min_images}")


def _heading(q: Sequence[float], axis: str) -> float:
    """Yaw (radians) of the forward axis of a quaternion (x, y, z, w) in the xy plane."""
    x, y, z, w = q
    n = math.sqrt(x * x + y * y + z * z + w * w)
    x, y, z, w = x / n, y / n, z / n, w / n
    if axis == "x":
        fx, fy = 1 - 2 * (y * y + z * z), 2 * (x * y + w * z)
    else:
        fx, fy = 2 * (x * z + w * y), 2 * (y * z - w * x)
    return math.atan2(fy, fx)


def _angle_diff(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return np.abs((np.asarray(a) - np.asarray(b) + np.pi) % (2 * np.pi) - np.pi)


class MapPlaceSource(_FileSource):
    """Places from a map directory (``fol-vpr build-map``): keyframe positions + source image paths."""

    name = "map"

    def __init__(self, map_dir: str | os.PathLike, cfg: MapPlacesConfig | None = None) -> None:
        from ..mapping import VprMap

        cfg = cfg or MapPlacesConfig()
        map_dir = Path(map_dir)
        try:
            with VprMap.open(map_dir) as vmap:
                keyframes = vmap.keyframes()
        except MapError as exc:
            raise ConfigError(f"cannot read the map for training: {exc}") from None
        xy, heading, paths, unused = self._positions(keyframes, cfg, map_dir)
        if len(paths) == 0:
            raise ConfigError(f"{map_dir}: no keyframe has a usable {cfg.position} position and image file")
        groups = cluster_places(xy, heading, cfg)
        places = [[paths[i] for i in g] for g in groups if len(g) >= cfg.min_images]
        if not places:
            raise ConfigError(f"{map_dir}: no place with >= {cfg.min_images} images (radius {cfg.radius_m} m, "
                              f"{len(paths)} usable keyframes); try a larger --place-radius")
        keys = [f"place{i:05d}" for i in range(len(places))]
        super().__init__(places, keys)
        self.unused_keyframes = unused
        log.info("map %s: %d places from %d keyframes (%d without position or image)",
                 map_dir, len(places), len(paths), unused)

    @staticmethod
    def _positions(keyframes: list, cfg: MapPlacesConfig, map_dir: Path
                   ) -> tuple[np.ndarray, np.ndarray | None, list[Path], int]:
        kind = cfg.position
        if kind == "auto":
            if any(k.geo is not None and k.geo.easting is not None for k in keyframes):
                kind = "utm"
            elif any(k.geo is not None and k.geo.latitude is not None for k in keyframes):
                kind = "latlon"
            else:
                kind = "pose"
        pts: list[tuple[float, float]] = []
        heads: list[float] = []
        paths: list[Path] = []
        missing: list[str] = []
        zones, frames = set(), set()
        skipped = 0
        lat0 = None
        for k in sorted(keyframes, key=lambda k: (k.stamp_ns, k.id)):
            if kind == "utm" and k.geo is not None and k.geo.easting is not None:
                p = (k.geo.easting, k.geo.northing)
                zones.add(k.geo.zone)
            elif kind == "latlon" and k.geo is not None and k.geo.latitude is not None:
                lat0 = k.geo.latitude if lat0 is None else lat0
                r = 6371000.0
                p = (math.radians(k.geo.longitude) * r * math.cos(math.radians(lat0)),
                     math.radians(k.geo.latitude) * r)
            elif kind == "pose" and k.pose is not None:
                p = k.pose.position[:2]
                frames.add(k.pose.frame_id)
            else:
                skipped += 1
                continue
            if cfg.heading_tolerance_deg is not None and k.pose is None:
                skipped += 1
                continue
            path = _resolve_source(k.source, cfg.image_root, map_dir)
            if path is None:
                missing.append(k.source or f"<keyframe {k.id} has no source>")
                continue
            pts.append((float(p[0]), float(p[1])))
            if cfg.heading_tolerance_deg is not None:
                heads.append(_heading(k.pose.orientation, cfg.heading_axis))
            paths.append(path)
        if len(zones) > 1:
            raise ConfigError(f"{map_dir}: keyframes span several UTM zones ({', '.join(sorted(zones))})")
        if len(frames) > 1:
            raise ConfigError(f"{map_dir}: keyframe poses are in different frames ({', '.join(sorted(frames))})")
        if missing and not cfg.skip_missing:
            raise ConfigError(f"{map_dir}: {len(missing)} keyframe image(s) not found: {_few(missing)} "
                              "(set the image root with --image-root, or --skip-missing)")
        xy = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        heading = np.asarray(heads, dtype=np.float64) if cfg.heading_tolerance_deg is not None else None
        return xy, heading, paths, skipped + len(missing)


def _resolve_source(source: str, image_root: str | None, map_dir: Path) -> Path | None:
    if not source:
        return None
    p = Path(source)
    candidates = [p] if p.is_absolute() else (
        ([Path(image_root) / p] if image_root else []) + [Path.cwd() / p, map_dir / p, map_dir.parent / p])
    if image_root and p.is_absolute():
        candidates.append(Path(image_root) / p.name)
    return next((c for c in candidates if c.is_file()), None)


def cluster_places(xy: np.ndarray, heading: np.ndarray | None, cfg: MapPlacesConfig) -> list[list[int]]:
    """Greedy radius clustering (see MapPlacesConfig); returns member indices per place, in input order."""
    n = len(xy)
    tol = math.radians(cfg.heading_tolerance_deg) if cfg.heading_tolerance_deg is not None else None
    cell = cfg.spacing_m
    grid: dict[tuple[int, int], list[int]] = {}
    centres: list[int] = []

    def near(i: int, dist: float, reach: int) -> list[int]:
        cx, cy = math.floor(xy[i, 0] / cell), math.floor(xy[i, 1] / cell)
        out = []
        for gx in range(cx - reach, cx + reach + 1):
            for gy in range(cy - reach, cy + reach + 1):
                for c in grid.get((gx, gy), ()):
                    if np.hypot(*(xy[i] - xy[c])) <= dist and (
                            tol is None or _angle_diff(heading[i], heading[c]) <= tol):
                        out.append(c)
        return out

    for i in range(n):
        if not near(i, cfg.spacing_m, 1):
            key = (math.floor(xy[i, 0] / cell), math.floor(xy[i, 1] / cell))
            grid.setdefault(key, []).append(i)
            centres.append(i)
    members: dict[int, list[int]] = {c: [] for c in centres}
    for i in range(n):
        cands = near(i, cfg.radius_m, 1)
        if cands:
            best = min(cands, key=lambda c: (float(np.hypot(*(xy[i] - xy[c]))), c))
            members[best].append(i)
    return [members[c] for c in centres if members[c]]


class SubsetSource:
    """A view of some places of another source (e.g. the training or validation split)."""

    def __init__(self, base: PlaceSource, places: Sequence[int], name: str | None = None) -> None:
        self.base = base
        self.places = [int(p) for p in places]
        self.name = name or f"{base.name}[subset]"

    def __len__(self) -> int:
        return len(self.places)

    def place_size(self, place: int) -> int:
        return self.base.place_size(self.places[place])

    def load(self, place: int, index: int) -> np.ndarray:
        return self.base.load(self.places[place], index)

    def place_key(self, place: int) -> str:
        return self.base.place_key(self.places[place])


def split_places(source: PlaceSource, fraction: float, seed: int, max_places: int | None = None
                 ) -> tuple[SubsetSource, SubsetSource]:
    """(train, validation) split of a source's places; the same seed gives the same split."""
    n = len(source)
    if not 0 < fraction < 1:
        raise ConfigError(f"validation fraction must be in (0, 1), got {fraction}")
    k = max(1, round(n * fraction))
    if max_places is not None:
        k = min(k, max_places)
    if n - k < 2:
        raise ConfigError(f"holding out {k} of {n} places leaves fewer than 2 for training")
    perm = np.random.default_rng([int(seed), 7919]).permutation(n)
    val, train = sorted(perm[:k].tolist()), sorted(perm[k:].tolist())
    return SubsetSource(source, train, f"{source.name}[train]"), SubsetSource(source, val, f"{source.name}[val]")
