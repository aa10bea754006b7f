"""Scientific and high-bit-depth input: the documented 8-bit rules, refusals, and errors against the original."""

import json
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

import kmcodec
import kmcodec.files
from kmcodec.errors import ImageInputError
from kmcodec.pixels import from_array, to_pixels


def kmq(*args, cwd):
    return subprocess.run([sys.executable, "-m", "kmcodec", *map(str, args)], cwd=cwd, capture_output=True, text=True)


def ramp(height=6, width=10, channels=3):
    return np.linspace(0.0, 1.0, height * width * channels).reshape(height, width, channels)


# ------------------------------------------------------------------ the 8-bit rules


@settings(max_examples=30, deadline=None)
@given(arrays(np.float32, (3, 4, 3), elements=st.floats(0, 1, width=32)))
def test_float_data_in_0_1_is_scaled_by_255(values):
    pixels = from_array(values)
    assert np.array_equal(pixels.array, np.rint(values.astype(np.float64) * 255).astype(np.uint8))


def test_float_data_outside_0_1_uses_its_own_range():
    values = np.array([[3.0, 127.5, 252.0]])
    pixels = from_array(values)
    assert pixels.array[0, :, 0].tolist() == [0, 128, 255]
    assert "float64 data range 3..252 mapped to 0..255" in pixels.notes


def test_float_0_255_data_spanning_the_full_range_keeps_its_values():
    values = np.arange(256, dtype=np.float32).reshape(16, 16)
    pixels = from_array(values)
    assert np.array_equal(pixels.array[:, :, 0], values.astype(np.uint8))
    assert pixels.exact


def test_constant_float_image_outside_0_1_becomes_0():
    assert from_array(np.full((2, 3), 7.5)).array.max() == 0


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_a_one_line_error_naming_the_first_place(bad):
    values = ramp()
    values[4, 7, 1] = bad
    with pytest.raises(ImageInputError, match=r"holds NaN or infinity, the first at \(x=7, y=4\)") as info:
        kmcodec.encode(values, 4)
    assert "\n" not in str(info.value) and "(6, 10, 3)" in str(info.value) and "float64" in str(info.value)


def test_float_tiff_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 1, 64 * 8, dtype=np.float32).reshape(8, 64)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as image:
        pixels = to_pixels(image)
    assert np.array_equal(pixels.array[:, :, 0], np.rint(values.astype(np.float64) * 255).astype(np.uint8))
    assert len(np.unique(pixels.array)) > 200
    assert any(note.startswith("F image: float32 data in [0, 1] scaled by 255") for note in pixels.notes)


def test_uint16_arrays_scale_from_0_65535_with_rounding():
    values = np.array([[0, 257, 40000, 65535]], np.uint16)
    assert from_array(values).array[0, :, 0].tolist() == [0, 1, round(40000 * 255 / 65535), 255]


def test_uint16_rgb_array_stays_rgb():
    values = (np.arange(4 * 5 * 3, dtype=np.uint16).reshape(4, 5, 3) * 1000)
    pixels = from_array(values)
    assert pixels.channels == 3 and not pixels.exact
    assert np.array_equal(pixels.array, np.rint(values * (255 / 65535)).astype(np.uint8))


def test_i16_png_is_read_at_16_bits(tmp_path):
    values = np.array([[0, 1000, 40000, 65535]], np.uint16).repeat(3, axis=0)
    Image.fromarray(values).save(tmp_path / "wide.png")
    with Image.open(tmp_path / "wide.png") as image:
        assert image.mode == "I;16"
        pixels = to_pixels(image)
    assert pixels.array[0, :, 0].tolist() == [0, 4, 156, 255]
    assert not pixels.exact


def test_integers_within_0_255_are_kept_exactly():
    values = np.array([[0, 9, 255]], np.int64)
    pixels = from_array(values)
    assert pixels.array[0, :, 0].tolist() == [0, 9, 255] and pixels.exact


def test_bool_is_0_and_255():
    pixels = from_array(np.array([[True, False]]))
    assert pixels.array[0, :, 0].tolist() == [255, 0] and pixels.exact


