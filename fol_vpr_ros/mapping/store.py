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
the index. Saving writes a temporary sibling directory ``.NAME.tmp-PID-XXXX`` (files and directory
get the user's umask), fsyncs it and swaps it in with renames, so an interrupted save leaves the
previous map; temporary directories of dead processes are removed by the next save.
"""

from __future__ import annotations

import bisect
import ctypes
import dataclasses
import datetime as _dt
import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import umask_mode
from ..errors import ConfigError, MapError, MapSaveError
from ._util import (
    Grow,
    HashingWriter,
    array_chunks,
    file_sha256,
    fsync_dir,
    iter_file_bytes,
    npy_header,
    open_npy,
    read_npy_header,
)
from .index import GlobalIndex, IndexConfig, parse_device
from .manifest import LOCAL_DTYPES, PRECISIONS, RC_DTYPES, FileEntry, MapCompat, MapManifest
from .records import Keyframe
from .verify import VerifyMode, verify_stream

__all__ = ["MANIFEST_NAME", "VprMap", "check_map_target", "map_path_problem", "stale_temp_dirs"]

MANIFEST_NAME = "manifest.json"
RECORDS_NAME = "keyframes.jsonl"
GLOBAL_NAME = "global.npy"
LOCAL_NAME = "local.npy"
RC_NAME = "local_rc.npy"
OFFSETS_NAME = "local_offsets.npy"
INDEX_NAME = "index.faiss"
DATA_FILES = (RECORDS_NAME, GLOBAL_NAME, LOCAL_NAME, RC_NAME, OFFSETS_NAME)
_NORM_TOL = 1e-3


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
    w = HashingWriter(path)
    try:
        for part in parts:
            w.write(part.encode("utf-8"))
    except BaseException:
        w.abort()
        raise
    return FileEntry(*w.close())


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename a directory (indirection so tests can inject failures)."""
    os.rename(src, dst)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange_dirs(a: Path, b: Path) -> None:
    """Atomically swap two directories (Linux renameat2 RENAME_EXCHANGE); OSError where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(b))


def _backups(path: Path) -> list[Path]:
    """Backups ``.NAME.old-*`` an interrupted save may have left next to ``path``."""
    return sorted(path.parent.glob(f".{path.name}.old-*")) if path.parent.is_dir() else []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_dirs(path: Path) -> list[Path]:
    """Temporary save directories next to ``path`` whose writing process is gone (or unknown)."""
    if not path.parent.is_dir():
        return []
    out = []
    for tmp in path.parent.glob(f".{path.name}.tmp-*"):
        pid_text = tmp.name[len(f".{path.name}.tmp-"):].partition("-")[0]
        pid = int(pid_text) if pid_text.isdigit() else None
        if pid is None or (pid != os.getpid() and not _pid_alive(pid)):
            out.append(tmp)
    return sorted(out)


def check_map_target(path: str | os.PathLike, what: str = "--out") -> Path:
    """Refuse, before any work, a map output path that is not a map, sits under a file or has a backup."""
    from ..outputs import check_output_dir

    problem = map_path_problem(path)
    if problem is not None:
        raise MapError(f"{what}: {problem}")
    return check_output_dir(path, f"{what} map")


def map_path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot hold a map to open or replace (None when it is a map, or free to create).

    Catches a file or non-empty non-map directory at ``path`` and a backup left by an interrupted save.
    """
    p = Path(os.path.abspath(path))
    found = _backups(p)
    if p.exists() and not p.is_dir():
        return f"{p}: exists and is a file, not a map directory; remove it or choose another path"
    if p.is_dir() and not (p / MANIFEST_NAME).is_file() and any(p.iterdir()):
        return (f"{p}: exists and is not a map (no {MANIFEST_NAME}); move it away or choose another path "
                "(it is never replaced)")
    if found and not p.exists():
        return (f"{p}: missing, but an interrupted save left the previous map at {found[-1]}: recover it with "
                f"`mv {found[-1]} {p}` (then `fol-vpr map check {p}`)")
    if found:
        return (f"{found[-1]}: leftover backup of an interrupted save next to the map {p}; check the map "
                f"(`fol-vpr map check {p}`), then remove the backup, or restore it with `mv` if the map is bad")
    return None


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
        if local_dtype not in LOCAL_DTYPES:
            raise ConfigError(f"local_dtype {local_dtype!r} not supported; use one of {', '.join(LOCAL_DTYPES)}")
        if rc_dtype not in RC_DTYPES:
            raise ConfigError(f"rc_dtype {rc_dtype!r} not supported; use one of {', '.join(RC_DTYPES)}")
        precision = str(getattr(precision, "value", precision))
        if precision not in PRECISIONS:
            raise ConfigError(f"precision {precision!r} not supported; use one of {', '.join(PRECISIONS)}")
        for name, v in (("descriptor_dim", descriptor_dim), ("local_dim", local_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        size = tuple(int(v) for v in input_size)
        if len(size) != 2 or min(size) < 1:
            raise ConfigError(f"input_size must be (height, width), got {input_size!r}")
        if not model_hash or not isinstance(model_hash, str):
            raise ConfigError("model_hash must be the checkpoint's sha256 (or 'synthetic:SEED')")
        p = Path(path) if path is not None else None
        if p is not None and (p / MANIFEST_NAME).exists() and not overwrite:
            raise MapError(f"{p}: a map already exists there; open it with VprMap.open to extend it, "
                           "choose another path, or pass overwrite=True")
        now = _now()
        m = MapManifest(model_hash=model_hash, arch=str(arch), input_size=(size[0], size[1]),
                        descriptor_dim=descriptor_dim, local_dim=local_dim, local_dtype=local_dtype,
                        rc_dtype=rc_dtype, precision=precision, created=now, modified=now, software_version=__version__,
                        index=index or IndexConfig())
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
        m = cls._read_manifest(path)
        if expect is not None:
            expect.check(m, str(path))
        cls._check_files(path, m, mode)
        out = cls(m, path, device)
        out._attach(path, m)
        out._records = cls._read_records(path / RECORDS_NAME, m.num_keyframes)
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
        return cls._read_manifest(Path(path))

    @staticmethod
    def _read_manifest(path: Path) -> MapManifest:
        if not path.exists():
            hint = ""
            found = _backups(path)
            if found:
                hint = (f"; an interrupted save left the previous map at {found[-1]}: "
                        f"rename it to {path.name} to recover it")
            raise MapError(f"{path}: map not found{hint}")
        if not path.is_dir():
            raise MapError(f"{path}: not a map (a map is a directory holding {MANIFEST_NAME})")
        mpath = path / MANIFEST_NAME
        if not mpath.is_file():
            raise MapError(f"{mpath}: missing; {path} is not a complete map (rebuild it)")
        try:
            obj = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MapError(f"{mpath}: unreadable map manifest ({exc}); restore or rebuild the map") from None
        return MapManifest.from_json(obj, str(mpath))

    @staticmethod
    def _check_files(path: Path, m: MapManifest, mode: VerifyMode) -> None:
        mpath = path / MANIFEST_NAME
        required = [*DATA_FILES, *([m.index_file] if m.index_file else [])]
        for name in required:
            if name not in m.files:
                raise MapError(f"{mpath}: records no size/checksum for {name}; the map is corrupt, rebuild it")
        for name, entry in m.files.items():
            if Path(name).name != name or name in (".", ".."):
                raise MapError(f"{mpath}: file name {name!r} is not a plain name; the manifest is corrupt")
            p = path / name
            if not p.is_file():
                raise MapError(f"{p}: missing map file; restore it from a backup or rebuild the map")
            size = p.stat().st_size
            if mode is not VerifyMode.OFF and size != entry.bytes:
                raise MapError(f"{p}: {size} bytes, but the manifest recorded {entry.bytes}; the file was "
                               "truncated or modified: restore it from a backup or rebuild the map")
        if mode is not VerifyMode.FULL:
            return
        widths = {GLOBAL_NAME: m.descriptor_dim, LOCAL_NAME: m.local_dim}
        for name, entry in m.files.items():
            p = path / name
            dtype, offset = None, 0
            if name in widths:
                dtype, _shape, offset = read_npy_header(p)
            verify_stream(p, entry.sha256, offset, dtype, widths.get(name, 1))

    def _attach(self, path: Path, m: MapManifest) -> None:
        """Memory-map the saved arrays of ``path`` (checked against ``m``) as the base part."""
        n, d, r = m.num_keyframes, m.descriptor_dim, m.num_local_rows
        checks: list[tuple[str, tuple[str, ...], tuple[int, ...], bool]] = [
            (GLOBAL_NAME, ("float32",), (n, d), True),
            (LOCAL_NAME, (m.local_dtype,), (r, m.local_dim), True),
            (RC_NAME, (m.rc_dtype,), (r, 2), True),
            (OFFSETS_NAME, ("int64",), (n + 1,), False),
        ]
        arrays = {}
        for name, dtypes, shape, mmap in checks:
            p = path / name
            a = open_npy(p, dtypes, len(shape), mmap)
            if a.shape != shape:
                raise MapError(f"{p}: shape {a.shape}, but the manifest describes {shape} ({n} keyframes, "
                               f"{r} local rows); the map is inconsistent, rebuild it")
            arrays[name] = a
            self._data_offset[name] = p.stat().st_size - a.nbytes
        off = np.array(arrays[OFFSETS_NAME], dtype=np.int64)
        if off[0] != 0 or off[-1] != r or (n and np.any(np.diff(off) < 0)):
            raise MapError(f"{path / OFFSETS_NAME}: offsets are not a non-decreasing 0..{r} sequence over "
                           f"{n} keyframes; the map is inconsistent, rebuild it")
        self._base_dir, self._base_n, self._base_rows = path, n, r
        self._g_base, self._l_base, self._rc_base = arrays[GLOBAL_NAME], arrays[LOCAL_NAME], arrays[RC_NAME]
        self._offsets = Grow(np.int64, capacity=n + 1)
        self._offsets.extend(off)
        self._pg, self._pl, self._prc, self._pg_start, self._pl_start = [], [], [], [], []

    @staticmethod
    def _read_records(path: Path, n: int) -> list[Keyframe]:
        records = []
        try:
            with open(path, encoding="utf-8") as f:
                for lineno, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise MapError(f"{path}:{lineno}: not valid JSON ({exc}); the map is corrupt, "
                                       "rebuild it") from None
                    records.append(Keyframe.from_json(obj, f"{path}:{lineno}"))
        except (OSError, UnicodeDecodeError) as exc:
            raise MapError(f"{path}: cannot read keyframe records ({exc}); rebuild the map") from None
        if len(records) != n:
            raise MapError(f"{path}: {len(records)} keyframe records, but the manifest and global.npy hold "
                           f"{n}; the map is inconsistent, rebuild it")
        return records

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

    def compat(self) -> MapCompat:
        """The model identity this map needs (pass to ``open(expect=...)`` elsewhere)."""
        m = self._m
        return MapCompat(m.model_hash, m.arch, m.input_size, m.descriptor_dim, m.local_dim, m.precision)

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
        g = np.asarray(globals_, dtype=np.float32)
        if g.ndim == 1 and n == 1:
            g = g[None]
        d = self._m.descriptor_dim
        if g.shape != (n, d):
            raise ConfigError(f"globals must have shape [{n}, {d}] for {n} keyframes, got {list(g.shape)}")
        if not np.isfinite(g).all():
            raise ConfigError("global descriptors contain NaN or infinite values")
        norms = np.linalg.norm(g, axis=1)
        bad = np.flatnonzero(np.abs(norms - 1.0) > _NORM_TOL)
        if len(bad):
            raise ConfigError(f"global descriptor {int(bad[0])} of this batch has norm {norms[bad[0]]:.4g}; "
                              "descriptors must be L2-normalised (unit norm)")
        rows, pos, cnt = self._gather_local(local, rc, counts, n)
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
        g = np.ascontiguousarray(g)
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

    def _gather_local(self, local: Any, rc: Any, counts: Any, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ldim, ldt, rdt = self._m.local_dim, np.dtype(self._m.local_dtype), np.dtype(self._m.rc_dtype)
        if counts is None:
            if isinstance(local, np.ndarray) and local.ndim != 3:
                raise ConfigError("local rows given as one 2-D array need counts (rows per keyframe)")
            local, rc = list(local), list(rc)
            if len(local) != n or len(rc) != n:
                raise ConfigError(f"{len(local)} local row arrays and {len(rc)} rc arrays for {n} keyframes")
            la = [_as_rows(x, ldim, f"local rows of keyframe {j}") for j, x in enumerate(local)]
            ra = [_as_rows(x, 2, f"rc of keyframe {j}") for j, x in enumerate(rc)]
            for j, (x, y) in enumerate(zip(la, ra)):
                if len(x) != len(y):
                    raise ConfigError(f"keyframe {j} of this batch has {len(x)} local rows but {len(y)} rc rows")
            cnt = np.array([len(x) for x in la], dtype=np.int64)
            rows = np.concatenate(la) if n else None
            pos = np.concatenate(ra) if n else None
        else:
            cnt = np.asarray(counts, dtype=np.int64).reshape(-1)
            rows, pos = np.asarray(local), np.asarray(rc)
        if rows is None or pos is None:
            return np.empty((0, ldim), ldt), np.empty((0, 2), rdt), np.zeros(0, np.int64)
        if len(cnt) != n or (n and cnt.min() < 0):
            raise ConfigError(f"counts must be {n} non-negative integers, got {cnt.tolist()[:8]}")
        total = int(cnt.sum())
        if rows.ndim != 2 or rows.shape != (total, ldim):
            raise ConfigError(f"local rows must have shape [{total}, {ldim}] in all, got {list(rows.shape)}")
        if pos.shape != (total, 2):
            raise ConfigError(f"rc must have shape [{total}, 2] (row, col per local row), got {list(pos.shape)}")
        if total and not np.issubdtype(pos.dtype, np.integer):
            raise ConfigError(f"rc must be integers, got {pos.dtype}")
        info = np.iinfo(rdt)
        if total and (pos.min() < info.min or pos.max() > info.max):
            raise ConfigError(f"rc values outside the {rdt} range of this map; create it with rc_dtype='int32'")
        out = np.ascontiguousarray(rows, dtype=ldt)
        if not np.isfinite(out).all():
            raise ConfigError(f"local rows contain NaN or infinite values (after conversion to {ldt})")
        return out, np.ascontiguousarray(pos, dtype=rdt), cnt

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
        mask = None
        if candidate_mask is not None:
            mask = np.asarray(candidate_mask)
            if mask.dtype != bool or mask.shape != (len(self),):
                raise ConfigError(f"candidate_mask must be a bool array of shape ({len(self)},), "
                                  f"got {mask.dtype} {mask.shape}")
            mask = mask.copy()
        if max_id is not None:
            keep = self._ids.view() <= int(max_id)
            mask = keep if mask is None else mask & keep
        if exclude_ids is not None:
            excl = np.fromiter((int(i) for i in exclude_ids), np.int64)
            if len(excl):
                keep = ~np.isin(self._ids.view(), excl)
                mask = keep if mask is None else mask & keep
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
        if not target.exists() and _backups(target):
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
            _swap_in(tmp, target)
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

        def lines() -> Iterable[str]:
            batch = []
            for rec in self._records:
                batch.append(json.dumps(rec.to_json(), separators=(",", ":"), ensure_ascii=False) + "\n")
                if len(batch) >= 4096:
                    yield "".join(batch)
                    batch = []
            yield "".join(batch)

        files[RECORDS_NAME] = _write_text(out / RECORDS_NAME, lines())
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


def _as_rows(x: Any, width: int, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.size == 0:
        return a.reshape(0, width)
    if a.ndim != 2 or a.shape[1] != width:
        raise ConfigError(f"{what} must have shape [n, {width}], got {list(a.shape)}")
    return a


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the complete directory ``tmp`` at ``target``, keeping the old map until the new one is in.

    Where the file system can, the two directories are exchanged atomically (``target`` never
    disappears, even on a kill between steps); otherwise the old map is renamed to a backup first.
    """
    backup = None
    if target.exists():
        try:
            _exchange_dirs(tmp, target)
        except OSError:
            pass  # not supported here: fall back to two renames
        else:
            fsync_dir(target.parent)
            shutil.rmtree(tmp, ignore_errors=True)  # now holds the previous map
            for old in _backups(target):
                shutil.rmtree(old, ignore_errors=True)
            return
        for old in _backups(target):  # half-removed backups of earlier, completed saves
            shutil.rmtree(old, ignore_errors=True)
        backup = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
        _replace_dir(target, backup)
    try:
        _replace_dir(tmp, target)
    except BaseException:
        if backup is not None:
            os.rename(backup, target)
        raise
    fsync_dir(target.parent)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
