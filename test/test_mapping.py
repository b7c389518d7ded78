"""The map directory: round trips, appends, atomic saves, validation of corrupt or foreign maps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fol_vpr_ros.errors import ConfigError, MapError
from fol_vpr_ros.mapping import (
    FORMAT_VERSION,
    GeoPosition,
    Keyframe,
    MapCompat,
    Pose,
    VprMap,
    stamp_ns_from_ros,
    stamp_ns_from_seconds,
)
from fol_vpr_ros.mapping import layout as layout_mod
from fol_vpr_ros.mapping import store as store_mod
from fol_vpr_ros.mapping._util import file_sha256

D = 48
HASH = "ab" * 32


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def batch(rng: np.random.Generator, n: int, start: int = 0, max_rows: int = 40):
    kfs = []
    for i in range(n):
        j = start + i
        kfs.append(Keyframe(
            stamp_ns=stamp_ns_from_seconds(1700000000.25 + j), frame_id="cam_front", source=f"bag.mcap#{j}",
            pose=Pose((j * 1.5, -2.0, 0.25), (0.0, 0.0, 0.38268343, 0.92387953), "odom") if j % 2 else None,
            geo=(GeoPosition(easting=500000.0 + j, northing=5400000.5, zone="32U") if j % 3 == 0
                 else GeoPosition(latitude=48.1 + j * 1e-5, longitude=11.5, altitude=520.0)),
            session_id="s1" if j % 2 else None, robot_id="rob-7"))
    g = unit(rng.standard_normal((n, D)))
    counts = rng.integers(0, max_rows, n)
    counts[0] = max_rows  # at least one full keyframe
    local = [unit(rng.standard_normal((int(c), 128))) for c in counts]
    rc = [rng.integers(0, 89, (int(c), 2)) for c in counts]
    return kfs, g, local, rc


def new_map(path: Path | None, **kw) -> VprMap:
    args = dict(arch="vitb14", input_size=(322, 322), model_hash=HASH, descriptor_dim=D)
    args.update(kw)
    return VprMap.create(path, **args)


@pytest.fixture()
def saved(tmp_path):
    rng = np.random.default_rng(0)
    m = new_map(tmp_path / "map")
    kfs, g, local, rc = batch(rng, 12)
    m.add(kfs, g, local, rc)
    m.save()
    return tmp_path / "map", kfs, g, local, rc


def edit_manifest(path: Path, **changes) -> None:
    mpath = path / "manifest.json"
    obj = json.loads(mpath.read_text())
    obj.update(changes)
    mpath.write_text(json.dumps(obj))


def refresh_entry(path: Path, name: str) -> None:
    """Make the manifest agree with a tampered file, so the deeper checks are the ones tested."""
    mpath = path / "manifest.json"
    obj = json.loads(mpath.read_text())
    obj["files"][name] = {"bytes": (path / name).stat().st_size, "sha256": file_sha256(path / name)}
    mpath.write_text(json.dumps(obj))


def test_round_trip_all_fields(saved):
    path, kfs, g, local, rc = saved
    m = VprMap.open(path)
    assert len(m) == 12 and list(m.ids) == list(range(12))
    for i, k in enumerate(kfs):
        got = m.keyframe(i)
        assert got == Keyframe(**{**k.__dict__, "id": i})
        np.testing.assert_array_equal(m.global_descriptor(i), g[i])
        rows, pos = m.local_rows(i)
        assert rows.dtype == np.float16 and rows.shape == local[i].shape
        np.testing.assert_allclose(rows.astype(np.float32), local[i], rtol=1e-3, atol=1e-4)
        np.testing.assert_array_equal(pos, rc[i])
    assert m.keyframe(3).geo.zone == "32U" and m.keyframe(1).pose.frame_id == "odom"
    assert m.keyframe(1).stamp == pytest.approx(1700000001.25)
    man = m.manifest
    assert (man.version, man.arch, man.input_size, man.model_hash) == (FORMAT_VERSION, "vitb14", (322, 322), HASH)
    assert man.num_keyframes == 12 and man.num_local_rows == sum(len(x) for x in local)
    assert set(man.files) == {"keyframes.jsonl", "global.npy", "local.npy", "local_rc.npy", "local_offsets.npy"}
    assert stamp_ns_from_ros(5, 7) == 5_000_000_007


def test_float32_local_exact(tmp_path):
    rng = np.random.default_rng(1)
    m = new_map(tmp_path / "m", local_dtype="float32", rc_dtype="int32")
    kfs, g, local, rc = batch(rng, 4)
    # the concatenated form: rows + counts
    m.add(kfs, g, np.concatenate(local), np.concatenate(rc), counts=[len(x) for x in local])
    m.save()
    m = VprMap.open(tmp_path / "m")
    for i in range(4):
        rows, pos = m.local_rows(i)
        assert rows.dtype == np.float32
        np.testing.assert_array_equal(rows, local[i])
        np.testing.assert_array_equal(pos, rc[i])


def test_local_memory_mapped(saved):
    m = VprMap.open(saved[0])
    rows, pos = m.local_rows(0)
    assert isinstance(rows, np.memmap) and isinstance(pos, np.memmap)
    assert Path(rows.filename).name == "local.npy"


def test_local_batch_padding(saved):
    path, _, _, local, rc = saved
    m = VprMap.open(path)
    ids = [5, 0, 2]
    rows, counts, pos = m.local_batch(ids)
    lmax = max(len(local[i]) for i in ids)
    assert rows.shape == (3, lmax, 128) and rows.dtype == np.float32 and pos.shape == (3, lmax, 2)
    for k, i in enumerate(ids):
        n = len(local[i])
        assert counts[k] == n
        np.testing.assert_allclose(rows[k, :n], local[i], atol=1e-3)
        assert not rows[k, n:].any() and (pos[k, n:] == -1).all()
        np.testing.assert_array_equal(pos[k, :n], rc[i])
    with pytest.raises(MapError, match="99"):
        m.local_batch([99])


def test_append_round_trip(saved):
    path, *_ = saved
    rng = np.random.default_rng(5)
    m = VprMap.open(path)
    kfs, g, local, rc = batch(rng, 5, start=12)
    new_ids = m.add(kfs, g, local, rc)
    assert list(new_ids) == [12, 13, 14, 15, 16]
    ids, sims = m.search(g, 1)  # found before saving
    assert list(ids[:, 0]) == list(new_ids) and np.allclose(sims[:, 0], 1.0, atol=1e-5)
    np.testing.assert_array_equal(m.local_rows(14)[1], rc[2])  # pending rows are readable
    one = m.add_one(Keyframe(stamp_ns=1, id=100), g[0], local[0], rc[0])
    assert one == 100 and m.add([Keyframe(stamp_ns=2)], g[:1], local[:1], rc[:1])[0] == 101
    with pytest.raises(ConfigError, match="already in the map"):
        m.add([Keyframe(stamp_ns=3, id=13)], g[:1], local[:1], rc[:1])
    with pytest.raises(ConfigError, match="norm"):
        m.add([Keyframe(stamp_ns=3)], 2 * g[:1], local[:1], rc[:1])
    assert len(m) == 19  # rejected batches changed nothing
    m.save()
    m2 = VprMap.open(path)
    assert len(m2) == 19 and m2.keyframe(14) == m.keyframe(14)
    ids, _ = m2.search(g[1:3], 1)
    assert list(ids[:, 0]) == [13, 14]
    np.testing.assert_array_equal(m2.local_rows(14)[1], rc[2])
    np.testing.assert_array_equal(m2.local_rows(101)[1], rc[0])


def test_save_elsewhere_and_empty_map(tmp_path):
    m = new_map(None)
    with pytest.raises(ConfigError, match="save\\(path\\)"):
        m.save()
    with pytest.raises(MapError, match="empty"):
        m.search(np.ones(D, np.float32) / np.sqrt(D), 1)
    m.save(tmp_path / "empty")
    e = VprMap.open(tmp_path / "empty")
    assert len(e) == 0 and e.num_local_rows == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(MapError, match="not a map"):
        m.save(tmp_path / "other")
    with pytest.raises(MapError, match="already exists"):
        new_map(tmp_path / "empty")


def test_atomic_save_survives_failure(saved, monkeypatch):
    path, _, g, _, _ = saved
    m = VprMap.open(path)
    rng = np.random.default_rng(9)
    m.add(*batch(rng, 3, start=12))
    real = store_mod._write_npy
    calls = []

    def failing(*args, **kw):
        calls.append(args[0])
        if len(calls) == 3:
            raise OSError("disk full (injected)")
        return real(*args, **kw)

    monkeypatch.setattr(store_mod, "_write_npy", failing)
    with pytest.raises(OSError, match="injected"):
        m.save()
    assert len(calls) == 3
    old = VprMap.open(path)
    assert len(old) == 12
    np.testing.assert_array_equal(old.global_descriptor(11), g[11])
    assert sorted(p.name for p in path.parent.iterdir()) == ["map"]  # temp dir removed

    # failure while renaming the new map into place: the previous map is put back
    monkeypatch.setattr(store_mod, "_write_npy", real)
    real_rename = layout_mod._replace_dir
    renames = []

    def failing_rename(src, dst):
        renames.append((src, dst))
        if len(renames) == 2:
            raise OSError("rename failed (injected)")
        real_rename(src, dst)

    monkeypatch.setattr(layout_mod, "_replace_dir", failing_rename)

    def no_exchange(a, b):
        raise OSError(38, "renameat2 not supported (injected)")

    monkeypatch.setattr(layout_mod, "_exchange_dirs", no_exchange)  # the two-rename fallback
    with pytest.raises(OSError, match="injected"):
        m.save()
    assert len(VprMap.open(path)) == 12
    assert sorted(p.name for p in path.parent.iterdir()) == ["map"]

    monkeypatch.setattr(layout_mod, "_replace_dir", real_rename)
    m.save()  # the map object is still usable and saves fine
    assert len(VprMap.open(path)) == 15


def test_truncated_file(saved):
    path = saved[0]
    data = (path / "global.npy").read_bytes()
    (path / "global.npy").write_bytes(data[:-100])
    with pytest.raises(MapError, match=r"global\.npy.*truncated"):
        VprMap.open(path)
    refresh_entry(path, "global.npy")  # manifest agrees: the .npy header check catches it
    with pytest.raises(MapError, match=r"global\.npy: file is truncated"):
        VprMap.open(path)


def test_missing_file(saved):
    path = saved[0]
    (path / "local_rc.npy").unlink()
    with pytest.raises(MapError, match=r"local_rc\.npy: missing"):
        VprMap.open(path)
    (path / "manifest.json").unlink()
    with pytest.raises(MapError, match=r"manifest\.json: missing"):
        VprMap.open(path)
    with pytest.raises(MapError, match="not found"):
        VprMap.open(path.parent / "nope")


def test_corrupt_contents(saved):
    path = saved[0]
    # a flipped byte keeps the size: the default full verification notices, verify="size" does not
    data = bytearray((path / "local.npy").read_bytes())
    data[-5] ^= 0x01
    (path / "local.npy").write_bytes(bytes(data))
    VprMap.open(path, verify="size")
    with pytest.raises(MapError, match=r"local\.npy: SHA-256"):
        VprMap.open(path)
    # offsets that do not cover the local rows
    off = np.load(path / "local_offsets.npy")
    off[-1] += 1
    np.save(path / "local_offsets.npy", off)
    refresh_entry(path, "local_offsets.npy")
    with pytest.raises(MapError, match=r"local_offsets\.npy"):
        VprMap.open(path, verify="size")


def test_records_count_mismatch(saved):
    path = saved[0]
    lines = (path / "keyframes.jsonl").read_text().splitlines(keepends=True)
    (path / "keyframes.jsonl").write_text("".join(lines[:-1]))
    refresh_entry(path, "keyframes.jsonl")
    with pytest.raises(MapError, match=r"keyframes\.jsonl: 11 keyframe records"):
        VprMap.open(path)
    (path / "keyframes.jsonl").write_text("".join(lines[:-1]) + "{not json\n")
    refresh_entry(path, "keyframes.jsonl")
    with pytest.raises(MapError, match=r"keyframes\.jsonl:12: not valid JSON"):
        VprMap.open(path)


def test_manifest_problems(saved):
    path = saved[0]
    good = (path / "manifest.json").read_text()
    edit_manifest(path, version=FORMAT_VERSION + 1)
    with pytest.raises(MapError, match=r"manifest\.json: map format version 2 is not supported.*upgrade"):
        VprMap.open(path)
    (path / "manifest.json").write_text(good)
    edit_manifest(path, descriptor_dim="big")
    with pytest.raises(MapError, match="descriptor_dim"):
        VprMap.open(path)
    (path / "manifest.json").write_text(good[:50])
    with pytest.raises(MapError, match="unreadable"):
        VprMap.open(path)
    (path / "manifest.json").write_text(good)
    edit_manifest(path, num_keyframes=13)
    with pytest.raises(MapError, match=r"global\.npy: shape"):
        VprMap.open(path)


def test_object_array_refused(saved):
    path = saved[0]
    np.save(path / "local.npy", np.array([{"code": "rm -rf"}], dtype=object), allow_pickle=True)
    refresh_entry(path, "local.npy")
    with pytest.raises(MapError, match=r"local\.npy: holds Python objects"):
        VprMap.open(path)


def test_compat_refused(saved):
    path = saved[0]
    VprMap.open(path, expect=MapCompat(model_hash=HASH, input_size=(322, 322), arch="vitb14"))
    with pytest.raises(MapError, match=f"model_hash: map has '{HASH}', expected 'synthetic:1'"):
        VprMap.open(path, expect=MapCompat(model_hash="synthetic:1"))
    with pytest.raises(MapError, match="input_size: map has 322x322, expected 224x224") as info:
        VprMap.open(path, expect=MapCompat(input_size=(224, 224), arch="vitl14"))
    assert "arch: map has 'vitb14', expected 'vitl14'" in str(info.value)
    # the map's identity is exactly this model's: no hard mismatch, no precision warning
    same, manifest = MapCompat(HASH, "vitb14", (322, 322), D, 128, "fp32"), VprMap.open(path).manifest
    assert same.mismatches(manifest) == [] and same.warnings(manifest) == []


def test_search_errors_and_filters(saved):
    path, _, g, _, _ = saved
    m = VprMap.open(path)
    with pytest.raises(ConfigError, match="k=13 is larger than the map \\(12 keyframes\\)"):
        m.search(g[0], 13)
    ids, sims = m.search(g[0], 20, allow_fewer=True)
    assert ids.shape == (1, 12) and sims.shape == (1, 12)
    ids, _ = m.search(g[:3], 12, max_id=5, allow_fewer=True)
    assert ids.shape == (3, 6) and set(ids.ravel()) == set(range(6))
    with pytest.raises(ConfigError, match="k=7"):
        m.search(g[0], 7, max_id=5)
    ids, _ = m.search(g[7], 3, exclude_ids={7, 8})
    assert 7 not in ids and 8 not in ids
    ids, _ = m.search(g[7], 2, max_id=5, exclude_ids=[0])
    assert set(ids[0]) <= {1, 2, 3, 4, 5}
    with pytest.raises(ConfigError, match="shape"):
        m.search(np.ones((1, D + 1), np.float32), 1)
    with pytest.raises(ConfigError, match="positive"):
        m.search(g[0], 0)


def test_record_validation():
    with pytest.raises(ConfigError, match="nanoseconds"):
        Keyframe(stamp_ns=1.5)
    with pytest.raises(ConfigError, match="zone"):
        GeoPosition(easting=1.0, northing=2.0)
    with pytest.raises(ConfigError, match="4 finite"):
        Pose((0, 0, 0), (0, 0, 1))
    with pytest.raises(MapError, match="where: invalid keyframe record"):
        Keyframe.from_json({"id": 1, "stamp_ns": "x"}, "where")


def test_interrupted_save_hint(saved):
    path = saved[0]
    backup = path.parent / ".map.old-1234abcd"
    path.rename(backup)  # as if power failed between the two renames of a save
    with pytest.raises(MapError, match=r"\.map\.old-1234abcd: rename it to map"):
        VprMap.open(path)


def test_unchanged_save_is_a_no_op(saved):
    path = saved[0]
    m = VprMap.open(path)
    before = (path / "global.npy").stat().st_ino
    assert not m.dirty and m.save() == path
    assert (path / "global.npy").stat().st_ino == before


def test_bench_smoke(tmp_path):
    from fol_vpr_ros.bench.map_bench import bench_map

    table = bench_map(sizes=(30,), out_dir=tmp_path, rows_per_keyframe=5, global_dim=32, repeats=1)
    row = table.rows[0]
    assert row["keyframes"] == 30 and row["rows/kf"] == 5 and row["disk_B/kf"] > 32 * 4
    assert (tmp_path / "map_bench.md").is_file() and (tmp_path / "map_bench.json").is_file()


def test_precision_recorded_and_mismatch_warned(tmp_path, saved, caplog):
    path = saved[0]
    assert VprMap.open(path).manifest.precision == "fp32"
    # a map written before the field existed reads as fp32
    obj = json.loads((path / "manifest.json").read_text())
    del obj["precision"]
    (path / "manifest.json").write_text(json.dumps(obj))
    assert VprMap.open(path).manifest.precision == "fp32"
    # a bf16 map keeps its precision through save/open; a different precision is warned, not refused
    rng = np.random.default_rng(1)
    m = VprMap.create(tmp_path / "bf16", arch="vitb14", input_size=(322, 322), model_hash=HASH, descriptor_dim=D,
                      precision="bf16")
    m.add(*batch(rng, 3))
    m.save()
    with caplog.at_level("WARNING"):
        opened = VprMap.open(tmp_path / "bf16", expect=MapCompat(model_hash=HASH, precision="fp32"))
    assert opened.manifest.precision == "bf16" and len(opened) == 3
    assert "precision: map built with 'bf16', describing with 'fp32'" in caplog.text
    assert MapCompat(precision="bf16").warnings(opened.manifest) == []
    with pytest.raises(ConfigError, match="precision 'auto' not supported"):
        VprMap.create(None, arch="vitb14", input_size=(322, 322), model_hash=HASH, descriptor_dim=D,
                      precision="auto")
    edit_manifest(tmp_path / "bf16", precision="int8")
    with pytest.raises(MapError, match="precision 'int8' not one of"):
        VprMap.open(tmp_path / "bf16")
