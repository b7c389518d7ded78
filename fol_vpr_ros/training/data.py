"""Training data: place sources (GSV-Cities, a robot's own map), place batches, the training transform.

A *place* is a group of images showing the same spot. Every batch holds P distinct places with K
images each (place-major order: image ``i`` belongs to place ``i // K``). Which places and images a
batch holds is a pure function of (seed, epoch, batch index), so runs are reproducible and a resumed
run sees exactly the batches an uninterrupted run would have seen, with or without loader workers.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError, MapError
from ..image_io import read_image
from ..model.config import DEFAULT_INPUT_SIZE
from ..model.preprocess import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "GSV_COLUMNS",
    "LIGHT_AUGMENT",
    "AugmentConfig",
    "GsvCitiesSource",
    "MapPlaceSource",
    "MapPlacesConfig",
    "PlaceBatch",
    "PlaceBatchDataset",
    "PlaceSource",
    "SubsetSource",
    "TrainTransform",
    "TransformConfig",
    "epoch_plan",
    "gsv_image_name",
    "split_places",
]

log = logging.getLogger(__name__)

GSV_COLUMNS = ("place_id", "year", "month", "northdeg", "city_id", "lat", "lon", "panoid")
_SHOW = 3


def _few(items: Sequence[object]) -> str:
    shown = ", ".join(str(x) for x in list(items)[:_SHOW])
    return shown + (f" ... ({len(items)} in all)" if len(items) > _SHOW else "")


# --------------------------------------------------------------------------------------------- sources
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
        if self.heading_axis not in ("x", "z"):
            raise ConfigError(f"heading_axis must be 'x' or 'z', got {self.heading_axis!r}")
        if self.position not in ("auto", "utm", "latlon", "pose"):
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


# ------------------------------------------------------------------------------------------ transform
@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation, all off by default: random resized crop (area fraction range), horizontal
    flip probability, colour jitter strengths (factors drawn from [1 - s, 1 + s])."""

    crop_scale: tuple[float, float] = (1.0, 1.0)
    hflip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.crop_scale)
        object.__setattr__(self, "crop_scale", (lo, hi))
        if not 0 < lo <= hi <= 1:
            raise ConfigError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale}")
        if not 0 <= self.hflip <= 1:
            raise ConfigError(f"hflip probability must be in [0, 1], got {self.hflip}")
        for name in ("brightness", "contrast", "saturation"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(f"{name} jitter must be in [0, 1), got {getattr(self, name)}")

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig()


# `fol-vpr train --augment`: crop 0.7-1.0 of the area, colour jitter 0.2
LIGHT_AUGMENT = AugmentConfig(crop_scale=(0.7, 1.0), brightness=0.2, contrast=0.2, saturation=0.2)


@dataclass(frozen=True)
class TransformConfig:
    """Training input: resize to ``size`` (PIL bilinear), scale to [0, 1]; ImageNet normalisation only
    with ``normalize`` (the authors train without it); optional augmentation."""

    size: tuple[int, int] = DEFAULT_INPUT_SIZE
    normalize: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def __post_init__(self) -> None:
        size = tuple(int(v) for v in self.size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input size must be (height, width), got {self.size}")
        object.__setattr__(self, "size", size)


class TrainTransform:
    """uint8 RGB array -> [3, H, W] float32 tensor; ``rng`` drives the (optional) augmentation."""

    def __init__(self, cfg: TransformConfig, train: bool = True) -> None:
        self.cfg = cfg
        self.train = train

    def __call__(self, image: np.ndarray, rng: np.random.Generator | None = None) -> torch.Tensor:
        cfg, aug = self.cfg, self.cfg.augment
        use_aug = self.train and aug.enabled and rng is not None
        img = Image.fromarray(image)
        if use_aug and aug.crop_scale != (1.0, 1.0):
            s = math.sqrt(rng.uniform(*aug.crop_scale))
            w, h = max(1, round(img.width * s)), max(1, round(img.height * s))
            x0, y0 = int(rng.integers(0, img.width - w + 1)), int(rng.integers(0, img.height - h + 1))
            img = img.crop((x0, y0, x0 + w, y0 + h))
        h, w = cfg.size
        if img.size != (w, h):
            img = img.resize((w, h), Image.BILINEAR)
        if use_aug and rng.random() < aug.hflip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()
        if use_aug:
            x = _jitter(x, aug, rng)
        if cfg.normalize:
            x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return x


def _jitter(x: torch.Tensor, aug: AugmentConfig, rng: np.random.Generator) -> torch.Tensor:
    def factor(s: float) -> float:
        return float(rng.uniform(1 - s, 1 + s)) if s > 0 else 1.0

    x = x * factor(aug.brightness)
    c = factor(aug.contrast)
    if c != 1.0:
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]).mean()
        x = (x - gray) * c + gray
    s = factor(aug.saturation)
    if s != 1.0:
        gray = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
        x = (x - gray) * s + gray
    return x.clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------------- batches
