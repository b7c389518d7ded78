"""Ground truth of a VPR dataset: the CSV contract, the UTM layout and the bundled datasets.

CSV contract (header ``query,positives``): ``query`` is a file name in the queries folder,
``positives`` the space-separated file names of the matching map (database) images; it may be
empty (the query then counts as a miss, as in the standard protocol). The index form of VPR-Bench
(header ``query_index,matching_ref_indices``, as the bundled corridor's ground_truth.csv) names images
by the frame number in their file names instead (``0000005.jpg`` is 5). ``read_ground_truth_csv``
reads both (bag ground truth is ``sources.bag_ground_truth.read_ground_truth``).

Long module: about 500 lines on purpose: the bundled datasets' readers (gardenspoint, corridor, nordland) build
the same ``GroundTruth`` and share the CSV writer; they are imported from here by the demo, the
training validation and the benchmarks.
"""

from __future__ import annotations

import csv
import inspect
import io
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic import atomic_write_text
from ..errors import ConfigError
from ..image_io import IMAGE_SUFFIXES

__all__ = [
    "BUNDLED_DATASETS",
    "CSV_HEADER",
    "GROUND_TRUTH_FORMATS",
    "INDEX_CSV_HEADER",
    "BundledDataset",
    "EvalDataset",
    "GroundTruth",
    "bundled_ground_truth",
    "corridor_ground_truth",
    "database_sidecar",
    "find_layout",
    "gardenspoint_ground_truth",
    "image_names",
    "nordland_ground_truth",
    "parse_utm",
    "positives_within",
    "read_ground_truth_csv",
    "utm_ground_truth",
    "validate_ground_truth",
    "write_bundled_ground_truth",
    "write_ground_truth",
]

CSV_HEADER = ("query", "positives")
INDEX_CSV_HEADER = ("query_index", "matching_ref_indices")  # VPR-Bench: frame numbers of the file names
GROUND_TRUTH_FORMATS = (f"header '{','.join(CSV_HEADER)}' with file names, or '{','.join(INDEX_CSV_HEADER)}' "
                        "with the frame numbers in the file names (VPR-Bench); positives space-separated")
_SHOW = 5  # how many offending names an error message lists


@dataclass(frozen=True)
class GroundTruth:
    """Queries (file names) and, per query, the file names of its positive map images.

    ``database`` optionally restricts the map to these file names (e.g. a subsampled sequence);
    ``None`` means every image of the map folder.
    """

    queries: tuple[str, ...]
    positives: tuple[tuple[str, ...], ...]
    database: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "queries", tuple(str(q) for q in self.queries))
        object.__setattr__(self, "positives", tuple(tuple(str(p) for p in ps) for ps in self.positives))
        if self.database is not None:
            object.__setattr__(self, "database", tuple(str(d) for d in self.database))
        if len(self.queries) != len(self.positives):
            raise ConfigError(
                f"ground truth has {len(self.queries)} queries but {len(self.positives)} positive lists"
            )
        dup = _duplicates(self.queries)
        if dup:
            raise ConfigError(f"ground truth lists queries more than once: {_few(dup)}")

    @property
    def num_queries(self) -> int:
        return len(self.queries)

    @property
    def num_without_positives(self) -> int:
        """Queries with no positive (counted as misses by the recall)."""
        return sum(1 for ps in self.positives if not ps)

    def positive_indices(self, database_names: Sequence[str]) -> list[np.ndarray]:
        """Positives as int64 indices into ``database_names``; unknown names raise ConfigError."""
        index = {name: i for i, name in enumerate(database_names)}
        missing = sorted({p for ps in self.positives for p in ps if p not in index})
        if missing:
            raise ConfigError(
                f"{len(missing)} positive(s) of the ground truth are not in the database: {_few(missing)}"
            )
        return [np.asarray([index[p] for p in ps], dtype=np.int64) for ps in self.positives]


class EvalDataset(NamedTuple):
    """Where an evaluation reads its images, and its ground truth."""

    map_dir: Path
    queries_dir: Path
    ground_truth: GroundTruth


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for n in names:
        if n in seen:
            dup.append(n)
        seen.add(n)
    return dup


def _few(names: Sequence[str]) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:_SHOW])
    return shown + (f" ... ({len(names)} in all)" if len(names) > _SHOW else "")


