"""`fol-vpr data fetch NAME`: download a catalog dataset file by file, check each sha256, never keep a bad file.

Each file is streamed into ``PATH.part`` beside its place, hashed on the way, and renamed into place only
when its size and sha256 match; files already present with the right sha256 are kept (a second fetch
only completes what is missing). A mismatch, an HTTP error or a full disk stops with one line naming
the file or URL; the files verified before stay.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import FolVprError, OutputError
from ..progress import progress_bar
from .catalog import Access, Dataset, RemoteFile, dataset

__all__ = ["FetchError", "FetchResult", "fetch_dataset", "sha256_of"]

CHUNK = 1 << 16
TIMEOUT_S = 60.0


class FetchError(FolVprError):
    """A dataset could not be fetched: the URL, the file or the access rule is named."""


@dataclass
class FetchResult:
    """What a fetch did: the dataset folder, files downloaded and already present, bytes, unverified hashes."""

    name: str
    folder: Path
    downloaded: int = 0
    present: int = 0
    bytes: int = 0
    unverified: dict[str, str] = field(default_factory=dict)  # path -> sha256 computed (no published one)


def sha256_of(path: Path) -> str:
    """The sha256 of a file (the map store's chunked hasher, imported only when a file is checked)."""
    from ..mapping._util import file_sha256

    return file_sha256(path)


def _download(url: str, dest: Path, expect: RemoteFile, on_bytes: Callable[[int], None]) -> str:
    """Stream ``url`` into ``dest`` (through dest.part); return its sha256; raise FetchError on mismatch."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    h, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, open(part, "wb") as out:
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
                h.update(block)
                size += len(block)
                on_bytes(len(block))
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: cannot download ({getattr(exc, 'reason', exc)})") from None
    except OSError as exc:  # the local side: full disk, permissions
        part.unlink(missing_ok=True)
        raise OutputError(f"dataset file {dest}: cannot be written ({exc.strerror or exc}); nothing kept") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    digest = h.hexdigest()
    if (expect.size is not None and size != expect.size) or (expect.sha256 and digest != expect.sha256):
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: downloaded {size} bytes with sha256 {digest}, expected {expect.size} bytes "
                         f"with sha256 {expect.sha256}; nothing kept for {expect.path}")
    os.replace(part, dest)
    return digest


def _refuse(ds: Dataset, folder: Path) -> FetchError:
    return FetchError(f"{ds.name}: {ds.access.value} ({ds.homepage}): {ds.instructions}; folder: {folder}")


def fetch_dataset(name: str, root: str | os.PathLike, *, mirror: str | None = None, allow_unverified: bool = False,
                  progress: bool = True) -> FetchResult:
    """Fetch catalog dataset ``name`` into ``root/<its folder>``; ``mirror`` replaces the base URL."""
    ds = dataset(name)
    folder = Path(root) / ds.folder
    if ds.access in (Access.REGISTRATION, Access.ON_REQUEST):
        raise _refuse(ds, folder)
    if ds.access is Access.UNVERIFIED and not allow_unverified:
        raise FetchError(f"{ds.name}: the publisher gives no checksum for these files; pass --allow-unverified "
                         "to download them anyway (the sha256 of each file is printed, to pin)")
    files = ds.remote_files()
    if mirror is not None:
        base = mirror if mirror.endswith("/") else mirror + "/"
        files = tuple(RemoteFile(f.url.replace(ds.base_url, base, 1) if ds.base_url else f.url, f.path, f.sha256,
                                 f.size) for f in files)
    result = FetchResult(ds.name, folder)
    total = sum(f.size or 0 for f in files) or None
    with progress_bar(total=total, unit="B", unit_scale=True, desc=ds.name, enabled=progress) as bar:
        for f in files:
            dest = folder / f.path
            if dest.is_file() and f.sha256 and dest.stat().st_size == (f.size or dest.stat().st_size) \
                    and sha256_of(dest) == f.sha256:
                result.present += 1
                bar.update(f.size or 0)
                continue
            digest = _download(f.url, dest, f, bar.update)
            result.downloaded += 1
            result.bytes += dest.stat().st_size
            if not f.sha256:
                result.unverified[f.path] = digest
    return result
