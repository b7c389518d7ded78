"""Opening a saved map: the manifest, the checks of its files, the keyframe records and the base arrays."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import MapError
from ._util import open_npy, read_npy_header
from .layout import DATA_FILES, GLOBAL_NAME, LOCAL_NAME, MANIFEST_NAME, OFFSETS_NAME, RC_NAME, backups
from .manifest import MapManifest
from .records import Keyframe
from .verify import VerifyMode, verify_stream

__all__ = ["SavedArrays", "check_files", "open_arrays", "read_manifest", "read_records"]


@dataclass(frozen=True, eq=False)
class SavedArrays:
    """The arrays of a saved map: globals, local rows and rc memory-mapped, offsets in memory."""

    globals_: np.ndarray  # [N, D] float32
    local: np.ndarray  # [R, L]
    rc: np.ndarray  # [R, 2]
    offsets: np.ndarray  # [N + 1] int64
    data_offset: dict[str, int]  # file name -> bytes before the array data (the .npy header)


def read_manifest(path: Path) -> MapManifest:
    """The validated manifest of the map at ``path`` (MapError naming what is missing or broken)."""
    if not path.exists():
        hint = ""
        found = backups(path)
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


def check_files(path: Path, m: MapManifest, mode: VerifyMode) -> None:
    """Every file the manifest lists is there with its size; ``full`` also streams SHA-256 and NaN/inf."""
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


def open_arrays(path: Path, m: MapManifest) -> SavedArrays:
    """Memory-map the saved arrays of ``path``, checked against the manifest ``m``."""
    n, d, r = m.num_keyframes, m.descriptor_dim, m.num_local_rows
    checks: list[tuple[str, tuple[str, ...], tuple[int, ...], bool]] = [
        (GLOBAL_NAME, ("float32",), (n, d), True),
        (LOCAL_NAME, (m.local_dtype,), (r, m.local_dim), True),
        (RC_NAME, (m.rc_dtype,), (r, 2), True),
        (OFFSETS_NAME, ("int64",), (n + 1,), False),
    ]
    arrays, data_offset = {}, {}
    for name, dtypes, shape, mmap in checks:
        p = path / name
        a = open_npy(p, dtypes, len(shape), mmap)
        if a.shape != shape:
            raise MapError(f"{p}: shape {a.shape}, but the manifest describes {shape} ({n} keyframes, "
                           f"{r} local rows); the map is inconsistent, rebuild it")
        arrays[name] = a
        data_offset[name] = p.stat().st_size - a.nbytes
    off = np.array(arrays[OFFSETS_NAME], dtype=np.int64)
    if off[0] != 0 or off[-1] != r or (n and np.any(np.diff(off) < 0)):
        raise MapError(f"{path / OFFSETS_NAME}: offsets are not a non-decreasing 0..{r} sequence over "
                       f"{n} keyframes; the map is inconsistent, rebuild it")
    return SavedArrays(arrays[GLOBAL_NAME], arrays[LOCAL_NAME], arrays[RC_NAME], off, data_offset)


def read_records(path: Path, n: int) -> list[Keyframe]:
    """The ``n`` keyframe records of ``keyframes.jsonl`` (MapError with the line of a bad one)."""
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