def image_names(folder: str | os.PathLike) -> list[str]:
    """Sorted file names of the images directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: image folder not found")
    # FIFOs and broken links are listed too, so that readers report them as skipped
    names = sorted(p.name for p in folder.iterdir() if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not names:
        raise ConfigError(f"{folder}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return names


# ---------------------------------------------------------------------------------------------------
# CSV reading, validation and writing


def database_sidecar(csv_path: str | os.PathLike) -> Path:
    """Optional file next to a ground-truth CSV listing the map images to use, one per line."""
    return Path(csv_path).with_suffix(".database.txt")


def _csv_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header (stripped, lower case) and the non-blank rows, with their line numbers, of a ground-truth CSV."""
    if not path.is_file():
        raise ConfigError(f"{path}: ground-truth file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read ground-truth file: {exc}") from None
    if not text.strip():
        raise ConfigError(f"{path}: ground-truth file is empty (expected {GROUND_TRUTH_FORMATS})")
    reader = csv.reader(io.StringIO(text))
    header = [h.strip().lower() for h in next(reader)]
    rows = [(lineno, row) for lineno, row in enumerate(reader, start=2) if row and any(c.strip() for c in row)]
    if not rows:
        raise ConfigError(f"{path}: ground-truth file has a header but no query rows")
    return header, rows


