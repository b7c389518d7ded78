"""``VprMap``: a directory holding keyframe records, global and local descriptors and a FAISS index.

Layout (FORMAT_VERSION 1; no pickle anywhere)::

    manifest.json        format/version, model identity, shapes, counts, index spec, size+sha256 per file
    keyframes.jsonl      one JSON record per keyframe, in row order
    global.npy           [N, D] float32, unit-norm global descriptors
    local.npy            [R, L] float16 (or float32) local rows of all keyframes, concatenated
    local_rc.npy         [R, 2] int16 (or int32) (row, col) grid position of each local row
    local_offsets.npy    [N+1] int64, rows of keyframe i are offsets[i]:offsets[i+1]
    index.faiss          only for ivf-*/hnsw indexes (a flat index is rebuilt from global.npy on open)

Opening checks the manifest, file sizes and ``.npy`` headers and, with ``verify="full"`` (the
default), streams every file once for its SHA-256 and NaN/inf values (``"size"`` / ``"off"`` skip
that for very large maps; see ``VerifyMode``), memory-maps the local rows and loads the globals into
the index (``reading``). Saving writes a temporary sibling directory ``.NAME.tmp-PID-XXXX`` (files
and directory get the user's umask), fsyncs it and swaps it in with renames, so an interrupted save
leaves the previous map; temporary directories of dead processes are removed by the next save
(``layout``). Added batches are checked first (``batch``).
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import umask_mode
from ..errors import ConfigError, MapError, MapSaveError
from ._util import Grow, HashingWriter, array_chunks, file_sha256, fsync_dir, iter_file_bytes, npy_header, write_text
from .batch import check_globals, gather_local
from .index import GlobalIndex, IndexConfig, parse_device, selection_mask
from .layout import (
    GLOBAL_NAME,
    INDEX_NAME,
    LOCAL_NAME,
    MANIFEST_NAME,
    OFFSETS_NAME,
    RC_NAME,
    RECORDS_NAME,
    backups,
    check_map_target,
    map_path_problem,
    stale_temp_dirs,
    swap_in,
)
from .manifest import FileEntry, MapCompat, MapManifest, new_manifest
from .reading import check_files, open_arrays, read_manifest, read_records
from .records import Keyframe, records_jsonl
from .verify import VerifyMode

# check_map_target, map_path_problem, stale_temp_dirs live in layout; they stay importable from here
__all__ = ["MANIFEST_NAME", "VprMap", "check_map_target", "map_path_problem", "stale_temp_dirs"]


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _write_npy(path: Path, dtype: np.dtype | str, shape: tuple[int, ...],
               chunks: Iterable[bytes | memoryview]) -> FileEntry:
    """Stream an ``.npy`` file from byte chunks, hashing and fsyncing it."""
    dtype = np.dtype(dtype)
    w = HashingWriter(path)
    try:
        w.write(npy_header(dtype, shape))
        for chunk in chunks:
            w.write(chunk)
        expected = len(npy_header(dtype, shape)) + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        if w.nbytes != expected:
            raise MapError(f"{path}: wrote {w.nbytes} bytes, expected {expected} (internal error)")
    except BaseException:
        w.abort()
        raise
    return FileEntry(*w.close())


def _write_text(path: Path, parts: Iterable[str]) -> FileEntry:
    return FileEntry(*write_text(path, parts))


class VprMap:
    """A place-recognition map: keyframe records, descriptors and retrieval index (see module doc)."""

    def __init__(self, manifest: MapManifest, path: Path | None, device: str = "cpu") -> None:
        """Use ``VprMap.create`` or ``VprMap.open``."""
        parse_device(device)
        self._m = manifest
        self._path = path
        self._device = device
        self._records: list[Keyframe] = []
        self._row_of: dict[int, int] = {}
        self._ids = Grow(np.int64)
        self._offsets = Grow(np.int64)
        self._offsets.extend(np.zeros(1, np.int64))
        self._next_id = 0
        # saved part (memory-mapped files of self._base_dir)
        self._base_dir: Path | None = None
        self._base_n = 0
        self._base_rows = 0
        self._g_base: np.ndarray | None = None
        self._l_base: np.ndarray | None = None
        self._rc_base: np.ndarray | None = None
        self._data_offset: dict[str, int] = {}
        # appended since the last save: one chunk per add() call
        self._pg: list[np.ndarray] = []
        self._pl: list[np.ndarray] = []
        self._prc: list[np.ndarray] = []
        self._pg_start: list[int] = []
        self._pl_start: list[int] = []
        self._index: GlobalIndex | None = None
        self._dirty = False

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(cls, path: str | os.PathLike | None, *, arch: str, input_size: Sequence[int], model_hash: str,
               descriptor_dim: int, local_dim: int = 128, local_dtype: str = "float16",
               rc_dtype: str = "int16", index: IndexConfig | None = None, device: str = "cpu",
               overwrite: bool = False, precision: str = "fp32") -> VprMap:
        """A new empty map in memory; ``save()`` writes it to ``path`` (or to ``save(path)``)."""
        m = new_manifest(model_hash=model_hash, arch=arch, input_size=input_size, descriptor_dim=descriptor_dim,
                         local_dim=local_dim, local_dtype=local_dtype, rc_dtype=rc_dtype, precision=precision,
                         index=index or IndexConfig(), created=_now(), software_version=__version__)
        p = Path(path) if path is not None else None
        if p is not None and (p / MANIFEST_NAME).exists() and not overwrite:
            raise MapError(f"{p}: a map already exists there; open it with VprMap.open to extend it, "
                           "choose another path, or pass overwrite=True")
        out = cls(m, p, device)
        out._dirty = True
        return out

    @classmethod
    def open(cls, path: str | os.PathLike, expect: MapCompat | None = None, device: str = "cpu", *,
             index: IndexConfig | None = None, verify: VerifyMode | str | bool = VerifyMode.FULL) -> VprMap:
        """Open and validate a saved map; ``expect`` refuses maps built for another model.

        ``index`` replaces the stored index configuration (rebuilt from the globals now);
        ``verify``: ``full`` (default) streams every file once for SHA-256 and NaN/inf, ``size``
        compares sizes only, ``off`` checks only what opening needs (see ``VerifyMode``).
        """
        path = Path(path)
        mode = VerifyMode.parse(verify)
        m = read_manifest(path)
        if expect is not None:
            expect.check(m, str(path))
        check_files(path, m, mode)
        out = cls(m, path, device)
        out._attach(path, m)
        out._records = read_records(path / RECORDS_NAME, m.num_keyframes)
        ids = np.fromiter((r.id for r in out._records), np.int64, len(out._records))
        out._ids.extend(ids)
        out._row_of = {int(i): row for row, i in enumerate(ids)}
        if len(out._row_of) != len(ids):
            dup = int(ids[np.flatnonzero(np.diff(np.sort(ids)) == 0)[0]])
            raise MapError(f"{path / RECORDS_NAME}: keyframe id {dup} appears twice; the map is corrupt")
        out._next_id = int(ids.max()) + 1 if len(ids) else 0
        if index is not None and index != m.index:
            out.set_index(index)
        elif m.index_file is not None:
            out._index = GlobalIndex.read(path / m.index_file, m.index, ids, m.descriptor_dim, device)
        else:
            out._index = out._build_index(m.index)
        return out

    @classmethod
    def read_manifest(cls, path: str | os.PathLike) -> MapManifest:
        """The validated manifest of a saved map, without opening its files."""
        return read_manifest(Path(path))

    def _attach(self, path: Path, m: MapManifest) -> None:
        """Memory-map the saved arrays of ``path`` (checked against ``m``) as the base part."""
        saved = open_arrays(path, m)
        self._data_offset = saved.data_offset
        self._base_dir, self._base_n, self._base_rows = path, m.num_keyframes, m.num_local_rows
        self._g_base, self._l_base, self._rc_base = saved.globals_, saved.local, saved.rc
        self._offsets = Grow(np.int64, capacity=m.num_keyframes + 1)
        self._offsets.extend(saved.offsets)
        self._pg, self._pl, self._prc, self._pg_start, self._pl_start = [], [], [], [], []

    # ------------------------------------------------------------------ basic accessors
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, keyframe_id: object) -> bool:
        return keyframe_id in self._row_of

    def __repr__(self) -> str:
        return (f"VprMap({str(self._path)!r}, keyframes={len(self)}, local_rows={self.num_local_rows}, "
                f"arch={self._m.arch!r}, index={self._m.index.kind!r})")

    def __enter__(self) -> VprMap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the memory maps and the index (the object is unusable afterwards)."""
        self._g_base = self._l_base = self._rc_base = None
        self._index = None
        self._records, self._row_of = [], {}

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def dirty(self) -> bool:
        """True when there are changes not yet saved."""
        return self._dirty

    @property
    def num_local_rows(self) -> int:
        return int(self._offsets.view()[-1])

    @property
    def ids(self) -> np.ndarray:
        """Keyframe ids in row (insertion) order, read-only."""
        v = self._ids.view()
        v.flags.writeable = False
        return v

    @property
    def index_config(self) -> IndexConfig:
        return self._m.index

    @property
    def manifest(self) -> MapManifest:
        """The manifest as it would be saved now (file checksums are those of the last save/open)."""
        return dataclasses.replace(self._m, num_keyframes=len(self), num_local_rows=self.num_local_rows)

    def keyframe(self, keyframe_id: int) -> Keyframe:
        return self._records[self._row(keyframe_id)]

    def keyframes(self) -> list[Keyframe]:
        """All keyframe records in row order (a new list)."""
        return list(self._records)

    def _row(self, keyframe_id: Any) -> int:
        try:
            return self._row_of[int(keyframe_id)]
        except (KeyError, TypeError, ValueError):
            where = f" {self._path}" if self._path else ""
            raise MapError(f"keyframe id {keyframe_id!r} is not in the map{where} ({len(self)} keyframes)") from None

    def global_descriptor(self, keyframe_id: int) -> np.ndarray:
        """The [D] float32 global descriptor of a keyframe (read-only view)."""
        row = self._row(keyframe_id)
        if row < self._base_n:
            assert self._g_base is not None
            return self._g_base[row]
        j = bisect.bisect_right(self._pg_start, row) - 1
        return self._pg[j][row - self._pg_start[j]]

    def local_rows(self, keyframe_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows [n, L] in the stored dtype, rc [n, 2]) of a keyframe; views, memory-mapped once saved."""
        row = self._row(keyframe_id)
        off = self._offsets.view()
        a, b = int(off[row]), int(off[row + 1])
        if row < self._base_n:
            assert self._l_base is not None and self._rc_base is not None
            return self._l_base[a:b], self._rc_base[a:b]
        j = bisect.bisect_right(self._pg_start, row) - 1  # add() appends one chunk to each list
        s = self._pl_start[j]
        return self._pl[j][a - s : b - s], self._prc[j][a - s : b - s]

    def local_batch(self, keyframe_ids: Sequence[int] | np.ndarray,
                    dtype: np.dtype | str = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded local rows of several keyframes, for re-ranking.

        Returns (rows [K, Lmax, L] ``dtype`` zero-padded, counts [K] int64, rc [K, Lmax, 2] int32
        padded with -1), Lmax being the largest count among them. ``dtype=np.float16`` skips the
        (CPU-costly) conversion of float16 maps, e.g. when the re-ranker converts on the GPU.
        """
        ids = np.asarray(keyframe_ids).reshape(-1)
        rows = [self._row(i) for i in ids]
        off = self._offsets.view()
        counts = np.array([off[r + 1] - off[r] for r in rows], dtype=np.int64)
        lmax = int(counts.max()) if len(counts) else 0
        out = np.empty((len(rows), lmax, self._m.local_dim), dtype=dtype)
        rc = np.empty((len(rows), lmax, 2), dtype=np.int32)
        for k, i in enumerate(ids):
            loc, pos = self.local_rows(int(i))
            out[k, : len(loc)] = loc
            out[k, len(loc) :] = 0
            rc[k, : len(pos)] = pos
            rc[k, len(pos) :] = -1
        return out, counts, rc

    # ------------------------------------------------------------------ adding
    def add(self, keyframes: Sequence[Keyframe], globals_: np.ndarray,
            local: Sequence[np.ndarray] | np.ndarray, rc: Sequence[np.ndarray] | np.ndarray,
            counts: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Append keyframes; returns their ids (assigned in order where ``Keyframe.id`` is None).

        ``globals_`` is [n, D] unit-norm float32. Local rows are either one [n_i, L] array per
        keyframe (``local``) with matching [n_i, 2] ``rc`` arrays, or all rows concatenated
        ([sum n_i, L] and [sum n_i, 2]) with ``counts`` giving n_i. Everything is validated
        before the map changes; the index (if built) finds the new keyframes immediately.
        """
        kfs = list(keyframes)
        n = len(kfs)
        if not all(isinstance(k, Keyframe) for k in kfs):
            raise ConfigError("keyframes must be Keyframe records")
        m = self._m
        g = check_globals(globals_, n, m.descriptor_dim)
        rows, pos, cnt = gather_local(local, rc, counts, n, m.local_dim, m.local_dtype, m.rc_dtype)
        ids = np.empty(n, np.int64)
        nxt, seen = self._next_id, set()
        for j, k in enumerate(kfs):
            if k.id is None:
                while nxt in self._row_of or nxt in seen:
                    nxt += 1
                ids[j] = nxt
            else:
                if k.id in self._row_of or k.id in seen:
                    raise ConfigError(f"keyframe id {k.id} is already in the map; ids must be unique "
                                      "(leave Keyframe.id None to assign the next free id)")
                ids[j] = k.id
            seen.add(int(ids[j]))
            nxt = max(nxt, int(ids[j]) + 1)
        if n == 0:
            return ids
        # validated: mutate
        start_row, start_local = len(self), self.num_local_rows
        for j, k in enumerate(kfs):
            self._records.append(dataclasses.replace(k, id=int(ids[j])))
            self._row_of[int(ids[j])] = start_row + j
        self._ids.extend(ids)
        self._offsets.extend(start_local + np.cumsum(cnt))
        self._next_id = nxt
        self._pg.append(g)
        self._pg_start.append(start_row)
        self._pl.append(rows)
        self._prc.append(pos)
        self._pl_start.append(start_local)
        if self._index is not None:
            self._index.add(g, ids)
        self._dirty = True
        return ids

    def add_one(self, keyframe: Keyframe, global_: np.ndarray, local: np.ndarray, rc: np.ndarray) -> int:
        """Append one keyframe: global [D], local rows [n, L], rc [n, 2]; returns its id."""
        return int(self.add([keyframe], np.asarray(global_)[None], [local], [rc])[0])

    # ------------------------------------------------------------------ index and search
    def _build_index(self, config: IndexConfig) -> GlobalIndex:
        index = GlobalIndex(self._m.descriptor_dim, config, self._device)
        ids = self._ids.view()
        if self._base_n:
            assert self._base_dir is not None
            index.add_from_file(self._base_dir / GLOBAL_NAME, self._data_offset[GLOBAL_NAME], self._base_n,
                                ids[: self._base_n])
        for start, chunk in zip(self._pg_start, self._pg):
            index.add(chunk, ids[start : start + len(chunk)])
        index.train()
        return index

    def _get_index(self) -> GlobalIndex:
        if self._index is None:
            self._index = self._build_index(self._m.index)
        return self._index

    @property
    def index(self) -> GlobalIndex:
        """The retrieval index (built on first use for a map made with ``create``)."""
        return self._get_index()

    def set_index(self, config: IndexConfig, device: str | None = None) -> None:
        """Rebuild the retrieval index with another configuration (saved with the map)."""
        if device is not None:
            parse_device(device)
            self._device = device
        self._index = self._build_index(config)
        if config != self._m.index:
            self._m = dataclasses.replace(self._m, index=config)
            self._dirty = True

    def search(self, queries: np.ndarray, k: int, *, max_id: int | None = None,
               exclude_ids: Iterable[int] | None = None, candidate_mask: np.ndarray | None = None,
               allow_fewer: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` keyframes for unit-norm queries [Q, D] (or [D]): (ids [Q, k] int64, cosine [Q, k] f32).

        Restrict candidates with ``max_id`` (ids <= max_id, e.g. to skip recent keyframes in loop
        closure), ``exclude_ids`` and/or ``candidate_mask`` (bool per row, in ``self.ids`` order);
        filters use a FAISS ID selector, so exact search stays exact. ``k`` above the number of
        candidates raises ConfigError unless ``allow_fewer``. An empty map raises MapError.
        """
        if len(self) == 0:
            where = f"{self._path}: " if self._path else ""
            raise MapError(f"{where}cannot search an empty map; add keyframes first")
        mask = selection_mask(self._ids.view(), candidate_mask, max_id, exclude_ids)
        return self._get_index().search(queries, k, candidate_mask=mask, allow_fewer=allow_fewer)

    # ------------------------------------------------------------------ saving
    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the map atomically to ``path`` (default: where it was opened/created); returns it.

        Writes a temporary sibling directory (fsynced), renames any previous map to a backup name,
        renames the new one into place and removes the backup. On any error the previous map is
        left as it was and the temporary directory is removed.
        """
        if path is None and self._path is None:
            raise ConfigError("this map has no path yet; call save(path)")
        target = Path(path) if path is not None else self._path
        assert target is not None
        target = Path(os.path.abspath(target))
        if target.exists() and (not target.is_dir() or (
                any(target.iterdir()) and not (target / MANIFEST_NAME).is_file())):
            raise MapError(f"{target}: exists and is not a map; refusing to replace it. "
                               "Choose another path or remove it")
        if not target.exists() and backups(target):
            raise MapError(map_path_problem(target) or f"{target}: backup present")
        if (not self._dirty and self._base_dir is not None
                and Path(os.path.abspath(self._base_dir)) == target):
            return target
        index = None
        if self._m.index.kind != "flat":
            index = self._get_index()
            index.train()
            if index.active_kind == "flat":
                index = None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for stale in stale_temp_dirs(target):
                shutil.rmtree(stale, ignore_errors=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
        except OSError as exc:
            raise MapSaveError(f"{target}: cannot save the map here ({exc.strerror or exc}); the previous map, if "
                           "any, is unchanged") from None
        try:
            os.chmod(tmp, umask_mode(directory=True))  # mkdtemp makes 0700; a map is shared like any folder
            manifest = self._write_all(tmp, index)
            swap_in(tmp, target)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise MapSaveError(f"{target}: saving the map failed ({exc.strerror or exc}"
                           f"{': ' + str(exc.filename) if exc.filename else ''}); the previous map, if any, is "
                           "unchanged and the new one was not written") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._m = manifest
        self._path = target
        self._attach(target, manifest)
        self._dirty = False
        return target

    def _write_all(self, out: Path, index: GlobalIndex | None) -> MapManifest:
        m = self._m
        n, d, r = len(self), m.descriptor_dim, self.num_local_rows
        files: dict[str, FileEntry] = {}
        files[RECORDS_NAME] = _write_text(out / RECORDS_NAME, records_jsonl(self._records))
        files[GLOBAL_NAME] = _write_npy(out / GLOBAL_NAME, np.float32, (n, d),
                                        self._chunks(GLOBAL_NAME, self._base_n * d * 4, self._pg))
        ldt, rdt = np.dtype(m.local_dtype), np.dtype(m.rc_dtype)
        files[LOCAL_NAME] = _write_npy(out / LOCAL_NAME, ldt, (r, m.local_dim),
                                       self._chunks(LOCAL_NAME, self._base_rows * m.local_dim * ldt.itemsize,
                                                    self._pl))
        files[RC_NAME] = _write_npy(out / RC_NAME, rdt, (r, 2),
                                    self._chunks(RC_NAME, self._base_rows * 2 * rdt.itemsize, self._prc))
        files[OFFSETS_NAME] = _write_npy(out / OFFSETS_NAME, np.int64, (n + 1,),
                                         array_chunks(self._offsets.view()))
        index_file = None
        if index is not None:
            index.write(out / INDEX_NAME)
            with open(out / INDEX_NAME, "rb") as f:
                os.fsync(f.fileno())
            files[INDEX_NAME] = FileEntry((out / INDEX_NAME).stat().st_size, file_sha256(out / INDEX_NAME))
            index_file = INDEX_NAME
        manifest = dataclasses.replace(
            m, num_keyframes=n, num_local_rows=r, modified=_now(), software_version=__version__,
            index_file=index_file, index_active=index.active_kind if index is not None else "flat",
            files=files)
        _write_text(out / MANIFEST_NAME, [json.dumps(manifest.to_json(), indent=2) + "\n"])
        fsync_dir(out)
        return manifest

    def _chunks(self, name: str, base_bytes: int, pending: list[np.ndarray]) -> Iterable[bytes | memoryview]:
        if base_bytes:
            assert self._base_dir is not None
            yield from iter_file_bytes(self._base_dir / name, self._data_offset[name], base_bytes)
        for arr in pending:
            yield from array_chunks(arr)