# ------------------------------------------------------------------ shapes and layouts


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.uint8).reshape(3, 4) * 20,
        np.arange(12, dtype=np.uint8).reshape(3, 4, 1) * 20,
        np.arange(36, dtype=np.uint8).reshape(3, 4, 3) * 7,
        np.arange(48, dtype=np.uint8).reshape(3, 4, 4) * 5,
        np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000,
        np.arange(12).reshape(3, 4) % 2 == 0,
        np.arange(36, dtype=np.uint8).reshape(3, 4, 3)[:, ::-1],
        np.asfortranarray(np.arange(36, dtype=np.uint8).reshape(3, 4, 3) * 7),
        np.arange(72, dtype=np.uint8).reshape(3, 8, 3)[:, ::2],
    ],
    ids=["HW", "HW1", "HW3", "HW4", "uint16", "bool", "reversed-view", "fortran", "strided-view"],
)
def test_accepted_arrays_round_trip_through_their_8_bit_image(array):
    expected = from_array(array).array
    image = kmcodec.decode(kmcodec.encode(array, 256))
    assert np.array_equal(image.to_array(), expected)
    assert expected.shape == array.shape[:2] + (array.shape[2] if array.ndim == 3 else 1,)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((3, 4, 2), np.uint8), r"array shape \(3, 4, 2\) dtype uint8: expected \(height, width\)"),
        (np.zeros((3, 5, 6), np.uint8), r"channels first\? use numpy.moveaxis"),
        (np.zeros(5, np.uint8), r"array shape \(5,\) dtype uint8"),
        (np.zeros((2, 2, 2, 3), np.uint8), r"array shape \(2, 2, 2, 3\) dtype uint8"),
        (np.zeros((0, 4), np.uint8), r"array shape \(0, 4, 1\) dtype uint8: width and height"),
        (np.full((2, 2), -1, np.int16), r"dtype int16 holds -1..-1; integer images must lie in 0..65535"),
        (np.full((2, 2), 70000, np.int32), r"dtype int32 holds 70000..70000"),
        (np.zeros((2, 2), np.complex64), r"dtype complex64: expected uint8, bool"),
        (np.zeros((2, 2), object), r"dtype object: expected uint8, bool"),
    ],
)
def test_refused_arrays_get_one_line_naming_shape_and_dtype(array, message):
    with pytest.raises(ImageInputError, match=message) as info:
        kmcodec.encode(array, 4)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ errors against the original


def three_level_floats():
    """Three grey levels off the 8-bit grid: k=3 is exact on the 8-bit image, not on the original."""
    return np.tile(np.array([0.1001, 0.5003, 0.9007], np.float32), (8, 8))


def test_summary_error_is_against_the_original_and_never_lossless_when_precision_was_lost(tmp_path):
    values = three_level_floats()
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    result = kmq("encode", "f.tif", "-k", "3", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    decoded = kmcodec.read(tmp_path / "f.kmq").to_array()[:, :, 0].astype(np.float64)
    expected = float(np.mean((values.astype(np.float64) * 255 - decoded) ** 2))
    assert summary["input_exact"] is False
    assert summary["mse_8bit"] == 0 and summary["psnr_8bit"] is None
    assert summary["mse"] == pytest.approx(expected) and summary["mse"] > 0
    assert summary["psnr"] == pytest.approx(kmcodec.psnr(expected))
    line = kmq("encode", "f.tif", "-k", "3", "--force", cwd=tmp_path).stderr
    assert "lossless, " not in line.split("(against")[0]
    assert "against its 8-bit conversion MSE 0.00, lossless" in line


def test_summary_of_an_8_bit_input_reports_one_error(tmp_path):
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).save(tmp_path / "g.png")
    summary = json.loads(kmq("encode", "g.png", "-k", "4", "--json", cwd=tmp_path).stdout)
    assert summary["input_exact"] is True and summary["mse"] == summary["mse_8bit"] > 0


def test_sweep_reports_both_errors_when_precision_was_lost(tmp_path):
    values = three_level_floats()
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    document = json.loads(kmq("sweep", "f.tif", "--k", "2-3", "--json", cwd=tmp_path).stdout)
    last = document["rows"][-1]
    assert last["mse_8bit"] == 0 and last["psnr_8bit"] is None and last["mse"] > 0 and last["psnr"] is not None
    table = kmq("sweep", "f.tif", "--k", "2-3", cwd=tmp_path).stdout
    assert table.splitlines()[0].split()[-2:] == ["mse_8bit", "psnr_8bit"]


# ------------------------------------------------------------------ 16-bit colour files Pillow narrows


def write_16_bit_png(path, values, colour_type):
    """A PNG of 16-bit samples (Pillow writes none with colour): 2 = RGB, 4 = grey + alpha, 6 = RGBA."""
    height, width = values.shape[:2]
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in values)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_48_bit_png_says_pillow_kept_the_high_byte(tmp_path):
    values = np.array([[[0, 300, 65535], [40000, 256, 511]]], np.uint16)
    write_16_bit_png(tmp_path / "rgb48.png", values, 2)
    with Image.open(tmp_path / "rgb48.png") as image:
        pixels = to_pixels(image)
    assert np.array_equal(pixels.array, (values >> 8).astype(np.uint8))
    assert "16-bit RGB file: Pillow reads the high byte of each sample" in pixels.notes


def test_16_bit_grey_alpha_png_stays_grey(tmp_path):
    grey = np.array([[0, 1000, 65535]], np.uint16)
    write_16_bit_png(tmp_path / "la16.png", np.stack([grey, np.full_like(grey, 65535)], -1), 4)
    pixels = kmcodec.files.load_image(tmp_path / "la16.png")
    assert pixels.channels == 1 and pixels.array[0, :, 0].tolist() == [0, 3, 255]
    assert "16-bit LA file: Pillow reads the high byte of each sample" in pixels.notes


