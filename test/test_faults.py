"""Fault injection with real files, real full disks (8 MB tmpfs), real kills and real signals.

Maps are small synthetic ones (random unit descriptors); the node runs with a 1-block ViT-S at
224 x 224. Disk-full cases mount an 8 MB tmpfs (root only) and are skipped with the reason otherwise.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fol_vpr_ros.cli import main as cli_main
from fol_vpr_ros.errors import CheckpointError, ConfigError, ImageError, MapError, MapSaveError, OutputError
from fol_vpr_ros.image_io import list_images, read_image
from fol_vpr_ros.jobs.describe import describe
from fol_vpr_ros.jobs.evaluate_bag import eval_params
from fol_vpr_ros.mapping import Keyframe, VprMap
from fol_vpr_ros.mapping._util import file_sha256
from fol_vpr_ros.mapping.check import check_map
from fol_vpr_ros.mapping.store import map_path_problem, stale_temp_dirs
from fol_vpr_ros.mapping.verify import VerifyMode
from fol_vpr_ros.model import FoLConfig, LoadedModel, arch_config, synthetic_model
from fol_vpr_ros.model.checkpoint import load_model, read_state_dict, save_checkpoint
from fol_vpr_ros.node import ImagePayload, NodeCore, SaveStatus, load_params
from fol_vpr_ros.pipeline.describe import Describer
from fol_vpr_ros.signals import deferred_signals
from fol_vpr_ros.testing.fault_cases import kill_during_save_child

REPO = Path(__file__).resolve().parents[1]
D = 32
FILES = ("keyframes.jsonl", "global.npy", "local.npy", "local_rc.npy", "local_offsets.npy")


# ---------------------------------------------------------------------------- helpers
def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_map(path: Path | None, n: int = 12, rows: int = 20, seed: int = 0) -> VprMap:
    rng = np.random.default_rng(seed)
    m = VprMap.create(path, arch="vits14", input_size=(224, 224), model_hash="synthetic:test", descriptor_dim=D)
    kfs = [Keyframe(stamp_ns=i * 10**9, frame_id="cam", source=f"img{i}.jpg") for i in range(n)]
    m.add(kfs, unit(rng.standard_normal((n, D))), unit(rng.standard_normal((n * rows, 128))),
          rng.integers(0, 16, (n * rows, 2)), counts=np.full(n, rows))
    return m


@pytest.fixture()
def saved_map(tmp_path) -> Path:
    return synthetic_map(tmp_path / "map").save()


def body(path: Path) -> tuple[int, np.ndarray]:
    a = np.load(path)
    return path.stat().st_size - a.nbytes, a


def overwrite_body(path: Path, a: np.ndarray) -> None:
    off, _ = body(path)
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(np.ascontiguousarray(a).tobytes())


def refresh_manifest(path: Path, name: str) -> None:
    """Make the manifest agree with a tampered file, so that the content checks are the ones tested."""
    obj = json.loads((path / "manifest.json").read_text())
    obj["files"][name] = {"bytes": (path / name).stat().st_size, "sha256": file_sha256(path / name)}
    (path / "manifest.json").write_text(json.dumps(obj))


@pytest.fixture()
def tmpfs(tmp_path):
    """A real 8 MB file system; skipped when mount is not permitted."""
    d = tmp_path / "tmpfs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def fill(d: Path, leave: int = 0) -> Path:
    """Fill a file system up to ``leave`` bytes free with one filler file."""
    filler = d / "filler"
    st = os.statvfs(d)
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


@pytest.fixture(scope="module")
def describer() -> Describer:
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224))
    model = synthetic_model(cfg, seed=3).eval()
    return Describer(LoadedModel(model, "random:3", "synthetic:3:vits14:1", True), batch_size=1)


def frame(i: int, rng: np.random.Generator | None = None) -> ImagePayload:
    rng = rng or np.random.default_rng(i)
    img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
    return ImagePayload(i * 10**9, "cam", "rgb8", 96, 128, 384, False, img.tobytes())


def lc_params(**over):
    base = {"mode": "loop_closure", "input_size": [224, 224], "top_k": 3, "rerank_k": 2,
            "keyframe.min_interval_sec": 0.0, "odometry.topic": ""}
    return load_params(None, overrides={**base, **over})


# ---------------------------------------------------------------------------- map integrity at open
@pytest.mark.parametrize("name", FILES)
def test_same_size_corruption_of_any_file_is_detected_at_open(saved_map, name):
    p = saved_map / name
    data = bytearray(p.read_bytes())
    # one digit of the last record / one bit of the last array element: size, header and JSON stay valid
    at = max(i for i, c in enumerate(data) if chr(c).isdigit()) if name.endswith(".jsonl") else len(data) - 2
    data[at] = ord("7" if data[at] != ord("7") else "8") if name.endswith(".jsonl") else data[at] ^ 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(MapError, match=rf"{name}: SHA-256 differs"):
        VprMap.open(saved_map)
    if name != "local_offsets.npy":  # (offsets are also checked structurally, in every mode)
        VprMap.open(saved_map, verify="size")  # the documented escape hatch for huge maps reads no data


@pytest.mark.parametrize("name", FILES)
def test_truncated_file_is_named(saved_map, name):
    p = saved_map / name
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size - 3)
    with pytest.raises(MapError, match=rf"{name}: .*(bytes, but the manifest|truncated)"):
        VprMap.open(saved_map)


@pytest.mark.parametrize("name,where", [("local.npy", (7, 3)), ("global.npy", (4, 0))])
def test_nan_in_a_map_names_the_file_and_row(saved_map, name, where):
    _, a = body(saved_map / name)
    b = a.copy()
    b[where] = np.nan
    overwrite_body(saved_map / name, b)
    refresh_manifest(saved_map, name)  # a checksum made after the damage: only the NaN scan can tell
    with pytest.raises(MapError, match=rf"{name}: NaN or infinite value in row {where[0]}"):
        VprMap.open(saved_map)


def test_verify_mode_parsing():
    assert VerifyMode.parse("FULL") is VerifyMode.FULL and VerifyMode.parse(True) is VerifyMode.FULL
    assert VerifyMode.parse(False) is VerifyMode.SIZE and VerifyMode.parse("off") is VerifyMode.OFF
    with pytest.raises(ConfigError, match="allowed: full, size, off"):
        VerifyMode.parse("quick")


def test_map_check_command(saved_map, capsys):
    assert cli_main(["map", "check", str(saved_map)]) == 0
    out = capsys.readouterr().out
    assert "OK: 12 keyframes, 240 local rows" in out and "SHA-256" in out
    res = check_map(saved_map)
    assert res.keyframes == 12 and res.files == len(FILES)
    _, rc = body(saved_map / "local_rc.npy")
    rc2 = rc.copy()
    rc2[0, 0] += 1
    overwrite_body(saved_map / "local_rc.npy", rc2)
    assert cli_main(["map", "check", str(saved_map)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "local_rc.npy: SHA-256 differs" in err[0]


def test_map_check_refuses_non_unit_globals(saved_map):
    _, g = body(saved_map / "global.npy")
    g2 = g.copy()
    g2[5] *= 2.0
    overwrite_body(saved_map / "global.npy", g2)
    refresh_manifest(saved_map, "global.npy")
    with pytest.raises(MapError, match=r"global\.npy: row 5 has norm 2"):
        check_map(saved_map)


# ---------------------------------------------------------------------------- saving: leftovers, permissions, disk full
KILL_DURING_SAVE = kill_during_save_child(30.0)


def test_kill9_during_save_keeps_the_map_and_the_next_save_cleans_up(saved_map):
    before = VprMap.open(saved_map).ids.tolist()
    for _ in range(3):
        p = subprocess.Popen([sys.executable, "-c", KILL_DURING_SAVE, str(saved_map)], stdout=subprocess.PIPE,
                             text=True)
        assert p.stdout is not None and p.stdout.readline().startswith("WRITING")
        p.send_signal(signal.SIGKILL)
        p.wait()
    # each new save removed the temp dir of the previous killed one; the last kill left one
    left = list(saved_map.parent.glob(".map.tmp-*"))
    assert len(left) == 1 and stale_temp_dirs(saved_map) == left
    assert VprMap.open(saved_map).ids.tolist() == before  # the map itself is untouched
    m = VprMap.open(saved_map)
    m.add_one(Keyframe(stamp_ns=99, frame_id="cam", source="new"), unit(np.ones(D)), np.zeros((0, 128)),
              np.zeros((0, 2), int))
    m.save()
    assert sorted(p.name for p in saved_map.parent.iterdir()) == ["map"]
    assert len(VprMap.open(saved_map)) == 13


def test_maps_and_checkpoints_follow_the_umask(tmp_path, tiny_model):
    old = os.umask(0o022)
    try:
        path = synthetic_map(tmp_path / "m").save()
        ckpt = save_checkpoint(tiny_model, tmp_path / "w.pth")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o755
    assert {(path / f).stat().st_mode & 0o777 for f in (*FILES, "manifest.json")} == {0o644}
    assert ckpt.stat().st_mode & 0o777 == 0o644


def test_full_disk_during_save_keeps_the_previous_map(tmpfs):
    small = synthetic_map(tmpfs / "map", n=4, rows=4)
    small.save()
    big = synthetic_map(None, n=40, rows=1000, seed=1)  # ~10 MB of local rows: cannot fit
    with pytest.raises(MapSaveError, match=r"map: saving the map failed \(No space left on device"):
        big.save(tmpfs / "map")
    assert sorted(p.name for p in tmpfs.iterdir()) == ["map"]  # temp dir removed, no backup left
    assert len(VprMap.open(tmpfs / "map")) == 4
    assert len(big) == 40  # still in memory, can be saved elsewhere
    assert len(VprMap.open(big.save(tmpfs.parent / "elsewhere"))) == 40


def test_map_paths_that_are_not_maps_or_hide_a_backup(tmp_path, saved_map):
    d = tmp_path / "junk"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    assert "is not a map" in map_path_problem(d)
    (tmp_path / "afile").write_text("x")
    assert "is a file" in map_path_problem(tmp_path / "afile")
    shutil.copytree(saved_map, tmp_path / ".lost.old-1234abcd")
    problem = map_path_problem(tmp_path / "lost")
    assert "interrupted save left the previous map" in problem and "mv " in problem
    with pytest.raises(MapError, match="interrupted save left the previous map"):
        synthetic_map(None).save(tmp_path / "lost")
    assert map_path_problem(saved_map) is None


# ---------------------------------------------------------------------------- checkpoints
def test_text_file_named_pth(tmp_path):
    p = tmp_path / "FoL_base.pth"
    p.write_text("not weights\n")
    with pytest.raises(CheckpointError, match=r"FoL_base\.pth: not a PyTorch checkpoint \(it starts with b.not "):
        read_state_dict(p)


@pytest.mark.parametrize("kind", ["nan", "int32"])
def test_bad_weights_are_refused_naming_the_file(tmp_path, tiny_model, kind):
    sd = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    key = next(k for k in sd if k.startswith("aggregator"))
    if kind == "nan":
        sd[key].view(-1)[0] = float("nan")
        match = rf"w\.pth: tensor '{key}' holds 1 NaN"
    else:
        sd = {k: v.to(torch.int32) for k, v in sd.items()}
        match = r"w\.pth: tensor .* is int32"
    torch.save({"model_state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=match):
        load_model(str(tmp_path / "w.pth"), input_size=(224, 224))


# ---------------------------------------------------------------------------- params files
def test_binary_params_file(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_bytes(bytes(range(256)))
    with pytest.raises(ConfigError, match=r"params\.yaml: not a text parameter file"):
        load_params(p)
    p.write_bytes(b"/**:\n  ros__parameters:\n    top_k: 3\x00\n")
    with pytest.raises(ConfigError, match="NUL bytes"):
        load_params(p)


def test_evaluate_bag_input_size_is_honoured_or_refused():
    with pytest.raises(ConfigError, match=r"-p input_size=\[224, 224\] conflicts with --resize 322 322"):
        eval_params("localize", "random:0", overrides={"input_size": [224, 224]}, input_size=(322, 322))
    p = eval_params("loop_closure", "random:0", overrides={"input_size": [224, 224]})
    assert p.input_size == (224, 224) and p.loop_closure.save_period_sec == 0.0
    with pytest.raises(ConfigError, match="parameter input_size"):
        eval_params("loop_closure", "random:0", overrides={"input_size": [225, 225]})


# ---------------------------------------------------------------------------- images and folders
def test_fifo_and_dangling_symlink_are_listed_and_explained(tmp_path):
    Image.new("RGB", (32, 24)).save(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    os.symlink(tmp_path / "gone.jpg", tmp_path / "dangling.png")
    found = list_images([tmp_path])
    assert [p.name for p in found] == ["a.jpg", "dangling.png", "pipe.jpg"]
    with pytest.raises(ImageError, match=r"pipe\.jpg: a FIFO \(named pipe\), not an image file"):
        read_image(tmp_path / "pipe.jpg")  # never opened: would block
    with pytest.raises(ImageError, match=r"dangling\.png: broken symbolic link"):
        read_image(tmp_path / "dangling.png")


def test_decompression_bomb_is_one_line_and_jpeg_is_downscaled_while_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # a 200 x 200 image is a "bomb" (> 2x the limit)
    Image.new("RGB", (300, 200)).save(tmp_path / "big.png")
    Image.new("RGB", (1600, 1200), (200, 10, 10)).save(tmp_path / "big.jpg", quality=90)
    with pytest.raises(ImageError, match=r"big\.png: 300 x 200 = 0 megapixels is above the decoding limit"):
        read_image(tmp_path / "big.png")
    arr = read_image(tmp_path / "big.jpg", max_side=400)  # DCT scaling: decoded at 1/4, never in full
    assert arr.shape == (300, 400, 3) and abs(int(arr[..., 0].mean()) - 200) < 5
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000_000)
    assert read_image(tmp_path / "big.png", max_side=64).shape == (50, 75, 3)  # reduce(4)
    assert read_image(tmp_path / "big.png").shape == (200, 300, 3)


# ---------------------------------------------------------------------------- output paths
def test_output_paths_are_checked_before_work(tmp_path, capsys, monkeypatch):
    img = tmp_path / "a.jpg"
    Image.new("RGB", (64, 48)).save(img)
    with pytest.raises(OutputError, match="is a directory"):
        describe("random:0", [img], tmp_path)
    (tmp_path / "afile").write_text("x")
    with monkeypatch.context() as m:  # before any work: no model is even built for a bad --out
        m.setattr(Describer, "from_config", classmethod(lambda cls, cfg: pytest.fail("model built before --out check")))
        code = cli_main(["build-map", "--weights", "random:0", "--images", str(tmp_path), "--out",
                         str(tmp_path / "afile" / "sub"), "-q"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "afile is a file, not a directory" in err[0]
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "keep.txt").write_text("precious")
    assert cli_main(["build-map", "--weights", "random:0", "--images", str(tmp_path), "--out", str(junk), "-q"]) == 2
    assert "is not a map" in capsys.readouterr().err and (junk / "keep.txt").read_text() == "precious"


# ---------------------------------------------------------------------------- deferred signals
def test_deferred_signals_hold_and_redeliver():
    with pytest.raises(KeyboardInterrupt), deferred_signals() as got:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here: held, not raised
        reached = True
    assert reached and got == [signal.SIGINT]
    with deferred_signals(redeliver=False) as got:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    assert got == [signal.SIGINT]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    def in_thread() -> None:
        with deferred_signals() as g:
            seen.append(g)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert seen == [[]]  # a no-op off the main thread


# ---------------------------------------------------------------------------- NodeCore saving
class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_node_start_up_refuses_damaged_map_paths(tmp_path, describer, saved_map):
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "global.npy").write_bytes(b"leftover")
    with pytest.raises(MapError, match=r"parameter map_path: .*junk: exists and is not a map"):
        NodeCore(lc_params(map_path=str(junk)), describer)
    shutil.copytree(saved_map, tmp_path / ".gone.old-0000aaaa")
    with pytest.raises(MapError, match=r"parameter map_path: .*gone: missing, but an interrupted save left"):
        NodeCore(lc_params(map_path=str(tmp_path / "gone")), describer)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match=r"output_map_path: .*afile is a file"):
        NodeCore(lc_params(**{"loop_closure.output_map_path": str(tmp_path / "afile" / "map")}), describer)


def test_failed_save_is_kept_in_memory_retried_and_reported(tmpfs, describer):
    clock = Clock()
    target = tmpfs / "online"
    core = NodeCore(lc_params(**{"loop_closure.output_map_path": str(target), "loop_closure.save_period_sec": 10.0}),
                    describer, clock=clock)
    for i in range(4):
        core.process_now(frame(i))
    assert not target.exists()  # the period has not passed
    clock.t += 10
    filler = fill(tmpfs, leave=8 << 10)
    core.process_now(frame(4))  # periodic save due: the disk is full
    assert core.last_save_error is not None and "No space left on device" in core.last_save_error
    assert len(core.map) == 5 and core.map.dirty
    diag = core.diagnostics()
    assert diag.level == "warn" and "kept in memory" in diag.message and diag.errors["map_save_failed"] == 1
    assert sorted(p.name for p in tmpfs.iterdir()) == ["filler"]
    filler.unlink()
    clock.t += 5
    assert core.maybe_save() is None  # retried next period, not on every frame
    clock.t += 5
    assert core.maybe_save() == target and core.last_save_error is None
    assert len(VprMap.open(target)) == 5
    core.process_now(frame(5))
    fill(tmpfs, leave=8 << 10)
    report = core.shutdown()  # the last keyframe cannot be saved
    assert report.status is SaveStatus.FAILED and report.exit_code == 1
    assert report.ever_saved and report.unsaved_keyframes == 1 and report.keyframes == 6
    assert "1 of them lost" in report.message and str(target) in report.message
    assert core.shutdown() is report
    assert len(VprMap.open(target)) == 5


def test_shutdown_report_when_saved_or_nothing_to_do(tmp_path, describer):
    core = NodeCore(lc_params(**{"loop_closure.output_map_path": str(tmp_path / "m")}), describer)
    core.process_now(frame(0))
    rep = core.shutdown()
    assert rep.status is SaveStatus.SAVED and rep.exit_code == 0 and rep.saves == 1 and rep.unsaved_keyframes == 0
    empty = NodeCore(lc_params(**{"loop_closure.output_map_path": str(tmp_path / "e")}), describer).shutdown()
    assert empty.status is SaveStatus.NOTHING_TO_SAVE and empty.exit_code == 0


NODE_CHILD = textwrap.dedent("""
    import sys, time, json
    import numpy as np
    from fol_vpr_ros.pipeline.describe import Describer
    from fol_vpr_ros.mapping import store
    from fol_vpr_ros.model import FoLConfig, LoadedModel, arch_config, synthetic_model
    from fol_vpr_ros.node import ImagePayload, NodeCore, load_params
    over, frames, slow, stream = json.loads(sys.argv[1])
    model = synthetic_model(FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(224, 224)), 0).eval()
    core = NodeCore(load_params(None, overrides=over),
                    Describer(LoadedModel(model, "random:0", "synthetic:0:vits14:1", True), batch_size=1))
    if slow:
        real = store._write_npy
        def slowed(*a, **k):
            print("SAVING", flush=True)
            time.sleep(slow)
            return real(*a, **k)
        store._write_npy = slowed
    rng = np.random.default_rng(0)
    try:
        for i in range(frames):
            img = (rng.random((96, 128, 3)) * 255).astype(np.uint8)
            core.process_now(ImagePayload(i * 10**9, "cam", "rgb8", 96, 128, 384, False, img.tobytes()))
            if stream:
                print(f"FRAME {i + 1} {core.save_count} {time.monotonic()}", flush=True)
                time.sleep(stream)
        print("READY", flush=True)
        while True:
            time.sleep(0.05)
    except KeyboardInterrupt:  # what a ROS main() does when spinning stops
        pass
    report = core.shutdown()
    print("REPORT", report.status.value, report.keyframes, flush=True)
    sys.exit(report.exit_code)
