"""Preprocessing and image reading: exact normalisation/resize, channel orders, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fol_vpr_ros.errors import ImageError
from fol_vpr_ros.image_io import list_images, read_image
from fol_vpr_ros.model import IMAGENET_MEAN, IMAGENET_STD, preprocess, to_rgb_uint8


def _img(h=30, w=40, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_normalise_then_resize_without_antialias():
    img = _img()
    got = preprocess(img, (28, 42))
    x = torch.from_numpy(img).permute(2, 0, 1).float() / 255
    x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    want = F.interpolate(x[None], size=(28, 42), mode="bilinear", align_corners=False, antialias=False)[0]
    assert got.shape == (3, 28, 42) and got.dtype == torch.float32
    assert torch.allclose(got, want, atol=1e-6)
    same = preprocess(img, (30, 40))
    assert torch.allclose(same, x, atol=1e-6)


def test_channel_orders_agree():
    rgb = _img()
    base = preprocess(rgb, (28, 28))
    assert torch.equal(preprocess(rgb[:, :, ::-1].copy(), (28, 28), "bgr"), base)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    assert torch.equal(preprocess(rgba, (28, 28), "rgba"), base)
    assert torch.equal(preprocess(rgba[:, :, [2, 1, 0, 3]].copy(), (28, 28), "bgra"), base)
    mono = rgb[:, :, 0]
    assert np.array_equal(to_rgb_uint8(mono, "mono"), np.repeat(mono[:, :, None], 3, axis=2))
    assert np.array_equal(to_rgb_uint8((mono.astype(np.uint16) << 8), "mono")[:, :, 0], mono)


@pytest.mark.parametrize(
    ("array", "match"),
    [
        (np.zeros((0, 5, 3), np.uint8), "non-empty"),
        (np.zeros((4, 4, 3), np.float32), "unsupported image dtype float32"),
        (np.zeros((4, 4, 5), np.uint8), "5 channels"),
        (np.zeros((2, 2, 2, 3), np.uint8), "expected a non-empty H x W"),
    ],
)
def test_bad_arrays(array, match):
    with pytest.raises(ImageError, match=match):
        preprocess(array, (28, 28))


def test_unknown_order():
    with pytest.raises(ImageError, match="unknown channel order 'yuv'"):
        to_rgb_uint8(_img(), "yuv")


def test_read_image_files(tmp_path, shared_data):
    jpg = read_image(shared_data / "gardenspoint_sample10_vpr_tutorial" / "query" / "0.jpg")
    assert jpg.shape == (540, 960, 3) and jpg.dtype == np.uint8
    png = read_image(shared_data / "nordland_seqslam_64x32" / "summer" / "images-00010.png")
    assert png.shape == (32, 64, 3)
    Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).save(tmp_path / "d16.png")
    d16 = read_image(tmp_path / "d16.png")
    assert d16.shape == (8, 8, 3) and d16.dtype == np.uint8
    Image.fromarray(_img()[:, :, 0]).save(tmp_path / "mono.png")
    assert read_image(tmp_path / "mono.png").shape == (30, 40, 3)


def test_bad_image_files(tmp_path, shared_data):
    src = (shared_data / "gardenspoint_sample10_vpr_tutorial" / "query" / "0.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(src[: len(src) // 3])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"cut\.jpg: cannot decode"):
        read_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageError, match=r"junk\.jpg: cannot decode"):
        read_image(tmp_path / "junk.jpg")
    with pytest.raises(ImageError, match=r"empty\.png: image file is empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageError, match="no such file"):
        list_images([tmp_path / "nowhere"])
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(ImageError, match="holds no images"):
        list_images([tmp_path / "emptydir"])
