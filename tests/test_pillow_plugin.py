"""The Pillow plugin, through Pillow's public API only: Image.open, Image.save, registration."""

import io
import zlib

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import kmcodec
from kmcodec import container


def photo(width=64, height=48, seed=0):
    """A smooth colour image with many distinct colours (a stand-in for a photo)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(seed)
    rgb = np.stack([xx * 255 // (width - 1), yy * 255 // (height - 1), (xx + yy) * 255 // (width + height - 2)], -1)
    return np.clip(rgb + rng.integers(-12, 13, rgb.shape), 0, 255).astype(np.uint8)


def with_header_byte(data: bytes, offset: int, value: int) -> bytes:
    """`data` with one header byte changed and the CRC-32 recomputed, so only that rule breaks."""
    body = bytearray(data[:-4])
    body[offset] = value
    return bytes(body) + zlib.crc32(body).to_bytes(4, "little")


def test_registers_extension_and_mime_type():
    assert Image.registered_extensions()[".kmq"] == "KMQ"
    assert Image.MIME["KMQ"] == "image/x-kmq"


def test_register_pillow_again_keeps_open_working(tmp_path):
    kmcodec.register_pillow()
    kmcodec.register_pillow()
    path = tmp_path / "x.kmq"
    Image.fromarray(photo()).save(path, k=4)
    with Image.open(path) as image:
        assert image.format == "KMQ"


def test_save_picks_kmq_from_the_extension_and_writes_what_encode_writes(tmp_path):
    pixels = photo()
    path = tmp_path / "x.kmq"
    Image.fromarray(pixels).save(path, k=16, seed=0)
    assert path.read_bytes() == kmcodec.encode(pixels, 16, seed=0)


def test_save_options_reach_the_encoder(tmp_path):
    pixels = photo()
    Image.fromarray(pixels).save(tmp_path / "a.kmq", k=16, seed=3, n_init=1, max_iter=5)
    assert (tmp_path / "a.kmq").read_bytes() == kmcodec.encode(pixels, 16, seed=3, n_init=1, max_iter=5)


def test_open_with_k_at_most_256_is_mode_p_whose_values_are_the_labels(tmp_path):
    path = tmp_path / "x.kmq"
    Image.fromarray(photo()).save(path, k=16, seed=0)
    decoded = kmcodec.read(path)
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("KMQ", "P", (64, 48))
        assert np.array_equal(np.asarray(image), decoded.labels)
        assert np.array_equal(np.asarray(image.convert("RGB")), decoded.to_array())


def test_open_with_k_above_256_is_rgb(tmp_path):
    pixels = photo()
    path = tmp_path / "x.kmq"
    path.write_bytes(kmcodec.encode(pixels, 300, n_init=1))
    decoded = kmcodec.read(path)
    assert decoded.k > 256
    with Image.open(path) as image:
        assert image.mode == "RGB"
        assert np.array_equal(np.asarray(image), decoded.to_array())


def test_open_reports_header_fields_in_info(tmp_path):
    path = tmp_path / "x.kmq"
    Image.fromarray(photo()).save(path, k=5)
    with Image.open(path) as image:
        assert (image.info["k"], image.info["channels"], image.info["bits_per_pixel"]) == (5, 3, 3)


def test_reopened_p_image_saved_without_k_gives_the_same_bytes(tmp_path):
    first, second = tmp_path / "a.kmq", tmp_path / "b.kmq"
    Image.fromarray(photo()).save(first, k=12, seed=0)
    with Image.open(first) as image:
        image.save(second)
    assert second.read_bytes() == first.read_bytes()


def test_p_image_saved_without_k_keeps_its_palette_and_indices(tmp_path):
    labels = np.array([[0, 1, 2, 1], [2, 2, 0, 1]], np.uint8)
    image = Image.fromarray(labels, "P")
    image.putpalette([250, 0, 0, 0, 250, 0, 0, 0, 250])
    image.save(tmp_path / "p.kmq")
    decoded = kmcodec.read(tmp_path / "p.kmq")
    assert np.array_equal(decoded.labels, labels)
    assert decoded.palette.tolist() == [[250, 0, 0], [0, 250, 0], [0, 0, 250]]


def test_image_saved_without_k_gets_256_colours_like_quantize(tmp_path):
    Image.fromarray(photo()).save(tmp_path / "x.kmq")
    assert kmcodec.read(tmp_path / "x.kmq").k == 256


def test_save_with_bad_k_raises_value_error_and_leaves_no_file(tmp_path):
    path = tmp_path / "x.kmq"
    with pytest.raises(ValueError, match="k"):
        Image.fromarray(photo()).save(path, k=0)
    assert not path.exists()


def test_open_applies_the_decompression_bomb_check_before_decoding(tmp_path):
    # Only the 24-byte header and the palette exist: open must refuse on the header alone.
    header = container.Header(width=100_000, height=100_000, k=2, channels=3).pack()
    path = tmp_path / "bomb.kmq"
    path.write_bytes(header + bytes(6))
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)


def test_bytes_without_the_magic_are_not_identified():
    with pytest.raises(UnidentifiedImageError):
        Image.open(io.BytesIO(b"\x89KMX" + bytes(40)))


@pytest.mark.parametrize(("offset", "value", "words"), [(4, 9, "version"), (5, 2, "channels"), (6, 2, "coding")])
def test_header_breaking_a_rule_raises_oserror_naming_it_on_open(tmp_path, offset, value, words):
    data = with_header_byte(kmcodec.encode(photo(), 4), offset, value)
    with pytest.raises(OSError, match=words):
        Image.open(io.BytesIO(data))


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d[:-5], "truncated"),
        (lambda d: d + b"\0", "trailing"),
        (lambda d: d[:100] + bytes([d[100] ^ 1]) + d[101:], "check"),
    ],
)
def test_body_breaking_a_rule_raises_oserror_on_load(change, words):
    data = change(kmcodec.encode(photo(), 16))
    with Image.open(io.BytesIO(data)) as image:
        with pytest.raises(OSError, match=words):
            image.load()


def test_label_not_below_k_raises_oserror_on_load():
    header = container.Header(width=4, height=1, k=3, channels=3)
    data = container.join(header, bytes(9), bytes([0b11_00_00_00]))  # first label is 3
    with Image.open(io.BytesIO(data)) as image:
        with pytest.raises(OSError, match="label"):
            image.load()