@dataclass
class PlaceBatch:
    """P places x K images, place-major: ``images`` [P*K, 3, H, W], ``labels`` [P*K] (place index in
    the source), ``epoch`` and ``index`` (batch number within the epoch)."""

    images: torch.Tensor
    labels: torch.Tensor
    epoch: int
    index: int

    def pin_memory(self) -> PlaceBatch:
        return PlaceBatch(self.images.pin_memory(), self.labels.pin_memory(), self.epoch, self.index)


def epoch_plan(place_sizes: Sequence[int], places_per_batch: int, images_per_place: int, seed: int,
               epoch: int) -> list[list[tuple[int, list[int]]]]:
    """Batches of one epoch: each a list of (place, image indices). Every place appears at most once per
    epoch, images of a place are drawn without replacement; the last incomplete batch is dropped."""
    rng = np.random.default_rng([int(seed), int(epoch), 104729])
    eligible = np.flatnonzero(np.asarray(place_sizes) >= images_per_place)
    order = eligible[rng.permutation(len(eligible))]
    batches = []
    for b in range(len(order) // places_per_batch):
        chunk = order[b * places_per_batch : (b + 1) * places_per_batch]
        batches.append([(int(p), sorted(rng.choice(place_sizes[p], images_per_place, replace=False).tolist()))
                        for p in chunk])
    return batches


class PlaceBatchDataset(torch.utils.data.Dataset):
    """Batches ``start..`` of one epoch as a map-style dataset (use a DataLoader with ``batch_size=None``)."""

    def __init__(self, source: PlaceSource, transform: TrainTransform, places_per_batch: int,
                 images_per_place: int, seed: int, epoch: int, start: int = 0) -> None:
        self.source = source
        self.transform = transform
        self.seed, self.epoch, self.start = int(seed), int(epoch), int(start)
        sizes = [source.place_size(p) for p in range(len(source))]
        self.plan = epoch_plan(sizes, places_per_batch, images_per_place, seed, epoch)

    def __len__(self) -> int:
        return max(0, len(self.plan) - self.start)

    def __getitem__(self, i: int) -> PlaceBatch:
        b = self.start + int(i)
        images, labels = [], []
        for j, (place, idx) in enumerate(self.plan[b]):
            for m, k in enumerate(idx):
                rng = np.random.default_rng([self.seed, self.epoch, b, j, m])
                images.append(self.transform(self.source.load(place, k), rng))
                labels.append(place)
        return PlaceBatch(torch.stack(images), torch.tensor(labels, dtype=torch.long), self.epoch, b)


def batches_per_epoch(source: PlaceSource, places_per_batch: int, images_per_place: int) -> int:
    eligible = sum(1 for p in range(len(source)) if source.place_size(p) >= images_per_place)
    return eligible // places_per_batch