def _name_rows(path: Path, rows: list[tuple[int, list[str]]]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Queries and positives of ``query,positives`` rows (file names)."""
    queries: list[str] = []
    positives: list[tuple[str, ...]] = []
    for lineno, row in rows:
        query = row[0].strip()
        if not query:
            raise ConfigError(f"{path}:{lineno}: empty query name")
        queries.append(query)
        positives.append(tuple(row[1].split()) if len(row) > 1 else ())
    return queries, positives


def _numbered(names: Iterable[str], where: str) -> dict[int, str]:
    """Frame number (the digits of the file name) -> file name; two names with one number are refused."""
    table: dict[int, str] = {}
    for name in names:
        i = _index_of(name, Path(where))
        if i in table:
            raise ConfigError(f"{where}: files {table[i]!r} and {name!r} share frame number {i}")
        table[i] = name
    return table


def _index_rows(path: Path, rows: list[tuple[int, list[str]]], queries: Mapping[int, str], refs: Mapping[int, str],
                where: tuple[str, str]) -> tuple[list[str], list[tuple[str, ...]]]:
    """Queries and positives of ``query_index,matching_ref_indices`` rows, as the file names with those frame
    numbers (``where``: the query and map folders, for the errors)."""
    q_names: list[str] = []
    pos: list[tuple[str, ...]] = []
    for lineno, row in rows:
        try:
            qi = int(row[0])
            ref_idx = [int(v) for v in (row[1].split() if len(row) > 1 else [])]
        except ValueError:
            raise ConfigError(f"{path}:{lineno}: indices must be integers, got {row}") from None
        if qi not in queries:
            raise ConfigError(f"{path}:{lineno}: query index {qi} has no image in {where[0]}")
        unknown = [r for r in ref_idx if r not in refs]
        if unknown:
            raise ConfigError(f"{path}:{lineno}: ref indices {unknown} have no image in {where[1]}")
        q_names.append(queries[qi])
        pos.append(tuple(refs[r] for r in ref_idx))
    return q_names, pos


def read_ground_truth_csv(
    path: str | os.PathLike,
    query_names: Sequence[str] | None = None,
    database_names: Sequence[str] | None = None,
) -> GroundTruth:
    """Read a ground-truth CSV (either of GROUND_TRUTH_FORMATS); with the available file names given, also
    validate it. The index form needs them: its frame numbers become those files' names.

    A sidecar ``<name>.database.txt`` (see :func:`database_sidecar`) restricts the map, if present.
    """
    path = Path(path)
    header, rows = _csv_rows(path)
    if header[:2] == list(CSV_HEADER):
        queries, positives = _name_rows(path, rows)
    elif header[:2] == list(INDEX_CSV_HEADER):
        if query_names is None or database_names is None:
            raise ConfigError(f"{path}: frame-number ground truth ('{','.join(INDEX_CSV_HEADER)}') needs the query "
                              "and map image names to resolve its numbers")
        where = ("the queries folder", "the map")
        queries, positives = _index_rows(path, rows, _numbered(query_names, where[0]),
                                         _numbered(database_names, where[1]), where)
    else:
        raise ConfigError(f"{path}: unknown ground-truth header {','.join(header)!r}; accepted: {GROUND_TRUTH_FORMATS}")
    dup = _duplicates(queries)
    if dup:
        raise ConfigError(f"{path}: queries listed more than once: {_few(dup)}")
    database = None
    side = database_sidecar(path)
    if side.is_file():
        lines = side.read_text(encoding="utf-8").splitlines()
        database = tuple(line.strip() for line in lines if line.strip())
        if not database:
            raise ConfigError(f"{side}: database list is empty")
    gt = GroundTruth(tuple(queries), tuple(positives), database)
    if query_names is not None or database_names is not None:
        validate_ground_truth(gt, query_names, database_names, source=str(path))
    return gt


def validate_ground_truth(
    gt: GroundTruth,
    query_names: Sequence[str] | None = None,
    database_names: Sequence[str] | None = None,
    source: str = "ground truth",
) -> None:
    """Check that every query, positive and database name exists among the available files."""
    if query_names is not None:
        known = set(query_names)
        missing = [q for q in gt.queries if q not in known]
        if missing:
            raise ConfigError(
                f"{source}: {len(missing)} query name(s) are not in the queries folder: {_few(missing)}"
            )
    if database_names is not None:
        known = set(database_names)
        if gt.database is not None:
            missing = [d for d in gt.database if d not in known]
            if missing:
                raise ConfigError(
                    f"{source}: {len(missing)} database name(s) are not in the map folder: {_few(missing)}"
                )
            known = set(gt.database)
        missing = sorted({p for ps in gt.positives for p in ps if p not in known})
        if missing:
            raise ConfigError(
                f"{source}: {len(missing)} positive name(s) are not in the map (database): {_few(missing)}"
            )


def write_ground_truth(gt: GroundTruth, path: str | os.PathLike) -> Path:
    """Write ``gt`` as a ground-truth CSV (plus the database sidecar when ``gt.database`` is set)."""
    path = Path(path)
    bad = [n for ps in gt.positives for n in ps if not n or any(ch.isspace() for ch in n)]
    bad += [q for q in gt.queries if not q or q != q.strip()]
    if bad:
        raise ConfigError(
            f"{path}: names with whitespace cannot be written to a ground-truth CSV: {_few(bad)}"
        )
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for q, ps in zip(gt.queries, gt.positives):
        writer.writerow([q, " ".join(ps)])
    atomic_write_text(path, buf.getvalue())
    side = database_sidecar(path)
    if gt.database is not None:
        atomic_write_text(side, "".join(f"{d}\n" for d in gt.database))
    elif side.exists():
        side.unlink()
    return path


# ---------------------------------------------------------------------------------------------------
# Common VPR layout with UTM coordinates in the file names


def find_layout(root: str | os.PathLike) -> tuple[Path, Path]:
    """Map and query folders: ``<root>/images/test/{database,queries}`` or ``<root>/{database,queries}``."""
    root = Path(root)
    tried = [root / "images" / "test", root]
    for base in tried:
        if (base / "database").is_dir() and (base / "queries").is_dir():
            return base / "database", base / "queries"
    raise ConfigError(
        f"{root}: no 'database' and 'queries' folders found (looked in "
        + " and ".join(str(t) for t in tried)
        + ")"
    )


def parse_utm(name: str) -> tuple[float, float]:
    """(easting, northing) from the 2nd and 3rd '@'-separated fields of a file name."""
    fields = Path(name).name.split("@")
    try:
        if len(fields) < 3:
            raise ValueError
        return float(fields[1]), float(fields[2])
    except ValueError:
        raise ConfigError(
            f"{name}: file name has no UTM fields (expected '@easting@northing@...', "
            "e.g. '@0543256.96@4178906.38@10@S@...@.jpg')"
        ) from None


def positives_within(
    query_xy: np.ndarray, database_xy: np.ndarray, radius: float = 25.0, chunk_elements: int = 1 << 22
) -> list[np.ndarray]:
    """Per query, int64 indices of database points within ``radius`` (sorted by distance, then index)."""
    q = np.asarray(query_xy, dtype=np.float64).reshape(-1, 2)
    db = np.asarray(database_xy, dtype=np.float64).reshape(-1, 2)
    if not radius > 0:
        raise ConfigError(f"positive radius must be > 0 metres, got {radius}")
    r2 = float(radius) ** 2
    step = max(1, chunk_elements // max(1, db.shape[0]))
    out: list[np.ndarray] = []
    for start in range(0, q.shape[0], step):
        d2 = ((q[start : start + step, None, :] - db[None, :, :]) ** 2).sum(-1)
        for row in d2:
            idx = np.flatnonzero(row <= r2)
            out.append(idx[np.lexsort((idx, row[idx]))].astype(np.int64))
    return out


def utm_ground_truth(root: str | os.PathLike, radius: float = 25.0) -> EvalDataset:
    """Ground truth of a dataset in the common layout: positives are map images within ``radius`` metres."""
    db_dir, q_dir = find_layout(root)
    db_names, q_names = image_names(db_dir), image_names(q_dir)
    db_xy = np.array([parse_utm(n) for n in db_names], dtype=np.float64)
    q_xy = np.array([parse_utm(n) for n in q_names], dtype=np.float64)
    pos = positives_within(q_xy, db_xy, radius)
    gt = GroundTruth(tuple(q_names), tuple(tuple(db_names[i] for i in idx) for idx in pos))
    return EvalDataset(db_dir, q_dir, gt)


# ---------------------------------------------------------------------------------------------------
# Bundled datasets (../shared/data)


def _dataset_dir(root: Path, dirname: str, required: Sequence[str]) -> Path:
    """The dataset folder: ``root/dirname``, or ``root`` itself when it already is that folder."""
    root = Path(root)
    for cand in (root / dirname, root):
        if all((cand / r).exists() for r in required):
            return cand
    raise ConfigError(
        f"{root}: dataset {dirname!r} not found (expected {', '.join(required)} "
        f"under {root / dirname} or {root})"
    )


def _index_of(name: str, path: Path) -> int:
    m = re.search(r"(\d+)", Path(name).stem)
    if m is None:
        raise ConfigError(f"{path / name}: file name has no frame number")
    return int(m.group(1))


def _by_index(folder: Path) -> dict[int, str]:
    return _numbered(image_names(folder), str(folder))


def _check_tolerance(tolerance: int) -> int:
    if int(tolerance) != tolerance or tolerance < 0:
        raise ConfigError(f"tolerance must be a non-negative whole number of frames, got {tolerance}")
    return int(tolerance)


def gardenspoint_ground_truth(root: str | os.PathLike, tolerance: int = 1) -> EvalDataset:
    """Gardens Point day/night sample: query ``i.jpg`` matches ref ``j.jpg`` for ``|i - j| <= tolerance``."""
    base = _dataset_dir(Path(root), "gardenspoint_sample10_vpr_tutorial", ("query", "ref"))
    tol = _check_tolerance(tolerance)
    refs = _by_index(base / "ref")
    queries = _by_index(base / "query")
    q_idx = sorted(queries)
    pos = tuple(tuple(refs[j] for j in range(i - tol, i + tol + 1) if j in refs) for i in q_idx)
    return EvalDataset(base / "ref", base / "query", GroundTruth(tuple(queries[i] for i in q_idx), pos))


def corridor_ground_truth(root: str | os.PathLike) -> EvalDataset:
    """VPR-Bench corridor: its ``ground_truth.csv`` (query_index, matching_ref_indices) as file names."""
    base = _dataset_dir(Path(root), "vprbench_corridor", ("query", "ref", "ground_truth.csv"))
    src = base / "ground_truth.csv"
    header, rows = _csv_rows(src)
    if header[:2] != list(INDEX_CSV_HEADER):
        raise ConfigError(f"{src}: expected header '{','.join(INDEX_CSV_HEADER)}'")
    q_names, pos = _index_rows(src, rows, _by_index(base / "query"), _by_index(base / "ref"),
                               (str(base / "query"), str(base / "ref")))
    return EvalDataset(base / "ref", base / "query", GroundTruth(tuple(q_names), tuple(pos)))


def nordland_ground_truth(
    root: str | os.PathLike,
    tolerance: int = 2,
    subsample: int = 1,
    limit: int | None = None,
    map_season: str = "summer",
    query_season: str = "winter",
) -> EvalDataset:
    """Nordland 64x32: same file name = same place; positives within ``tolerance`` frames of the full
    sorted sequence. ``subsample`` keeps every n-th place (map and queries alike), ``limit`` the first
    ``limit`` of those; the map is restricted accordingly (``GroundTruth.database``)."""
    seasons = ("summer", "winter")
    if map_season not in seasons or query_season not in seasons or map_season == query_season:
        raise ConfigError(
            f"map_season and query_season must be two different of {seasons}, got {map_season!r}, "
            f"{query_season!r}"
        )
    base = _dataset_dir(Path(root), "nordland_seqslam_64x32", seasons)
    tol = _check_tolerance(tolerance)
    if int(subsample) != subsample or subsample < 1:
        raise ConfigError(f"subsample must be a whole number >= 1, got {subsample}")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise ConfigError(f"limit must be a whole number >= 1 or None, got {limit}")
    map_names = image_names(base / map_season)
    query_names = image_names(base / query_season)
    if map_names != query_names:
        only = sorted(set(map_names) ^ set(query_names))
        raise ConfigError(
            f"{base}: {map_season}/ and {query_season}/ hold different file names: {_few(only)}"
        )
    keep = list(range(0, len(map_names), int(subsample)))
    if limit is not None:
        keep = keep[: int(limit)]
    kept = set(keep)
    pos = tuple(
        tuple(map_names[j] for j in range(i - tol, i + tol + 1) if j in kept) for i in keep
    )
    database = None if len(keep) == len(map_names) else tuple(map_names[i] for i in keep)
    gt = GroundTruth(tuple(query_names[i] for i in keep), pos, database)
    return EvalDataset(base / map_season, base / query_season, gt)


@dataclass(frozen=True)
class BundledDataset:
    """A dataset of ../shared/data with its folder name and ground-truth builder."""

    name: str
    dirname: str
    build: Callable[..., EvalDataset]
    description: str


BUNDLED_DATASETS: dict[str, BundledDataset] = {
    d.name: d
    for d in (
        BundledDataset(
            "gardenspoint",
            "gardenspoint_sample10_vpr_tutorial",
            gardenspoint_ground_truth,
            "Gardens Point 10 places, day queries vs night map, +-1 frame",
        ),
        BundledDataset(
            "corridor", "vprbench_corridor", corridor_ground_truth, "VPR-Bench corridor, 111 queries"
        ),
        BundledDataset(
            "nordland",
            "nordland_seqslam_64x32",
            nordland_ground_truth,
            "Nordland 64x32 thumbnails, winter queries vs summer map, +-2 frames",
        ),
    )
}


def _lookup(name: str) -> BundledDataset:
    for d in BUNDLED_DATASETS.values():
        if name in (d.name, d.dirname):
            return d
    valid = ", ".join(f"{d.name} ({d.dirname})" for d in BUNDLED_DATASETS.values())
    raise ConfigError(f"unknown bundled dataset {name!r}; valid: {valid}")


def bundled_ground_truth(dataset_root: str | os.PathLike, name: str, **opts: object) -> EvalDataset:
    """(map_dir, queries_dir, GroundTruth) of a bundled dataset, by short or folder name.

    ``dataset_root`` is the data root holding the dataset folders (or the dataset folder itself);
    ``opts`` go to the dataset's builder (e.g. ``tolerance``, ``subsample``, ``limit``).
    """
    d = _lookup(name)
    accepted = [p for p in inspect.signature(d.build).parameters if p != "root"]
    unknown = sorted(set(opts) - set(accepted))
    if unknown:
        raise ConfigError(
            f"dataset {d.name!r} does not take option(s) {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted) or 'none'}"
        )
    return d.build(Path(dataset_root), **opts)


def write_bundled_ground_truth(
    data_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, object]] | None = None,
) -> dict[str, Path]:
    """Write ``<dirname>.csv`` per bundled dataset found under ``data_root``; returns name -> CSV path.

    With ``names`` given, each must exist; otherwise datasets missing from ``data_root`` are skipped.
    """
    out_dir = Path(out_dir)
    options = dict(options or {})
    chosen = [_lookup(n) for n in names] if names is not None else list(BUNDLED_DATASETS.values())
    written: dict[str, Path] = {}
    for d in chosen:
        if names is None and not (Path(data_root) / d.dirname).is_dir():
            continue
        opts = dict(options.get(d.name, options.get(d.dirname, {})))
        ds = bundled_ground_truth(data_root, d.name, **opts)
        written[d.name] = write_ground_truth(ds.ground_truth, out_dir / f"{d.dirname}.csv")
    if not written:
        raise ConfigError(
            f"{data_root}: none of the bundled datasets found ({', '.join(BUNDLED_DATASETS)})"
        )
    return written