def test_8_bit_png_gets_no_16_bit_note(tmp_path):
    Image.new("RGB", (2, 2), (9, 9, 9)).save(tmp_path / "rgb.png")
    assert kmcodec.files.load_image(tmp_path / "rgb.png").notes == ()


# ------------------------------------------------------------------ 16-bit PPM and PGM files

ALL_16_BIT = np.concatenate([np.arange(65536), [0, 0]]).astype(np.uint16)  # every value; 65538 = 2 * 10923 * 3 samples


def write_netpbm(path, magic, values, maxval):
    """A binary (P5 grey, P6 RGB) or plain (P2, P3) Netpbm file of these samples; maxval > 255 takes 2 bytes a sample."""
    height, width = values.shape[:2]
    if magic in ("P5", "P6"):
        body = values.astype(">u2" if maxval > 255 else "u1").tobytes()
    else:
        body = " ".join(map(str, values.reshape(-1).tolist())).encode() + b"\n"
    path.write_bytes(f"{magic}\n{width} {height}\n{maxval}\n".encode() + body)


@pytest.mark.parametrize("magic", ["P6", "P3"])
def test_16_bit_ppm_is_scaled_by_pillow_with_rounding_and_says_so(tmp_path, magic):
    values = ALL_16_BIT.reshape(2, -1, 3)
    write_netpbm(tmp_path / "rgb16.ppm", magic, values, 65535)
    pixels = kmcodec.files.load_image(tmp_path / "rgb16.ppm")
    assert np.array_equal(pixels.array, np.rint(values * (255 / 65535)).astype(np.uint8))  # as the uint16 rule
    assert "16-bit RGB file: Pillow scales each sample from 0..65535 to 0..255" in pixels.notes


def test_ppm_of_10_bit_samples_is_scaled_from_its_maxval(tmp_path):
    values = np.arange(1024, dtype=np.uint16).reshape(1, -1, 1).repeat(3, axis=2)
    write_netpbm(tmp_path / "rgb10.ppm", "P6", values, 1023)
    pixels = kmcodec.files.load_image(tmp_path / "rgb10.ppm")
    assert np.array_equal(pixels.array, np.rint(values * (255 / 1023)).astype(np.uint8))
    assert pixels.notes == ("16-bit RGB file: Pillow scales each sample from 0..1023 to 0..255",)


@pytest.mark.parametrize("magic", ["P6", "P3"])
def test_8_bit_ppm_gets_no_16_bit_note(tmp_path, magic):
    write_netpbm(tmp_path / "rgb8.ppm", magic, np.arange(12, dtype=np.uint8).reshape(2, 2, 3), 255)
    assert kmcodec.files.load_image(tmp_path / "rgb8.ppm").notes == ()


@pytest.mark.parametrize("writer", ["P5", "P2", "pillow"])
def test_16_bit_pgm_follows_the_uint16_rule_like_a_16_bit_png(tmp_path, writer):
    values = ALL_16_BIT.reshape(2, -1)
    if writer == "pillow":
        Image.fromarray(values).save(tmp_path / "grey16.pgm")
    else:
        write_netpbm(tmp_path / "grey16.pgm", writer, values, 65535)
    pixels = kmcodec.files.load_image(tmp_path / "grey16.pgm")
    assert np.array_equal(pixels.array[:, :, 0], np.rint(values * (255 / 65535)).astype(np.uint8)) and not pixels.exact
    assert pixels.notes[0] == "I image: int32 scaled from 0..65535 to 8 bits (max 65535)"


def test_kmq_encode_notes_16_bit_ppm_and_pgm_files(tmp_path):
    rgb = np.array([[[0, 300, 65535], [40000, 256, 511]]], np.uint16)
    write_netpbm(tmp_path / "rgb16.ppm", "P6", rgb, 65535)
    write_netpbm(tmp_path / "grey16.pgm", "P5", rgb[:, :, 2], 65535)
    notes = {}
    for name in ("rgb16.ppm", "grey16.pgm"):
        result = kmq("encode", name, "-k", "2", "--json", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        notes[name] = json.loads(result.stdout)["notes"]
    assert notes["rgb16.ppm"] == ["16-bit RGB file: Pillow scales each sample from 0..65535 to 0..255"]
    assert notes["grey16.pgm"] == ["I image: int32 scaled from 0..65535 to 8 bits (max 65535)", "error measured against the original values"]


def test_out_of_range_file_is_named_with_its_mode_not_as_an_array(tmp_path):
    Image.fromarray(np.full((2, 3), 70000, np.int32), "I").save(tmp_path / "counts.tif")
    result = kmq("encode", "counts.tif", "-k", "2", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("kmq: error: counts.tif: mode I image 3x2 (int32) holds 70000..70000;"), result.stderr
