"""Private helpers: growable arrays, hashed + fsynced file writing, checked ``.npy`` reading."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..errors import MapError

_CHUNK = 16 << 20  # bytes per read/write chunk when streaming files


class Grow:
    """A 1-D (or row-wise N-D) numpy array with amortised O(1) append."""

    def __init__(self, dtype: np.dtype | str, row_shape: tuple[int, ...] = (), capacity: int = 16) -> None:
        self._buf = np.empty((max(1, capacity), *row_shape), dtype=dtype)
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def extend(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=self._buf.dtype)
        need = self._n + len(values)
        if need > len(self._buf):
            cap = max(need, 2 * len(self._buf))
            new = np.empty((cap, *self._buf.shape[1:]), dtype=self._buf.dtype)
            new[: self._n] = self._buf[: self._n]
            self._buf = new
        self._buf[self._n : need] = values
        self._n = need

    def view(self) -> np.ndarray:
        return self._buf[: self._n]


class HashingWriter:
    """A binary file writer that counts bytes and hashes them; ``close`` fsyncs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._h = hashlib.sha256()
        self.nbytes = 0

    def write(self, data: bytes | memoryview | np.ndarray) -> None:
        mv = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self._h.update(mv)
        self._f.write(mv)
        self.nbytes += len(mv)

    def close(self) -> tuple[int, str]:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return self.nbytes, self._h.hexdigest()

    def abort(self) -> None:
        self._f.close()


def write_text(path: Path, parts: Iterable[str]) -> tuple[int, str]:
    """Write UTF-8 text from parts, hashed and fsynced: (bytes, sha256); a failed write leaves the file closed."""
    w = HashingWriter(path)
    try:
        for part in parts:
            w.write(part.encode("utf-8"))
    except BaseException:
        w.abort()
        raise
    return w.close()


def npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """The bytes of a ``.npy`` header (format 1.0) for a C-ordered array."""
    buf = io.BytesIO()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(s) for s in shape)}
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def iter_file_bytes(path: Path, offset: int, nbytes: int) -> Iterable[bytes]:
    """Read ``nbytes`` from ``path`` starting at ``offset`` in chunks (plain reads, no mmap)."""
    with open(path, "rb") as f:
        f.seek(offset)
        left = nbytes
        while left > 0:
            chunk = f.read(min(_CHUNK, left))
            if not chunk:
                raise MapError(f"{path}: file ended {left} bytes early while copying it; restore the map")
            left -= len(chunk)
            yield chunk


def array_chunks(arr: np.ndarray) -> Iterable[memoryview]:
    """Contiguous byte chunks of a row-major array, without copying the whole array at once."""
    if arr.size == 0:
        return
    row_bytes = max(1, arr.itemsize * int(np.prod(arr.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK // row_bytes)
    for i in range(0, len(arr), step):
        yield memoryview(np.ascontiguousarray(arr[i : i + step])).cast("B")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_npy_header(path: Path) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, data offset) of an ``.npy`` file; MapError naming the file when it is not valid."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"unsupported .npy version {version}")
            offset = f.tell()
    except FileNotFoundError:
        raise MapError(f"{path}: missing map file; the map is incomplete, rebuild it") from None
    except (ValueError, OSError, SyntaxError) as exc:
        raise MapError(f"{path}: not a valid .npy file ({exc}); the map is corrupt, rebuild it") from None
    if dtype.hasobject:
        raise MapError(f"{path}: holds Python objects (pickled data), which maps never contain; refused. "
                       "The file was replaced or corrupted: rebuild the map")
    if fortran:
        raise MapError(f"{path}: Fortran-ordered array; map files are written C-ordered; rebuild the map")
    return dtype, tuple(shape), offset


def open_npy(path: Path, dtypes: tuple[str, ...], ndim: int, mmap: bool) -> np.ndarray:
    """Load an ``.npy`` map file (memory-mapped if ``mmap``) after checking dtype, rank and size."""
    dtype, shape, offset = read_npy_header(path)
    if dtype not in [np.dtype(d) for d in dtypes]:
        raise MapError(f"{path}: dtype {dtype} where the map format needs {' or '.join(dtypes)}; "
                       "the map is corrupt, rebuild it")
    if len(shape) != ndim:
        raise MapError(f"{path}: array of shape {shape} where a {ndim}-D array is expected; rebuild the map")
    need = offset + dtype.itemsize * int(np.prod(shape, dtype=np.int64))
    size = path.stat().st_size
    if size != need:
        state = "truncated" if size < need else "longer than its header says"
        raise MapError(f"{path}: file is {state} ({size} bytes, header shape {shape} needs {need}); "
                       "restore the map from a backup or rebuild it")
    try:
        if mmap and int(np.prod(shape, dtype=np.int64)) > 0:
            return np.load(path, mmap_mode="r", allow_pickle=False)
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise MapError(f"{path}: cannot read ({exc}); restore the map from a backup or rebuild it") from None
