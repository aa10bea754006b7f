"""Grey, RGB and alpha: C in {1, 3, 4} end to end, mode conversions and EXIF orientation."""

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

import kmcodec
from kmcodec.files import load_image
from kmcodec.pixels import to_pixels

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def quadrants(width=64, height=48):
    """Four flat colours in the four quadrants: lossless at k >= 4, and every rotation differs."""
    image = np.zeros((height, width, 3), np.uint8)
    image[: height // 2, : width // 2] = (255, 0, 0)
    image[: height // 2, width // 2 :] = (0, 255, 0)
    image[height // 2 :, : width // 2] = (0, 0, 255)
    image[height // 2 :, width // 2 :] = (255, 255, 0)
    return image


def test_rgba_logo_round_trips_its_transparency():
    logo = np.asarray(Image.open(FIXTURES / "logo_rgba.png"))
    image = kmcodec.decode(kmcodec.encode(logo, 4))
    assert image.channels == 4
    assert np.array_equal(image.to_array(), logo)
    assert sorted(set(image.palette[:, 3].tolist())) == [0, 255]


def test_rgba_logo_opens_through_pillow_with_its_transparency(tmp_path):
    logo = Image.open(FIXTURES / "logo_rgba.png")
    logo.save(tmp_path / "logo.kmq", k=4)
    with Image.open(tmp_path / "logo.kmq") as image:
        assert np.array_equal(np.asarray(image.convert("RGBA")), np.asarray(logo))


def test_greyscale_photo_stores_a_grey_palette_of_one_channel():
    grey = np.asarray(Image.open(FIXTURES / "camera_grey.png"))
    data = kmcodec.encode(grey, 8)
    image = kmcodec.decode(data)
    assert image.channels == 1 and image.palette.shape == (image.k, 1)
    assert image.mode == "L"
    n = grey.size
    assert len(data) == 28 + 1 * image.k + math.ceil(n * image.bits_per_pixel / 8)


def test_greyscale_round_trips_as_l_through_pillow(tmp_path):
    grey = Image.open(FIXTURES / "camera_grey.png")
    grey.save(tmp_path / "grey.kmq", k=8)
    decoded = kmcodec.read(tmp_path / "grey.kmq")
    with Image.open(tmp_path / "grey.kmq") as image:
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image.convert("L")), decoded.to_array()[:, :, 0])


def test_grey_above_256_colours_opens_as_l(tmp_path):
    palette = (np.arange(300) * 7 % 256).astype(np.uint8)[:, None]  # k = 300, one channel
    labels = (np.arange(64 * 48) % 300).reshape(48, 64)
    path = tmp_path / "g.kmq"
    path.write_bytes(kmcodec.pack(palette, labels))
    with Image.open(path) as image:
        assert image.mode == "L"
        assert np.array_equal(np.asarray(image), palette[labels, 0])


def test_rgba_above_256_colours_opens_as_rgba(tmp_path):
    rng = np.random.default_rng(4)
    palette = rng.integers(0, 256, (300, 4), dtype=np.uint8)
    labels = (np.arange(64 * 48) % 300).reshape(48, 64)
    path = tmp_path / "a.kmq"
    path.write_bytes(kmcodec.pack(palette, labels))
    with Image.open(path) as image:
        assert image.mode == "RGBA"
        assert np.array_equal(np.asarray(image), palette[labels])


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_size_is_the_formula_for_every_channel_count(channels):
    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 256, (48, 64, channels), dtype=np.uint8)
    for k in (2, 5, 16):
        data = kmcodec.encode(pixels, k, n_init=1)
        image = kmcodec.decode(data)
        size = kmcodec.size_formula(64, 48, image.k, channels)
        assert size.content_bits == 8 * channels * image.k + 64 * 48 * image.bits_per_pixel
        assert len(data) == size.total_bytes


def test_p_mode_is_converted_to_rgb_and_the_note_says_so():
    labels = np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 3
    image = Image.fromarray(labels, "P")
    image.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255])
    pixels = to_pixels(image)
    assert pixels.channels == 3
    assert "P converted to RGB" in pixels.notes
    assert np.array_equal(pixels.array, np.asarray(image.convert("RGB")))


def test_p_mode_with_transparency_keeps_alpha():
    labels = np.arange(64 * 48, dtype=np.uint8).reshape(48, 64) % 3
    image = Image.fromarray(labels, "P")
    image.putpalette([10, 20, 30, 200, 100, 0, 0, 0, 255])
    image.info["transparency"] = 0
    pixels = to_pixels(image)
    assert pixels.channels == 4
    assert "P converted to RGBA" in pixels.notes
    assert set(pixels.array[:, :, 3].reshape(-1).tolist()) == {0, 255}


@pytest.mark.parametrize(("mode", "channels"), [("1", 1), ("CMYK", 3), ("I;16", 1), ("YCbCr", 3), ("HSV", 3)])
def test_other_modes_become_grey_or_rgb(mode, channels):
    image = Image.fromarray(quadrants()).convert(mode)
    pixels = to_pixels(image)
    assert pixels.channels == channels
    assert any(mode in note for note in pixels.notes)


def test_grey_with_alpha_becomes_rgba():
    image = Image.fromarray(quadrants()).convert("LA")
    image.putpixel((0, 0), (0, 0))  # one transparent pixel keeps the alpha channel
    pixels = to_pixels(image)
    assert pixels.channels == 4
    assert pixels.array[0, 0, 3] == 0


def test_opaque_rgba_drops_alpha_with_a_note():
    image = Image.fromarray(quadrants()).convert("RGBA")
    pixels = to_pixels(image)
    assert pixels.channels == 3
    assert any("alpha dropped" in note for note in pixels.notes)


def test_exif_orientation_6_is_applied_on_encode(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rotated.png"
    Image.fromarray(quadrants()).save(path, exif=exif)
    with Image.open(path) as source:
        assert source.getexif().get(0x0112) == 6
        upright = np.asarray(ImageOps.exif_transpose(source))
    pixels = load_image(path)
    assert any("EXIF orientation" in note for note in pixels.notes)
    image = kmcodec.decode(kmcodec.encode(pixels.array, 4))
    assert (image.width, image.height) == (48, 64)
    assert np.array_equal(image.to_array(), upright)
    # rotated clockwise: the top-left quadrant (red) is now top-right
    assert image.to_array()[0, -1].tolist() == [255, 0, 0]
