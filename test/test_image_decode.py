"""Decoding of ROS image payloads (raw and compressed) to RGB arrays, and the error kinds."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from fol_vpr_ros.errors import ImageError, MapError
from fol_vpr_ros.image_io import read_image
from fol_vpr_ros.sources.bag import BagImageSource, open_bag, read_topics
from fol_vpr_ros.sources.image_decode import (
    SUPPORTED_ENCODINGS,
    CompressedPayload,
    ImageDecodeError,
    ImagePayload,
    check_payload,
    decode,
    decode_compressed,
    decode_image,
    error_kind,
    payload_from_message,
)
from fol_vpr_ros.stamps import NS_PER_SEC
from fol_vpr_ros.testing.bagfactory import expected_rgb, write_image_bag

H, W = 5, 7


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)


def raw(encoding: str, pixels: np.ndarray, step: int | None = None, bigendian: bool = False, data=None,
        height: int = H, width: int = W) -> ImagePayload:
    """A payload from an H x W (x C) array, rows padded with 0xEE up to ``step`` bytes."""
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    step = rows.shape[1] if step is None else step
    buf = np.full((rows.shape[0], step), 0xEE, np.uint8)
    n = min(step, rows.shape[1])
    buf[:, :n] = rows[:, :n]
    return ImagePayload(123, "cam", encoding, height, width, step, bigendian, buf.tobytes() if data is None else data)


def test_every_8bit_encoding_gives_rgb(rgb):
    alpha = np.full((H, W, 1), 77, np.uint8)
    mono = rgb[:, :, 0].copy()
    cases = {
        "rgb8": (rgb, rgb),
        "bgr8": (rgb[:, :, ::-1].copy(), rgb),
        "8UC3": (rgb[:, :, ::-1].copy(), rgb),
        "rgba8": (np.concatenate([rgb, alpha], 2), rgb),
        "bgra8": (np.concatenate([rgb[:, :, ::-1], alpha], 2), rgb),
        "8UC4": (np.concatenate([rgb[:, :, ::-1], alpha], 2), rgb),
        "mono8": (mono, np.repeat(mono[:, :, None], 3, 2)),
        "8UC1": (mono, np.repeat(mono[:, :, None], 3, 2)),
    }
    for enc, (pixels, expected) in cases.items():
        out = decode_image(raw(enc, np.ascontiguousarray(pixels)))
        assert out.dtype == np.uint8 and out.shape == (H, W, 3) and out.flags.c_contiguous, enc
        np.testing.assert_array_equal(out, expected, err_msg=enc)


@pytest.mark.parametrize("enc", ["mono16", "16UC1"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_mono_full_range_and_endianness(enc, bigendian):
    values = np.random.default_rng(1).integers(0, 65536, (H, W), dtype=np.uint16)
    values[0, :3] = (0, 255, 65535)
    stored = values.astype(">u2" if bigendian else "<u2")
    out = decode_image(raw(enc, stored, bigendian=bigendian))
    expected = np.repeat((values >> 8).astype(np.uint8)[:, :, None], 3, 2)
    np.testing.assert_array_equal(out, expected)
    assert tuple(out[0, :3, 0]) == (0, 0, 255)


@pytest.mark.parametrize("enc", ["rgb16", "bgr16", "rgba16", "bgra16"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_16bit_colour_keeps_the_top_8_bits(rgb, enc, bigendian):
    values = np.random.default_rng(2).integers(0, 65536, (H, W, 4), dtype=np.uint16)
    channels = 4 if "a" in enc[3:] else 3
    stored = values[:, :, :channels].astype(">u2" if bigendian else "<u2")
    out = decode_image(raw(enc, np.ascontiguousarray(stored), step=W * channels * 2 + 1, bigendian=bigendian))
    top = (values[:, :, :3] >> 8).astype(np.uint8)
    np.testing.assert_array_equal(out, top[:, :, ::-1] if enc.startswith("bgr") else top, err_msg=enc)


def test_row_padding_is_skipped(rgb):
    out = decode_image(raw("rgb8", rgb, step=W * 3 + 5))
    np.testing.assert_array_equal(out, rgb)
    values = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 900
    out16 = decode_image(raw("mono16", values.astype("<u2"), step=W * 2 + 3))  # odd step: unaligned rows
    np.testing.assert_array_equal(out16[:, :, 0], (values >> 8).astype(np.uint8))
    bigger = raw("rgb8", rgb)  # extra bytes after the last row are ignored
    padded = ImagePayload(1, "c", "rgb8", H, W, W * 3, False, bigger.data + b"\x01\x02")
    np.testing.assert_array_equal(decode_image(padded), rgb)


def test_last_row_may_lack_its_padding(rgb):
    step = W * 3 + 5
    full = raw("rgb8", rgb, step=step)
    cut = ImagePayload(1, "c", "rgb8", H, W, step, False, full.data[:-5])  # as some drivers send it
    np.testing.assert_array_equal(decode_image(cut), rgb)
    with pytest.raises(ImageDecodeError, match=r"image data too short for 7 x 5 rgb8") as info:
        check_payload(ImagePayload(1, "c", "rgb8", H, W, step, False, full.data[:-6]))
    assert info.value.kind == "bad_step"


def test_data_containers_and_no_shared_memory(rgb):
    flat = rgb.tobytes()
    for data in (flat, bytearray(flat), memoryview(flat), np.frombuffer(flat, np.uint8).copy(), list(flat), rgb):
        out = decode_image(ImagePayload(1, "c", "rgb8", H, W, W * 3, False, data))
        np.testing.assert_array_equal(out, rgb)
    src = rgb.copy()
    out = decode_image(ImagePayload(1, "c", "rgb8", H, W, W * 3, False, src))
    assert not np.shares_memory(out, src)


def _kind(payload) -> str:
    with pytest.raises(ImageDecodeError) as info:
        decode(payload)
    assert isinstance(info.value, ImageError)
    return info.value.kind


def test_raw_errors_have_kinds(rgb):
    with pytest.raises(ImageDecodeError, match=r"'no_such_encoding'.*supported: rgb8, bgr8") as info:
        decode_image(raw("no_such_encoding", rgb))
    assert info.value.kind == "unknown_encoding" and error_kind(info.value) == "unknown_encoding"
    assert _kind(raw("rgb8", rgb, step=W * 3 - 1)) == "bad_step"  # step < width * 3
    short = raw("rgb8", rgb)
    assert _kind(ImagePayload(1, "c", "rgb8", H, W, W * 3, False, short.data[:-1])) == "bad_step"
    assert _kind(ImagePayload(1, "c", "rgb8", 0, W, W * 3, False, b"")) == "zero_size"
    assert _kind(ImagePayload(1, "c", "mono8", H, 0, 0, False, b"")) == "zero_size"
    assert _kind(ImagePayload(1, "c", "mono8", -1, W, W, False, b"")) == "bad_payload"
    assert _kind(ImagePayload(1, "c", "mono8", H, W, W, False, object())) == "bad_payload"
    assert _kind(ImagePayload(1, "c", "mono8", 100_000, 100_000, 100_000, False, b"")) == "too_large"
    assert _kind("not a payload") == "bad_payload"
    assert set(SUPPORTED_ENCODINGS) >= {"rgb8", "bgr8", "mono8", "rgba8", "bgra8", "mono16", "16UC1", "8UC1", "8UC3"}


def _encoded(array: np.ndarray, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt, **kw)
    return out.getvalue()


def test_compressed_png_and_jpeg_formats(rgb, shared_data):
    png = _encoded(rgb, "PNG")
    for fmt in ("png", "rgb8; png compressed", "bgr8; png compressed bgr8", "PNG", ""):
        np.testing.assert_array_equal(decode_compressed(CompressedPayload(5, "c", fmt, png)), rgb, err_msg=fmt)
    jpeg_file = shared_data / "vprbench_corridor" / "ref" / "0000000.jpg"
    jpeg = jpeg_file.read_bytes()
    expected = read_image(jpeg_file)
    for fmt in ("jpeg", "jpg", "bgr8; jpeg compressed bgr8", "rgb8; jpeg compressed bgr8", ""):
        for data in (jpeg, np.frombuffer(jpeg, np.uint8), memoryview(jpeg)):
            np.testing.assert_array_equal(decode(CompressedPayload(5, "c", fmt, data)), expected, err_msg=fmt)
    mono = rgb[:, :, 1].copy()
    out = decode_compressed(CompressedPayload(5, "c", "mono8; png compressed", _encoded(mono, "PNG")))
    np.testing.assert_array_equal(out, np.repeat(mono[:, :, None], 3, 2))


def test_compressed_16bit_png_and_compressed_depth():
    values = (np.arange(H * W, dtype=np.uint16).reshape(H, W) * 1500).astype(np.uint16)
    png16 = _encoded(values, "PNG")
    expected = np.repeat((values >> 8).astype(np.uint8)[:, :, None], 3, 2)
    np.testing.assert_array_equal(decode_compressed(CompressedPayload(1, "c", "16UC1; png compressed", png16)),
                                  expected)
    depth = b"\x00" * 12 + png16  # compressed_depth_image_transport's 12-byte config header first
    np.testing.assert_array_equal(decode_compressed(CompressedPayload(1, "c", "16UC1; compressedDepth png", depth)),
                                  expected)


def test_compressed_errors_have_kinds(rgb, shared_data):
    jpeg = (shared_data / "vprbench_corridor" / "ref" / "0000000.jpg").read_bytes()
    assert _kind(CompressedPayload(1, "c", "jpeg", jpeg[: len(jpeg) // 2])) == "corrupt_compressed"  # truncated
    assert _kind(CompressedPayload(1, "c", "jpeg", b"\xff\xd8\xff" + b"garbage" * 50)) == "corrupt_compressed"
    assert _kind(CompressedPayload(1, "c", "jpeg", b"")) == "corrupt_compressed"
    assert _kind(CompressedPayload(1, "c", "png", jpeg)) == "corrupt_compressed"  # format says png, data is JPEG
    with pytest.raises(ImageDecodeError, match=r"theora.*supported: jpeg, png") as info:
        decode_compressed(CompressedPayload(1, "c", "theora", _encoded(rgb, "PNG")))
    assert info.value.kind == "unknown_format"


def test_error_kind_classifies_any_exception():
    assert error_kind(ImageDecodeError("bad_step", "x")) == "bad_step"
    assert error_kind(ImageError("x")) == "image_error"
    assert error_kind(MapError("x")) == "map_error"
    assert error_kind(RuntimeError("x")) == "internal_error"
    assert error_kind(RuntimeError("x"), "describe") == "describe_failed"
    assert error_kind(ImageDecodeError("zero_size", "x"), "describe") == "zero_size"


TOPIC = "/camera/image_raw"


@pytest.mark.parametrize("storage", ["mcap", "ros1"])
@pytest.mark.parametrize("compressed", [False, True])
def test_bag_source_and_node_path_decode_alike(tmp_path, storage, compressed):
    """Every encoding, written to a real bag: BagImageSource and the node's path (ros.messages payload ->
    decode) give the same pixels, the ones the factory meant."""
    from fol_vpr_ros.ros.messages import compressed_payload, image_payload

    to_payload = compressed_payload if compressed else image_payload
    ims = [np.random.default_rng(k).integers(0, 256, (6, 5, 3), dtype=np.uint8) for k in range(2)]
    stamps = [1_700_000_000 * NS_PER_SEC + k * NS_PER_SEC // 10 for k in range(2)]
    assert {"rgb16", "8UC3"} <= set(SUPPORTED_ENCODINGS)
    for j, enc in enumerate(SUPPORTED_ENCODINGS):
        name = f"b{j}.bag" if storage == "ros1" else f"b{j}"
        bag = write_image_bag(tmp_path / name, ims, stamps, storage=storage, encoding=enc, compressed=compressed,
                              row_padding=j % 3, bigendian=bool(j % 2))
        via_source = [f.rgb for f in BagImageSource(bag, TOPIC)]
        with open_bag(bag) as (reader, path, _):
            msgs = list(read_topics(reader, path, [TOPIC]))
        via_node = [decode(to_payload(m.msg)) for m in msgs]
        via_bag_payload = [decode(payload_from_message(m.msgtype, m.msg, 0)) for m in msgs]
        assert len(via_source) == len(via_node) == 2, enc
        for a, b, c, im in zip(via_source, via_node, via_bag_payload, ims):
            np.testing.assert_array_equal(a, b, err_msg=f"{storage} {enc} {compressed}")
            np.testing.assert_array_equal(a, c, err_msg=f"{storage} {enc} {compressed}")
            np.testing.assert_array_equal(a, expected_rgb(im, enc), err_msg=f"{storage} {enc} {compressed}")


def test_bag_skip_reasons_are_the_decoder_errors(tmp_path, rgb):
    """What the bag scan counts as unusable is the node decoder's own error text."""
    stamps = [NS_PER_SEC * (k + 1) for k in range(3)]
    bag = write_image_bag(tmp_path / "b", [rgb] * 3, stamps, encoding=["rgb8", "yuv_magic", "rgb8"], corrupt_frames=[2])
    skipped = BagImageSource(bag, TOPIC).scan().skipped
    with open_bag(bag) as (reader, path, _):
        msgs = list(read_topics(reader, path, [TOPIC]))
    errors = []
    for m in msgs[1:]:
        with pytest.raises(ImageDecodeError) as info:
            decode(payload_from_message(m.msgtype, m.msg, 0))
        errors.append(str(info.value))
    assert skipped == {e: 1 for e in errors}
