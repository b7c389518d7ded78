"""Map integrity: how much to check at open (``VerifyMode``) and the streamed SHA-256 + NaN/inf check."""

from __future__ import annotations

import enum
import hashlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, MapError

__all__ = ["VerifyMode", "first_non_finite", "verify_stream"]

_CHUNK = 8 << 20  # bytes per read (a multiple of every item size)
# exponent bits of IEEE floats: all set means inf or NaN
_EXPONENT = {np.dtype(np.float16): (np.uint16, 0x7C00), np.dtype(np.float32): (np.uint32, 0x7F800000),
             np.dtype(np.float64): (np.uint64, 0x7FF0000000000000)}


class VerifyMode(str, enum.Enum):
    """How much of a map is checked when it opens."""

    FULL = "full"  # + SHA-256 of every file and NaN/inf in every float array (reads the whole map once)
    SIZE = "size"  # + file sizes against the manifest (catches truncation, not same-size corruption)
    OFF = "off"  # only what opening needs: manifest, .npy headers, shapes and offsets

    @classmethod
    def parse(cls, value: VerifyMode | str | bool | None, where: str = "verify") -> VerifyMode:
        """A mode from 'full' / 'size' / 'off' (True = full, False/None = size)."""
        if isinstance(value, VerifyMode):
            return value
        if value is True:
            return cls.FULL
        if value is False or value is None:
            return cls.SIZE
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a verify mode; allowed: "
                              f"{', '.join(m.value for m in cls)}") from None


def first_non_finite(data: np.ndarray) -> int:
    """Index of the first NaN/inf element of a flat float array, -1 when all are finite."""
    spec = _EXPONENT.get(data.dtype)
    if spec is None:
        return -1
    bits = data.view(spec[0])
    bad = np.bitwise_and(bits, spec[0](spec[1])) == spec[0](spec[1])
    if not bad.any():
        return -1
    return int(np.argmax(bad))


def verify_stream(path: Path, expected_sha256: str, data_offset: int = 0, dtype: np.dtype | None = None,
                  row_width: int = 1) -> None:
    """Hash ``path`` in chunks and compare with the manifest; for float ``dtype`` also find NaN/inf.

    ``data_offset`` is where the array body starts (the ``.npy`` header length); ``row_width``
    turns an element index into a row number for the message. Raises MapError naming the file.
    """
    h = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    check = dtype is not None and np.dtype(dtype) in _EXPONENT
    itemsize = np.dtype(dtype).itemsize if check else 1
    pos = 0
    with open(path, "rb") as f:
        if data_offset:
            head = f.read(data_offset)
            h.update(head)
            pos = len(head)
        while True:
            n = f.readinto(view)
            if not n:
                break
            h.update(view[:n])
            if check:
                usable = n - n % itemsize
                at = first_non_finite(np.frombuffer(buf, dtype=dtype, count=usable // itemsize))
                if at >= 0:
                    element = (pos - data_offset) // itemsize + at
                    raise MapError(f"{path}: NaN or infinite value in row {element // row_width} "
                                   f"(element {element}); the file is corrupt: restore it from a backup or "
                                   "rebuild the map")
            pos += n
    if h.hexdigest() != expected_sha256:
        raise MapError(f"{path}: SHA-256 differs from the manifest (same size, different content); the file "
                       "is corrupt: restore it from a backup or rebuild the map")
