"""Depth images: REP-118 encodings decoded to metres, sampling at patch centres, the stamp buffer."""

from __future__ import annotations

import numpy as np
import pytest

from fol_vpr_ros.sources.depth import DepthBuffer, DepthFrame, decode_depth, sample_depth
from fol_vpr_ros.sources.image_decode import ImageDecodeError, ImagePayload


def _payload(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> ImagePayload:
    h, w = arr.shape
    a = arr.astype(arr.dtype.newbyteorder(">" if bigendian else "<"))
    rows = a.view(np.uint8).reshape(h, -1)
    if pad:
        rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return ImagePayload(7, "cam", encoding, h, w, rows.shape[1], bigendian, rows.tobytes())


def test_16uc1_millimetres_to_metres_with_zero_invalid() -> None:
    mm = np.array([[0, 1000], [2500, 65535]], np.uint16)
    m = decode_depth(_payload(mm, "16UC1", pad=4))
    assert np.isnan(m[0, 0])
    np.testing.assert_allclose(m[0, 1:], [1.0])
    np.testing.assert_allclose(m[1], [2.5, 65.535], rtol=1e-6)


def test_32fc1_metres_big_endian_and_invalid_values() -> None:
    f = np.array([[1.25, np.nan], [-1.0, np.inf]], np.float32)
    m = decode_depth(_payload(f, "32FC1", bigendian=True))
    assert m[0, 0] == pytest.approx(1.25)
    assert np.isnan(m[0, 1]) and np.isnan(m[1, 0]) and np.isnan(m[1, 1])


@pytest.mark.parametrize(("encoding", "step_cut", "match"), [("rgb8", 0, "not one of"), ("16UC1", 3, "step")])
def test_bad_depth_images_name_the_problem(encoding: str, step_cut: int, match: str) -> None:
    p = _payload(np.ones((4, 4), np.uint16), "16UC1")
    p = ImagePayload(p.stamp_ns, p.frame_id, encoding, p.height, p.width, p.step - step_cut, False, p.data)
    with pytest.raises(ImageDecodeError, match=match):
        decode_depth(p)


def test_sample_depth_scales_to_the_depth_resolution_and_takes_the_median() -> None:
    depth = np.full((10, 20), 3.0, np.float32)  # half the colour resolution (20 x 40)
    depth[0:3, 0:3] = np.nan
    depth[5, 10] = 9.0  # one outlier inside a 5 x 5 window
    d = sample_depth(depth, np.array([[21.0, 11.0], [1.0, 1.0], [100.0, 5.0]]), (20, 40), radius_px=2)
    assert d[0] == pytest.approx(3.0)  # median ignores the outlier
    assert np.isnan(d[1])  # only invalid depth around it
    assert np.isnan(d[2])  # outside the image


def test_depth_buffer_nearest_within_tolerance_per_camera() -> None:
    buf = DepthBuffer(tolerance_ns=50, keep=2)
    z = np.zeros((1, 1), np.float32)
    for t in (100, 200, 300):
        buf.add(DepthFrame(t, "a", z + t))
    assert buf.at("a", 190).stamp_ns == 200
    assert buf.at("a", 120) is None  # 100 was forgotten (keep=2) and 200 is 80 ns away
    assert buf.at("b", 200) is None
