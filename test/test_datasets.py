"""`fol-vpr data`: the bundled data matches the catalog's sha256 manifests; fetch from a real local HTTP server."""

from __future__ import annotations

import functools
import hashlib
import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from fol_vpr_ros.cli import main
from fol_vpr_ros.datasets import CATALOG, Access, FetchError, bundled_data_dir, fetch_dataset, manifest_files
from fol_vpr_ros.errors import OutputError

HEX64 = re.compile(r"[0-9a-f]{64}")


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on loopback serving tmp_path/srv; yields (root folder, base URL)."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _publish(ds_name: str, root: Path) -> Path:
    """Lay the bundled copy of ``ds_name`` out under ``root`` as its source repository has it."""
    ds = CATALOG[ds_name]
    data = bundled_data_dir()
    assert data is not None, "the repository's data/ folder is missing"
    for _sha, _size, path in manifest_files(ds.manifest):
        src = data / ds.folder / path
        if src.is_file():
            dst = root / ds.source_prefix / path
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return root / ds.source_prefix


def test_catalog_entries_are_complete():
    for d in CATALOG.values():
        assert d.homepage.startswith("https://") and d.licence and d.citation, d.name
        files = d.remote_files()
        if d.access is Access.DIRECT:
            assert files and all(f.url.startswith("https://") and HEX64.fullmatch(f.sha256) and f.size > 0
                                 for f in files), d.name
        elif d.access is Access.UNVERIFIED:
            assert files and all(f.sha256 is None for f in files) and d.instructions, d.name
        else:
            assert not files and d.instructions, d.name


@pytest.mark.parametrize("name", ["nordland-64x32", "gardenspoint-sample10", "vprbench-corridor"])
def test_bundled_files_match_the_manifest(name):
    ds = CATALOG[name]
    folder = bundled_data_dir() / ds.folder
    rows = manifest_files(ds.manifest)
    checked = 0
    for sha, size, path in rows:
        f = folder / path
        if f.is_file():
            data = f.read_bytes()
            assert len(data) == size and hashlib.sha256(data).hexdigest() == sha, f
            checked += 1
    # the small sets are bundled whole; Nordland's first 400 frames per season
    assert checked == (800 if name == "nordland-64x32" else len(rows))


def test_fetch_from_local_server_verifies_and_resumes(server, tmp_path, capsys):
    root, url = server
    _publish("gardenspoint-sample10", root)
    dest = tmp_path / "data"
    assert main(["data", "fetch", "gardenspoint-sample10", "--root", str(dest), "--mirror", url]) == 0
    assert "20 files downloaded" in capsys.readouterr().out
    bundled = bundled_data_dir() / "gardenspoint_sample10_vpr_tutorial"
    for sub in ("query", "ref"):
        for f in (bundled / sub).iterdir():
            assert (dest / "gardenspoint_sample10_vpr_tutorial" / sub / f.name).read_bytes() == f.read_bytes()
    res = fetch_dataset("gardenspoint-sample10", dest, mirror=url, progress=False)
    assert (res.downloaded, res.present) == (0, 20)
    # one file lost locally: only that one comes again
    (dest / "gardenspoint_sample10_vpr_tutorial" / "ref" / "3.jpg").unlink()
    res = fetch_dataset("gardenspoint-sample10", dest, mirror=url, progress=False)
    assert (res.downloaded, res.present) == (1, 19)


def test_corrupt_download_is_refused_and_nothing_of_it_kept(server, tmp_path):
    root, url = server
    base = _publish("gardenspoint-sample10", root)
    bad = base / "query" / "5.jpg"
    bad.write_bytes(bad.read_bytes()[:-10] + b"0123456789")
    dest = tmp_path / "data"
    with pytest.raises(FetchError, match=r"query/5\.jpg.*sha256.*nothing kept for query/5\.jpg"):
        fetch_dataset("gardenspoint-sample10", dest, mirror=url, progress=False)
    folder = dest / "gardenspoint_sample10_vpr_tutorial"
    assert not (folder / "query" / "5.jpg").exists() and not list(folder.rglob("*.part"))
    assert (folder / "query" / "4.jpg").is_file()  # verified before the bad one: kept


def test_missing_file_names_the_url(server, tmp_path):
    root, url = server
    (_publish("vprbench-corridor", root) / "ref" / "0000007.jpg").unlink()
    with pytest.raises(FetchError, match=r"ref/0000007\.jpg: HTTP 404"):
        fetch_dataset("vprbench-corridor", tmp_path / "d", mirror=url, progress=False)


def test_registration_and_unverified_sets_are_not_fetched_silently(tmp_path):
    with pytest.raises(FetchError, match=r"msls: registration \(https://www\.mapillary\.com"):
        fetch_dataset("msls", tmp_path)
    with pytest.raises(FetchError, match="--allow-unverified"):
        fetch_dataset("nordland", tmp_path)
    assert not any(tmp_path.iterdir())


def test_data_list_prints_the_table(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in CATALOG:
        assert f"| {name} |" in out


def test_full_disk_is_one_line_and_leaves_no_part_file(server, tmp_path):
    root, url = server
    _publish("gardenspoint-sample10", root)
    disk = tmp_path / "tiny"
    disk.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        with pytest.raises(OutputError, match=r"dataset file .*: cannot be written .*nothing kept"):
            fetch_dataset("gardenspoint-sample10", disk, mirror=url, progress=False)
        assert not list(disk.rglob("*.part"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
