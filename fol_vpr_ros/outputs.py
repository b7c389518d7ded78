"""Output paths checked before any work starts, and write errors turned into one-line OutputErrors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

__all__ = ["check_output_dir", "check_output_file", "writing"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and not p.is_symlink() and p != p.parent:
        p = p.parent
    return p


def _check_parent(path: Path, what: str) -> None:
    anc = _nearest_existing(path.parent)
    if not anc.is_dir():
        raise OutputError(f"{what} {path}: cannot be created because {anc} is a file, not a directory")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: cannot be created: no write permission in {anc}")


def check_output_file(path: str | os.PathLike, what: str = "output file") -> Path:
    """Refuse, before any work, an output file path that is a directory or cannot be created."""
    p = Path(os.path.abspath(path))
    if p.is_dir():
        raise OutputError(f"{what} {p}: is a directory; give a file name (e.g. {p / 'descriptions.npz'})")
    if p.exists() and not p.is_file():
        raise OutputError(f"{what} {p}: exists and is not a regular file")
    _check_parent(p, what)
    return p


def check_output_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Refuse, before any work, an output folder path that is a file or cannot be created."""
    p = Path(os.path.abspath(path))
    if p.exists() and not p.is_dir():
        raise OutputError(f"{what} {p}: exists and is a file, not a folder; remove it or choose another path")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise OutputError(f"{what} {p}: no write permission")
        return p
    _check_parent(p, what)
    return p


@contextlib.contextmanager
def writing(path: str | os.PathLike, what: str = "output") -> Iterator[None]:
    """Turn an OSError (full disk, permissions, ...) raised while writing ``path`` into an OutputError."""
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        raise OutputError(f"{what} {path}: cannot be written ({exc.strerror or exc}); nothing was "
                          "replaced") from None
