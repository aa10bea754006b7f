"""Encoder input: Pillow modes and arrays become grey, RGB or RGBA pixels, with notes."""

import numpy as np
import pytest
from PIL import Image

from kmcodec.pixels import from_pil


@pytest.mark.parametrize(
    ("image", "channels"),
    [
        (Image.new("L", (3, 2), 9), 1),
        (Image.new("1", (3, 2), 1), 1),
        (Image.new("I;16", (3, 2), 40000), 1),
        (Image.new("RGB", (3, 2), (1, 2, 3)), 3),
        (Image.new("CMYK", (3, 2), (1, 2, 3, 4)), 3),
        (Image.new("RGBA", (3, 2), (1, 2, 3, 4)), 4),
        (Image.new("LA", (3, 2), (7, 128)), 4),
    ],
)
def test_mode_maps_to_channels(image, channels):
    assert from_pil(image).channels == channels


def test_opaque_alpha_is_dropped_and_said():
    pixels = from_pil(Image.new("RGBA", (3, 2), (1, 2, 3, 255)))
    assert pixels.channels == 3
    assert "alpha dropped: every pixel is opaque" in pixels.notes


def test_grey_with_opaque_alpha_stays_one_channel():
    pixels = from_pil(Image.new("LA", (3, 2), (77, 255)))
    assert pixels.channels == 1
    assert pixels.array[0, 0, 0] == 77
    assert any("alpha opaque" in note for note in pixels.notes)


def test_palette_image_with_transparency_keeps_alpha():
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((1, 0), 1)
    image.info["transparency"] = 0
    pixels = from_pil(image)
    assert pixels.channels == 4
    assert pixels.array[0, 0, 3] == 0 and pixels.array[0, 1, 3] == 255


def test_exif_orientation_is_applied_and_noted_only_when_set():
    array = np.zeros((2, 3, 3), np.uint8)
    array[0, 0] = 255
    plain = Image.fromarray(array)
    assert from_pil(plain).notes == ()
    rotated = Image.fromarray(array)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated.info["exif"] = exif.tobytes()
    pixels = from_pil(rotated)
    assert pixels.array.shape[:2] == (3, 2)
    assert pixels.notes == ("EXIF orientation 6 applied",)


@pytest.mark.parametrize(("mode", "channels"), [("La", 4), ("RGBa", 4)])
def test_premultiplied_alpha_modes_are_accepted(mode, channels):
    straight = Image.new("RGBA", (3, 2), (200, 100, 50, 128))
    image = straight.convert("LA").convert(mode) if mode == "La" else straight.convert(mode)
    pixels = from_pil(image)
    assert pixels.channels == channels
    assert pixels.array[0, 0, 3] == 128