""")


def _child(over: dict, frames: int, slow: float = 0.0, stream: float = 0.0) -> subprocess.Popen:
    """The node core in a subprocess; stderr goes to a file (a full pipe would block the child)."""
    base = {"mode": "loop_closure", "input_size": [224, 224], "top_k": 3, "rerank_k": 2,
            "keyframe.min_interval_sec": 0.0, "odometry.topic": ""}
    errf = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by _stderr
    p = subprocess.Popen([sys.executable, "-c", NODE_CHILD, json.dumps([{**base, **over}, frames, slow, stream])],
                         stdout=subprocess.PIPE, stderr=errf, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even under nohup
    p.errf = errf  # type: ignore[attr-defined]
    return p


def _stderr(p: subprocess.Popen) -> str:
    p.errf.seek(0)  # type: ignore[attr-defined]
    return p.errf.read()  # type: ignore[attr-defined]


def _wait_for(p: subprocess.Popen, prefix: str) -> str:
    assert p.stdout is not None
    while True:
        line = p.stdout.readline()
        assert line, f"child ended before {prefix!r}: {p.wait() and _stderr(p)[-2000:]}"
        if line.startswith(prefix):
            return line


@pytest.mark.parametrize("second", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_during_the_shutdown_save_is_deferred(tmp_path, second):
    target = tmp_path / "online"
    p = _child({"loop_closure.output_map_path": str(target), "loop_closure.save_period_sec": 0.0}, 6, slow=0.2)
    _wait_for(p, "READY")
    p.send_signal(signal.SIGINT)
    _wait_for(p, "SAVING")
    time.sleep(0.1)
    p.send_signal(second)  # in the middle of the atomic save
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=120)
    err = _stderr(p)
    assert p.returncode == 0, err
    assert "REPORT saved 6" in out and "deferred until the save is complete" in err
    assert len(VprMap.open(target)) == 6
    assert not list(tmp_path.glob(".online.*"))


def test_kill9_between_periodic_saves_loses_at_most_one_period(tmp_path):
    target = tmp_path / "online"
    p = _child({"loop_closure.output_map_path": str(target), "loop_closure.save_period_sec": 0.5}, 200, stream=0.05)
    seen = []  # (frames done, saves so far, child's monotonic time)
    while not seen or seen[-1][1] < 3:  # let at least three periodic saves complete
        _, n, saves, t = _wait_for(p, "FRAME").split()
        seen.append((int(n), int(saves), float(t)))
    time.sleep(0.3)  # kill somewhere between two saves
    p.send_signal(signal.SIGKILL)
    t_kill = time.monotonic()  # CLOCK_MONOTONIC is the same clock in the child
    out, _ = p.communicate()
    seen += [(int(n), int(sv), float(t)) for _, n, sv, t in (ln.split() for ln in out.splitlines()
                                                           if ln.startswith("FRAME"))]
    on_disk = len(VprMap.open(target))
    first_with_last_save = min(n for n, sv, _ in seen if sv == seen[-1][1])
    assert first_with_last_save <= on_disk <= seen[-1][0]  # the last completed save is on disk
    gap = max(b[2] - a[2] for a, b in itertools.pairwise(seen))
    lost = [t for n, _, t in seen if n > on_disk]
    assert all(t >= t_kill - 0.5 - 2 * gap for t in lost), (on_disk, seen[-1], gap)  # at most one period lost


def test_on_demand_save_defers_signals_on_the_main_thread(tmp_path, describer, monkeypatch):
    from fol_vpr_ros.mapping import store

    core = NodeCore(lc_params(**{"loop_closure.output_map_path": str(tmp_path / "m")}), describer)
    core.process_now(frame(0))
    real = store._write_npy

    def interrupted(*a, **k):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.01)
        return real(*a, **k)

    monkeypatch.setattr(store, "_write_npy", interrupted)
    with pytest.raises(KeyboardInterrupt):  # re-delivered after the save
        core.save_map()
    assert len(VprMap.open(tmp_path / "m")) == 1 and not core.map.dirty


# ---------------------------------------------------------------------------- evaluate end to end
def test_evaluate_skips_bad_queries_pads_short_results_and_says_why(tmp_path, shared_data, tmpfs, capsys):
    from fol_vpr_ros.jobs.build_map import build_map
    from fol_vpr_ros.jobs.evaluate import EvaluateConfig, evaluate

    ref = shared_data / "gardenspoint_sample10_vpr_tutorial" / "ref"
    images, queries = tmp_path / "images", tmp_path / "queries"
    shutil.copytree(ref, images)
    shutil.copytree(ref, queries)
    (queries / "3.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    os.mkfifo(queries / "pipe.jpg")
    gt = tmp_path / "gt.csv"
    gt.write_text("query,positives\n" + "".join(f"{i}.jpg,{i}.jpg\n" for i in range(10)) + "pipe.jpg,0.jpg\n")
    model = {"weights": "random:0", "arch": "vits14", "resize": (224, 224)}
    built = build_map(images, tmp_path / "map", model["weights"], arch="vits14", resize=(224, 224), progress=False)
    assert built.keyframes == 10
    res = evaluate(built.out, queries, str(gt), out=tmp_path / "rep", cfg=EvaluateConfig(rerank_k=0),
                   progress=False, **model)
    assert res.num_queries == 9 and res.recall_global[1] == 100.0  # identical images, bad ones not counted
    skipped = res.config["skipped_queries"]
    assert len(skipped) == 2 and any("3.jpg: cannot decode" in s for s in skipped)
    assert any("pipe.jpg: a FIFO" in s for s in skipped)
    with pytest.raises(ConfigError, match=r"--recall-values 500: larger than the map \(10 keyframes\)"):
        evaluate(built.out, queries, str(gt), out=tmp_path / "rep2", cfg=EvaluateConfig(recall_values=(1, 500)),
                 progress=False, **model)
    # a NaN global row: the default verification names it; with verify off FAISS returns fewer than k
    _, g = body(built.out / "global.npy")
    g2 = g.copy()
    g2[4] = np.nan
    overwrite_body(built.out / "global.npy", g2)
    with pytest.raises(MapError, match=r"global\.npy: NaN or infinite value in row 4"):
        evaluate(built.out, queries, str(gt), out=tmp_path / "rep3", progress=False, **model)
    res = evaluate(built.out, queries, str(gt), out=tmp_path / "rep3", progress=False,
                   cfg=EvaluateConfig(top_k=10, rerank_k=0, verify="off"), **model)
    rows = (tmp_path / "rep3" / "per_query.csv").read_text().splitlines()
    assert res.num_queries == 9 and len(rows) == 10
    # a full disk while writing the report: one OutputError naming the folder
    fill(tmpfs, leave=4 << 10)
    with pytest.raises(OutputError, match=r"report folder .*rep: cannot be written \(No space left on device"):
        evaluate(built.out, queries, str(gt), out=tmpfs / "rep", progress=False,
                 cfg=EvaluateConfig(rerank_k=0, verify="off"), **model)
