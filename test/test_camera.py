"""CameraIntrinsics from CameraInfo / map records, and patch centres against the model's preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fol_vpr_ros.errors import ConfigError
from fol_vpr_ros.model import preprocess
from fol_vpr_ros.model.config import FoLConfig, LocalHeadConfig, arch_config
from fol_vpr_ros.model.fol import FoLNet
from fol_vpr_ros.sources.camera import CameraIntrinsics, intrinsics_or_none, local_cell_px, patch_centres, patch_size_px

K = [500.0, 0.0, 320.0, 0.0, 510.0, 240.0, 0.0, 0.0, 1.0]


def test_from_camera_info_and_json_round_trip():
    cam = CameraIntrinsics.from_camera_info(K, [0.1, -0.05, 0.001, 0.002, 0.0], "plumb_bob", 640, 480)
    assert (cam.fx, cam.fy, cam.cx, cam.cy) == (500.0, 510.0, 320.0, 240.0)
    assert np.array_equal(cam.matrix(), np.array(K).reshape(3, 3))
    rec = cam.to_json()
    assert all(isinstance(v, int | float | str | list) for v in rec.values())
    assert CameraIntrinsics.from_json(rec) == cam
    with pytest.raises(ConfigError, match="lacks field 'fx'"):
        CameraIntrinsics.from_json({k: v for k, v in rec.items() if k != "fx"})


def test_uncalibrated_and_bad_camera_info():
    assert intrinsics_or_none([0.0] * 9, [], "", 640, 480) is None
    assert intrinsics_or_none(K, [], "", 640, 480) is not None
    with pytest.raises(ConfigError, match="uncalibrated"):
        CameraIntrinsics.from_camera_info([0.0] * 9, [], "", 640, 480)
    with pytest.raises(ConfigError, match="9 values"):
        CameraIntrinsics.from_camera_info(K[:6], [], "", 640, 480)
    with pytest.raises(ConfigError, match="fx, fy > 0"):
        CameraIntrinsics.from_camera_info([0.0, 0, 320, 0, 500, 240, 0, 0, 1], [], "", 640, 480)
    with pytest.raises(ConfigError, match="distortion_model"):
        CameraIntrinsics.from_camera_info(K, [0.1], "weird", 640, 480)


def test_scaled_keeps_the_projection():
    cam = CameraIntrinsics.from_camera_info(K, [], "", 640, 480)
    half = cam.scaled(320, 240)
    xyz = np.array([[0.3, -0.2, 2.0], [-1.0, 0.5, 4.0]])
    full_px, half_px = cam.project(xyz), half.project(xyz)
    assert np.allclose((full_px + 0.5) / 2.0 - 0.5, half_px)


def test_normalised_inverts_project_with_distortion():
    for model, d in (("plumb_bob", [0.1, -0.05, 0.001, 0.002, 0.01]), ("equidistant", [0.05, 0.01, 0.0, 0.0])):
        cam = CameraIntrinsics.from_camera_info(K, d, model, 640, 480)
        xyz = np.array([[0.3, -0.2, 2.0], [-0.5, 0.4, 3.0], [0.0, 0.0, 1.0]])
        xy = cam.normalised(cam.project(xyz))
        assert np.allclose(xy, xyz[:, :2] / xyz[:, 2:], atol=1e-6)


def test_local_head_places_cells_on_patch_positions():
    """An impulse on patch (i, j) of the real local head lands centred on the cell patch_centres puts there."""
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=(322, 280))
    net = FoLNet(cfg).eval()
    for layer in (net.upconv, net.upconv2):
        torch.nn.init.constant_(layer.weight, 1.0)
        torch.nn.init.zeros_(layer.bias)
    gh, gw = cfg.grid
    impulse = torch.zeros(1, cfg.backbone.embed_dim, gh, gw)
    i, j = 5, 7
    impulse[0, :, i, j] = 1.0
    with torch.no_grad():
        dense = net.upconv2(net.relu(net.upconv(impulse)))[0, 0].numpy()
    rows, cols = np.nonzero(dense)
    w = dense[rows, cols]
    centre_rc = np.array([[np.sum(rows * w) / w.sum(), np.sum(cols * w) / w.sum()]])
    assert tuple(dense.shape) == cfg.local_grid
    size = cfg.input_size  # source == input: pixel centres of patch (i, j) in input pixels
    p = cfg.backbone.patch_size
    xy = patch_centres(centre_rc, cfg.local_grid, size, size)
    assert np.allclose(xy, [[(j + 0.5) * p - 0.5, (i + 0.5) * p - 0.5]])
    assert patch_size_px(cfg.local_grid, size, size) == p
    assert local_cell_px(cfg.local_grid, size, size) == pytest.approx(p / LocalHeadConfig().stride ** 2)


def test_patch_centres_follow_the_resize_of_preprocess():
    """A bright square in the source image lands, after preprocess, on the input pixels patch_centres predicts."""
    input_size = (322, 322)
    cfg = FoLConfig(backbone=arch_config("vits14", depth=1), input_size=input_size)
    src_h, src_w = 360, 640
    for rc in ([[40, 20]], [[10, 70]], [[88, 0]]):
        xy = patch_centres(np.array(rc), cfg.local_grid, (src_h, src_w), input_size)[0]
        img = np.zeros((src_h, src_w), np.uint8)
        x0, y0 = round(xy[0]), round(xy[1])
        img[max(0, y0 - 6):y0 + 7, max(0, x0 - 6):x0 + 7] = 255
        x = preprocess(img, input_size, "mono")[0].numpy()
        x = x - x.min()
        ys, xs = np.nonzero(x > 1e-6)
        w = x[ys, xs]
        # the blob's centroid in input pixels, scaled back to the source (pixel centres at integers)
        cx = ((np.sum(xs * w) / w.sum()) + 0.5) * src_w / input_size[1] - 0.5
        cy = ((np.sum(ys * w) / w.sum()) + 0.5) * src_h / input_size[0] - 0.5
        blob = img.nonzero()
        assert np.allclose([cx, cy], [blob[1].mean(), blob[0].mean()], atol=0.5)
        if 6 <= x0 <= src_w - 7 and 6 <= y0 <= src_h - 7:
            assert np.allclose([cx, cy], xy, atol=0.75)  # rounding of the square to whole pixels


def test_patch_centres_rejects_grids_the_head_cannot_make():
    with pytest.raises(ConfigError, match="local grid side"):
        patch_centres(np.zeros((1, 2), np.int32), (90, 89), (360, 640), (322, 322))
    with pytest.raises(ConfigError, match=r"\[n, 2\]"):
        patch_centres(np.zeros((3,), np.int32), (89, 89), (360, 640), (322, 322))
