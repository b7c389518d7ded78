"""`fol-vpr describe` end to end on bundled files: the npz contract and clear errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from fol_vpr_ros.cli import main
from fol_vpr_ros.model import FoLConfig, arch_config, save_checkpoint, synthetic_model
from fol_vpr_ros.pipeline.describe import load_descriptions_npz

CONTRACT = {"global": np.float32, "local": np.float32, "local_count": np.int64, "local_rc": np.int32,
            "region_mask": np.uint8, "attention": np.float32, "confidence": np.float32}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    cfg = FoLConfig(backbone=arch_config("vits14", depth=2), input_size=(224, 224))
    return save_checkpoint(synthetic_model(cfg, seed=2), tmp_path_factory.mktemp("w") / "tiny.pth")


def test_describe_images(ckpt, shared_data, tmp_path, capsys):
    gp = shared_data / "gardenspoint_sample10_vpr_tutorial"
    images = [gp / "query" / "0.jpg", gp / "ref" / "0.jpg", shared_data / "vprbench_corridor" / "query"
              / "0000003.jpg"]
    out = tmp_path / "d.npz"
    rc = main(["describe", "--weights", str(ckpt), "--resize", "224", "224", "-q", *map(str, images),
               "--out", str(out)])
    assert rc == 0
    assert "described 3 image(s) with vits14 at 224x224" in capsys.readouterr().out
    z = load_descriptions_npz(out)
    for key, dtype in CONTRACT.items():
        assert z[key].dtype == dtype, key
    b, lmax = 3, int(z["local_count"].max())
    assert z["global"].shape == (b, 8448)
    assert z["local"].shape == (b, lmax, 128) and z["local_rc"].shape == (b, lmax, 2)
    assert z["region_mask"].shape == (b, 16, 16) and z["region_mask"].sum(axis=(1, 2)).tolist() == [225] * 3
    assert z["attention"].shape == (b, 256) and z["confidence"].shape == (b, 256)
    for i in range(b):
        n = z["local_count"][i]
        assert np.allclose(np.linalg.norm(z["local"][i, :n], axis=1), 1, atol=1e-5)
        assert not z["local"][i, n:].any()
        assert (z["local_rc"][i, :n] >= 0).all() and (z["local_rc"][i, :n] < 61).all()  # 16 -> 31 -> 61
    assert np.allclose(np.linalg.norm(z["global"], axis=1), 1, atol=1e-5)


def test_describe_preprocessed_matches_images(ckpt, shared_data, tmp_path):
    from fol_vpr_ros.image_io import read_image
    from fol_vpr_ros.model import preprocess
    from fol_vpr_ros.pipeline.describe import DECODE_OVERSAMPLE

    img = shared_data / "gardenspoint_sample10_vpr_tutorial" / "query" / "3.jpg"
    # files are decoded at DECODE_OVERSAMPLE x the input size (JPEG DCT scaling), as `describe` does
    x = preprocess(read_image(img, max_side=DECODE_OVERSAMPLE * 224), (224, 224))[None].numpy()
    np.save(tmp_path / "x.npy", x)
    assert main(["describe", "--weights", str(ckpt), "--preprocessed", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "a.npz")]) == 0
    assert main(["describe", "--weights", str(ckpt), "--resize", "224", "224", "-q", str(img),
                 "--out", str(tmp_path / "b.npz")]) == 0
    a, b = load_descriptions_npz(tmp_path / "a.npz"), load_descriptions_npz(tmp_path / "b.npz")
    assert np.allclose(a["global"], b["global"], atol=1e-6)
    assert np.array_equal(a["region_mask"], b["region_mask"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--resize", "100", "100"], "not a positive multiple of the patch size 14"),
        (["--weights-file-missing"], "checkpoint file not found"),
        (["--corrupt-image"], "cannot decode image"),
        (["--preprocessed-bad"], "expected float32"),
    ],
)
def test_describe_errors_are_one_line(ckpt, shared_data, tmp_path, capsys, args, message):
    img = str(shared_data / "vprbench_corridor" / "query" / "0000001.jpg")
    argv = ["describe", "--weights", str(ckpt), "-q", "--out", str(tmp_path / "o.npz")]
    if args[0] == "--weights-file-missing":
        argv[2] = str(tmp_path / "absent.pth")
        argv.append(img)
    elif args[0] == "--corrupt-image":
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0garbage")
        argv += ["--resize", "224", "224", img, str(bad)]
    elif args[0] == "--preprocessed-bad":
        np.save(tmp_path / "x.npy", np.zeros((1, 3, 224, 224), np.float64))
        argv += ["--preprocessed", str(tmp_path / "x.npy")]
    else:
        argv += [*args, img]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o.npz").exists()


def test_cli_subprocess_reports_without_traceback(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"model_state_dict": {"a": torch.zeros(1)}, "code": subprocess.Popen}, evil)
    img = tmp_path / "i.png"
    img.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "fol_vpr_ros.cli", "describe", "--weights", str(evil),
                           str(img), "--out", str(tmp_path / "o.npz")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "refused to load" in proc.stderr and "Traceback" not in proc.stderr
