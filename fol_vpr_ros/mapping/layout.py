"""Where a map lives on disk: its file names, leftovers of interrupted saves, and the atomic swap.

A save writes a temporary sibling directory ``.NAME.tmp-PID-XXXX`` and puts it in place with
``swap_in`` (an atomic exchange where the file system has one, else the old map is renamed to a
backup ``.NAME.old-XXXX`` first). ``map_path_problem`` names what would stop a map from being opened
or replaced at a path: a file, a foreign directory, a backup left by an interrupted save.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from pathlib import Path

from ..errors import MapError
from ._util import fsync_dir

__all__ = [
    "DATA_FILES",
    "GLOBAL_NAME",
    "INDEX_NAME",
    "LOCAL_NAME",
    "MANIFEST_NAME",
    "OFFSETS_NAME",
    "RC_NAME",
    "RECORDS_NAME",
    "backups",
    "check_map_target",
    "map_path_problem",
    "stale_temp_dirs",
    "swap_in",
]

MANIFEST_NAME = "manifest.json"
RECORDS_NAME = "keyframes.jsonl"
GLOBAL_NAME = "global.npy"
LOCAL_NAME = "local.npy"
RC_NAME = "local_rc.npy"
OFFSETS_NAME = "local_offsets.npy"
INDEX_NAME = "index.faiss"
DATA_FILES = (RECORDS_NAME, GLOBAL_NAME, LOCAL_NAME, RC_NAME, OFFSETS_NAME)


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


def backups(path: Path) -> list[Path]:
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
    found = backups(p)
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


def swap_in(tmp: Path, target: Path) -> None:
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
            for old in backups(target):
                shutil.rmtree(old, ignore_errors=True)
            return
        for old in backups(target):  # half-removed backups of earlier, completed saves
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
